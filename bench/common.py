"""What every benchmark script shares: its parser's --no-write switch, the dated heading, command line and
machine an entry records, and printing the entry and writing it into its section of docs/BENCHMARKS.md."""
from __future__ import annotations

import argparse
import datetime as dt
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


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A script's parser: the first line of its docstring as the description, and the --no-write switch
    that :func:`publish` honours."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    return parser


def command_line(script: str) -> str:
    """The command an entry records: ``python bench/NAME.py`` and this run's arguments, the same however
    the script was started (make, an absolute path, another interpreter)."""
    return " ".join([f"python bench/{Path(script).name}", *sys.argv[1:]])


def machine_and_load(load: tuple[float, float]) -> str:
    """:func:`machine` and the 1-minute load average at the start and end of the run: on a shared
    machine other jobs slow the wall clock, so the entry says how busy it was."""
    return (f"{machine()}; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end "
            "(a shared machine: other jobs slow the wall clock)")


def dated_entry(title: str, lines: list[str]) -> str:
    """An entry of docs/BENCHMARKS.md: a ``### YYYY-MM-DD: title`` heading over ``lines``, set off by blank
    lines so that entries appended one after another stay separate Markdown blocks."""
    return "\n".join([f"### {dt.date.today().isoformat()}: {title}", "", *lines, ""])


def publish(section: str, entry: str, *, write: bool, announce: bool = True, replace: bool = False) -> None:
    """Print the Markdown entry and, with ``write`` (the scripts' --no-write turns it off), add it to
    ``section`` of docs/BENCHMARKS.md (or make it the section's whole body with ``replace``), then say
    where unless ``announce`` is off."""
    print(entry)
    if write:
        write_section(section, entry, replace=replace)
        if announce:
            print(f"{'written to' if replace else 'added to'} {BENCHMARKS.relative_to(REPO)}")


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
