"""The three supervised stages as one plain-torch loop per worker, and their metrics.

- ``forecast``: encoders + sales head learn to forecast the next H days (no labels needed);
- ``decision``: the VAE-logits decision head learns the OR labels, everything else frozen;
- ``finetune``: encoders + decision head on the decision loss, the forecast loss logged alongside.

:func:`run_stage` is the loop one worker runs. It knows nothing about Ray: the runner hands it a
:class:`WorkerContext` (rank, world size, report, the checkpoint to resume from) and, with more
than one worker, a process group for the gradient and metric all-reduce. Each worker trains on
its own shard of every epoch's points (``order[rank::world]``) and scores its shard of the
validation points; sums are all-reduced so every worker reports the same global metrics.
"""
from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Protocol

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from orpr_ray.config import OrprConfig
from orpr_ray.core.errors import InputError
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.split import TimeSplit
from orpr_ray.model.checkpoint import CheckpointMeta, check_compatible, model_for, read_checkpoint, save_checkpoint
from orpr_ray.model.features import (LABEL_OBJECTIVES, FeatureStats, LabelHistory, PanelFeatures, RawFeatures,
                                     encode)
from orpr_ray.model.network import (OrprNet, decision_loss, forecast_loss, set_trainable, target_index,
                                    train_mode)
from orpr_ray.train.config import StageConfig, TrainConfig

STAGES = ("forecast", "decision", "finetune")
KNOWN_COLUMNS = [f"known_{name}" for name in LABEL_OBJECTIVES]  # columns of prepared labels
WITHIN = (1, 3)  # accuracy within +-k days of the label


# ----------------------------------------------------------------------------------------------
# Decision points and their windows.

@dataclass
class Points:
    """Decision points (N,) each: unit row and day index; ``label`` the OR label's grid index
    (labelled points); ``known`` (N, len(LABEL_OBJECTIVES)) the label-derived objectives the
    network sees (NaN = unknown; None = all unknown)."""

    unit: np.ndarray
    day: np.ndarray
    label: np.ndarray | None = None
    known: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.unit)

    def take(self, rows) -> "Points":
        return Points(self.unit[rows], self.day[rows], None if self.label is None else self.label[rows],
                      None if self.known is None else self.known[rows])


def window_bounds(split: TimeSplit, window: str) -> tuple[int, int]:
    """Day range [start, stop) of the train / val / test window."""
    return {"train": (0, split.val_start), "val": (split.val_start, split.test_start),
            "test": (split.test_start, split.n_days)}[window]


def forecast_points(ds: Dataset, split: TimeSplit, window: str, *, horizon: int, min_history: int) -> Points:
    """Every ``(unit, day)`` of a window whose H target days lie inside the window (no look past its
    end) and that follows at least ``min_history`` observed days of the unit."""
    start, stop = window_bounds(split, window)
    days = np.arange(start, stop - horizon + 1)
    if len(days) == 0:
        return Points(np.zeros(0, np.int64), np.zeros(0, np.int64))
    # observed days strictly before each candidate day, per unit: (U, len(days))
    seen = np.concatenate([np.zeros((ds.n_units, 1), np.int64), np.cumsum(ds.observed, axis=1)], axis=1)[:, days]
    ok = (seen >= min_history) & ds.observed[:, days]
    unit, col = np.nonzero(ok)
    return Points(unit.astype(np.int64), days[col].astype(np.int64))


def label_points(labels: pd.DataFrame, split: TimeSplit, window: str) -> Points:
    """The labelled decision points of a window, from labels prepared by ``report.prepare_labels``
    (their ``label_index`` and the ``known_*`` objectives the network sees)."""
    start, stop = window_bounds(split, window)
    rows = labels[(labels["day"] >= start) & (labels["day"] < stop)]
    return Points(rows["unit"].to_numpy(np.int64), rows["day"].to_numpy(np.int64),
                  rows["label_index"].to_numpy(np.int64), rows[KNOWN_COLUMNS].to_numpy(np.float64))


def grid_index(v: np.ndarray, grid: list[int]) -> np.ndarray:
    """Position of each target in the grid; a target off the grid is an input error."""
    grid_arr = np.asarray(grid)
    pos = np.searchsorted(grid_arr, v)
    pos_c = np.minimum(pos, len(grid_arr) - 1)
    bad = grid_arr[pos_c] != v
    if bad.any():
        raise InputError(f"label {v[bad][0]} is not on the grid {grid[0]}..{grid[-1]} (step "
                         f"{grid[1] - grid[0] if len(grid) > 1 else 1}): labels and label config disagree",
                         field="v_label", where=f"{int(bad.sum())} rows")
    return pos_c.astype(np.int64)


def with_known(points: Points, history: LabelHistory | None) -> Points:
    """The points with the label-derived objectives a deployed policy would know (none without labels)."""
    if history is None:
        return points
    return Points(points.unit, points.day, points.label, history.lookup(points.unit, points.day))


def sample_points(points: Points, n: int, seed: int) -> Points:
    """A fixed random sample of at most ``n`` points (all of them when there are fewer)."""
    if len(points) <= n:
        return points
    rows = np.sort(np.random.default_rng(seed).choice(len(points), size=n, replace=False))
    return points.take(rows)


def derive_seed(seed: int, *keys: int) -> int:
    """An independent 63-bit seed for a (stage, epoch, rank, ...) from the run's root seed."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


# ----------------------------------------------------------------------------------------------
# Batches and metric sums.

@dataclass
class Batch:
    features: dict[str, torch.Tensor]
    raw: RawFeatures
    actual: torch.Tensor  # (B, H) units sold on the H days ahead (0 where unobserved)
    observed: torch.Tensor  # (B, H) bool
    label: torch.Tensor | None  # (B,) grid index


def make_batch(panel: PanelFeatures, points: Points, stats: FeatureStats) -> Batch:
    raw = panel.raw(points.unit, points.day, points.known)
    actual, observed = panel.future_sales(points.unit, points.day)
    return Batch(features=encode(raw, stats, panel.cfg), raw=raw, actual=torch.from_numpy(actual).float(),
                 observed=torch.from_numpy(observed),
                 # a copy: labels shipped through Ray's object store are read-only arrays
                 label=None if points.label is None else torch.tensor(points.label))


def naive_forecasts(raw: RawFeatures, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, H) naive (last day's sales repeated) and seasonal-naive (same weekday last week) forecasts."""
    history = raw.sales.shape[1]
    ahead = np.arange(horizon)
    naive = np.repeat(raw.sales[:, -1:], horizon, axis=1)
    seasonal = raw.sales[:, history - 7 + ahead % 7]
    return naive, seasonal


def forecast_sums(forecast: torch.Tensor, batch: Batch) -> dict[str, float]:
    """Absolute errors of the model and the naive forecasts over each point's lead time + review
    period (observed days only), in units, plus the actual units and the number of days scored."""
    days = torch.arange(forecast.shape[1])
    mask = batch.observed & (days[None, :] < batch.features["horizon"][:, None])  # (B, H)
    naive, seasonal = naive_forecasts(batch.raw, forecast.shape[1])
    actual = batch.actual

    def abs_err(pred: torch.Tensor) -> float:
        return float(((pred - actual).abs() * mask).sum())

    return {"abs_err": abs_err(forecast), "naive_abs_err": abs_err(torch.from_numpy(naive).float()),
            "seasonal_abs_err": abs_err(torch.from_numpy(seasonal).float()),
            "actual": float((actual * mask).sum()), "days": float(mask.sum())}


def decision_sums(chosen: torch.Tensor, label: torch.Tensor, grid: torch.Tensor) -> dict[str, float]:
    """Counts of exact / within +-k days chosen targets (grid indices) against the labels."""
    gap = (grid[chosen] - grid[label]).abs()
    sums = {"exact": float((gap == 0).sum()), "n": float(len(label))}
    sums.update({f"within_{k}": float((gap <= k).sum()) for k in WITHIN})
    return sums


def forecast_metrics(sums: dict[str, float]) -> dict[str, float]:
    """WAPE and MAE (per unit-day) of the model, the naive and the seasonal-naive forecasts."""
    actual, days = max(sums["actual"], 1e-12), max(sums["days"], 1.0)
    out = {}
    for name, key in (("", "abs_err"), ("naive_", "naive_abs_err"), ("seasonal_", "seasonal_abs_err")):
        out[f"{name}wape"] = sums[key] / actual
        out[f"{name}mae"] = sums[key] / days
    return out


def decision_metrics(sums: dict[str, float]) -> dict[str, float]:
    n = max(sums["n"], 1.0)
    out = {"accuracy": sums["exact"] / n}
    out.update({f"within_{k}": sums[f"within_{k}"] / n for k in WITHIN})
    return out


def add_sums(total: dict[str, float], part: dict[str, float], prefix: str = "") -> None:
    for key, value in part.items():
        total[prefix + key] = total.get(prefix + key, 0.0) + value


def all_reduce_sums(sums: dict[str, float]) -> dict[str, float]:
    """Sum a dict of floats over the workers (same keys on every worker); identity without a group."""
    if not (dist.is_available() and dist.is_initialized()):
        return sums
    keys = sorted(sums)
    values = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    return dict(zip(keys, values.tolist()))


@torch.no_grad()
def score_points(model: OrprNet, panel: PanelFeatures, points: Points, stats: FeatureStats, grid: list[int],
                 tc: TrainConfig) -> tuple[dict[str, float], np.ndarray | None]:
    """Metric sums of the deterministic model (z = mu) over ``points``, targets read by
    ``tc.decision_quantile``; also the probabilities over the grid (N, G) when the points are labelled."""
    model.eval()
    grid_t = torch.tensor(grid)
    sums: dict[str, float] = {}
    probs = []
    for start in range(0, len(points), tc.eval_batch_size):
        batch = make_batch(panel, points.take(slice(start, start + tc.eval_batch_size)), stats)
        outputs = model(batch.features)
        add_sums(sums, forecast_sums(outputs["forecast"], batch))
        add_sums(sums, {"forecast_loss": float(forecast_loss(outputs, batch.actual, batch.observed,
                                                              batch.features["scale"])) * len(batch.actual),
                        "points": float(len(batch.actual))})
        if batch.label is not None:
            terms = decision_loss(outputs, batch.label, kl_weight=tc.kl_weight, label_width=tc.label_width)
            add_sums(sums, {"ce": float(terms["ce"]) * len(batch.label)})
            add_sums(sums, decision_sums(target_index(outputs["logits"], tc.decision_quantile), batch.label, grid_t))
            probs.append(torch.softmax(outputs["logits"], dim=-1).numpy())
    return sums, (np.concatenate(probs) if probs else None)


def summarise_sums(sums: dict[str, float]) -> dict[str, float]:
    """Metrics from score_points sums (empty when nothing was scored)."""
    if not sums.get("points"):
        return {}
    out = {"forecast_loss": sums["forecast_loss"] / sums["points"], **forecast_metrics(sums)}
    if sums.get("n"):
        out.update({"ce": sums["ce"] / sums["n"], **decision_metrics(sums)})
    return out


# ----------------------------------------------------------------------------------------------
# The per-worker loop.

class WorkerContext(Protocol):
    """What the loop needs from whoever runs it (Ray Train, or this process alone)."""

    rank: int
    world_size: int

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None: ...

    def resume_dir(self) -> ContextManager[str | None]: ...

    def wrap(self, model: OrprNet) -> torch.nn.Module: ...


@dataclass
class StageJob:
    """Everything a worker needs for one stage. ``config`` is the plain-dict config tree."""

    stage: str
    config: dict
    ds: Dataset
    stats: FeatureStats
    grid: list[int]
    train: Points
    val: Points
    init_state: dict[str, torch.Tensor] | None = None
    sources: dict = field(default_factory=dict)
    run_key: str = ""  # identifies the run in its checkpoints (see runner.run_key)

    @property
    def cfg(self) -> OrprConfig:
        return OrprConfig.model_validate(self.config)

    def meta(self, training: dict) -> CheckpointMeta:
        cfg = self.cfg
        return CheckpointMeta(model_config=cfg.model, stats=self.stats, grid=self.grid, stage=self.stage,
                              sources=self.sources, training=training,
                              decision_quantile=cfg.train.decision_quantile)


def stage_config(tc: TrainConfig, stage: str) -> StageConfig:
    return getattr(tc, stage)


def trainable_parts(stage: str, tc: TrainConfig) -> tuple[str, ...]:
    """The freeze schedule: which parts each stage trains (the rest keep their weights exactly)."""
    if stage == "forecast":
        return ("encoders", "sales_head")
    if stage == "decision":
        return ("decision_head",)
    if stage == "finetune":
        return ("encoders", "decision_head") + (("sales_head",) if tc.finetune_forecast_weight > 0 else ())
    raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")


def stage_loss(stage: str, outputs: dict[str, torch.Tensor], batch: Batch, tc: TrainConfig) -> dict[str, torch.Tensor]:
    """Named loss terms; ``loss`` is what the stage optimises, the others are logged."""
    fc = forecast_loss(outputs, batch.actual, batch.observed, batch.features["scale"])
    if stage == "forecast":
        return {"loss": fc, "forecast_loss": fc}
    terms = decision_loss(outputs, batch.label, kl_weight=tc.kl_weight, label_width=tc.label_width)
    weight = tc.finetune_forecast_weight if stage == "finetune" else 0.0
    loss = terms["loss"] + weight * fc if weight > 0 else terms["loss"]
    return {**terms, "loss": loss, "forecast_loss": fc.detach()}


def warmup_cosine(total_steps: int, warmup_share: float) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine decay to 10% of the peak."""
    warmup = max(1, int(total_steps * warmup_share))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.1 + 0.45 * (1.0 + math.cos(math.pi * progress))

    return factor


def epoch_order(n_points: int, samples: int | None, world: int, seed: int) -> np.ndarray:
    """The points of one epoch in a seeded random order, cut to a multiple of the world size so
    every worker takes the same number of steps (DDP all-reduces every step)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_points) if samples is None else rng.choice(n_points, size=samples,
                                                                         replace=samples > n_points)
    return order[: len(order) // world * world]


def run_stage(job: StageJob, ctx: WorkerContext) -> dict[str, float]:
    """Train one stage on this worker's shard; report metrics (and, on rank 0, a checkpoint) every
    epoch. Resumes after the last reported epoch when the context has a checkpoint. Returns the
    last epoch's metrics."""
    cfg = job.cfg
    tc, sc = cfg.train, stage_config(cfg.train, job.stage)
    stage_id = STAGES.index(job.stage)
    if job.stage != "forecast" and (job.train.label is None or len(job.train) == 0):
        raise InputError(f"stage {job.stage} needs labelled training points, got none", field="labels")
    world, rank = ctx.world_size, ctx.rank
    batch = max(1, tc.batch_size // world)  # per worker: the global batch is split
    steps_per_epoch = math.ceil(len(epoch_order(len(job.train), sc.samples_per_epoch, world, 0)) / world / batch)
    # Dropout draws from torch's global generator: seed it per worker, and restore it afterwards
    # so an in-process run leaves the caller's random state alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, stage_id, rank, 1))
        model = model_for(job.meta({}), seed=derive_seed(cfg.seed, stage_id))
        if job.init_state is not None:
            model.load_state_dict(job.init_state)
        parts = trainable_parts(job.stage, tc)
        set_trainable(model, parts)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=sc.lr, weight_decay=sc.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(steps_per_epoch * sc.epochs, tc.warmup_share))
        start_epoch, history = _resume(ctx, job, model, optimizer, scheduler)
        wrapped = ctx.wrap(model)
        panel = PanelFeatures(job.ds, cfg.model)
        val_shard = job.val.take(slice(rank, None, world))
        noise = torch.Generator().manual_seed(derive_seed(cfg.seed, stage_id, rank, 2))
        for epoch in range(start_epoch, sc.epochs):
            order = epoch_order(len(job.train), sc.samples_per_epoch, world, derive_seed(cfg.seed, stage_id, epoch))
            mine = order[rank::world]
            started = time.perf_counter()
            train_sums = _train_epoch(job, wrapped, model, parts, panel, mine, batch, optimizer, scheduler, params,
                                      noise, tc)
            elapsed = time.perf_counter() - started
            val_sums, _ = score_points(model, panel, val_shard, job.stats, job.grid, tc)
            train_sums, val_sums = all_reduce_sums(train_sums), all_reduce_sums(val_sums)
            metrics = {"epoch": epoch + 1, "world_size": world, "points_per_worker": len(mine),
                       "samples_per_s_per_worker": len(mine) / max(elapsed, 1e-9),
                       "lr": scheduler.get_last_lr()[0]}
            metrics.update({f"train_{k}": v / max(train_sums["points"], 1.0) for k, v in train_sums.items()
                            if k != "points"})
            metrics.update({f"val_{k}": v for k, v in summarise_sums(val_sums).items()})
            history.append(metrics)
            if rank == 0:
                print(progress_line(job.stage, metrics, sc.epochs, elapsed), flush=True)
            _report(ctx, job, model, optimizer, scheduler, epoch, history, metrics)
    return history[-1] if history else {}


def _train_epoch(job: StageJob, wrapped: torch.nn.Module, model: OrprNet, parts: tuple[str, ...],
                 panel: PanelFeatures, mine: np.ndarray, batch_size: int, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, params: list[torch.nn.Parameter],
                 noise: torch.Generator, tc: TrainConfig) -> dict[str, float]:
    """One pass over this worker's points; returns loss-term sums weighted by batch size."""
    train_mode(model, parts)
    sample = job.stage != "forecast"  # the decision loss trains through a sampled latent z
    sums: dict[str, float] = {}
    for start in range(0, len(mine), batch_size):
        batch = make_batch(panel, job.train.take(mine[start:start + batch_size]), job.stats)
        outputs = wrapped(batch.features, sample=sample, generator=noise)
        terms = stage_loss(job.stage, outputs, batch, tc)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        optimizer.step()
        scheduler.step()
        size = float(len(batch.actual))
        add_sums(sums, {k: float(v.detach()) * size for k, v in terms.items()})
        add_sums(sums, {"points": size})
    return sums


def _resume(ctx: WorkerContext, job: StageJob, model: OrprNet, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler) -> tuple[int, list[dict]]:
    """Load the last reported checkpoint of this run, if any: (first epoch to run, metrics history)."""
    with ctx.resume_dir() as directory:
        if directory is None:
            return 0, []
        state_dict, meta = read_checkpoint(directory)
    check_compatible(meta, model_config=job.cfg.model, grid=job.grid, source=f"{directory} (resumed run)")
    model.load_state_dict(state_dict)
    optimizer.load_state_dict(meta.training["optimizer"])
    scheduler.load_state_dict(meta.training["scheduler"])
    return int(meta.training["epoch"]) + 1, list(meta.training["history"])


def _report(ctx: WorkerContext, job: StageJob, model: OrprNet, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, epoch: int, history: list[dict],
            metrics: dict) -> None:
    """Every worker reports (it is a barrier); only rank 0 writes the checkpoint."""
    if ctx.rank != 0:
        ctx.report(metrics, None)
        return
    training = {"epoch": epoch, "run_key": job.run_key, "history": history, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict()}
    with tempfile.TemporaryDirectory(prefix="orpr-ckpt-") as tmp:
        save_checkpoint(tmp, model, job.meta(training))
        ctx.report(metrics, tmp)


def progress_line(stage: str, metrics: dict, epochs: int, seconds: float) -> str:
    parts = [f"[{stage}] epoch {metrics['epoch']}/{epochs}", f"loss {metrics.get('train_loss', float('nan')):.4f}"]
    for key, label in (("val_wape", "val WAPE"), ("val_seasonal_wape", "seasonal-naive"),
                       ("val_accuracy", "val acc"), ("val_within_3", "within+-3")):
        if key in metrics:
            parts.append(f"{label} {metrics[key]:.3f}")
    parts.append(f"{metrics['samples_per_s_per_worker']:.0f} samples/s/worker, {seconds:.1f}s")
    return " | ".join(parts)
