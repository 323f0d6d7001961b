"""Simulator benchmark: grid throughput on one core, peak memory, speed-up over the Python reference.

Runs the grid simulator on units x candidates x days (default 10,000 x 40 x 365) in the mode the
OR labels use (inventory-days targets with a per-day trailing-mean d_hat) and with fixed
order-up-to levels; reports the median of several repeats in unit-candidate-days per second, the
peak memory of a fresh process doing one such call, and the ratio against the pure-Python
reference simulator (tests/sim_reference.py) on a subset of units, after checking both agree.
Prints a Markdown entry and adds it to the "Simulator" section of docs/BENCHMARKS.md.

    make bench                      # or: .venv/bin/python bench/bench_sim.py [--no-write]
"""
from __future__ import annotations

import os

# One core: fix thread pools before numpy / numba load (the kernel itself is serial).
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from common import bench_parser, command_line, dated_entry, machine, publish  # noqa: E402  (bench/ is on sys.path)
sys.path.insert(0, str(ROOT / "tests"))  # the reference simulator lives with the tests

from orpr_ray.sim.engine import simulate_grid  # noqa: E402
from orpr_ray.sim.policies import trailing_mean_demand  # noqa: E402

SECTION = "## Simulator"
HOLDING, PENALTY = 0.25 / 365, 1.0


def make_instance(n_units: int, n_cand: int, n_days: int, seed: int = 0) -> dict:
    """A catalogue-like instance: skewed volumes, smooth / intermittent / lumpy demand."""
    rng = np.random.default_rng(seed)
    history = 28
    rate = rng.lognormal(0.0, 1.3, n_units)                               # (U,) ABC-like skew
    pattern = rng.integers(0, 3, n_units)
    occurs = np.where(pattern[:, None] == 0, 1.0, rng.random((n_units, n_days + history)) < 0.3)
    size = np.where(pattern[:, None] == 2, rng.gamma(0.5, 2.0, (n_units, n_days + history)), 1.0)
    full = rng.poisson(rate[:, None] * size) * occurs                     # (U, history + D)
    d_hat = trailing_mean_demand(full.astype(np.float64), history)[:, history:]
    cost = rng.uniform(1.0, 50.0, n_units)
    return dict(demand=np.ascontiguousarray(full[:, history:], dtype=np.float64), d_hat=d_hat,
                days=np.linspace(0.0, 60.0, n_cand), lead_time=rng.integers(0, 15, n_units),
                review_period=rng.integers(1, 8, n_units), unit_cost=cost,
                unit_price=cost * rng.uniform(1.1, 2.5, n_units))


def run_grid(inst: dict, mode: str, rows=slice(None)):
    """One grid call; ``mode`` "days" (v with per-day d_hat) or "levels" (fixed S)."""
    kwargs = dict(demand_rate=inst["d_hat"][rows]) if mode == "days" else {}
    targets = inst["days"] if mode == "days" else (inst["days"][None, :] * inst["d_hat"][rows, :1]).round()
    return simulate_grid(inst["demand"][rows], targets, inst["lead_time"][rows], inst["review_period"][rows],
                         inst["unit_cost"][rows], inst["unit_price"][rows], holding_rate=HOLDING,
                         penalty_share=PENALTY, **kwargs)


def throughput(inst: dict, mode: str, repeats: int) -> dict:
    run_grid(inst, mode, slice(0, 4))  # compile or load the cached kernel first
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run_grid(inst, mode)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    cells = inst["demand"].shape[0] * len(inst["days"]) * inst["demand"].shape[1]
    return {"median_s": statistics.median(wall), "min_s": min(wall), "per_s": cells / statistics.median(wall),
            "cpu_per_s": cells / statistics.median(cpu)}


def reference_ratio(inst: dict, n_units: int, fast_cpu_per_s: float) -> dict:
    """Reference throughput on the first ``n_units`` units and the speed ratio, both by CPU time."""
    from sim_reference import reference_grid

    rows = slice(0, n_units)
    start = time.process_time()
    slow = reference_grid(inst["demand"][rows], inst["days"], inst["lead_time"][rows],
                          inst["review_period"][rows], inst["unit_cost"][rows], inst["unit_price"][rows],
                          demand_rate=inst["d_hat"][rows], holding_rate=HOLDING, penalty_share=PENALTY)
    elapsed = time.process_time() - start
    fast = run_grid(inst, "days", rows)
    same = all(np.array_equal(getattr(fast, k), getattr(slow, k)) for k in
               ("stock_value", "sales_units", "lost_units", "in_stock_days", "penalty_cost"))
    cells = n_units * len(inst["days"]) * inst["demand"].shape[1]
    return {"units": n_units, "per_s": cells / elapsed, "ratio": fast_cpu_per_s / (cells / elapsed),
            "identical": same}


def _peak_rss_mib() -> float:
    """High-water RSS of this process: VmHWM (resettable on Linux), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
    """Restart the high-water mark at the current RSS (Linux >= 4.0), so the call's own peak shows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child_memory(args) -> None:
    """In a fresh process: RSS after imports + inputs, then the peak RSS and traced peak of one call."""
    inst = make_instance(args.units, args.candidates, args.days)
    run_grid(inst, "days", slice(0, 4))
    peak_setup = _peak_rss_mib()
    reset = _reset_peak_rss()
    before = _peak_rss_mib()
    tracemalloc.start()
    run_grid(inst, "days")
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({"rss_before_mib": before, "rss_peak_mib": _peak_rss_mib() if reset else peak_setup,
                      "setup_peak_mib": peak_setup, "traced_call_peak_mib": traced / 2**20,
                      "inputs_mib": (inst["demand"].nbytes + inst["d_hat"].nbytes) / 2**20}))


def memory(args) -> dict:
    cmd = [sys.executable, __file__, "--child-memory", "--units", str(args.units),
           "--candidates", str(args.candidates), "--days", str(args.days)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])




def report(args, results: dict) -> str:
    size = f"{args.units:,} units x {args.candidates} candidates x {args.days} days"
    days, levels, ref, mem = results["days"], results["levels"], results["reference"], results["memory"]
    return dated_entry(size, [
        f"- Command: `{results['command']}` (one thread: NUMBA_NUM_THREADS=OMP_NUM_THREADS=1)",
        f"- Machine: {machine()}",
        f"- Load average while it ran: {results['load'][0]:.1f} at the start, {results['load'][1]:.1f} at the end "
        f"(a busy shared machine slows the wall clock; process CPU time is less affected)",
        f"- Inventory-days targets, per-day d_hat: **{days['per_s'] / 1e6:,.0f} M unit-candidate-days/s** "
        f"by wall clock (median of {args.repeats}: {days['median_s']:.3f} s, best {days['min_s']:.3f} s); "
        f"{days['cpu_per_s'] / 1e6:,.0f} M/s by process CPU time",
        f"- Fixed order-up-to levels: {levels['per_s'] / 1e6:,.0f} M unit-candidate-days/s by wall clock "
        f"(median {levels['median_s']:.3f} s); {levels['cpu_per_s'] / 1e6:,.0f} M/s by CPU time",
        f"- Peak memory of a fresh process that imports, builds the inputs ({mem['inputs_mib']:,.0f} MiB) and "
        f"runs one call: **{max(mem['rss_peak_mib'], mem['setup_peak_mib']):,.0f} MiB RSS**; high-water mark "
        f"during the call alone {mem['rss_peak_mib']:,.0f} MiB (from {mem['rss_before_mib']:,.0f} MiB); "
        f"the call allocates {mem['traced_call_peak_mib']:,.1f} MiB (tracemalloc: its (U, C) outputs)",
        f"- Pure-Python reference (tests/sim_reference.py) on the first {ref['units']} units: "
        f"{ref['per_s'] / 1e3:,.0f} k unit-candidate-days/s by CPU time; the grid kernel is "
        f"**{ref['ratio']:,.0f}x** faster (CPU time, inventory-days mode); results identical: {ref['identical']}",
    ])




def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--reference-units", type=int, default=20)
    parser.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        child_memory(args)
        return
    load_start = os.getloadavg()[0]
    inst = make_instance(args.units, args.candidates, args.days)
    results = {"command": command_line(__file__),
               "days": throughput(inst, "days", args.repeats),
               "levels": throughput(inst, "levels", args.repeats),
               "memory": memory(args)}
    results["reference"] = reference_ratio(inst, args.reference_units, results["days"]["cpu_per_s"])
    results["load"] = (load_start, os.getloadavg()[0])
    entry = report(args, results)
    publish(SECTION, entry, write=not args.no_write)


if __name__ == "__main__":
    main()
