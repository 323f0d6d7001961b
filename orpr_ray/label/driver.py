"""Label a whole catalogue: plain shard labelling, and the Ray driver that runs shards in parallel.

Sharding (docs/LABELS.md): decision points are sorted by group key (group_by columns, then date)
and whole groups are packed into shards of about ``shard_size`` units' worth of labels
(``shard_size x number of decision dates`` rows). A shard therefore evaluates its candidates and
solves its groups with nothing from any other shard, so shards run in any order, on any worker,
any number of times, with the same result.

Output folder:
    labels/shard-NNNNN.parquet   label rows of shard N (written last of the shard's files)
    shards/groups-NNNNN.parquet  group rows of shard N
    shards/stats-NNNNN.json      timings and counts of shard N
    groups.parquet, calibration.csv, plan.json, manifest.json (last)
A shard is finished when its three files exist (each written atomically); a re-run skips it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orpr_ray.core.artifacts import (MANIFEST_NAME, read_manifest, sha256_file, write_json_atomic, write_manifest,
                                     write_parquet_atomic, write_text_atomic)
from orpr_ray.core.errors import ConfigError, InputError
from orpr_ray.data.dataset import Dataset
from orpr_ray.label.calibrate import calibration_table, group_target, solve_group
from orpr_ray.label.candidates import (allowed_candidates, cover_limits, decision_points, evaluate_decisions,
                                       label_horizon, trailing_mean_demand)
from orpr_ray.label.config import LabelConfig
from orpr_ray.sim.config import SimConfig
from orpr_ray.sim.engine import inventory_days_to_levels

FAULT_ENV = "ORPR_FAULT_KILL_SHARD"  # "3" or "1,4": those shards' workers die on their first attempt
PLAN_NAME = "plan.json"
# Settings that change how fast labels come, never what they are: a re-run may change them and resume.
RUNTIME_ONLY = ("max_in_flight", "max_retries")


@dataclass(frozen=True)
class ShardResult:
    labels: pd.DataFrame
    groups: pd.DataFrame
    stats: dict


def check_group_columns(ds: Dataset, label: LabelConfig) -> None:
    missing = [c for c in label.group_by if c not in ds.units.columns]
    if missing:
        raise ConfigError(f"unit attribute column(s) {missing} not in the dataset (it has "
                          f"{list(ds.units.columns)})", field="label.group_by")


def group_codes(ds: Dataset, unit: np.ndarray, day: np.ndarray, label: LabelConfig) -> np.ndarray:
    """(N,) int64 group number of each point, increasing in key order (group_by values, then day).

    Keys are numbered per unit (U rows) and combined with the day's rank, never per point (N rows).
    """
    key = np.zeros(ds.n_units, dtype=np.int64)
    if label.group_by:
        key = ds.units.groupby(label.group_by, sort=True, dropna=False).ngroup().to_numpy(np.int64)
    if not label.group_by_date:
        return key[unit]
    days, rank = np.unique(day, return_inverse=True)
    return key[unit] * len(days) + rank


def group_names(ds: Dataset, unit: np.ndarray, day: np.ndarray, label: LabelConfig) -> np.ndarray:
    """(N,) readable group key of each point, e.g. ``grocery|DC1|2024-02-26``."""
    parts = [ds.units[col].astype(str).to_numpy()[unit] for col in label.group_by]
    if label.group_by_date:
        parts.append(np.datetime_as_string(ds.dates[day], unit="D"))
    if not parts:
        return np.full(len(unit), "all", dtype=object)
    names = parts[0].astype(object)
    for part in parts[1:]:
        names = names + "|" + part.astype(object)
    return names


def plan_shards(ds: Dataset, label: LabelConfig, sim: SimConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(unit, day) arrays of every shard; whole groups, in group-key order."""
    unit, day = decision_points(ds, label, sim)
    if not len(unit):
        return []
    code = group_codes(ds, unit, day, label)
    order = np.lexsort((day, unit, code))
    unit, day, code = unit[order], day[order], code[order]
    starts = np.flatnonzero(np.r_[True, np.diff(code) != 0])  # first row of each group
    target_rows = label.shard_size * len(np.unique(day))
    shard_of_group = np.unique(starts // target_rows, return_inverse=True)[1]
    bounds = np.r_[starts[np.r_[True, np.diff(shard_of_group) != 0]], len(unit)]
    return [(unit[a:b], day[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def label_shard(ds: Dataset, unit: np.ndarray, day: np.ndarray, *, label: LabelConfig,
                sim: SimConfig) -> ShardResult:
    """Evaluate every candidate of the points (N,) and solve their groups (plain library code).

    Candidates are simulated group by group: a group's (n, C) metrics stay small enough for the
    cache, and nothing of the size of the shard times the grid is ever held.
    """
    t0 = time.perf_counter()
    grid = np.asarray(label.grid)
    d_hat = trailing_mean_demand(ds, unit, day, sim.demand_window_days)
    allowed = allowed_candidates(*cover_limits(ds, label), unit, grid)
    horizon = label_horizon(ds, label)
    attribute = ds.units["target_turnover_days"].to_numpy(np.float64)[unit]
    historical = (ds.units[label.historical_turnover_column].to_numpy(np.float64)[unit]
                  if label.historical_turnover_column in ds.units.columns else np.full(len(unit), np.nan))
    names = group_names(ds, unit, day, label)
    code = group_codes(ds, unit, day, label)
    order = np.argsort(code, kind="stable")
    choice = np.zeros(len(unit), dtype=np.int64)
    alpha = np.zeros(len(unit))
    fallback = np.zeros(len(unit), dtype=bool)
    chosen = np.zeros((len(unit), len(CHOSEN_FIELDS)))  # (N, F) metrics of the label
    records, sim_s = [], 0.0
    for g, rows in enumerate(np.split(order, np.flatnonzero(np.diff(code[order])) + 1) if len(unit) else []):
        t1 = time.perf_counter()
        m = evaluate_decisions(ds, unit[rows], day[rows], grid, sim=sim, label=label, d_hat=d_hat[rows])  # (n, C)
        sim_s += time.perf_counter() - t1
        demand = m.demand_value[:, 0]
        target = group_target(attribute[rows], historical[rows], demand, label)
        out = solve_group(m.stock_value, m.lost_value, demand, target, label, allowed=allowed[rows],
                          cap_coef=m.stock_value / horizon,  # mean on-hand value over the horizon
                          cost=m.holding_cost + m.penalty_cost,
                          crosscheck=label.crosscheck_every > 0 and g % label.crosscheck_every == 0)
        picked = m.select(out.choice)  # (n, 1)
        choice[rows], alpha[rows], fallback[rows] = out.choice, out.alpha, out.fallback
        chosen[rows] = np.column_stack([getattr(picked, f)[:, 0] for f in CHOSEN_FIELDS])
        records.append(_group_record(names[rows[0]], ds, day[rows[0]], demand, picked, out, label))
    v_label = grid[choice]
    labels = pd.DataFrame({
        "unit": unit, "sku": ds.units["sku"].to_numpy()[unit], "dc": ds.units["dc"].to_numpy()[unit],
        "category": ds.units["category"].to_numpy()[unit], "day": day,
        "date": ds.dates[day].astype("datetime64[ns]"),  # the unit Parquet round-trips
        "v_label": v_label.astype(np.int64), "d_hat": d_hat, "group": names, "alpha": alpha,
        "fallback": fallback, **{f: chosen[:, k] for k, f in enumerate(CHOSEN_FIELDS)},
        "order_up_to": inventory_days_to_levels(v_label, d_hat),
    }).sort_values(["unit", "day"], kind="stable").reset_index(drop=True)
    groups = pd.DataFrame(records, columns=GROUP_COLUMNS)
    stats = {"rows": len(labels), "groups": len(groups), "sim_s": sim_s,
             "build_s": float(groups["build_s"].sum()), "solve_s": float(groups["solve_s"].sum()),
             "total_s": time.perf_counter() - t0}
    return ShardResult(labels, groups, stats)


# Metrics of the chosen candidate kept with each label (GridMetrics fields and properties).
CHOSEN_FIELDS = ("stock_value", "lost_value", "demand_value", "turnover_days", "sales_value", "in_stock_rate")


GROUP_COLUMNS = ["group", "day", "date", "n_units", "status", "solver", "objective", "bound", "mip_gap",
                 "build_s", "solve_s", "alpha", "target_turnover", "target_source", "achieved_turnover",
                 "fallback", "note", "demand_value", "stock_value", "lost_value", "crosscheck_objective",
                 "crosscheck_status", "crosscheck_diff"]


def _group_record(name, ds, day, demand, picked, out, label) -> dict:
    return {
        "group": name, "day": int(day) if label.group_by_date else -1,
        "date": ds.dates[day] if label.group_by_date else np.datetime64("NaT", "D"), "n_units": len(demand),
        "status": out.status, "solver": out.solver, "objective": out.objective, "bound": out.bound,
        "mip_gap": out.mip_gap, "build_s": out.build_s, "solve_s": out.solve_s, "alpha": out.alpha,
        "target_turnover": out.target_turnover, "target_source": out.target_source,
        "achieved_turnover": out.achieved_turnover, "fallback": out.fallback, "note": out.note,
        "demand_value": float(demand.sum()), "stock_value": float(picked.stock_value.sum()),
        "lost_value": float(picked.lost_value.sum()), "crosscheck_objective": out.crosscheck_objective,
        "crosscheck_status": out.crosscheck_status, "crosscheck_diff": out.crosscheck_diff,
    }


# ----------------------------------------------------------------------------------------- Ray driver


def _shard_files(i: int) -> tuple[str, str, str]:
    return f"shards/stats-{i:05d}.json", f"shards/groups-{i:05d}.parquet", f"labels/shard-{i:05d}.parquet"


def _shard_done(out: Path, i: int) -> bool:
    return all((out / name).is_file() for name in _shard_files(i))


def _write_shard(out: Path, i: int, result: ShardResult) -> None:
    stats_name, groups_name, labels_name = _shard_files(i)
    write_json_atomic(out / stats_name, result.stats)
    write_parquet_atomic(out / groups_name, result.groups.assign(shard=i))
    write_parquet_atomic(out / labels_name, result.labels)  # last: its presence marks the shard finished


def fingerprint(ds: Dataset, label: LabelConfig, sim: SimConfig) -> str:
    """Hash of everything the labels depend on: the data and the label + sim config."""
    h = hashlib.blake2b(digest_size=16)
    for array in (ds.sales, ds.observed, ds.dates.astype(np.int64)):
        h.update(np.ascontiguousarray(array).data)
    h.update(pd.util.hash_pandas_object(ds.units, index=False).to_numpy().data)
    settings = {"label": label.model_dump(mode="json", exclude=set(RUNTIME_ONLY)),
                "sim": sim.model_dump(mode="json")}
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def _claim(out: Path, fp: str, n_shards: int) -> None:
    """Refuse to mix shards of another run (other data or config) into this folder."""
    plan_path = out / PLAN_NAME
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        if plan.get("fingerprint") != fp:
            raise InputError("holds labels of another dataset or label/sim config; use an empty --out folder "
                             "(or delete this one)", file=str(plan_path), field="fingerprint")
        return
    write_json_atomic(plan_path, {"fingerprint": fp, "shards": n_shards})


def _drop_changed_outputs(out: Path) -> None:
    """A finished run whose manifest no longer verifies: delete each output whose checksum changed, so
    its shard is recomputed rather than read back as finished (a shard counts as done by its files)."""
    stale = read_manifest(out, verify=False)
    for name, digest in (stale or {}).get("outputs", {}).items():
        path = out / name
        if path.is_file() and sha256_file(path) != digest:
            path.unlink()


def _fault_markers(out: Path) -> dict[int, str]:
    """Fault injection for tests: shard -> marker file; the worker dies while the marker is absent."""
    raw = os.environ.get(FAULT_ENV, "").strip()
    if not raw:
        return {}
    return {int(s): str(out / f".fault-shard-{int(s):05d}") for s in raw.split(",") if s.strip()}


def _label_task(ds: Dataset, unit: np.ndarray, day: np.ndarray, settings: dict, kill_marker: str | None):
    """The Ray task: one shard. ``kill_marker``: die on the first attempt (fault injection)."""
    if kill_marker and not os.path.exists(kill_marker):
        Path(kill_marker).touch()
        os._exit(1)
    return label_shard(ds, unit, day, label=LabelConfig.model_validate(settings["label"]),
                       sim=SimConfig.model_validate(settings["sim"]))


def run_labels(ds: Dataset, out_dir: str | Path, *, label: LabelConfig, sim: SimConfig,
               config: dict | None = None, source: str | None = None, progress: bool = False,
               num_cpus: int | None = None) -> dict:
    """Label ``ds`` into ``out_dir`` on Ray; resumes a partial run, returns at once from a finished one.

    Ray is joined or started (``num_cpus`` for a local one) only when a shard is left to compute.
    ``config``: the whole run config, recorded in the manifest. Returns the manifest. Bad input
    (group columns, cover limits, no decision point) fails before anything is written.
    """
    from tqdm import tqdm

    from orpr_ray.core.ray_env import ensure_ray

    out = Path(out_dir)
    check_group_columns(ds, label)
    cover_limits(ds, label)
    fp = fingerprint(ds, label, sim)
    done = read_manifest(out)
    if done is not None and done.get("fingerprint") == fp:
        return done
    plan = plan_shards(ds, label, sim)
    if not plan:
        raise InputError(f"no unit has a decision point: one needs {sim.demand_window_days} days of history "
                         f"(sim.demand_window_days) plus a {label_horizon(ds, label)}-day horizon, and the "
                         f"dataset has {ds.n_days} days", field="label.horizon_days")
    _claim(out, fp, len(plan))
    _drop_changed_outputs(out)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # a stale manifest must never describe a half-redone run
    todo = [i for i in range(len(plan)) if not _shard_done(out, i)]
    computed: set[int] = set()
    killed: list[int] = []  # shards whose worker the fault hook killed (then retried by Ray)
    t0 = time.perf_counter()
    total = sum(len(unit) for unit, _ in plan)
    bar = tqdm(total=total, initial=total - sum(len(plan[i][0]) for i in todo), unit="label", desc="orpr label",
               disable=not progress)
    if todo:
        ray = ensure_ray(num_cpus=num_cpus)
        task = ray.remote(_label_task).options(num_cpus=1, max_retries=label.max_retries)
        ds_ref = ray.put(ds)  # once: every task reads the same read-only arrays
        settings = {"label": label.model_dump(mode="json"), "sim": sim.model_dump(mode="json")}
        markers = _fault_markers(out)
        queue, pending = iter(todo), {}
        try:
            while True:
                while len(pending) < label.max_in_flight and (i := next(queue, None)) is not None:
                    unit, day = plan[i]
                    pending[task.remote(ds_ref, unit, day, settings, markers.get(i))] = i
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(ready[0])
                _write_shard(out, i, ray.get(ready[0]))
                computed.add(i)
                bar.update(len(plan[i][0]))
        finally:
            for ref in pending:
                ray.cancel(ref)
            for i, marker in sorted(markers.items()):
                if Path(marker).exists():
                    killed.append(i)
                    Path(marker).unlink()
    bar.close()
    record = config or {"label": label.model_dump(mode="json"), "sim": sim.model_dump(mode="json")}
    return _finish(out, ds, label, record, plan, fp, computed, killed, time.perf_counter() - t0, source)


def _finish(out: Path, ds: Dataset, label: LabelConfig, config: dict, plan, fp: str, computed: set[int],
            killed: list[int], wall_s: float, source: str | None) -> dict:
    """Combine the shards' group tables, write the calibration table, then the manifest."""
    n = len(plan)
    stats = [json.loads((out / _shard_files(i)[0]).read_text()) for i in range(n)]
    groups = pd.concat([pd.read_parquet(out / _shard_files(i)[1]) for i in range(n)], ignore_index=True)
    label_cols = ["group", "category", "fallback", "demand_value", "lost_value", "stock_value"]
    labels = pd.concat([pd.read_parquet(out / _shard_files(i)[2], columns=label_cols) for i in range(n)],
                       ignore_index=True)
    write_parquet_atomic(out / "groups.parquet", groups)
    calibration = calibration_table(labels, groups)
    write_text_atomic(out / "calibration.csv", calibration.to_csv(index=False))
    shard_rows = [{"shard": i, "status": "computed" if i in computed else "resumed", **stats[i]}
                  for i in range(n)]
    counts = {"labels": int(sum(s["rows"] for s in stats)), "groups": len(groups), "shards": n,
              "computed_shards": len(computed), "resumed_shards": n - len(computed),
              "fallback_labels": int(labels["fallback"].sum())}
    solver = _solver_summary(groups)
    timings = {"wall_s": wall_s, **{k: float(sum(s[k] for s in stats)) for k in ("sim_s", "build_s", "solve_s",
                                                                               "total_s")}}
    outputs = [name for i in range(n) for name in _shard_files(i)] + ["groups.parquet", "calibration.csv"]
    write_manifest(out, stage="label", config=config,
                   inputs={"data": source, "n_units": ds.n_units, "n_days": ds.n_days},
                   outputs=outputs, figures={"labels_per_s": counts["labels"] / wall_s if wall_s > 0 else None},
                   extra={"fingerprint": fp, "horizon_days": label_horizon(ds, label), "grid": label.grid,
                          "shards": shard_rows, "counts": counts, "solver": solver, "timings": timings,
                          "fault_injected_shards": killed})
    return read_manifest(out, verify=False)


def _solver_summary(groups: pd.DataFrame) -> dict:
    """Counts by status and solver path, worst and mean gaps, cross-check differences."""
    checked = groups["crosscheck_diff"].dropna()
    return {
        "status": groups["status"].value_counts().to_dict(),
        "solver": groups["solver"].value_counts().to_dict(),
        "target_source": groups["target_source"].value_counts().to_dict(),
        "max_mip_gap": float(groups["mip_gap"].max()),
        "mean_mip_gap": float(groups["mip_gap"].mean()),
        "crosschecked_groups": int(len(checked)),
        "max_crosscheck_diff": float(checked.abs().max()) if len(checked) else None,
        "build_s": float(groups["build_s"].sum()), "solve_s": float(groups["solve_s"].sum()),
    }
