"""python -m serve_app.tools.observability [--check]: write (or check) every generated observability file."""

from __future__ import annotations

import argparse
import sys

from serve_app.tools.observability.files import COMMAND, REPO, outputs, stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"out of date: {path.relative_to(REPO)}", file=sys.stderr)
        if out_of_date:
            print(f"regenerate with: {COMMAND}", file=sys.stderr)
        return 1 if out_of_date else 0
    for path, content in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
