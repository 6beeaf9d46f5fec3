"""The layering rules of docs/architecture.md, checked on the source (parsed with `ast`, nothing imported).

- The contracts (serve_app/protocol, serve_app/config, serve_app/errors.py) and the layer any replica
  may import (serve_app/common) import nothing of the HTTP layer, the gateway, the operator tools,
  deployments/ or pipelines/; the contracts import neither torch nor ray, so the ingress, the `plan`
  command and the unit tests load them without a model stack.
- The HTTP layer (serve_app/http) imports no deployment and no pipeline: it reaches models through handles.
- Only the builder, serve_app/app.py, imports deployments/ and pipelines/: nothing else under serve_app/ does.
- Deployments know nothing of HTTP; pipelines know only handles (no HTTP, no deployment module).

Every import counts, at module level or inside a function, as `import x`, `from x import y`,
a relative import (resolved to its absolute name) or `importlib.import_module("x")`. An import
of another module of this repo is followed into that module's import-time imports, so a rule
cannot be dodged by importing a helper that imports the forbidden thing.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HTTP_MODULES = ("fastapi", "starlette", "serve_app.http")
HEAVY_MODULES = ("torch", "ray")
MODEL_SIDE = ("deployments", "pipelines")
APP_SIDE = (*HTTP_MODULES, "serve_app.gateway", "serve_app.tools", *MODEL_SIDE)


@dataclass(frozen=True)
class Rule:
    scope: str  # a directory or file of the repo, relative to its root
    forbidden: tuple[str, ...]  # these modules and everything under them
    why: str
    exclude: tuple[str, ...] = ()  # files of the scope the rule does not cover


RULES = (
    Rule("serve_app/protocol", HEAVY_MODULES + APP_SIDE, "protocol types load without torch, ray or other layers"),
    Rule("serve_app/config", HEAVY_MODULES + APP_SIDE, "config loads without torch, ray or other layers"),
    # errors maps Ray's own refusals (back-pressure, an unavailable deployment) to statuses: ray, not torch.
    Rule("serve_app/errors.py", ("torch", *APP_SIDE), "the error contract loads without torch or other layers"),
    Rule("serve_app/common", APP_SIDE, "what any replica may import imports no app layer above it"),
    Rule("serve_app/http", MODEL_SIDE, "the HTTP layer reaches models through handles only"),
    Rule("serve_app", MODEL_SIDE, "only the builder imports deployments and pipelines", exclude=("serve_app/app.py",)),
    Rule("deployments", (*HTTP_MODULES, "pipelines", "serve_app.tools"), "deployments know nothing of HTTP"),
    Rule("pipelines", (*HTTP_MODULES, "deployments", "serve_app.tools"), "pipelines know only handles"),
)


@dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to the repo root
    line: int
    module: str  # absolute name of a module this statement may import
    statement: str  # the statement as written
    at_import_time: bool  # False: inside a function, runs only when called


def module_name(path: str) -> tuple[str, bool]:
    """`serve_app/protocol/llm.py` -> ("serve_app.protocol.llm", False); an __init__.py names its package."""
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _absolute(node: ast.ImportFrom, path: str) -> str | None:
    if node.level == 0:
        return node.module
    name, is_package = module_name(path)
    package = name.split(".") if is_package else name.split(".")[:-1]
    if node.level - 1 >= len(package):
        return None  # beyond the top-level package: Python refuses it too
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@functools.cache
def imports_in(source: str, path: str) -> tuple[Import, ...]:
    """Every import in one file, wherever it sits."""
    found: list[Import] = []

    def add(node: ast.AST, module: str, at_import_time: bool) -> None:
        statement = " ".join((ast.get_source_segment(source, node) or module).split())
        statement = statement.replace("( ", "(").replace(", )", ")")  # a parenthesised import on one line
        found.append(Import(path, node.lineno, module, statement, at_import_time))

    def visit(node: ast.AST, at_import_time: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name, at_import_time)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, path)
            if base is not None:
                add(node, base, at_import_time)
                # `from pkg import name` imports pkg.name when name is a submodule.
                for alias in node.names:
                    if alias.name != "*":
                        add(node, f"{base}.{alias.name}", at_import_time)
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            add(node, node.args[0].value, at_import_time)
        inside = at_import_time and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(ast.parse(source, filename=path), True)
    return tuple(found)


def is_under(module: str, prefixes: tuple[str, ...]) -> str | None:
    """The prefix `module` is, or is inside of; None if none."""
    return next((p for p in prefixes if module == p or module.startswith(p + ".")), None)


Loader = Callable[[str], tuple[str, str] | None]  # module name -> (path, source), or None outside the repo


def repo_loader(root: Path = REPO) -> Loader:
    @functools.cache
    def load(module: str) -> tuple[str, str] | None:
        base = root.joinpath(*module.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate.relative_to(root).as_posix(), candidate.read_text()
        return None

    return load


def _executed_by(module: str) -> Iterator[str]:
    """Importing a.b.c runs a, a.b and a.b.c."""
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def violations(source: str, path: str, forbidden: tuple[str, ...], load: Loader) -> list[str]:
    """One message per forbidden module `path` imports, directly or through modules of the repo."""
    problems: dict[tuple[str, str], str] = {}  # (statement, forbidden prefix) -> message
    seen: set[str] = set()  # repo modules already walked for this file

    def reached(module: str, via: tuple[str, ...]) -> Iterator[tuple[str, tuple[str, ...], Import]]:
        """(forbidden prefix, repo modules walked, the import that reached it) for importing `module`."""
        for name in _executed_by(module):
            if name in seen:
                continue
            seen.add(name)
            loaded = load(name)
            if loaded is None:
                continue
            for imp in imports_in(loaded[1], loaded[0]):
                if not imp.at_import_time:
                    continue
                hit = is_under(imp.module, forbidden)
                if hit:
                    yield hit, (*via, name), imp
                else:
                    yield from reached(imp.module, (*via, name))

    for imp in imports_in(source, path):
        where = f"{path}:{imp.line}: `{imp.statement}`"
        hit = is_under(imp.module, forbidden)
        if hit:
            problems.setdefault((where, hit), f"{where} imports {hit}")
            continue
        for hit, via, deep in reached(imp.module, ()):
            problems.setdefault(
                (where, hit),
                f"{where} imports {hit} through {' -> '.join(via)} ({deep.path}:{deep.line}: `{deep.statement}`)",
            )
    return sorted(problems.values())


def _files(rule: Rule) -> list[Path]:
    root = REPO / rule.scope
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    return [f for f in files if f.relative_to(REPO).as_posix() not in rule.exclude]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.scope)
def test_layering_rule_holds(rule: Rule):
    files = _files(rule)
    assert files, f"{rule.scope}/ has no Python files: move the rule with the code"
    load = repo_loader()
    problems = [
        problem
        for file in files
        for problem in violations(file.read_text(), file.relative_to(REPO).as_posix(), rule.forbidden, load)
    ]
    assert not problems, f"{rule.why}; forbidden in {rule.scope}/: {', '.join(rule.forbidden)}\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------------------------
# The checker itself: it must see each form of import, and nothing that merely looks like one.
# ---------------------------------------------------------------------------------------------------------------

FAKE_REPO: dict[str, str] = {
    "serve_app": "",
    "serve_app.helpers": '"""Imports torch at module level."""\nimport os\nimport torch\n',
    "serve_app.lazy": "def f():\n    import torch\n",
    "serve_app.middle": "from serve_app import helpers\n",
}


def fake_loader(module: str) -> tuple[str, str] | None:
    if module not in FAKE_REPO:
        return None
    path = module.replace(".", "/") + (".py" if module != "serve_app" else "/__init__.py")
    return path, FAKE_REPO[module]


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("deployments/fake.py", "import os\nimport fastapi\n", "deployments/fake.py:2: `import fastapi` imports"),
        ("deployments/fake.py", "import fastapi.responses as r\n", "imports fastapi"),
        ("deployments/fake.py", "from starlette.requests import Request\n", "imports starlette"),
        ("deployments/fake.py", "from serve_app import http\n", "`from serve_app import http` imports serve_app.http"),
        ("deployments/fake.py", "from serve_app.http.app import x\n", "imports serve_app.http"),
        ("deployments/fake.py", "from serve_app.http import ingress\n", "imports serve_app.http"),
        ("serve_app/protocol/fake.py", "from .. import http\n", "`from .. import http` imports serve_app.http"),
        ("serve_app/protocol/fake.py", "from ..http.sse import stream\n", "imports serve_app.http"),
        ("serve_app/protocol/__init__.py", "from ..tools import x\n", "imports serve_app.tools"),
        ("serve_app/http/fake.py", "from deployments.llm.deployment import LLM\n", "imports deployments"),
        ("serve_app/common/fake.py", "from ..gateway import state\n", "imports serve_app.gateway"),
        ("serve_app/config/fake.py", "def f():\n    import torch.nn\n", "config/fake.py:2: `import torch.nn`"),
        ("serve_app/config/fake.py", "class C:\n    from ray import serve\n", ":2: `from ray import serve` imports"),
        ("serve_app/config/fake.py", "import importlib\nimportlib.import_module('ray.serve')\n", ":2:"),
        ("serve_app/config/fake.py", "try:\n    import torch\nexcept ImportError:\n    pass\n", ":2: `import torch`"),
        (
            "serve_app/config/fake.py",
            "from serve_app.helpers import x\n",
            "serve_app/config/fake.py:1: `from serve_app.helpers import x` imports torch "
            "through serve_app.helpers (serve_app/helpers.py:3: `import torch`)",
        ),
        (
            "serve_app/config/fake.py",
            "def f():\n    from serve_app import middle\n",
            "through serve_app.middle -> serve_app.helpers",
        ),
    ],
)
def test_checker_reports_a_forbidden_import(path: str, source: str, expected: str):
    forbidden = HEAVY_MODULES + APP_SIDE
    problems = violations(source, path, forbidden, fake_loader)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "source",
    [
        "import fastapi_utils\nimport rayon\nimport torchvision_like\n",
        "from serve_app import http_helpers, httpx\n",
        "from serve_app.lazy import f\n",  # its torch import runs only when f is called
        "import os\nfrom . import sibling\n",
        "x = 'import torch'\n# import ray\n",
    ],
)
def test_checker_ignores_what_is_not_a_forbidden_import(source: str):
    assert violations(source, "serve_app/config/fake.py", HEAVY_MODULES + APP_SIDE, fake_loader) == []


def test_relative_imports_resolve_to_absolute_names():
    source = "from . import a\nfrom .b import c\nfrom .. import d\n"
    assert {i.module for i in imports_in(source, "serve_app/protocol/llm.py")} == {
        "serve_app.protocol",
        "serve_app.protocol.a",
        "serve_app.protocol.b",
        "serve_app.protocol.b.c",
        "serve_app",
        "serve_app.d",
    }
    assert {i.module for i in imports_in("from . import a\n", "serve_app/protocol/__init__.py")} == {
        "serve_app.protocol",
        "serve_app.protocol.a",
    }


# ---------------------------------------------------------------------------------------------------------------
# The contracts packages re-export every public name of their modules, and only those.
# ---------------------------------------------------------------------------------------------------------------


def _public_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("package", ["serve_app/protocol", "serve_app/config"])
def test_package_reexports_every_public_name(package: str):
    init = ast.parse((REPO / package / "__init__.py").read_text())
    (exported,) = [
        ast.literal_eval(node.value)
        for node in init.body
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    ]
    imported = {
        alias.asname or alias.name for node in init.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    defined: dict[str, str] = {}
    for module in sorted((REPO / package).glob("*.py")):
        if module.name == "__init__.py":
            continue
        for name in _public_names(ast.parse(module.read_text())):
            assert name not in defined, f"{name} is defined in both {defined[name]} and {module.name}"
            defined[name] = module.name
    assert len(exported) == len(set(exported)), "__all__ lists a name twice"
    assert set(exported) == set(defined), f"__all__ vs the modules' public names: {set(exported) ^ set(defined)}"
    assert imported == set(exported), f"imported vs __all__: {imported ^ set(exported)}"
