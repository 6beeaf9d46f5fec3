"""The Dockerfile's invariants that can drift as the project changes, read from the file itself."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, `\\` continuations joined."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in (REPO / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    found = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def _all(keyword: str, instructions=None) -> list[str]:
    return [args for k, args in (instructions or _instructions()) if k == keyword]


def _prod() -> dict:
    return yaml.safe_load((REPO / "configs" / "prod.yaml").read_text())


def test_multi_stage_on_a_cuda_base_matching_the_locked_torch_cuda():
    (cuda_image,) = [a.split("=", 1)[1] for a in _all("ARG") if a.startswith("CUDA_IMAGE=")]
    assert cuda_image.startswith("nvidia/cuda:")
    stages = _stages()
    assert len(stages) >= 2
    assert all(stage[0][1].startswith("${CUDA_IMAGE}") for stage in stages)
    # torch's CUDA runtime wheel in the lock says which CUDA major the image must announce.
    (runtime_pin,) = re.findall(r"^nvidia-cuda-runtime==(\d+)\.", (REPO / "requirements.lock").read_text(), re.M)
    assert cuda_image.split(":")[1].split(".")[0] == runtime_pin


def test_packages_are_installed_by_make_install_only():
    runs = _all("RUN")
    installs = [r for r in runs if "make install" in r]
    assert len(installs) == 1, "exactly one `make install` (one source of truth with the Makefile)"
    assert "VENV_PYTHON=3.11" in installs[0]
    for run in runs:
        assert not re.search(r"\b(pip3?|uv pip|uv add|conda)\s+install\b", run), f"a second package list: {run}"


def test_the_final_stage_runs_as_a_non_root_user():
    users = _all("USER", _stages()[-1])
    assert users, "the final stage sets no USER"
    assert users[-1] not in {"root", "0", "0:0"}


def test_healthcheck_hits_health_on_the_served_port():
    (healthcheck,) = _all("HEALTHCHECK")
    port = _prod()["http_options"]["port"]
    # Exec form (no shell in the probe), on /health exactly: /ready would restart a container that is loading.
    assert healthcheck.endswith(f'"http://127.0.0.1:{port}/health"]'), healthcheck
    assert str(port) in _all("EXPOSE")[0].split()


def test_the_metrics_port_is_exposed():
    from serve_app.tools.launch import DEFAULT_METRICS_PORT

    assert str(DEFAULT_METRICS_PORT) in _all("EXPOSE")[0].split()


def test_the_final_stage_starts_ray_with_the_platforms_environment():
    from serve_app.tools.launch import RAY_ENVIRONMENT

    final = _stages()[-1]
    declared = dict(item.split("=", 1) for env in _all("ENV", final) for item in env.split())
    assert {name: declared.get(name) for name in RAY_ENVIRONMENT} == RAY_ENVIRONMENT


def test_no_weights_state_or_whole_context_copied():
    for copy in _all("COPY"):
        sources = [w for w in copy.split() if not w.startswith("--")][:-1]
        for source in sources:
            assert source not in {".", "./", "*"}, f"COPY of the whole context: {copy}"
            assert not re.match(r"^\.?/?(models|data)(/|$)", source), f"weights or state baked in: {copy}"


def test_every_package_of_pyproject_is_copied_before_make_install():
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in find["include"]}
    build = _stages()[0]
    install_at = next(i for i, (k, a) in enumerate(build) if k == "RUN" and "make install" in a)
    copied = {w.rstrip("/") for k, a in build[:install_at] if k == "COPY" for w in a.split()[:-1]}
    needed = packages | {"pyproject.toml", "requirements.lock", "Makefile", "README.md"}  # README: pyproject's readme
    assert needed <= copied, f"not copied before make install: {sorted(needed - copied)}"
    assert all((REPO / p).is_dir() for p in packages)


def test_weights_and_data_are_volumes_at_the_prod_paths():
    (volume,) = _all("VOLUME")
    args = _prod()["applications"][0]["args"]
    assert set(json.loads(volume)) == {args["model_store"], args["data_dir"]}


def test_cmd_is_exec_form_serve_app_run_of_an_existing_config():
    cmd = json.loads(_all("CMD")[-1])
    assert cmd[:4] == ["python", "-m", "serve_app", "run"]
    assert (REPO / cmd[4]).is_file()
    entrypoint = _all("ENTRYPOINT")
    assert not entrypoint or json.loads(entrypoint[-1])[-1] == "--", "an entrypoint must hand the CMD on as is"


def test_dockerignore_keeps_weights_state_and_tooling_out_but_not_the_sources():
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".tools", "models", "data", "**/__pycache__", ".pytest_cache"} <= ignored
    copied = {w for k, a in _instructions() if k == "COPY" and "--from" not in a for w in a.split()[:-1]}
    assert not copied & ignored, f"COPY of an ignored path: {copied & ignored}"


def test_the_image_user_is_the_uid_kuberay_runs_pods_as():
    (uid,) = re.findall(r"useradd [^&]*--uid (\d+)[^&]* (\w+)\s*(?:&&|$)", " ".join(_all("RUN")))
    assert _all("USER", _stages()[-1])[-1] == uid[1]
    manifest = yaml.safe_load((REPO / "deploy" / "kuberay" / "rayservice.yaml").read_text())
    cluster = manifest["spec"]["rayClusterConfig"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        assert group["template"]["spec"]["securityContext"]["runAsUser"] == int(uid[0])
