"""``orpr pipeline``: data -> baseline -> labels -> pretrain -> finetune -> RLOO -> promo -> backtest -> report.

Every stage writes into its own folder of the run directory and finishes by writing its manifest,
so re-running the same command resumes at the first stage whose manifest is missing (or whose
outputs no longer match their checksums). A finished stage is reused only for the config it was
made with: the baseline and the learned stages redo themselves when their config sections
changed; the dataset and the labels, which everything after them is keyed on, refuse another
source or config with an error instead. Ray is started in-process unless the command runs on a
cluster (``ray job submit`` sets ``RAY_ADDRESS``), so the same command scales from a laptop to a
cluster.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from orpr_ray.config import OrprConfig, sections
from orpr_ray.core.artifacts import read_manifest, write_json_atomic
from orpr_ray.core.errors import InputError

# The config sections the baseline's tables depend on.
BASELINE_SECTIONS = ("seed", "data", "sim")


@dataclass(frozen=True)
class Stage:
    name: str
    folder: str
    run: Callable[[OrprConfig, Path], dict]


def data_source(cfg: OrprConfig) -> dict:
    """What a run's dataset is made from, as its manifest's ``dataset_meta`` records it: the folder
    as given (not resolved: a cluster job's working directory moves between submissions), or the
    synthetic catalogue's config and seed."""
    if cfg.data.path is not None:
        return {"source": str(Path(cfg.data.path))}
    return {"kind": "synthetic", "seed": cfg.seed, "config": cfg.data.synth.model_dump(mode="json")}


def _data_stage(cfg: OrprConfig, run_dir: Path) -> dict:
    from orpr_ray.data.io import load_from_config, write_dataset

    out = run_dir / "data"
    done = read_manifest(out)
    if done is None:
        write_dataset(load_from_config(cfg.data, cfg.seed), out)
        return read_manifest(out)
    recorded = done.get("dataset_meta", {})
    changed = sorted(key for key, value in data_source(cfg).items() if recorded.get(key) != value)
    if changed:
        raise InputError(f"holds the dataset of another data source or config ({', '.join(changed)} differ"
                         "), and every later stage of the run was made from it: use an empty --out folder "
                         "(or delete this one)", file=str(out / "manifest.json"), field="data")
    return done


def _baseline_stage(cfg: OrprConfig, run_dir: Path) -> dict:
    from orpr_ray.data.io import load_dataset
    from orpr_ray.sim.baseline import write_baseline

    out = run_dir / "baseline"
    done = read_manifest(out)
    current = sections(cfg.model_dump(mode="json"), BASELINE_SECTIONS)
    if done is not None and sections(done.get("config"), BASELINE_SECTIONS) == current:
        return done
    return write_baseline(load_dataset(run_dir / "data"), cfg, out, source=str(run_dir / "data"))


def _label_stage(cfg: OrprConfig, run_dir: Path) -> dict:
    from orpr_ray.data.io import load_dataset
    from orpr_ray.label.driver import run_labels

    return run_labels(load_dataset(run_dir / "data"), run_dir / "labels", label=cfg.label, sim=cfg.sim,
                      config=cfg.model_dump(mode="json"), source=str(run_dir / "data"), progress=True)


def _pretrain_stage(cfg: OrprConfig, run_dir: Path) -> dict:
    from orpr_ray.train.runner import pretrain

    return pretrain(cfg, run_dir / "data", run_dir / "labels", run_dir / "pretrain")


def _finetune_stage(cfg: OrprConfig, run_dir: Path) -> dict:
    from orpr_ray.train.runner import finetune

    return finetune(cfg, run_dir / "pretrain", run_dir / "finetune")


def _rl_stage(cfg: OrprConfig, run_dir: Path) -> dict:
    from orpr_ray.rl.driver import run_rl

    return run_rl(cfg, run_dir / "finetune", run_dir / "rl")


def _promo_stage(cfg: OrprConfig, run_dir: Path) -> dict:
    from orpr_ray.rl.promo import run_promo

    return run_promo(cfg, run_dir / "rl", run_dir / "promo")  # the synthetic expert unless one is given


def _backtest_stage(cfg: OrprConfig, run_dir: Path) -> dict:
    from orpr_ray.evaluate.backtest import run_backtest

    return run_backtest(run_dir, cfg, progress=True)


def _report_stage(cfg: OrprConfig, run_dir: Path) -> dict:
    from orpr_ray.evaluate.report import write_report

    done = read_manifest(run_dir / "report")
    if done is None or done["inputs"].get("backtest") != read_manifest(run_dir / "backtest")["created"]:
        write_report(run_dir)
        done = read_manifest(run_dir / "report")
    return done


STAGES = (
    Stage("data", "data", _data_stage),
    Stage("baseline", "baseline", _baseline_stage),
    Stage("labels", "labels", _label_stage),
    Stage("pretrain", "pretrain", _pretrain_stage),
    Stage("finetune", "finetune", _finetune_stage),
    Stage("rl", "rl", _rl_stage),
    Stage("promo", "promo", _promo_stage),
    Stage("backtest", "backtest", _backtest_stage),
    Stage("report", "report", _report_stage),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def select_stages(until: str | None) -> tuple[Stage, ...]:
    if until is None:
        return STAGES
    if until not in STAGE_NAMES:
        raise ValueError(f"unknown stage {until!r}; stages: {', '.join(STAGE_NAMES)}")
    return STAGES[:STAGE_NAMES.index(until) + 1]


def run_pipeline(cfg: OrprConfig, run_dir: str | Path, *, until: str | None = None,
                 num_cpus: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) every stage up to ``until`` into ``run_dir``; returns the run summary."""
    from orpr_ray.core.ray_env import ensure_ray

    run_dir = Path(run_dir)
    stages = select_stages(until)
    ensure_ray(num_cpus=num_cpus)
    timings = {}
    for i, stage in enumerate(stages, 1):
        # A finished output is reused only when the stage finds it matches this config and inputs, so
        # whether it was is known after the stage returns: the same manifest means nothing was redone.
        before = read_manifest(run_dir / stage.folder)
        log(f"[{i}/{len(stages)}] {stage.name}: {'checking the earlier output' if before else 'running'}")
        t0 = time.perf_counter()
        manifest = stage.run(cfg, run_dir)
        resumed = before is not None and manifest == before
        timings[stage.name] = {"seconds": round(time.perf_counter() - t0, 1), "resumed": resumed,
                               "figures": manifest.get("figures", {})}
        log(f"[{i}/{len(stages)}] {stage.name}: " + ("already done" if resumed else
                                                       f"done in {timings[stage.name]['seconds']} s"))
    summary = {"run_dir": str(run_dir), "stages": timings}
    write_json_atomic(run_dir / "pipeline.json", summary)
    return summary


def register(subparsers) -> None:
    from orpr_ray.cli import add_config_arguments

    parser = subparsers.add_parser("pipeline", help="run (or resume) the whole ORPR pipeline into a run folder",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo", help="run folder; re-running into it resumes")
    parser.add_argument("--data", help="dataset folder (default: data.path, else the synthetic catalogue)")
    parser.add_argument("--until", choices=STAGE_NAMES, help="stop after this stage")
    parser.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: all); ignored on a cluster")
    add_config_arguments(parser)
    parser.set_defaults(func=_run_command)


def _run_command(args) -> int:
    from orpr_ray.config import load_config

    overrides = [*args.overrides, *([f"data.path={args.data}"] if args.data else [])]
    cfg = load_config(args.config, overrides)
    summary = run_pipeline(cfg, args.out, until=args.until, num_cpus=args.num_cpus)
    print(headline(Path(args.out), summary))
    return 0


def headline(run_dir: Path, summary: dict) -> str:
    """The final lines a user reads: per-stage times and where the results are."""
    lines = ["", f"run folder: {run_dir}"]
    for name, info in summary["stages"].items():
        took = "resumed" if info["resumed"] else f"{info['seconds']:>7.1f} s"
        lines.append(f"  {name:<10} {took}")
    backtest = read_manifest(run_dir / "backtest")
    baseline_csv = run_dir / "baseline" / "baseline_summary.csv"
    if backtest is not None:
        from orpr_ray.evaluate.backtest import format_headline

        lines += ["", format_headline(backtest)]
    elif baseline_csv.is_file():
        import pandas as pd

        from orpr_ray.sim.baseline import format_table

        lines += ["", "classic policies on the test window:", format_table(pd.read_csv(baseline_csv))]
    report = run_dir / "report" / "report.html"
    if report.is_file():
        lines += ["", f"report: {report}"]
    return "\n".join(lines)
