"""OR-label benchmark: labels per second and the time split, by catalogue size and Ray workers.

For each size (default 1k, 10k, 70k units of the synthetic catalogue) over one year of weekly
decision dates (52) and the default 60-candidate grid, runs the whole labelling stage on a local
Ray with 1 and 2 workers (``max_in_flight`` = workers) and reports wall time, labels/s and the
worker time spent simulating candidates, building (hulls; Pyomo models where used) and solving.
Then solves a few groups of the largest catalogue again with Pyomo + HiGHS and reports the fast
path's objective difference against HiGHS. Prints a Markdown entry and adds it to the "Labels"
section of docs/BENCHMARKS.md.

    make bench-label                # or: .venv/bin/python bench/bench_label.py [--sizes 1000 10000] [--no-write]
"""
from __future__ import annotations

import os
import resource
import tempfile
import time

import numpy as np
import pandas as pd

from common import bench_parser, command_line, dated_entry, machine, publish  # (bench/ is on sys.path)
from orpr_ray.core.ray_env import ensure_ray
from orpr_ray.data.config import SynthConfig
from orpr_ray.data.synth import synthesize
from orpr_ray.label.candidates import decision_points, label_horizon
from orpr_ray.label.config import LabelConfig
from orpr_ray.label.driver import label_shard, plan_shards, run_labels
from orpr_ray.sim.config import SimConfig

SECTION = "## Labels"
DATES = 52  # one year of weekly decision dates


def year_of_dates(units: int, sim: SimConfig, label: LabelConfig):
    """A synthetic catalogue just long enough for 52 weekly decision dates after the d_hat window."""
    probe = synthesize(SynthConfig(units=min(units, 1000), days=120), seed=0)
    horizon = label_horizon(probe, label)  # lead times / review periods do not depend on the size
    days = sim.demand_window_days + (DATES - 1) * label.decision_stride_days + horizon
    ds = synthesize(SynthConfig(units=units, days=days), seed=0)
    n_dates = len(np.unique(decision_points(ds, label, sim)[1]))
    return ds, n_dates


def label_run(ds, workers: int, sim: SimConfig) -> dict:
    label = LabelConfig(max_in_flight=workers)
    with tempfile.TemporaryDirectory(prefix="bench-label-") as out:
        t0 = time.perf_counter()
        manifest = run_labels(ds, out, label=label, sim=sim)
        wall = time.perf_counter() - t0
    t, counts, solver = manifest["timings"], manifest["counts"], manifest["solver"]
    return {"units": ds.n_units, "workers": workers, "labels": counts["labels"], "groups": counts["groups"],
            "shards": counts["shards"], "wall_s": wall, "per_s": counts["labels"] / wall,
            "sim_s": t["sim_s"], "build_s": t["build_s"], "solve_s": t["solve_s"], "task_s": t["total_s"],
            "status": solver["status"], "max_gap": solver["max_mip_gap"], "mean_gap": solver["mean_mip_gap"],
            "fallback": counts["fallback_labels"]}


def crosscheck(ds, sim: SimConfig, n_groups: int) -> dict:
    """Groups solved by the fast path and again by Pyomo + HiGHS: half from a shard of categories with a
    turnover target (calibrated, exact path points), half from one without (default alpha: repaired)."""
    plan = plan_shards(ds, LabelConfig(), sim)
    targeted = ds.units["target_turnover_days"].notna().to_numpy()
    with_target = next((i for i, (unit, _) in enumerate(plan) if targeted[unit].any()), None)
    without = next((i for i, (unit, _) in enumerate(plan) if not targeted[unit].all()), None)
    picks = sorted({i for i in (with_target, without) if i is not None})
    rows, highs_s = [], 0.0
    for unit, day in (plan[i] for i in picks):
        plain = label_shard(ds, unit, day, label=LabelConfig(), sim=sim)
        every = max(1, len(plain.groups) // max(1, n_groups // len(picks)))
        t0 = time.perf_counter()
        checked = label_shard(ds, unit, day, label=LabelConfig(crosscheck_every=every), sim=sim).groups
        highs_s += time.perf_counter() - t0 - plain.stats["total_s"]
        rows.append(checked[checked["crosscheck_status"] != ""])
    rows = pd.concat(rows, ignore_index=True)
    return {"units": ds.n_units, "groups": len(rows), "group_units": float(rows["n_units"].mean()),
            "statuses": rows["crosscheck_status"].value_counts().to_dict(),
            "max_diff": float(rows["crosscheck_diff"].max()), "min_diff": float(rows["crosscheck_diff"].min()),
            "max_fast_gap": float(rows["mip_gap"].max()), "highs_s": highs_s,
            "fast_s": float((rows["build_s"] + rows["solve_s"]).sum()),
            "sources": rows["target_source"].value_counts().to_dict()}


def report(command: str, runs: list[dict], check: dict, n_dates: int, setup: dict) -> str:
    title = f"{', '.join(f'{u:,}' for u in setup['sizes'])} units x {n_dates} weekly dates x 60 candidates"
    lines = [f"- Command: `{command}` (local Ray, 2 CPUs; workers = tasks in flight)",
             f"- Machine: {machine()}",
             "- Synthetic data generation (not in the times below): "
             + ", ".join(f"{u:,} units {s:.1f} s" for u, s in setup["synth_s"].items()),
             "", "| units | workers | labels | groups | shards | wall s | labels/s | sim s | build s | solve s | "
             "max gap | fallback labels |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['units']:,} | {r['workers']} | {r['labels']:,} | {r['groups']:,} | {r['shards']} | "
                     f"{r['wall_s']:.1f} | {r['per_s']:,.0f} | {r['sim_s']:.1f} | {r['build_s']:.1f} | "
                     f"{r['solve_s']:.1f} | {r['max_gap']:.2g} | {r['fallback']:,} |")
    by = {(r["units"], r["workers"]): r["wall_s"] for r in runs}
    sizes = sorted({r["units"] for r in runs})
    growth = [f"{b:,}/{a:,} units: time x{by[(b, w)] / by[(a, w)]:.1f} for x{b / a:.0f} units ({w} worker(s))"
              for a, b in zip(sizes, sizes[1:]) for w in sorted({r["workers"] for r in runs})
              if (a, w) in by and (b, w) in by]
    lines += ["", "sim / build / solve: worker seconds summed over tasks (build = Lagrangian hulls and any Pyomo "
              "model; solve = path walk, calibration, repair and any HiGHS solve).",
              f"- Growth: {'; '.join(growth) if growth else 'one size only'}",
              f"- Fast path vs Pyomo + HiGHS on {check['groups']} groups of the {check['units']:,}-unit catalogue "
              f"(mean {check['group_units']:.0f} units x 60 candidates; sources {check['sources']}; HiGHS "
              f"statuses {check['statuses']}): (fast - HiGHS) / HiGHS objective from {check['min_diff']:.2e} to "
              f"{check['max_diff']:.2e}, fast path's own worst gap {check['max_fast_gap']:.2e}; HiGHS took "
              f"{check['highs_s']:.1f} s (build + solve), the fast path {check['fast_s']:.2f} s for the same groups",
              f"- Driver peak RSS {setup['rss_mib']:,.0f} MiB",
             f"- Load average (1 min) at start {setup['load'][0]:.1f}, at end {setup['load'][1]:.1f}: anything "
             "above the core count means other jobs shared the CPUs"]
    return dated_entry(title, lines)




def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 70_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--crosscheck-groups", type=int, default=4)
    args = parser.parse_args()
    sim = SimConfig()
    ensure_ray(num_cpus=max(args.workers))
    runs, synth_s, largest, n_dates = [], {}, None, DATES
    load_start = os.getloadavg()[0]
    for units in args.sizes:
        t0 = time.perf_counter()
        ds, n_dates = year_of_dates(units, sim, LabelConfig())
        synth_s[units] = time.perf_counter() - t0
        for workers in args.workers:
            runs.append(label_run(ds, workers, sim))
            print(runs[-1], flush=True)
        largest = ds
    check = crosscheck(largest, sim, args.crosscheck_groups)
    setup = {"sizes": args.sizes, "synth_s": synth_s,
             "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             "load": (load_start, os.getloadavg()[0])}
    entry = report(command_line(__file__), runs, check, n_dates, setup)
    publish(SECTION, entry, write=not args.no_write)


if __name__ == "__main__":
    main()
