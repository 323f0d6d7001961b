"""Memory of the largest labelling benchmark run: peak RSS of the driver and of each Ray worker.

70,000 units x 52 weekly dates x 60 candidates (the largest size of bench_label.py), 2 tasks in
flight on a local Ray with 2 CPUs. The workers' peaks are read from the worker processes themselves
after the run (``ru_maxrss`` is a process's high-water mark; Ray reuses the same worker processes).
Prints one line per figure; docs/RELIABILITY.md records the budget derived from them.

    python bench/bench_label_memory.py [--units 70000]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_label import year_of_dates  # noqa: E402
from orpr_ray.core.ray_env import ensure_ray  # noqa: E402
from orpr_ray.label.config import LabelConfig  # noqa: E402
from orpr_ray.label.driver import run_labels  # noqa: E402
from orpr_ray.sim.config import SimConfig  # noqa: E402

WORKERS = 2


def _peak_rss_mib() -> tuple[int, float]:
    time.sleep(0.5)  # keeps the probe tasks on distinct idle workers rather than one
    return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=70_000)
    args = parser.parse_args()
    ray = ensure_ray(num_cpus=WORKERS)
    sim, label = SimConfig(), LabelConfig(max_in_flight=WORKERS)
    ds, n_dates = year_of_dates(args.units, sim, label)
    data_mib = (ds.sales.nbytes + ds.promo.nbytes + ds.price.nbytes + ds.observed.nbytes) / 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-label-mem-") as out:
        manifest = run_labels(ds, out, label=label, sim=sim)
    wall = time.perf_counter() - t0
    driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    probe = ray.remote(_peak_rss_mib).options(num_cpus=1)
    workers = dict(ray.get([probe.remote() for _ in range(2 * WORKERS)]))
    print(f"units {ds.n_units:,}, dates {n_dates}, labels {manifest['counts']['labels']:,}, "
          f"shards {manifest['counts']['shards']}, wall {wall:.1f} s")
    print(f"dataset arrays {data_mib:,.0f} MiB; driver peak RSS {before:,.0f} MiB before labelling, "
          f"{driver:,.0f} MiB after")
    for pid, mib in sorted(workers.items()):
        print(f"worker pid {pid}: peak RSS {mib:,.0f} MiB")


if __name__ == "__main__":
    main()
