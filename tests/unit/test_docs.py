"""The documentation names only what exists: README.md and docs/*.md, checked against the repository.

What counts as a reference (found anywhere in a page: prose, inline code, fenced blocks, links):
- a repository path: a token that starts with one of the repository's top-level directories and a
  slash (`serve_app/http/app.py`, `deploy/kuberay/`), or is one of its top-level files (`Makefile`);
  a token followed by a placeholder (`<`, `{`, `*`, `[`) is a pattern, not a path, and is skipped;
- a module of this project by its dotted name (`serve_app.http.traffic`, `serve_app.errors.unwrap`,
  `serve_app.app:build_app`): the longest prefix must be a module or package, and the next name, if
  any, must be defined at the top level of that module (read with `ast`, nothing imported);
- a relative markdown link (`[text](docs/api.md#errors)`): the file must exist inside the repository
  and the anchor, if any, must be a heading of that page. URLs are not followed.

And docs/architecture.md names every module and package under serve_app/, deployments/ and pipelines/
by its path, so the map of the code cannot fall behind the code.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
ARCHITECTURE = REPO / "docs" / "architecture.md"
CODE_ROOTS = ("serve_app", "deployments", "pipelines")
# Top-level directories and files of the repository that pages may name. Generated or local ones
# (models/, data/, .venv/) are left out on purpose: a fresh clone does not have them.
ROOT_DIRS = (*CODE_ROOTS, "tests", "configs", "deploy", "benchmarks", "scripts", "docs", ".ci")
ROOT_FILES = ("Makefile", "Dockerfile", "README.md", "pyproject.toml", "requirements.lock", ".dockerignore")

_BEFORE = r"(?<![\w./<{$-])"  # not inside a longer word, path, URL, placeholder or variable
PATH = re.compile(_BEFORE + r"((?:" + "|".join(re.escape(d) for d in ROOT_DIRS) + r")/[\w./-]*)")
FILE = re.compile(_BEFORE + r"(" + "|".join(re.escape(f) for f in ROOT_FILES) + r")(?![\w-])")
MODULE = re.compile(_BEFORE + r"((?:" + "|".join(CODE_ROOTS) + r")(?:\.\w+)+)(?::(\w+))?")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
PLACEHOLDER_AFTER = "<{*["


def repo_paths(text: str) -> set[str]:
    """Every repository path a page names, as written (without trailing punctuation)."""
    found = set()
    for match in PATH.finditer(text):
        if text[match.end() : match.end() + 1] in tuple(PLACEHOLDER_AFTER):
            continue
        path = match.group(1).rstrip(".,:;")
        if path.endswith("/...") or ".." in Path(path).parts:
            continue
        found.add(path)
    found.update(m.group(1) for m in FILE.finditer(text))
    return found


def missing_paths(text: str, root: Path = REPO) -> list[str]:
    return sorted(p for p in repo_paths(text) if not (root / p).exists())


@functools.cache
def _top_level_names(path: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


def _module_file(parts: list[str], root: Path) -> Path | None:
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def unknown_modules(text: str, root: Path = REPO) -> list[str]:
    """Dotted names that are not a module of the repo, or not a name defined in the module they name."""
    problems = set()
    for match in MODULE.finditer(text):
        parts = match.group(1).split(".")
        if match.group(2):
            parts.append(match.group(2))
        for size in range(len(parts), 0, -1):
            module = _module_file(parts[:size], root)
            if module is not None:
                break
        else:
            problems.add(match.group(0))
            continue
        rest = parts[size:]
        if rest and _module_file([*parts[:size], rest[0]], root) is None and rest[0] not in _top_level_names(module):
            problems.add(match.group(0))
    return sorted(problems)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    in_fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if in_fence or not line.startswith("#"):
            continue
        base = slug(line.lstrip("#"))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(text: str, page: Path, root: Path = REPO) -> list[str]:
    problems = []
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        if not file_part:
            if anchor not in anchors(text):
                problems.append(f"{target}: no such heading on this page")
            continue
        linked = (page.parent / file_part).resolve()
        if root.resolve() not in (linked, *linked.parents):
            problems.append(f"{target}: outside the repository")
        elif not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            problems.append(f"{target}: no heading #{anchor} in {linked.relative_to(root.resolve())}")
    return problems


def code_modules(root: Path = REPO) -> list[str]:
    """Every module (a .py other than __init__.py) and package (as `dir/`) under the code roots."""
    found = []
    for code_root in CODE_ROOTS:
        for path in sorted((root / code_root).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            found.append(rel.removesuffix("__init__.py") if path.name == "__init__.py" else rel)
    return found


def test_there_are_pages_to_check():
    assert ARCHITECTURE in PAGES and len(PAGES) >= 10, PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_path_a_page_names_exists(page: Path):
    missing = missing_paths(page.read_text())
    assert not missing, f"{page.relative_to(REPO)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_module_a_page_names_exists(page: Path):
    unknown = unknown_modules(page.read_text())
    assert not unknown, f"{page.relative_to(REPO)} names modules or names that do not exist: {unknown}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page: Path):
    broken = broken_links(page.read_text(), page)
    assert not broken, f"{page.relative_to(REPO)}: {broken}"


def test_architecture_names_every_module_and_package():
    named = repo_paths(ARCHITECTURE.read_text())
    unnamed = [m for m in code_modules() if m not in named and m.rstrip("/") not in named]
    assert not unnamed, f"docs/architecture.md does not name: {unnamed}"


def test_readme_fits_on_a_screen_or_so():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


# ---------------------------------------------------------------------------------------------------------------
# The checkers themselves: each must report what is wrong, and nothing that is a pattern or a URL.
# ---------------------------------------------------------------------------------------------------------------


def test_path_checker_reports_a_missing_path():
    text = "See `serve_app/http/no_such_module.py` and [x](configs/nowhere.yaml); `Makefile` is fine."
    assert missing_paths(text) == ["configs/nowhere.yaml", "serve_app/http/no_such_module.py"]


@pytest.mark.parametrize(
    "text",
    [
        "`models/<name>/<version>/`",
        "`tests/unit/test_*.py`",
        "`serve_app/http/routes/{llm,vision}.py`",
        "https://example.com/tests/nothing.py and http://host/docs/nothing.md",
        "`data/reports/x.txt`, `.venv/bin/python`, `/tmp/ray/session_latest/logs/serve/`",
        "$HOME/tests/nothing.py",
        "the end of a sentence about serve_app/errors.py.",
    ],
)
def test_path_checker_skips_patterns_urls_and_generated_dirs(text: str):
    assert missing_paths(text) == []


def test_module_checker_reports_unknown_modules_and_names():
    text = "`serve_app.http.no_such`, `serve_app.errors.NoSuchError`, `serve_app.app:nothing`, `pipelines.nope`"
    assert unknown_modules(text) == [
        "pipelines.nope",
        "serve_app.app:nothing",
        "serve_app.errors.NoSuchError",
        "serve_app.http.no_such",
    ]


def test_module_checker_accepts_modules_packages_and_their_names():
    text = (
        "`serve_app.app:build_app`, `serve_app.errors.unwrap(exc)`, `serve_app.protocol`, "
        "`serve_app.config.AppConfig`, `deployments.llm.engines.base`, from serve_app.protocol import X."
    )
    assert unknown_modules(text) == []


def test_link_checker_reports_missing_files_anchors_and_escapes():
    page = REPO / "docs" / "fake.md"
    text = "[a](nowhere.md) [b](api.md#no-such-heading) [c](../../outside.md) [d](#nope) [e](https://x.org/y)"
    problems = broken_links(text + "\n# Real heading\n", page)
    assert [p.split(":")[0] for p in problems] == ["nowhere.md", "api.md#no-such-heading", "../../outside.md", "#nope"]


def test_link_checker_follows_github_anchors():
    page = REPO / "docs" / "fake.md"
    text = "# The `GPU` plan: v2\n## Errors\n## Errors\n[a](#the-gpu-plan-v2) [b](#errors-1) [c](../README.md)"
    assert broken_links(text, page) == []


def test_module_map_lists_files_and_packages(tmp_path: Path):
    (tmp_path / "serve_app" / "http").mkdir(parents=True)
    for name in ("serve_app/__init__.py", "serve_app/http/__init__.py", "serve_app/http/app.py"):
        (tmp_path / name).write_text("")
    for name in ("deployments", "pipelines"):
        (tmp_path / name).mkdir()
    assert code_modules(tmp_path) == ["serve_app/", "serve_app/http/", "serve_app/http/app.py"]
