"""README.md's Python blocks run as written against the session app, so the front page cannot go stale.

Each fenced ```python block is its own test, with the README's `http://127.0.0.1:8000` replaced by the
session app's URL. A block that cannot run there carries `<!-- not run: why -->` on the line before
its fence; its test is skipped with that reason, so the README shows the reader why too.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:8000"
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    code: str
    not_run: str | None  # the reason given in the README, when it says the block is not run


def python_blocks(text: str) -> list[Block]:
    blocks = []
    for match in FENCE.finditer(text):
        before = [line for line in text[: match.start()].splitlines() if line.strip()]
        reason = NOT_RUN.search(before[-1]) if before else None
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(line, match.group(1), reason.group(1) if reason else None))
    return blocks


def run_block(code: str, base_url: str) -> None:
    """Run one block as a script would (top-level `await` allowed), pointed at `base_url`."""
    source = code.replace(README_URL, base_url)
    compiled = compile(source, "README.md block", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: dict = {"__name__": "__readme__"}
    # The README's own code is what is under test: it runs as a reader would paste it.
    result = eval(compiled, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)


BLOCKS = python_blocks(README.read_text())


def test_the_readme_has_python_blocks_that_run():
    assert [b for b in BLOCKS if b.not_run is None], "README.md has no Python block this test runs"


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"README.md:{b.line}")
def test_readme_block_runs(block: Block, local_app):
    if block.not_run is not None:
        pytest.skip(f"README.md:{block.line} says it is not run: {block.not_run}")
    run_block(block.code, local_app)


# The extractor and runner themselves (no app needed).

SAMPLE = """\
Text.

```python
x = 1
```

<!-- not run: needs a GPU -->
```python
import vllm
```

```bash
echo not python
```
"""


def test_blocks_and_their_reasons_are_found():
    blocks = python_blocks(SAMPLE)
    assert [(b.line, b.code, b.not_run) for b in blocks] == [(3, "x = 1\n", None), (8, "import vllm\n", "needs a GPU")]


def test_a_failing_block_fails_its_test():
    with pytest.raises(ZeroDivisionError):
        run_block("1 / 0\n", README_URL)
    with pytest.raises(NameError):
        run_block("await asyncio_sleep(0)\n", README_URL)


def test_the_readme_url_is_replaced():
    run_block(f"assert '{README_URL}/v1' == 'http://elsewhere:1/v1'\n", "http://elsewhere:1")
