"""What every benchmark script shares: the machine description and writing its section of docs/BENCHMARKS.md."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "docs" / "BENCHMARKS.md"
PREAMBLE = "# Benchmarks\n\nEvery result carries the command that produced it and the machine it ran on.\n"

if str(REPO) not in sys.path:  # the scripts run as `python bench/NAME.py` from a checkout
    sys.path.insert(0, str(REPO))

from orpr_ray.core.artifacts import write_text_atomic  # noqa: E402


def machine() -> str:
    """CPU model, visible cores, OS and the versions the figures depend on."""
    import numba
    import numpy as np

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch = f", torch {sys.modules['torch'].__version__}" if "torch" in sys.modules else ""
    return (f"{cpu}, {cores} cores visible, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}{torch}")


def write_section(section: str, entry: str, *, replace: bool = False) -> None:
    """Append ``entry`` to the ``## section`` of docs/BENCHMARKS.md (or make it the section's whole body
    with ``replace``), creating the section if absent; every other section stays untouched."""
    heading = section if section.startswith("## ") else f"## {section}"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else PREAMBLE
    if heading not in text:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n"
    head, _, rest = text.partition(heading)
    next_section = rest.find("\n## ")
    body, tail = (rest, "") if next_section < 0 else (rest[:next_section + 1], rest[next_section + 1:])
    body = "\n\n" + entry if replace else body.rstrip("\n") + "\n\n" + entry
    write_text_atomic(BENCHMARKS, head + heading + body.rstrip("\n") + "\n" + ("\n" + tail if tail else ""))
