"""Ray Train wrappers of the stages, and the drivers behind ``orpr pretrain`` and ``orpr finetune``.

A stage runs as a ``TorchTrainer`` (Train V2) with ``train.num_workers`` CPU workers, each running
:func:`orpr_ray.train.stages.run_stage` on its shard; the job (dataset, points, statistics) is put
in the object store once. Runs are stored under ``<out>/ray/<stage>-<key>``: the key hashes
everything that changes the result, so re-running the same command resumes an interrupted run
from its last checkpoint (``ray.train.get_checkpoint``), and a changed config starts afresh.
``train.num_workers = 0`` runs the same loop in this process, without Ray. A worker that dies is
restarted by Ray Train (up to ``MAX_FAILURES`` times per run) and resumes from the last checkpoint.
``ORPR_FAULT_KILL_TRAIN_EPOCH=N`` exists for fault-injection tests: rank 0 dies (SIGKILL) right after its
checkpoint of epoch N is committed, on the run's first attempt only.

Output folder of ``orpr pretrain``: ``forecaster/model.pt`` (stage 1), ``policy/model.pt``
(stage 2), ``report.json``, ``manifest.json`` (last); ``orpr finetune`` writes ``policy/model.pt``,
``report.json`` and ``manifest.json``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch

from orpr_ray.config import TRAINING_SECTIONS, OrprConfig, sections
from orpr_ray.core.artifacts import MANIFEST_NAME, read_manifest, write_json_atomic, write_manifest
from orpr_ray.core.errors import InputError
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.io import load_dataset
from orpr_ray.data.split import TimeSplit, time_split
from orpr_ray.label.candidates import label_horizon
from orpr_ray.label.io import load_labels
from orpr_ray.model.checkpoint import (CHECKPOINT_FILE, CheckpointMeta, build_from_checkpoint, check_compatible,
                                       read_checkpoint, save_checkpoint)
from orpr_ray.model.features import FeatureStats, LabelHistory, PanelFeatures, split_extra_attributes
from orpr_ray.model.network import OrprNet
from orpr_ray.train.report import NAIVE_PREDICTORS, naive_label_predictions, prepare_labels, stage_report, summary_lines
from orpr_ray.train.rules import choose_rule, rule_name
from orpr_ray.train.stages import StageJob, forecast_points, label_points, run_stage, sample_points, with_known

# Settings that change how fast a stage runs, never what it computes: a resumed run may change them.
RUNTIME_ONLY = ("num_workers", "cpus_per_worker", "torch_threads")
STATS_POINTS = 20000  # forecast points the scaling statistics are fitted on when there are no labels
MAX_FAILURES = 2  # worker-group restarts Ray Train allows a run; each resumes from the last checkpoint
FAULT_ENV = "ORPR_FAULT_KILL_TRAIN_EPOCH"  # "2": rank 0 dies after reporting epoch 2, first attempt only
FAULT_MARKER = ".fault-kill-train"  # in the run's storage folder: the killed attempt's pid and last metrics


@dataclass(frozen=True)
class TrainFault:
    """Fault injection for tests: rank 0 dies right after reporting the checkpoint of ``epoch``
    while ``marker`` is absent; the dying attempt writes it, so the restarted worker carries on."""

    epoch: int
    marker: str

    def strike(self, metrics: dict) -> None:
        """Die hard once Ray Train has committed the checkpoint just reported (first attempt only)."""
        marker = Path(self.marker)
        if marker.exists():
            return
        import ray.train

        # ray.train.report only queues the checkpoint; the controller registers it when it next polls
        # this worker. Dying before that would lose it, and the restart would resume from the one before.
        ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
        write_json_atomic(marker, {"pid": os.getpid(), "metrics": metrics})
        os.kill(os.getpid(), signal.SIGKILL)


def train_fault(run_dir: Path) -> TrainFault | None:
    """The fault ``FAULT_ENV`` asks for, read by the driver (the workers need not inherit it)."""
    raw = os.environ.get(FAULT_ENV, "").strip()
    return TrainFault(epoch=int(raw), marker=str(run_dir / FAULT_MARKER)) if raw else None


# ----------------------------------------------------------------------------------------------
# Worker contexts: Ray Train, or this process.

class RayWorkerContext:
    """A Ray Train worker: rank and world size from the train context, checkpoints through Ray.
    ``fault``: die after reporting one epoch's checkpoint (fault-injection tests; None in real runs)."""

    def __init__(self, fault: TrainFault | None = None):
        import ray.train

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.fault = fault

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)
        if self.fault is not None and checkpoint is not None and metrics.get("epoch") == self.fault.epoch:
            self.fault.strike(metrics)

    @contextlib.contextmanager
    def resume_dir(self) -> Iterator[str | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as directory:
            yield directory

    def wrap(self, model: OrprNet) -> torch.nn.Module:
        """DistributedDataParallel over the trainable parameters when there are several workers."""
        if self.world_size == 1:
            return model
        import ray.train.torch

        return ray.train.torch.prepare_model(model)


class LocalContext:
    """This process alone: the last reported checkpoint is kept in ``run_dir`` (resumable too)."""

    rank = 0
    world_size = 1

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    @property
    def latest(self) -> Path:
        return self.run_dir / "latest"

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None:
        if checkpoint_dir is not None:
            self.latest.mkdir(parents=True, exist_ok=True)
            # model.pt is replaced atomically: the previous epoch stays readable until then.
            tmp = self.latest / f".{CHECKPOINT_FILE}.tmp"
            shutil.copyfile(Path(checkpoint_dir) / CHECKPOINT_FILE, tmp)
            os.replace(tmp, self.latest / CHECKPOINT_FILE)

    @contextlib.contextmanager
    def resume_dir(self) -> Iterator[str | None]:
        yield str(self.latest) if (self.latest / CHECKPOINT_FILE).is_file() else None

    def wrap(self, model: OrprNet) -> torch.nn.Module:
        return model


def worker_threads(cfg: OrprConfig) -> int:
    """Torch threads per worker: the configured number, else (None) this machine's cores shared by the
    workers (two workers on two cores must not each start two threads)."""
    tc = cfg.train
    return tc.torch_threads or max(1, (os.cpu_count() or 1) // max(1, tc.num_workers))


def _ray_worker(config: dict) -> None:
    import ray

    torch.set_num_threads(config["threads"])
    run_stage(ray.get(config["job"]), RayWorkerContext(config["fault"]))


def train_stage(job: StageJob, *, storage: Path, run_name: str, dest: Path) -> Path:
    """Run a stage (on Ray Train, or in-process with 0 workers) and export its final checkpoint to
    ``dest/model.pt`` without the optimizer state. Returns ``dest``."""
    cfg = job.cfg
    if cfg.train.num_workers == 0:
        context = LocalContext(storage / run_name)
        previous = torch.get_num_threads()
        torch.set_num_threads(worker_threads(cfg))
        try:
            run_stage(job, context)
        finally:
            torch.set_num_threads(previous)
        export_checkpoint(context.latest, dest)
        return dest
    from orpr_ray.core.ray_env import ensure_ray

    ray = ensure_ray()
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage = storage.resolve()
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"job": ray.put(job), "threads": worker_threads(cfg),
                           "fault": train_fault(storage / run_name)},
        scaling_config=ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=False,
                                     resources_per_worker={"CPU": cfg.train.cpus_per_worker}),
        run_config=RunConfig(name=run_name, storage_path=str(storage),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             failure_config=FailureConfig(max_failures=MAX_FAILURES)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"stage {job.stage} finished without a checkpoint (run {storage / run_name})")
    with result.checkpoint.as_directory() as directory:
        export_checkpoint(directory, dest)
    return dest


def export_checkpoint(source: str | Path, dest: Path) -> None:
    """Copy a training checkpoint as a deployable one: weights and metadata, metrics history kept,
    optimizer and scheduler state dropped."""
    state_dict, meta = read_checkpoint(source)
    training = {k: v for k, v in meta.training.items() if k not in ("optimizer", "scheduler")}
    model = build_from_checkpoint(state_dict, meta)
    save_checkpoint(dest, model, dataclasses.replace(meta, training=training))


# ----------------------------------------------------------------------------------------------
# Inputs of a run.

@dataclass
class Inputs:
    ds: Dataset
    labels: pd.DataFrame | None  # prepared by report.prepare_labels, naive predictions included
    history: LabelHistory | None  # what past labels tell at any decision day
    split: TimeSplit
    sources: dict


def source_record(path: str | Path, kind: str) -> dict:
    """Where an input came from: its folder and, when it has one, its manifest (checksums included)."""
    manifest = read_manifest(path, verify=False)
    return {"kind": kind, "path": str(Path(path).resolve()),
            "manifest": None if manifest is None else {k: manifest.get(k) for k in
                                                       ("stage", "created", "code_version", "outputs")}}


def load_inputs(cfg: OrprConfig, data_dir: str | Path, labels_dir: str | Path | None) -> Inputs:
    """Dataset, time split and (checked, prepared) labels of a run; bad input fails here, before any training."""
    ds = load_dataset(data_dir, fill_missing_days=cfg.data.fill_missing_days)
    split = time_split(ds.n_days, cfg.data.split)
    sources = {"data": source_record(data_dir, "data")}
    labels = history = None
    if labels_dir is not None:
        raw = load_labels(labels_dir)
        horizon = label_horizon(ds, cfg.label)
        labels = prepare_labels(raw, ds, cfg.label.grid, horizon=horizon, alpha_source=cfg.train.alpha_source,
                                source=str(labels_dir))
        labels = labels.join(naive_label_predictions(labels, split, cfg.label.grid, horizon=horizon))
        history = LabelHistory(labels, horizon)
        sources["labels"] = source_record(labels_dir, "labels")
    return Inputs(ds=ds, labels=labels, history=history, split=split, sources=sources)


def fit_stats(inputs: Inputs, cfg: OrprConfig) -> FeatureStats:
    """Scaling statistics and vocabularies from training-window points only: the labelled ones when
    there are labels (they carry the label-derived objectives), else a sample of forecast points."""
    panel = PanelFeatures(inputs.ds, cfg.model)
    if inputs.labels is not None:
        points = label_points(inputs.labels, inputs.split, "train")
    else:
        points = sample_points(forecast_points(inputs.ds, inputs.split, "train", horizon=cfg.model.horizon_days,
                                               min_history=cfg.train.min_history_days), STATS_POINTS, cfg.seed)
    if len(points) == 0:
        raise InputError("the training window has no decision points to fit feature statistics on",
                         field="data.split")
    numeric, categorical = split_extra_attributes(inputs.ds)
    return FeatureStats.fit(panel.raw(points.unit, points.day, points.known), numeric, categorical, cfg.model)


def run_key(cfg: OrprConfig, stage: str, sources: dict, init: str | None) -> str:
    """Hash of everything that changes what a stage computes (not how fast)."""
    tree = sections(cfg.model_dump(mode="json"), TRAINING_SECTIONS)
    for key in RUNTIME_ONLY:
        tree["train"].pop(key, None)
    blob = json.dumps({"config": tree, "stage": stage, "sources": sources, "init": init}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _stage_points(stage: str, inputs: Inputs, cfg: OrprConfig):
    """(train, val) points of a stage: forecast points for stage 1, labelled points for the others."""
    if stage == "forecast":
        train, val = (with_known(forecast_points(inputs.ds, inputs.split, w, horizon=cfg.model.horizon_days,
                                                 min_history=cfg.train.min_history_days), inputs.history)
                      for w in ("train", "val"))
    else:
        if inputs.labels is None:
            raise InputError(f"stage {stage} needs OR labels (--labels)", field="labels")
        train, val = (label_points(inputs.labels, inputs.split, w) for w in ("train", "val"))
    if len(train) == 0:
        raise InputError(f"stage {stage}: the training window has no decision points", field="data.split")
    return train, sample_points(val, cfg.train.val_points, cfg.seed)


def run_one_stage(stage: str, cfg: OrprConfig, inputs: Inputs, stats: FeatureStats, out_dir: Path, *,
                  init: tuple[dict, str] | None = None) -> tuple[OrprNet, CheckpointMeta]:
    """Train ``stage`` (or reuse its finished checkpoint from an identical earlier run) and load it.

    init: (state_dict, name) of the weights to start from (the previous stage's checkpoint).
    """
    dest = out_dir / ("forecaster" if stage == "forecast" else "policy")
    key = run_key(cfg, stage, inputs.sources, None if init is None else init[1])
    if (dest / CHECKPOINT_FILE).is_file():
        state_dict, meta = read_checkpoint(dest)
        if meta.training.get("run_key") == key:
            print(f"[{stage}] already trained with this config and these inputs: reusing {dest}", flush=True)
            return build_from_checkpoint(state_dict, meta), meta
    train, val = _stage_points(stage, inputs, cfg)
    print(f"[{stage}] {len(train)} training points, {len(val)} validation points, "
          f"{cfg.train.num_workers or 'no Ray'} worker(s)", flush=True)
    job = StageJob(stage=stage, config=cfg.model_dump(mode="json"), ds=inputs.ds, stats=stats,
                   grid=cfg.label.grid, train=train, val=val, init_state=None if init is None else init[0],
                   sources=inputs.sources, run_key=key)
    train_stage(job, storage=out_dir / "ray", run_name=f"{stage}-{key}", dest=dest)
    state_dict, meta = read_checkpoint(dest)
    return build_from_checkpoint(state_dict, meta), meta


def _report_stage(stage: str, model: OrprNet, meta: CheckpointMeta, inputs: Inputs, cfg: OrprConfig) -> dict:
    report = stage_report(model, meta, inputs.ds, inputs.labels, inputs.history, inputs.split, cfg,
                          decisions=stage != "forecast")
    report["history"] = meta.training.get("history", [])
    for line in summary_lines(stage, report):
        print(line, flush=True)
    return report


def finished(out_dir: Path, cfg: OrprConfig, inputs: dict,
             names: tuple[str, ...] = TRAINING_SECTIONS) -> dict | None:
    """The manifest of a finished run in ``out_dir`` with the same inputs and the same config
    ``names`` sections (the ones the stage depends on), if there is one."""
    manifest = read_manifest(out_dir)
    if (manifest and sections(manifest.get("config"), names) == sections(cfg.model_dump(mode="json"), names)
            and manifest.get("inputs") == inputs):
        return manifest
    return None


def headline(report: dict) -> dict:
    """The figures a reader checks first, for the manifest."""
    out = {}
    for stage, rep in report.items():
        fc = rep.get("forecast", {}).get("val", {})
        if "wape" in fc:
            out[f"{stage}.val_forecast_wape"] = fc["wape"]
            out[f"{stage}.val_seasonal_naive_wape"] = fc["seasonal_wape"]
        dec = rep.get("decision", {}).get("test", {})
        if dec.get("points"):
            names = [n for n in ("model", *NAIVE_PREDICTORS) if n in dec]
            for name in names:
                out[f"{stage}.test_within_3.{name}"] = dec[name]["within_3"]
            for name in ("labels", *names):
                out[f"{stage}.test_total_cost.{name}"] = dec[name]["simulated"]["total_cost"]
    return out


def _write_outputs(out_dir: Path, stage: str, cfg: OrprConfig, inputs: dict, report: dict,
                   outputs: list[str]) -> dict:
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # a rewrite never looks finished half-way
    write_json_atomic(out_dir / "report.json", report)
    write_manifest(out_dir, stage=stage, config=cfg.model_dump(mode="json"), inputs=inputs,
                   outputs=[*outputs, "report.json"], figures=headline(report))
    return read_manifest(out_dir)


def pretrain(cfg: OrprConfig, data_dir: str | Path, labels_dir: str | Path, out_dir: str | Path) -> dict:
    """Stage 1 (forecaster) then stage 2 (decision head on the labels, encoders frozen). Returns the manifest."""
    out_dir = Path(out_dir)
    inputs_record = {"data": str(Path(data_dir).resolve()), "labels": str(Path(labels_dir).resolve())}
    done = finished(out_dir, cfg, inputs_record)
    if done is not None:
        print(f"orpr pretrain: {out_dir} already holds this run's results", flush=True)
        return done
    inputs = load_inputs(cfg, data_dir, labels_dir)
    stats = fit_stats(inputs, cfg)
    report = {}
    model, meta = run_one_stage("forecast", cfg, inputs, stats, out_dir)
    report["forecast"] = _report_stage("forecast", model, meta, inputs, cfg)
    model, meta = run_one_stage("decision", cfg, inputs, stats, out_dir,
                                init=(model.state_dict(), f"forecast-{meta.training['run_key']}"))
    report["decision"] = _report_stage("decision", model, meta, inputs, cfg)
    return _write_outputs(out_dir, "pretrain", cfg, inputs_record, report,
                          [f"forecaster/{CHECKPOINT_FILE}", f"policy/{CHECKPOINT_FILE}"])


def pretrained_inputs(pretrained_dir: str | Path) -> dict:
    """The inputs of a finished ``orpr pretrain`` (or ``finetune``) run, read from its manifest."""
    manifest = read_manifest(pretrained_dir)
    if manifest is None or manifest.get("stage") not in ("pretrain", "finetune"):
        raise InputError("not a finished `orpr pretrain` output (no valid manifest.json): run or finish it "
                         "first", file=str(pretrained_dir))
    return manifest


def finetune(cfg: OrprConfig, pretrained_dir: str | Path, out_dir: str | Path, *,
             data_dir: str | Path | None = None, labels_dir: str | Path | None = None) -> dict:
    """Stage 3: everything fine-tuned on the decision loss from a pretrained policy. Returns the manifest."""
    out_dir = Path(out_dir)
    previous = pretrained_inputs(pretrained_dir)
    data_dir = data_dir or previous["inputs"]["data"]
    labels_dir = labels_dir or previous["inputs"]["labels"]
    inputs_record = {"data": str(Path(data_dir).resolve()), "labels": str(Path(labels_dir).resolve()),
                     "pretrained": str(Path(pretrained_dir).resolve())}
    done = finished(out_dir, cfg, inputs_record)
    if done is not None:
        print(f"orpr finetune: {out_dir} already holds this run's results", flush=True)
        return done
    state_dict, meta = read_checkpoint(pretrained_dir)
    check_compatible(meta, model_config=cfg.model, grid=cfg.label.grid, source=str(pretrained_dir))
    inputs = load_inputs(cfg, data_dir, labels_dir)
    inputs.sources["pretrained"] = source_record(pretrained_dir, "pretrained")
    model, meta = run_one_stage("finetune", cfg, inputs, meta.stats, out_dir,
                                init=(state_dict, f"{meta.stage}-{meta.training.get('run_key')}"))
    rule = {}
    if cfg.train.choose_decision_quantile:  # before the report, so that the report reads the stored rule
        meta, rule["decision_rule"] = store_cheapest_rule(model, meta, inputs, cfg, out_dir / "policy",
                                                          stage="finetune")
    report = {"finetune": {**_report_stage("finetune", model, meta, inputs, cfg), **rule}}
    return _write_outputs(out_dir, "finetune", cfg, inputs_record, report, [f"policy/{CHECKPOINT_FILE}"])


def store_cheapest_rule(model: OrprNet, meta: CheckpointMeta, inputs: Inputs, cfg: OrprConfig, policy_dir: Path, *,
                        stage: str) -> tuple[CheckpointMeta, dict]:
    """Re-save the policy in ``policy_dir`` with the decision rule of least rolling validation cost
    (train/rules.py): the weights do not change, only how a target is read from them, and training
    moves the whole distribution over the grid, so the rule that read the policy before need not read
    it best now. Returns the stored metadata and the ``decision_rule`` entry of the report."""
    chosen, costs = choose_rule(model, meta, inputs.ds, inputs.split, cfg, inputs.history)
    before = meta.decision_quantile
    if chosen != before:
        print(f"[{stage}] decision rule {rule_name(chosen)} costs least on the validation window's rolling "
              f"simulation (before: {rule_name(before)}): stored in the checkpoint", flush=True)
        meta = dataclasses.replace(meta, decision_quantile=chosen)
        save_checkpoint(policy_dir, model, meta)
    return meta, {"chosen": rule_name(chosen), "before": rule_name(before), "chosen_cost": costs[rule_name(chosen)],
                  "by": "least total cost of the validation window's rolling simulation", "validation_cost": costs}
