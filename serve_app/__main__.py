"""Command line: ``python -m serve_app <command> ...``.

Each command is an entry in ``COMMANDS``: one function adds its arguments, one runs it.
Heavy libraries are imported inside the run functions so ``--help`` and the store
commands start instantly.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from serve_app.common import model_store


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        type=Path,
        default=Path(os.environ.get("MODEL_STORE", "models")),
        help="model store directory (default: $MODEL_STORE or ./models)",
    )


def _print_ref(ref: model_store.ModelRef) -> None:
    print(f"{ref.name} {ref.version} {ref.path}")


def _build_tiny_models_args(parser: argparse.ArgumentParser) -> None:
    _add_store(parser)
    parser.add_argument("--force", action="store_true", help="rebuild even if a valid version exists")


def _build_tiny_models(args: argparse.Namespace) -> int:
    from serve_app.tools.tiny_models import build_all

    started = time.perf_counter()
    for ref in build_all(args.store, force=args.force):
        _print_ref(ref)
    print(f"done in {time.perf_counter() - started:.1f}s")
    return 0


def _name_version_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="model name in the store")
    parser.add_argument("--version", required=True, help="version label in the store")
    _add_store(parser)


def _fetch_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo_id", metavar="REPO_ID", help="Hugging Face repository, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    parser.add_argument("--revision", help="branch, tag or commit (default: main)")
    _name_version_args(parser)


def _fetch_model(args: argparse.Namespace) -> int:
    _print_ref(model_store.fetch_from_hub(args.repo_id, args.store, args.name, args.version, revision=args.revision))
    return 0


def _import_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="DIR", type=Path, help="local model directory to copy into the store")
    _name_version_args(parser)


def _import_model(args: argparse.Namespace) -> int:
    source = f"local:{args.src.resolve()}"
    _print_ref(model_store.import_dir(args.src, args.store, args.name, args.version, source=source))
    return 0


def _verify_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("version", metavar="VERSION")
    _add_store(parser)


def _verify_model(args: argparse.Namespace) -> int:
    _print_ref(model_store.verify(args.store, args.name, args.version))
    return 0


def _run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="Serve config file, e.g. configs/local.yaml")
    parser.add_argument("--dashboard", action="store_true", help="also start the Ray dashboard")


def _run(args: argparse.Namespace) -> int:
    from serve_app.tools.launch import run

    run(args.config, dashboard=args.dashboard)
    return 0


def _plan_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="Serve config file, e.g. configs/prod.yaml")
    parser.add_argument("--gpu", help="check on this card instead of the planned one, e.g. L4-24GB or H200-141GB")


def _plan(args: argparse.Namespace) -> int:
    from serve_app.tools.plan_table import plan_file

    table, holds = plan_file(args.config, args.gpu)
    print(table)
    return 0 if holds else 1


def _kuberay_args(parser: argparse.ArgumentParser) -> None:
    from serve_app.tools import kuberay

    kuberay.add_arguments(parser)


def _kuberay(args: argparse.Namespace) -> int:
    from serve_app.tools import kuberay

    return kuberay.run(args)


def _keys_args(parser: argparse.ArgumentParser) -> None:
    from serve_app.tools import keys_cli

    keys_cli.add_arguments(parser)


def _keys(args: argparse.Namespace) -> int:
    from serve_app.tools import keys_cli

    return keys_cli.run(args)


def _batch_args(parser: argparse.ArgumentParser) -> None:
    from serve_app.tools import batch_cli

    batch_cli.add_arguments(parser)


def _batch(args: argparse.Namespace) -> int:
    from serve_app.tools import batch_cli

    return batch_cli.run(args)


def _bulk_args(parser: argparse.ArgumentParser) -> None:
    from serve_app.tools import bulk_cli

    bulk_cli.add_arguments(parser)


def _bulk(args: argparse.Namespace) -> int:
    from serve_app.tools import bulk_cli

    return bulk_cli.run(args)


COMMANDS: dict[str, Command] = {
    "run": Command("`serve run CONFIG` on a fresh local Ray (dashboard off), announcing readiness", _run_args, _run),
    "plan": Command("print a config's GPU plan; exit 1 when a budget does not fit its fraction", _plan_args, _plan),
    "build-tiny-models": Command(
        "build the tiny offline checkpoints into the store", _build_tiny_models_args, _build_tiny_models
    ),
    "fetch-model": Command("download a Hugging Face repository into the store", _fetch_model_args, _fetch_model),
    "import-model": Command("copy a local model directory into the store", _import_model_args, _import_model),
    "verify-model": Command("check a stored version against its manifest", _verify_model_args, _verify_model),
    "kuberay": Command(
        "print (or -o write) a KubeRay RayService whose serveConfigV2 is CONFIG's applications", _kuberay_args, _kuberay
    ),
    "keys": Command(
        "the gateway's API keys on a running server (generate, list, info, update, block, delete, usage)",
        _keys_args,
        _keys,
    ),
    "batch": Command(
        "a JSONL file through the Batch API of a running server (submit --wait, status, cancel)", _batch_args, _batch
    ),  # fmt: skip
    "bulk": Command(
        "a folder of media as a batch: transcribe, summarize or index, with progress and resume", _bulk_args, _bulk
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serve_app")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except model_store.ModelStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
