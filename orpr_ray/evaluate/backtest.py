"""The backtest: every policy rolled through the held-out test window on the same demand traces.

Windows and start state are those of ``sim.baseline.run_baseline`` (a test pins the equality): the
classic policies are tuned there, every policy starts ``sim.warmup_days`` before the test window
from one common state (``L + R`` days of trailing-mean demand on hand, nothing on order), decides
at each of its review days from data before that day, carries its inventory across days, and is
scored on ``[test_start, n_days)`` only.

Metrics (DESIGN.md section 4, valued at unit cost like the simulator) are ratios of per-unit sums,
so one function (:func:`ratios`) gives the point estimate of any group of units or days and every
bootstrap replicate. Groups: overall, per category, per ABC, XYZ and ABC-XYZ segment (computed on
the training window by ``data.stats``), and promotion days vs other days. Changes against the
incumbent are paired (same units, same replicate weights): turnover days, holding cost and total
cost in relative terms, in-stock rate in percentage points. Intervals: Poisson bootstrap over units
(each unit weighted by an independent Poisson(1) count per replicate), percentile method.

Output folder ``RUN_DIR/backtest/`` (docs/EVALUATION.md): ``summary.csv`` (one row per policy,
overall), ``segments.parquet`` / ``segments.csv`` (every group), ``units.parquet`` (per policy and
unit), ``frontier.csv``, ``trajectories.parquet``, ``ppo/`` (the PPO baseline) and
``manifest.json`` (last).
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from orpr_ray.config import OrprConfig, apply_overrides, load_config, validate_config
from orpr_ray.core.artifacts import (MANIFEST_NAME, read_manifest, write_manifest, write_parquet_atomic,
                                     write_text_atomic)
from orpr_ray.core.errors import InputError
from orpr_ray.data.config import SplitConfig
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.split import TimeSplit, time_split
from orpr_ray.data.stats import abc_classes, sales_value, xyz_classes
from orpr_ray.evaluate.policies import label_targets, network_targets
from orpr_ray.sim.config import SimConfig
from orpr_ray.sim.engine import SimState, UnitParams
from orpr_ray.sim.policies import trailing_mean_demand
from orpr_ray.sim.rolling import Policy, simulate_rolling, warm_start
from orpr_ray.sim.scheduled import ReviewPoints, review_points, scheduled_policy

OUT_FOLDER = "backtest"
# Upstream stage folders of a run directory, in pipeline order.
STAGE_FOLDERS = ("data", "baseline", "labels", "pretrain", "finetune", "rl", "sweep", "promo")
# Where each learned policy's checkpoint is looked for, first finished one wins:
# (folder with the stage's manifest, folder with model.pt or policy/model.pt).
CHECKPOINTS = {
    "network": (("finetune", "finetune"), ("pretrain", "pretrain")),
    "orpr": (("rl", "rl"), ("sweep", "sweep/best")),
    "orpr_promo": (("promo", "promo"),),
}

METRICS = ("turnover_days", "in_stock_rate", "fill_rate", "holding_cost", "lost_sales_value", "total_cost")
CHANGES = ("turnover_days_change", "in_stock_change", "holding_cost_change", "total_cost_change")
# Per-unit sums every metric is a ratio of, in column order of the (U, K) sum arrays.
SUMS = ("stock_value", "sales_value", "lost_value", "demand_value", "holding_cost", "penalty_cost",
        "in_stock_days", "unit_days")
DAY_MASKS = ("all", "promo", "other")
VERSUS_BEST = "total_cost_vs_best_classic_change"  # summary column: paired total cost change vs the best classic policy

# name -> (kind, description); the report keeps this order.
POLICY_INFO = {
    "orpr": ("learned", "ORPR: network + RLOO alignment"),
    "orpr_promo": ("learned", "ORPR + expert-guided promotion fine-tune"),
    "network": ("learned", "network only (pretrained + fine-tuned, before RL)"),
    "ppo": ("pure RL", "RLlib PPO from scratch on the same decision problem, no OR labels"),
    "or_labels": ("oracle", "OR labels: hindsight oracle (knows the demand that followed), not deployable"),
    "base_stock": ("classic", "base-stock level per unit, tuned before the test window"),
    "inventory_days": ("classic", "days of cover per unit, tuned before the test window"),
    "s_S": ("classic", "(s, S) per unit, tuned before the test window"),
    "constant": ("classic", "constant order per review, tuned before the test window"),
    "incumbent": ("incumbent", "one days of cover per category: the smallest meeting the in-stock target"),
}


# ----------------------------------------------------------------------------------------------
# The shared setup and one policy's run.

@dataclass(frozen=True)
class Setup:
    """What every policy of a backtest shares."""

    ds: Dataset
    split: TimeSplit
    params: UnitParams
    d_hat: np.ndarray        # (U, T) causal trailing-mean demand, the classic policies' own
    eval_start: int          # first simulated day (warm-up before split.test_start)
    start_state: SimState
    sim: SimConfig

    @property
    def scored_days(self) -> np.ndarray:
        return np.arange(self.split.test_start, self.ds.n_days)


def backtest_setup(ds: Dataset, sim: SimConfig, split_cfg: SplitConfig) -> Setup:
    """Windows, d_hat and start state exactly as ``run_baseline`` builds them."""
    split = time_split(ds.n_days, split_cfg)
    params = UnitParams.from_units(ds.units)
    d_hat = trailing_mean_demand(ds.sales, sim.demand_window_days)
    eval_start = max(0, split.test_start - sim.warmup_days)
    start_state = warm_start(params, d_hat, eval_start)
    return Setup(ds=ds, split=split, params=params, d_hat=d_hat, eval_start=eval_start,
                 start_state=start_state, sim=sim)


@dataclass(frozen=True)
class PolicyRun:
    """Daily paths of every unit over the scored days: float64 (U, D) each (D = test days)."""

    name: str
    demand: np.ndarray
    sales: np.ndarray
    on_hand: np.ndarray    # end of day
    decision: np.ndarray   # order-up-to level on review days, NaN otherwise
    ordered: np.ndarray


def simulate_policy(setup: Setup, name: str, policy: Policy) -> PolicyRun:
    """Roll ``policy`` from the common start state, tracing every unit; keep the scored days."""
    result = simulate_rolling(policy, setup.ds.sales, setup.params, start=setup.eval_start,
                              record_from=setup.split.test_start, state=setup.start_state,
                              holding_rate=setup.sim.holding_rate_per_day,
                              penalty_share=setup.sim.lost_sales_penalty_share,
                              trace_units=np.arange(setup.ds.n_units))
    paths = result.trajectories
    scored = paths.days >= setup.split.test_start
    return PolicyRun(name=name, demand=paths.demand[:, scored], sales=paths.sales[:, scored],
                     on_hand=paths.on_hand[:, scored], decision=paths.decision[:, scored],
                     ordered=paths.ordered[:, scored])


def unit_sums(setup: Setup, run: PolicyRun, mask: np.ndarray) -> np.ndarray:
    """(U, K) sums over the days where ``mask`` (U, D) holds, in SUMS order.

    A day is in stock when on hand after arrivals is positive, i.e. end-of-day on hand + sales > 0.
    """
    cost = setup.params.unit_cost[:, None]                                             # (U, 1)
    penalty = setup.sim.lost_sales_penalty_share * (setup.params.unit_price - setup.params.unit_cost)[:, None]
    lost = run.demand - run.sales
    stock_value = run.on_hand * cost
    daily = (stock_value, run.sales * cost, lost * cost, run.demand * cost,
             stock_value * setup.sim.holding_rate_per_day, lost * penalty,
             (run.on_hand + run.sales > 0).astype(np.float64), np.ones_like(run.sales))
    return np.stack([np.where(mask, d, 0.0).sum(axis=1) for d in daily], axis=1)


def ratios(totals: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of summed groups: totals (..., K) in SUMS order -> each metric (...).

    Same conventions as ``GridMetrics.summary``: turnover = stock value / sales value (inf when
    stock was held and nothing sold, 0 when neither); fill rate by value (1 without demand).
    """
    t = {name: totals[..., k] for k, name in enumerate(SUMS)}
    with np.errstate(divide="ignore", invalid="ignore"):
        turnover = np.where(t["sales_value"] > 0, t["stock_value"] / t["sales_value"],
                            np.where(t["stock_value"] > 0, np.inf, 0.0))
        in_stock = t["in_stock_days"] / t["unit_days"]
        fill = np.where(t["demand_value"] > 0, t["sales_value"] / t["demand_value"], 1.0)
    return {"turnover_days": turnover, "in_stock_rate": in_stock, "fill_rate": fill,
            "holding_cost": t["holding_cost"], "lost_sales_value": t["lost_value"],
            "total_cost": t["holding_cost"] + t["penalty_cost"]}


def changes(policy: dict[str, np.ndarray], incumbent: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Changes against the incumbent in the paper's terms (relative, in-stock in points)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"turnover_days_change": policy["turnover_days"] / incumbent["turnover_days"] - 1.0,
                "in_stock_change": policy["in_stock_rate"] - incumbent["in_stock_rate"],
                "holding_cost_change": policy["holding_cost"] / incumbent["holding_cost"] - 1.0,
                "total_cost_change": policy["total_cost"] / incumbent["total_cost"] - 1.0}


# ----------------------------------------------------------------------------------------------
# Groups and the bootstrap.

@dataclass(frozen=True)
class Group:
    dimension: str
    segment: str
    rows: np.ndarray   # (U,) bool: units of the group
    days: str          # one of DAY_MASKS


def segment_labels(ds: Dataset, split: TimeSplit, window: str) -> pd.DataFrame:
    """Per unit: category, ABC, XYZ and ABC-XYZ, computed on the segmentation window only."""
    stop = split.val_start if window == "train" else split.test_start
    train = ds.window(0, stop)
    abc, xyz = abc_classes(train), xyz_classes(train)
    return pd.DataFrame({"category": ds.units["category"].astype(str).to_numpy(), "abc": abc, "xyz": xyz,
                         "abc_xyz": np.char.add(abc, xyz)})


def groups_of(segments: pd.DataFrame) -> list[Group]:
    """Every reported group: overall, each value of each segment column, promotion vs other days."""
    everyone = np.ones(len(segments), dtype=bool)
    out = [Group("overall", "all", everyone, "all")]
    for dimension in ("category", "abc", "xyz", "abc_xyz"):
        values = segments[dimension].to_numpy()
        out += [Group(dimension, str(v), values == v, "all") for v in sorted(np.unique(values))]
    out += [Group("days", "promotion", everyone, "promo"), Group("days", "other", everyone, "other")]
    return out


def bootstrap_weights(n_units: int, samples: int, seed: int) -> np.ndarray:
    """(B, U) Poisson(1) unit counts: a replicate's group totals are weighted sums of unit sums.

    The Poisson bootstrap resamples every subgroup consistently (each unit's weight is independent
    of the others), so the same weights serve the overall figures and every segment.
    """
    return np.random.default_rng(seed).poisson(1.0, size=(samples, n_units)).astype(np.float64)


def replicate_totals(weights: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """(B, P, K) weighted totals of every replicate: weights (B, u) x per-unit sums (P, u, K), as one matmul."""
    n_policies, n_units, n_sums = sums.shape
    flat = sums.transpose(1, 0, 2).reshape(n_units, n_policies * n_sums)                  # (u, P K)
    return (weights @ flat).reshape(len(weights), n_policies, n_sums)


def interval(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the replicate axis (0); inf replicates count as missing."""
    finite = np.where(np.isfinite(values), values, np.nan)
    tail = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice has NaN bounds
        return np.nanquantile(finite, tail, axis=0), np.nanquantile(finite, 1.0 - tail, axis=0)


def group_table(names: list[str], sums: np.ndarray, groups: list[Group], weights: np.ndarray,
                level: float, incumbent: str) -> pd.DataFrame:
    """Point estimates, intervals and paired changes vs the incumbent of every policy and group.

    names: P policy names; sums: (P, M, U, K) per policy, day mask (DAY_MASKS order), unit.
    """
    ref = names.index(incumbent)
    rows = []
    for group in groups:
        part = sums[:, DAY_MASKS.index(group.days)][:, group.rows]                        # (P, u, K)
        point = ratios(part.sum(axis=1))                                                   # (P,) each
        boot = ratios(replicate_totals(weights[:, group.rows], part))                     # (B, P) each
        point_change = changes(point, {k: v[ref] for k, v in point.items()})
        boot_change = changes(boot, {k: v[:, ref:ref + 1] for k, v in boot.items()})
        bounds = {name: interval(v, level) for name, v in {**boot, **boot_change}.items()}
        for p, name in enumerate(names):
            row = {"policy": name, "dimension": group.dimension, "segment": group.segment,
                   "n_units": int(group.rows.sum()), "unit_days": float(part[p, :, SUMS.index("unit_days")].sum())}
            for metric, value in {**point, **point_change}.items():
                row[metric] = float(value[p])
                row[f"{metric}_lo"], row[f"{metric}_hi"] = float(bounds[metric][0][p]), float(bounds[metric][1][p])
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Inputs of a run directory.

def run_config(run_dir: str | Path, config_path: str | None, overrides: Iterable[str] = ()) -> OrprConfig:
    """The config of a backtest: ``config_path``, else the one the run's latest stage recorded
    (finetune, pretrain, labels, baseline), else the defaults; then the overrides."""
    if config_path:
        return load_config(config_path, overrides)
    for folder in ("finetune", "pretrain", "labels", "baseline"):
        manifest = read_manifest(Path(run_dir) / folder, verify=False)
        if manifest and isinstance(manifest.get("config"), dict) and "data" in manifest["config"]:
            tree = json.loads(json.dumps(manifest["config"]))
            return validate_config(apply_overrides(tree, overrides), source=f"{run_dir}/{folder}/manifest.json")
    return load_config(None, overrides)


def finished(run_dir: Path, folder: str) -> dict | None:
    return read_manifest(run_dir / folder)


def load_run_dataset(run_dir: Path, cfg: OrprConfig) -> Dataset:
    from orpr_ray.data.io import load_dataset

    if finished(run_dir, "data") is None:
        raise InputError("no finished data stage (data/manifest.json): run `orpr pipeline` or write the dataset "
                         "there first", file=str(run_dir / "data"))
    return load_dataset(run_dir / "data", fill_missing_days=cfg.data.fill_missing_days)


def checkpoint_dir(run_dir: Path, places: Iterable[tuple[str, str]]) -> tuple[Path | None, str]:
    """The checkpoint folder of the first finished stage among ``places``, and a note saying which
    (or why there is none)."""
    from orpr_ray.model.checkpoint import checkpoint_file

    for stage_folder, folder in places:
        if finished(run_dir, stage_folder) is None:
            continue
        try:
            checkpoint_file(run_dir / folder)
        except InputError:
            continue
        return run_dir / folder, folder
    return None, f"no finished {' / '.join(stage for stage, _ in places)} stage with a checkpoint"


def input_record(run_dir: Path) -> dict:
    """Which upstream stages were present, and when each finished: a changed input redoes the backtest."""
    out = {}
    for folder in STAGE_FOLDERS:
        manifest = read_manifest(run_dir / folder, verify=False)
        if manifest is not None:
            out[folder] = {"stage": manifest.get("stage"), "created": manifest.get("created")}
    return out


# ----------------------------------------------------------------------------------------------
# The backtest.

@dataclass
class Candidates:
    """The policies to roll, with notes on the ones that are absent and why."""

    policies: dict[str, Policy]
    notes: dict[str, str]
    absent: dict[str, str]


def classic_candidates(ds: Dataset, cfg: OrprConfig) -> tuple[dict[str, Policy], dict]:
    """The classic policies tuned by ``run_baseline`` (same windows), and what the manifest records of
    the tuning (window, the incumbent's per-category choice) plus the incumbent's per-unit days."""
    from orpr_ray.sim.baseline import run_baseline

    result = run_baseline(ds, cfg.sim, cfg.data.split, cfg.evaluate.classic_policies)
    tuning = {name: t.detail for name, t in result.tuned.items() if t.detail}
    return {name: t.policy for name, t in result.tuned.items()}, {
        "tune_days": list(result.tune_days), "tuning": tuning,
        "incumbent_days": result.tuned["incumbent"].policy.days}


def learned_candidates(run_dir: Path, setup: Setup, cfg: OrprConfig, points: ReviewPoints,
                       incumbent_days: np.ndarray, out: Path, progress: Callable[[str], None]) -> Candidates:
    """OR labels, network, ORPR and PPO as scheduled policies; missing stages are noted, not fatal."""
    from orpr_ray.label.candidates import label_horizon
    from orpr_ray.model.features import LabelHistory

    policies, notes, absent = {}, {}, {}
    labels = None
    if (manifest := finished(run_dir, "labels")) is not None and manifest.get("stage") == "label":
        from orpr_ray.label.io import load_labels

        labels = load_labels(run_dir / "labels")
        v, fallback = label_targets(labels, points, incumbent_days)
        policies["or_labels"] = scheduled_policy(points, v, setup.d_hat)
        notes["or_labels"] = f"{fallback} review points of units without labels use the incumbent's target"
    else:
        absent["or_labels"] = "no finished labels/ stage"
    known = (LabelHistory(labels, label_horizon(setup.ds, cfg.label)).lookup(points.unit, points.day)
             if labels is not None else None)
    for name, places in CHECKPOINTS.items():
        folder, note = checkpoint_dir(run_dir, places)
        if folder is None:
            absent[name] = note
            continue
        progress(f"{name}: deciding {len(points)} review points with {note}/")
        v = network_targets(folder, setup.ds, points, known, cfg.evaluate.decision_batch_size)
        policies[name] = scheduled_policy(points, v, setup.d_hat)
        notes[name] = f"checkpoint of {note}/"
    if cfg.evaluate.ppo.enabled:
        from orpr_ray.evaluate.ppo import ppo_policy

        policy, note = ppo_policy(run_dir, setup, cfg, points, out / "ppo", progress)
        if policy is None:
            absent["ppo"] = note
        else:
            policies["ppo"], notes["ppo"] = policy, note
    else:
        absent["ppo"] = "disabled (evaluate.ppo.enabled = false)"
    return Candidates(policies, notes, absent)


def trajectory_units(setup: Setup, segments: pd.DataFrame, k: int) -> np.ndarray:
    """Up to ``k`` units to plot: the biggest seller of each ABC class, then the most promoted ones."""
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    value = sales_value(setup.ds.window(0, setup.split.val_start))                          # (U,)
    abc = segments["abc"].to_numpy()
    chosen = [int(np.flatnonzero(abc == c)[np.argmax(value[abc == c])]) for c in ("A", "B", "C") if (abc == c).any()]
    promo_days = (setup.ds.promo[:, setup.split.test_start:] > 0).sum(axis=1)
    for u in np.argsort(-promo_days, kind="stable"):
        if len(chosen) >= k:
            break
        if int(u) not in chosen:
            chosen.append(int(u))
    return np.asarray(chosen[:k], dtype=np.int64)


def trajectory_frame(setup: Setup, runs: list[PolicyRun], units: np.ndarray) -> pd.DataFrame:
    """Long table of daily paths; ``runs`` hold the kept units only, row i being unit ``units[i]``."""
    days = setup.scored_days
    frames = []
    for run in runs:
        for i, u in enumerate(units):
            frames.append(pd.DataFrame({
                "policy": run.name, "unit": int(u), "sku": setup.ds.units["sku"].iat[u],
                "dc": setup.ds.units["dc"].iat[u], "day": days, "date": setup.ds.dates[days],
                "demand": run.demand[i], "sales": run.sales[i], "on_hand": run.on_hand[i],
                "ordered": run.ordered[i], "order_up_to": run.decision[i],
                "promo": setup.ds.promo[u, days]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def frontier_frame(ds: Dataset, cfg: OrprConfig) -> pd.DataFrame:
    """Classic families re-tuned over service targets, scored on the test window like the rest.

    The incumbent sweeps its category in-stock target; the per-unit families are tuned with the
    fill-rate objective at each target, tracing the least stock that reaches each service level.
    """
    from orpr_ray.sim.baseline import run_baseline

    rows = []
    for family in cfg.evaluate.frontier_families:
        for target in cfg.evaluate.frontier_targets:
            update = ({"incumbent_in_stock_target": target} if family == "incumbent"
                      else {"tune_objective": "fill_rate", "fill_rate_target": target})
            sim = cfg.sim.model_copy(update=update)
            summary = run_baseline(ds, sim, cfg.data.split, [family]).summary.iloc[0]
            rows.append({"family": family, "target": target, **{m: float(summary[m]) for m in METRICS}})
    return pd.DataFrame(rows)


def unit_frame(setup: Setup, names: list[str], sums: np.ndarray, segments: pd.DataFrame) -> pd.DataFrame:
    """One row per policy and unit: segment labels and the unit's own metrics over the test window."""
    frames = []
    for p, name in enumerate(names):
        metrics = ratios(sums[p, 0])                                                      # (U,) each
        frame = pd.DataFrame({"policy": name, "unit": np.arange(setup.ds.n_units),
                              "sku": setup.ds.units["sku"].to_numpy(), "dc": setup.ds.units["dc"].to_numpy()})
        frame = pd.concat([frame, segments.reset_index(drop=True)], axis=1)
        for metric in METRICS:
            frame[metric] = metrics[metric]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def summary_frame(segments_table: pd.DataFrame, incumbent: str) -> pd.DataFrame:
    """The overall rows with each policy's kind and description, and the best tuned classic policy marked."""
    summary = segments_table[segments_table["dimension"] == "overall"].drop(columns=["dimension", "segment"])
    summary = summary.reset_index(drop=True)
    summary.insert(1, "kind", summary["policy"].map(lambda p: POLICY_INFO[p][0]))
    summary.insert(2, "description", summary["policy"].map(lambda p: POLICY_INFO[p][1]))
    classic = summary[(summary["kind"] == "classic")]
    best = classic["policy"].iloc[int(np.argmin(classic["total_cost"]))] if len(classic) else None
    summary.insert(3, "best_classic", summary["policy"] == best)
    summary.insert(4, "is_incumbent", summary["policy"] == incumbent)
    return summary


def fingerprint(cfg: OrprConfig, inputs: dict) -> str:
    blob = json.dumps({"config": cfg.model_dump(mode="json"), "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_backtest(run_dir: str | Path, cfg: OrprConfig, *, progress: bool = False) -> dict:
    """Backtest every available policy of ``run_dir`` into ``run_dir/backtest``; returns the manifest.

    A finished backtest with the same config and the same upstream manifests is not redone.
    """
    from tqdm import tqdm

    run_dir = Path(run_dir)
    out = run_dir / OUT_FOLDER
    inputs = input_record(run_dir)
    key = fingerprint(cfg, inputs)
    done = read_manifest(out)
    if done is not None and done.get("fingerprint") == key:
        return done
    say = tqdm.write if progress else (lambda _msg: None)
    ds = load_run_dataset(run_dir, cfg)
    setup = backtest_setup(ds, cfg.sim, cfg.data.split)
    say("tuning the classic policies before the test window")
    classic, classic_info = classic_candidates(ds, cfg)
    points = review_points(setup.params, setup.eval_start, ds.n_days)
    learned = learned_candidates(run_dir, setup, cfg, points, classic_info.pop("incumbent_days"), out, say)
    policies = {name: policy for name in POLICY_INFO
                for policy in [learned.policies.get(name, classic.get(name))] if policy is not None}

    segments = segment_labels(ds, setup.split, cfg.evaluate.segment_window)
    promo = ds.promo[:, setup.scored_days] > 0                                             # (U, D)
    masks = {"all": np.ones_like(promo), "promo": promo, "other": ~promo}
    names, sums, runs = [], [], []
    keep = trajectory_units(setup, segments, cfg.evaluate.trajectory_units)
    for name, policy in tqdm(policies.items(), desc="orpr backtest", unit="policy", disable=not progress):
        run = simulate_policy(setup, name, policy)
        names.append(name)
        sums.append(np.stack([unit_sums(setup, run, masks[m]) for m in DAY_MASKS]))      # (M, U, K)
        runs.append(PolicyRun(name, *(getattr(run, f)[keep] for f in ("demand", "sales", "on_hand",
                                                                     "decision", "ordered"))))
    sums = np.stack(sums)                                                                 # (P, M, U, K)
    weights = bootstrap_weights(ds.n_units, cfg.evaluate.bootstrap_samples, cfg.seed)
    table = group_table(names, sums, groups_of(segments), weights, cfg.evaluate.ci_level, "incumbent")
    summary = summary_frame(table, "incumbent")
    summary = summary.join(versus_reference(names, sums, weights, cfg.evaluate.ci_level, best_classic(summary)),
                           on="policy")
    say("tracing the frontier of the classic policies")
    frontier = frontier_frame(ds, cfg)
    trajectories = trajectory_frame(setup, runs, keep)

    (out / MANIFEST_NAME).unlink(missing_ok=True)  # a rewrite never looks finished half-way
    write_text_atomic(out / "summary.csv", summary.to_csv(index=False))
    write_parquet_atomic(out / "segments.parquet", table)
    write_text_atomic(out / "segments.csv", table.to_csv(index=False))
    write_parquet_atomic(out / "units.parquet", unit_frame(setup, names, sums, segments))
    write_text_atomic(out / "frontier.csv", frontier.to_csv(index=False))
    write_parquet_atomic(out / "trajectories.parquet", trajectories)
    write_manifest(
        out, stage="backtest", config=cfg.model_dump(mode="json"), inputs=inputs,
        outputs=["summary.csv", "segments.parquet", "segments.csv", "units.parquet", "frontier.csv",
                 "trajectories.parquet"],
        figures=headline_figures(summary),
        extra={"fingerprint": key, "policies": {n: {"kind": POLICY_INFO[n][0], "note": learned.notes.get(n, "")}
                                                for n in names},
               "absent": learned.absent,
               "windows": {"simulate": [setup.eval_start, ds.n_days], "score_from": setup.split.test_start,
                           "tune": classic_info["tune_days"], "segments": cfg.evaluate.segment_window},
               "tuning": classic_info["tuning"], "review_points": len(points),
               "bootstrap": {"method": "poisson", "samples": cfg.evaluate.bootstrap_samples,
                             "level": cfg.evaluate.ci_level, "seed": cfg.seed},
               "units": ds.n_units, "trajectory_units": keep.tolist()})
    return read_manifest(out)


def best_classic(summary: pd.DataFrame) -> str | None:
    best = summary.loc[summary["best_classic"], "policy"]
    return best.iloc[0] if len(best) else None


def versus_reference(names: list[str], sums: np.ndarray, weights: np.ndarray, level: float,
                     reference: str | None) -> pd.DataFrame:
    """Per policy (index): ``VERSUS_BEST`` = total cost change vs ``reference`` over all
    units and days, with its paired bootstrap interval (the replicates of every other interval).
    sums: (P, M, U, K). Empty columns without a reference."""
    columns = [VERSUS_BEST, f"{VERSUS_BEST}_lo", f"{VERSUS_BEST}_hi"]
    if reference is None:
        return pd.DataFrame(index=pd.Index(names, name="policy"), columns=columns, dtype=float)
    cost = sums[:, DAY_MASKS.index("all")][..., [SUMS.index("holding_cost"), SUMS.index("penalty_cost")]].sum(axis=-1)
    ref = names.index(reference)                                                           # cost: (P, U)
    point = cost.sum(axis=1) / cost[ref].sum() - 1.0
    boot = weights @ cost.T                                                                # (B, P)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = interval(boot / boot[:, ref:ref + 1] - 1.0, level)
    return pd.DataFrame(np.column_stack([point, lo, hi]), index=pd.Index(names, name="policy"), columns=columns)


def headline_figures(summary: pd.DataFrame) -> dict:
    """Per policy: total cost, in-stock, turnover, the changes vs the incumbent and the total cost
    change vs the best tuned classic policy (for the manifest)."""
    keys = ("total_cost", "in_stock_rate", "turnover_days", "total_cost_change", "total_cost_change_lo",
            "total_cost_change_hi", "in_stock_change", "turnover_days_change", "holding_cost_change",
            VERSUS_BEST, f"{VERSUS_BEST}_lo", f"{VERSUS_BEST}_hi")
    out = {row["policy"]: {k: row[k] for k in keys} for row in summary.to_dict(orient="records")}
    out["best_classic"] = best_classic(summary)
    return out


def format_headline(manifest: dict) -> str:
    """The console table: ORPR, the incumbent and the best tuned classic policy first, then the rest."""
    figures = dict(manifest["figures"])
    best = figures.pop("best_classic", None)
    order = ["orpr", "orpr_promo", "incumbent", best, "network", "ppo", "or_labels"]
    names = [n for n in order if n in figures] + sorted(set(figures) - set(order))
    lines = [f"{'policy':<28}{'total cost':>12}{'vs incumbent [CI]':>30}{'vs best classic [CI]':>30}"
             f"{'in-stock':>10}{'vs inc.':>10}{'turnover d':>12}"]
    for name in names:
        f = figures[name]
        label = name + (" (best classic)" if name == best else "")
        ci = (f"{f['total_cost_change']:+.1%} [{f['total_cost_change_lo']:+.1%}, {f['total_cost_change_hi']:+.1%}]"
              if name != "incumbent" else "-")
        vs_best = (f"{f[VERSUS_BEST]:+.1%} [{f[f'{VERSUS_BEST}_lo']:+.1%}, {f[f'{VERSUS_BEST}_hi']:+.1%}]"
                   if np.isfinite(f.get(VERSUS_BEST, np.nan)) and name != best else "-")
        lines.append(f"{label:<28}{f['total_cost']:>12,.0f}{ci:>30}{vs_best:>30}{f['in_stock_rate']:>10.1%}"
                     f"{f['in_stock_change'] * 100:>+8.1f}pp{f['turnover_days']:>12.1f}")
    lines += [f"{name:<28}absent: {why}" for name, why in manifest.get("absent", {}).items()]
    return "\n".join(lines)
