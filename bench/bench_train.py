"""Training throughput: samples per second per worker of the three supervised stages on Ray Train.

On the demo catalogue (synthetic, default config: 600 units x 730 days, grid 1..60, the default
~0.94M-parameter network), each stage runs as a real ``TorchTrainer`` fit with 1 and with 2 CPU
workers, and in this process without Ray for reference. Every fit trains ``--epochs`` epochs of
``--samples`` points (all workers together); the figure is the last epoch's training points per
second of wall time per worker (features, forward, backward, optimiser; the first epoch also pays
for warm-up). Labels for the decision stages are computed here, in this process.
Prints a Markdown entry and adds it to the "Training throughput" section of docs/BENCHMARKS.md.

    make bench                      # or: .venv/bin/python bench/bench_train.py [--no-write]
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from common import bench_parser, command_line, dated_entry, machine_and_load, publish  # (bench/ is on sys.path)
from orpr_ray.config import OrprConfig
from orpr_ray.core.ray_env import ensure_ray
from orpr_ray.data.split import time_split
from orpr_ray.data.synth import synthesize
from orpr_ray.label.candidates import label_horizon
from orpr_ray.label.driver import label_shard, plan_shards
from orpr_ray.model.checkpoint import read_checkpoint
from orpr_ray.model.features import LabelHistory
from orpr_ray.model.network import build_model, count_parameters
from orpr_ray.train.report import prepare_labels
from orpr_ray.train.runner import Inputs, fit_stats, train_stage
from orpr_ray.train.stages import StageJob, forecast_points, label_points, sample_points, with_known

SECTION = "## Training throughput"
STAGES = ("forecast", "decision", "finetune")


def build_inputs(cfg: OrprConfig) -> Inputs:
    """The demo catalogue and its OR labels, computed in this process."""
    ds = synthesize(cfg.data.synth, cfg.seed)
    split = time_split(ds.n_days, cfg.data.split)
    raw = pd.concat([label_shard(ds, u, d, label=cfg.label, sim=cfg.sim).labels
                     for u, d in plan_shards(ds, cfg.label, cfg.sim)], ignore_index=True)
    horizon = label_horizon(ds, cfg.label)
    labels = prepare_labels(raw, ds, cfg.label.grid, horizon=horizon, alpha_source=cfg.train.alpha_source,
                            source="bench")
    return Inputs(ds=ds, labels=labels, history=LabelHistory(labels, horizon), split=split, sources={})


def stage_job(stage: str, cfg: OrprConfig, inputs: Inputs, stats, init: dict | None) -> StageJob:
    if stage == "forecast":
        train, val = (with_known(forecast_points(inputs.ds, inputs.split, w, horizon=cfg.model.horizon_days,
                                                 min_history=cfg.train.min_history_days), inputs.history)
                      for w in ("train", "val"))
    else:
        train, val = (label_points(inputs.labels, inputs.split, w) for w in ("train", "val"))
    return StageJob(stage=stage, config=cfg.model_dump(mode="json"), ds=inputs.ds, stats=stats,
                    grid=cfg.label.grid, train=train, val=sample_points(val, cfg.train.val_points, 0),
                    init_state=init, run_key=f"bench-{stage}")


def timed_fit(stage: str, cfg: OrprConfig, inputs: Inputs, stats, init: dict | None, storage: Path) -> dict:
    started = time.perf_counter()
    dest = train_stage(stage_job(stage, cfg, inputs, stats, init), storage=storage,
                       run_name=f"{stage}-{cfg.train.num_workers}-{time.time_ns()}",
                       dest=storage / f"out-{stage}-{cfg.train.num_workers}")
    _, meta = read_checkpoint(dest)
    last = meta.training["history"][-1]
    return {"stage": stage, "workers": cfg.train.num_workers, "per_worker": last["samples_per_s_per_worker"],
            "points_per_worker": last["points_per_worker"], "fit_s": time.perf_counter() - started}


def report(args, cfg: OrprConfig, n_params: int, rows: list[dict], load: tuple[float, float], command: str) -> str:
    title = (f"{cfg.data.synth.units} units x {cfg.data.synth.days} days, {args.samples} points x "
             f"{args.epochs} epochs per fit, global batch {cfg.train.batch_size} (split across workers)")
    lines = [
        f"- Command: `{command}`",
        f"- Machine: {machine_and_load(load)}",
        f"- Network: {n_params:,} parameters (default model config); {cfg.train.torch_threads or 'cores / workers'} "
        "torch thread(s) per worker (`train.torch_threads`); 'in-process' = `train.num_workers=0`, the same loop "
        "without Ray",
        "- Samples/s per worker = the last epoch's training points per second of wall time on one worker; "
        "total = x workers. Fit = the whole `TorchTrainer.fit` (start-up, all epochs, checkpoints).",
        "",
        "| stage | trains | workers | samples/s per worker | samples/s total | points per worker per epoch | fit (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    trains = {"forecast": "encoders + sales head", "decision": "decision head (encoders frozen)",
              "finetune": "encoders + decision head"}
    for r in rows:
        workers = r["workers"] or 1
        label = "in-process" if r["workers"] == 0 else str(r["workers"])
        lines.append(f"| {r['stage']} | {trains[r['stage']]} | {label} | {r['per_worker']:,.0f} | "
                     f"{r['per_worker'] * workers:,.0f} | {r['points_per_worker']:,} | {r['fit_s']:.0f} |")
    return dated_entry(title, lines)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--units", type=int, default=600, help="synthetic units (the demo catalogue has 600)")
    parser.add_argument("--samples", type=int, default=4096, help="training points per epoch, all workers")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per fit (the last one is reported)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (0 = no Ray)")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    stage_cfg = {"epochs": args.epochs, "samples_per_epoch": args.samples}
    base = {"data": {"synth": {"units": args.units}},
            "train": {"val_points": 512, **{stage: stage_cfg for stage in STAGES}}}
    cfg = OrprConfig.model_validate(base)
    inputs = build_inputs(cfg)
    stats = fit_stats(inputs, cfg)
    n_params = count_parameters(build_model(cfg.model, grid_size=len(cfg.label.grid),
                                            n_extra_numeric=len(stats.extra_numeric),
                                            n_extra_categorical=len(stats.extra_categorical)))
    if any(args.workers):
        ensure_ray(num_cpus=max(2, max(args.workers)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="orpr-bench-train-") as tmp:
        for workers in args.workers:
            worker_cfg = OrprConfig.model_validate({**base, "train": {**base["train"], "num_workers": workers}})
            for stage in args.stages:
                rows.append(timed_fit(stage, worker_cfg, inputs, stats, None, Path(tmp)))
                print(rows[-1], flush=True)
    entry = report(args, cfg, n_params, rows, (load_start, os.getloadavg()[0]), command_line(__file__))
    publish(SECTION, entry, write=not args.no_write)


if __name__ == "__main__":
    main()
