"""What every speed figure carries: the machine, the commit and the command, and ratios with their spread."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def provenance() -> str:
    """One line: CPU model and cores, the commit (marked when the tree has changes), the command."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout
    command = " ".join(["python", *sys.argv])
    return (
        f"{cpu}, {os.cpu_count()} cores; commit {commit or '?'}{' (with changes)' if dirty.strip() else ''}; {command}"
    )


def spread(values: list[float]) -> str:
    """`median (min to max, n runs)`: a ratio is reported with what repeating it gave."""
    if len(values) == 1:
        return f"{values[0]:.2f}x (one run)"
    return f"{statistics.median(values):.2f}x ({min(values):.2f} to {max(values):.2f}, {len(values)} runs)"
