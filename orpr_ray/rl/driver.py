"""``orpr rl``: RLOO alignment of a fine-tuned network, in this process or data-parallel on Ray Train.

Inputs: a start policy (the ``finetune`` output folder, or any folder with ``model.pt`` / ``policy/
model.pt``) whose manifest names the data and labels (or ``--data`` / ``--labels``). The run is
stored under ``<out>/ray/<stage>-<key>``; the key hashes everything that changes the result, so
re-running the same command resumes an interrupted run from its last checkpoint.

Output folder:
    policy/model.pt   the aligned policy (self-describing checkpoint: Policy.load / load_policy read it)
    history.csv       the learner's metrics at every evaluation (training curve)
    stages.csv        per stage (the start policy, then RL) and window (val, test): simulated total
                      cost, holding, lost-sales penalty, in-stock, turnover, fill rate, KL to the
                      start policy, Pareto-dominance rate vs the OR labels
    report.json       the same figures, the done-when checks and the RL config
    manifest.json     last
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from orpr_ray.config import RL_SECTIONS, OrprConfig, sections
from orpr_ray.core.artifacts import MANIFEST_NAME, read_manifest, write_json_atomic, write_manifest, write_text_atomic
from orpr_ray.core.errors import InputError
from orpr_ray.model.checkpoint import (CHECKPOINT_FILE, CheckpointMeta, build_from_checkpoint, check_compatible,
                                       read_checkpoint)
from orpr_ray.model.features import PanelFeatures
from orpr_ray.rl.learner import (RLJob, States, greedy, run_learner, sample_states, score_policy,
                                states_from_labels)
from orpr_ray.train.rules import rolling_rule_costs
from orpr_ray.train.runner import (MAX_FAILURES, Inputs, LocalContext, RayWorkerContext, export_checkpoint,
                                   finished as finished_run, load_inputs, source_record, store_cheapest_rule)

# Settings that change how a run is executed, never what it computes (excluded from the run key).
RUNTIME_ONLY = ("num_workers", "torch_threads", "sweep")
START_STAGES = ("pretrain", "finetune", "rl", "promo")
WINDOWS = ("val", "test")


def start_inputs(checkpoint_dir: str | Path, data_dir: str | Path | None,
                 labels_dir: str | Path | None) -> tuple[str, str]:
    """The data and labels folders: given, else those the start policy's manifest names."""
    manifest = read_manifest(checkpoint_dir, verify=False) or {}
    named = manifest.get("inputs", {}) if manifest.get("stage") in START_STAGES else {}
    data_dir, labels_dir = data_dir or named.get("data"), labels_dir or named.get("labels")
    if not data_dir or not labels_dir:
        raise InputError("the start policy's manifest names no data / labels folder: pass --data and --labels",
                         file=str(Path(checkpoint_dir) / MANIFEST_NAME), field="inputs")
    return str(Path(data_dir).resolve()), str(Path(labels_dir).resolve())


def load_start(cfg: OrprConfig, checkpoint_dir: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    state_dict, meta = read_checkpoint(checkpoint_dir)
    check_compatible(meta, model_config=cfg.model, grid=cfg.label.grid, source=str(checkpoint_dir))
    return state_dict, meta


def run_key(cfg: OrprConfig, stage: str, sources: dict) -> str:
    """Hash of everything that changes what the stage computes (not how it is executed)."""
    tree = sections(cfg.model_dump(mode="json"), RL_SECTIONS)
    for key in RUNTIME_ONLY:
        tree["rl"].pop(key, None)
    blob = json.dumps({"config": tree, "stage": stage, "sources": sources}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_job(cfg: OrprConfig, inputs: Inputs, state_dict: dict, meta: CheckpointMeta, *, stage: str = "rl",
              labels: pd.DataFrame | None = None, promo_share: float | None = None) -> RLJob:
    """The learner's job: training states of the train window, a fixed sample of validation states."""
    labels = inputs.labels if labels is None else labels
    train = states_from_labels(labels, inputs.split, "train", cfg)
    if len(train) == 0:
        raise InputError("the training window has no labelled decision points to align on", field="data.split")
    val = sample_states(states_from_labels(labels, inputs.split, "val", cfg), cfg.rl.val_points, cfg.seed)
    return RLJob(config=cfg.model_dump(mode="json"), ds=inputs.ds, meta=meta, init_state=state_dict, train=train,
                 val=val, sources=inputs.sources, run_key=run_key(cfg, stage, inputs.sources), stage=stage,
                 promo_share=promo_share)


def _ray_worker(config: dict) -> None:
    import ray

    if config["threads"]:
        torch.set_num_threads(config["threads"])
    run_learner(ray.get(config["job"]), RayWorkerContext())


def train_learner(job: RLJob, *, storage: Path, dest: Path) -> list[dict]:
    """Run the learner (this process with rl.num_workers = 0, else Ray Train workers) and export the
    final policy to ``dest/model.pt`` without the optimiser state. Returns the metrics history."""
    rl = job.cfg.rl
    name = f"{job.stage}-{job.run_key}"
    if rl.num_workers == 0:
        context = LocalContext(storage / name)
        previous = torch.get_num_threads()
        torch.set_num_threads(rl.torch_threads or previous)
        try:
            run_learner(job, context)
        finally:
            torch.set_num_threads(previous)
        source: Path | str = context.latest
    else:
        from orpr_ray.core.ray_env import ensure_ray

        ray = ensure_ray()
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        result = TorchTrainer(
            _ray_worker, train_loop_config={"job": ray.put(job), "threads": rl.torch_threads},
            scaling_config=ScalingConfig(num_workers=rl.num_workers, use_gpu=False),
            run_config=RunConfig(name=name, storage_path=str(storage.resolve()),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2),
                                 failure_config=FailureConfig(max_failures=MAX_FAILURES)),
        ).fit()
        if result.checkpoint is None:
            raise RuntimeError(f"stage {job.stage} finished without a checkpoint (run {storage / name})")
        source = result.checkpoint.to_directory()
    export_checkpoint(source, dest)
    return read_checkpoint(dest)[1].training["history"]


def stage_figures(job: RLJob, inputs: Inputs, labels: pd.DataFrame, after_dir: Path,
                  segments: Callable[[States], dict[str, np.ndarray]] | None = None,
                  route: Callable[[States], np.ndarray] | None = None) -> dict:
    """{stage: {window[/segment]: metrics}} of the start policy and the trained one on every label point
    of the validation and test windows (the start policy is the KL reference, so its own KL is 0).

    segments: states -> {name: boolean mask}, to score parts of each window separately.
    route: states -> boolean mask of the states the trained policy decides; the start policy decides
    the others (a routed policy, orpr_ray.model.policy.RoutedPolicy).
    """
    cfg = job.cfg
    panel = PanelFeatures(inputs.ds, job.meta.model_config)
    before = build_from_checkpoint(job.init_state, job.meta)
    after_state, after_meta = read_checkpoint(after_dir)
    after = build_from_checkpoint(after_state, after_meta)
    start = start_name(job)
    out: dict[str, dict] = {start: {}, job.stage: {}}
    for window in WINDOWS:
        states = states_from_labels(labels, inputs.split, window, cfg)
        parts = {window: np.ones(len(states), dtype=bool)} if segments is None else {
            f"{window}/{name}": mask for name, mask in segments(states).items()}
        choice_b, log_b = greedy(before, job, states, panel, quantile=job.meta.decision_quantile)
        choice_a, log_a = greedy(after, job, states, panel, quantile=after_meta.decision_quantile)
        if route is not None:
            mine = route(states)
            choice_a = np.where(mine, choice_a, choice_b)
            log_a = torch.where(torch.from_numpy(mine)[:, None], log_a, log_b)
        for name, mask in parts.items():
            part, rows = states.take(mask), torch.from_numpy(np.flatnonzero(mask))
            out[start][name] = score_policy(job, part, choice_b[mask], log_b[rows], log_b[rows], prefix="")
            out[job.stage][name] = score_policy(job, part, choice_a[mask], log_a[rows], log_b[rows], prefix="")
    return out


def choose_stored_rule(job: RLJob, inputs: Inputs, policy_dir: Path) -> dict:
    """Re-save the trained policy in ``policy_dir`` with its cheapest decision rule (train/runner.py);
    returns the ``decision_rule`` entry."""
    state_dict, meta = read_checkpoint(policy_dir)
    return store_cheapest_rule(build_from_checkpoint(state_dict, meta), meta, inputs, job.cfg, policy_dir,
                               stage=job.stage)[1]


def rolling_check(job: RLJob, inputs: Inputs, after_cost: float) -> dict:
    """The backtest's own measure on the validation window: the start policy's rolling cost at the rule it
    is deployed with against the trained policy's at the rule stored after training (``after_cost``)."""
    start = build_from_checkpoint(job.init_state, job.meta)
    before = rolling_rule_costs(start, job.meta, inputs.ds, inputs.split, job.cfg, inputs.history,
                                quantiles=(job.meta.decision_quantile,))[job.meta.decision_quantile]
    return {"rolling_cost_before": before, "rolling_cost_after": after_cost,
            "rolling_cost_change": after_cost / before - 1.0 if before else None,
            "rolling_cost_improved": after_cost < before}


def start_name(job: RLJob) -> str:
    """The start policy's row name in the stage tables: its stage, unless this stage has that name too."""
    return job.meta.stage if job.meta.stage != job.stage else f"{job.meta.stage}_start"


def stages_table(figures: dict) -> pd.DataFrame:
    return pd.DataFrame([{"stage": stage, "window": window, **metrics}
                         for stage, windows in figures.items() for window, metrics in windows.items()])


def done_checks(figures: dict, before: str, after: str, window: str = "val") -> dict:
    """The issue's done-when on one window: lower total cost at the same or better in-stock, KL bounded."""
    b, a = figures[before].get(window, {}), figures[after].get(window, {})
    if not a:
        return {}
    return {"window": window, "total_cost_before": b["total_cost"], "total_cost_after": a["total_cost"],
            "total_cost_change": a["total_cost"] / b["total_cost"] - 1.0 if b["total_cost"] else None,
            "in_stock_before": b["in_stock_rate"], "in_stock_after": a["in_stock_rate"], "kl": a["kl"],
            "cost_improved": a["total_cost"] < b["total_cost"],
            "in_stock_kept": a["in_stock_rate"] >= b["in_stock_rate"]}


def finished(out_dir: Path, cfg: OrprConfig, inputs_record: dict) -> dict | None:
    """The manifest of an identical finished run (same inputs, same RL_SECTIONS) in ``out_dir``, if any."""
    return finished_run(out_dir, cfg, inputs_record, RL_SECTIONS)


def write_stage_outputs(out_dir: Path, job: RLJob, cfg: OrprConfig, inputs_record: dict, history: list[dict],
                        figures: dict, extra_report: dict | None = None, extra_outputs: list[str] = (),
                        extra_checks: dict | None = None) -> dict:
    """history.csv, stages.csv, report.json, then the manifest (policy/model.pt is already written)."""
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # a rewrite never looks finished half-way
    checks = {**done_checks(figures, start_name(job), job.stage), **(extra_checks or {})}
    write_text_atomic(out_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
    write_text_atomic(out_dir / "stages.csv", stages_table(figures).to_csv(index=False))
    report = {"stages": figures, "done_when": checks, "history": history, "rl": cfg.rl.model_dump(mode="json"),
              **(extra_report or {})}
    write_json_atomic(out_dir / "report.json", report)
    headline = {f"{stage}.{window}.{key}": metrics[key] for stage, windows in figures.items()
                for window, metrics in windows.items() for key in ("total_cost", "in_stock_rate", "kl")
                if key in metrics}
    write_manifest(out_dir, stage=job.stage, config=cfg.model_dump(mode="json"), inputs=inputs_record,
                   outputs=[f"policy/{CHECKPOINT_FILE}", "history.csv", "stages.csv", "report.json", *extra_outputs],
                   figures=headline, extra={"run_key": job.run_key, "start_stage": start_name(job)})
    return read_manifest(out_dir)


def run_rl(cfg: OrprConfig, checkpoint_dir: str | Path, out_dir: str | Path, *, data_dir: str | Path | None = None,
           labels_dir: str | Path | None = None) -> dict:
    """RLOO from the policy in ``checkpoint_dir`` into ``out_dir``; returns the manifest."""
    out_dir = Path(out_dir)
    data_dir, labels_dir = start_inputs(checkpoint_dir, data_dir, labels_dir)
    inputs_record = {"data": data_dir, "labels": labels_dir, "start": str(Path(checkpoint_dir).resolve())}
    done = finished(out_dir, cfg, inputs_record)
    if done is not None:
        print(f"orpr rl: {out_dir} already holds this run's results", flush=True)
        return done
    state_dict, meta = load_start(cfg, checkpoint_dir)
    inputs = load_inputs(cfg, data_dir, labels_dir)
    inputs.sources["start"] = source_record(checkpoint_dir, "policy")
    job = build_job(cfg, inputs, state_dict, meta)
    print(f"[rl] {len(job.train)} training states, {len(job.val)} validation states, omega {cfg.rl.omega}, "
          f"beta {cfg.rl.beta}, k {cfg.rl.k}, {cfg.rl.num_workers or 'no Ray'} worker(s)", flush=True)
    history = train_learner(job, storage=out_dir / "ray", dest=out_dir / "policy")
    rule, rolling = {}, {}
    if cfg.rl.choose_decision_quantile:
        rule["decision_rule"] = choose_stored_rule(job, inputs, out_dir / "policy")
        rolling = rolling_check(job, inputs, rule["decision_rule"]["chosen_cost"])
    figures = stage_figures(job, inputs, inputs.labels, out_dir / "policy")
    manifest = write_stage_outputs(out_dir, job, cfg, inputs_record, history, figures, extra_report=rule,
                                   extra_checks=rolling)
    for line in summary_lines(figures):
        print(line, flush=True)
    if rolling:
        print(f"[{job.stage}] rolling validation cost, the backtest's measure: {rolling['rolling_cost_before']:.0f} "
              f"(start) -> {rolling['rolling_cost_after']:.0f} ({rolling['rolling_cost_change']:+.1%})", flush=True)
    return manifest


def summary_lines(figures: dict) -> list[str]:
    lines = []
    for stage, windows in figures.items():
        for window, m in windows.items():
            lines.append(f"[{stage}] {window}: total cost {m['total_cost']:.0f} (holding {m['holding_cost']:.0f}, "
                         f"lost-sales penalty {m['penalty_cost']:.0f}), in-stock {m['in_stock_rate']:.3f}, turnover "
                         f"{m['turnover_days']:.1f} d, KL {m['kl']:.4f}, Pareto vs labels {m['pareto_rate']:.3f}")
    return lines
