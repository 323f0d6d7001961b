"""``orpr sweep``: the omega / beta (and friends) sweep of the RLOO learner on Ray Tune.

- the search space is plain YAML (tune_configs/rloo_sweep.yaml), validated by config.SweepSpace and
  translated to Tune domains by ONE function, :func:`param_space`;
- each trial is a Tune *function* trainable (:func:`rloo_trial`) running the same learner loop as
  ``orpr rl`` (learner.run_learner) through a Tune worker context: metrics with ``ray.tune.report``,
  checkpoints through Tune's checkpoint API, resumption from ``ray.tune.get_checkpoint``;
- an ASHA scheduler stops weak trials early on ``rl.sweep.metric`` (validation total cost);
- the experiment is named from the sweep name and a hash of what it computes, so re-running the same
  command after an interruption resumes it with ``Tuner.restore`` (errored trials continue from their
  last checkpoint, the step counter included);
- with ``rl.choose_decision_quantile`` (the default) every trial's last policy is exported
  (``trials/<trial>/policy``) and read by its cheapest decision rule on the validation window's rolling
  simulation, and the best trial is the one of least such cost: the policy is then chosen the way the
  backtest will judge it (the in-training metric, which ASHA stops on, reads every trial at the start
  policy's rule); without it, the best trial is the one of the best last ``rl.sweep.metric``;
- the best trial's policy is exported as a self-describing checkpoint (``best/policy/model.pt``, loaded by
  ``Policy.load`` / ``load_policy``), next to ``trials.csv``, ``omega_beta.png``, ``stages.csv`` and
  ``report.json``, then ``manifest.json``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import yaml
from pydantic import ValidationError

from orpr_ray.config import OrprConfig, apply_overrides, validate_config
from orpr_ray.core.artifacts import (MANIFEST_NAME, atomic_path, read_manifest, write_json_atomic, write_manifest,
                                     write_text_atomic)
from orpr_ray.core.errors import ConfigError
from orpr_ray.model.checkpoint import CHECKPOINT_FILE
from orpr_ray.model.network import OrprNet
from orpr_ray.rl.config import INTEGER_FIELDS, SweepSpace
from orpr_ray.rl.driver import (build_job, choose_stored_rule, done_checks, load_start, rolling_check, stage_figures,
                                stages_table, start_inputs, start_name)
from orpr_ray.rl.learner import RLJob, run_learner
from orpr_ray.train.runner import export_checkpoint, load_inputs, source_record

PLOT_NAME = "omega_beta.png"
TRIALS_FOLDER = "trials"
SWEEP_RUNTIME_ONLY = {"storage_path", "max_concurrent", "cpus_per_trial"}  # not part of the experiment's name


def read_space(path: str | Path) -> SweepSpace:
    """The search space of a YAML file: a mapping ``field: {grid | choice | uniform | loguniform: values}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("search space file not found", file=str(path))
    try:
        tree = yaml.safe_load(path.read_text())
        return SweepSpace.model_validate({"dims": tree if isinstance(tree, dict) else {}})
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=str(path)) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"][1:]) or None
        raise ConfigError(first["msg"], file=str(path), field=field) from exc


def param_space(space: SweepSpace) -> dict:
    """The one translation from the YAML space to Tune's param_space (whole numbers for integer fields)."""
    from ray import tune

    out = {}
    for name, dim in space.dims.items():
        values = [int(v) for v in dim.values] if name in INTEGER_FIELDS else list(dim.values)
        if dim.kind == "grid":
            out[name] = tune.grid_search(values)
        elif dim.kind == "choice":
            out[name] = tune.choice(values)
        elif name in INTEGER_FIELDS:
            out[name] = (tune.randint if dim.kind == "uniform" else tune.lograndint)(values[0], values[1] + 1)
        else:
            out[name] = (tune.uniform if dim.kind == "uniform" else tune.loguniform)(*values)
    return out


def trial_config(config: dict, params: dict) -> OrprConfig:
    """The run's config tree with a trial's values set under ``rl``."""
    tree = json.loads(json.dumps(config))
    return validate_config(apply_overrides(tree, [f"rl.{name}={json.dumps(value)}" for name, value in params.items()]))


class TuneContext:
    """The learner loop's worker context inside a Tune trial (one process, rank 0).

    ``fail_after``: raise after that many reports of a fresh trial (fault injection for the resume test).
    """

    rank = 0
    world_size = 1

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.reports = 0

    def report(self, metrics: dict, checkpoint_dir: str | None) -> None:
        from ray import tune

        if self.fail_after is not None and self.reports >= self.fail_after:
            raise RuntimeError(f"injected interruption after {self.reports} reports")
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None)
        self.reports += 1

    @contextlib.contextmanager
    def resume_dir(self) -> Iterator[str | None]:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as directory:
            self.fail_after = None  # a resumed trial runs to the end
            yield directory

    def wrap(self, model: OrprNet) -> torch.nn.Module:
        return model


def rloo_trial(params: dict, *, job: RLJob, fail_after: int | None = None) -> None:
    """The Tune function trainable: the learner with this trial's rl values, one torch thread."""
    torch.set_num_threads(1)
    cfg = trial_config(job.config, params)
    run_learner(dataclasses.replace(job, config=cfg.model_dump(mode="json")), TuneContext(fail_after))


def experiment_name(cfg: OrprConfig, space: SweepSpace, run_key: str) -> str:
    """Stable for the same sweep (so it resumes), new for another space, config or start policy."""
    blob = json.dumps({"space": space.model_dump(mode="json"), "run": run_key,
                       "sweep": cfg.rl.sweep.model_dump(mode="json", exclude=SWEEP_RUNTIME_ONLY)},
                      sort_keys=True)
    return f"{cfg.rl.sweep.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def make_tuner(job: RLJob, space: SweepSpace, storage: str, name: str, *, fail_after: int | None = None):
    """A Tuner for the sweep, restored from ``storage/name`` when an interrupted one is there."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    cfg = job.cfg
    sweep = cfg.rl.sweep
    trainable = tune.with_resources(tune.with_parameters(rloo_trial, job=job, fail_after=fail_after),
                                    {"cpu": sweep.cpus_per_trial})
    path = f"{storage.rstrip('/')}/{name}"
    if tune.Tuner.can_restore(path):
        print(f"[sweep] resuming the interrupted sweep in {path}", flush=True)
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=cfg.rl.evaluations,
                              grace_period=min(sweep.grace_period, cfg.rl.evaluations),
                              reduction_factor=sweep.reduction_factor)
    return tune.Tuner(
        trainable, param_space=param_space(space),
        tune_config=tune.TuneConfig(metric=sweep.metric, mode=sweep.mode, scheduler=scheduler,
                                    num_samples=sweep.num_samples, max_concurrent_trials=sweep.max_concurrent,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=1,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))


def trials_table(results, space: SweepSpace) -> pd.DataFrame:
    """One row per trial: its swept values, status, evaluations run and last reported metrics."""
    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        row = {name: result.config.get(name) for name in space.dims}
        row.update({"trial": Path(result.path).name, "error": result.error is not None,
                    "evaluations": metrics.get("training_iteration", 0)})
        row.update({k: v for k, v in metrics.items() if k.startswith(("val_", "train_")) or k == "step"})
        rows.append(row)
    return pd.DataFrame(rows)


def plot_grid(table: pd.DataFrame, path: Path, best: dict) -> Path:
    """Heatmaps of the validation cost the best trial was chosen by and of the last KL over the
    (omega, beta) grid (mean over other swept values and repeats); the best trial is marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cost = (("val_rolling_cost", "validation rolling cost at the trial's rule") if "val_rolling_cost" in table
            else ("val_total_cost", "validation total cost"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, (column, title) in zip(axes, (cost, ("val_kl", "KL(pi || pi_ref) on validation"))):
        grid = table.pivot_table(index="beta", columns="omega", values=column, aggfunc="mean").sort_index()
        image = ax.imshow(grid.to_numpy(), origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
        ax.set_xlabel("omega (weight of the rule reward)")
        ax.set_ylabel("beta (KL weight)")
        ax.set_title(title)
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            bright = image.norm(value) > 0.6  # dark text on the bright end of the colour map
            ax.text(j, i, f"{value:.4g}", ha="center", va="center", color="black" if bright else "white", fontsize=8)
        if best.get("omega") in list(grid.columns) and best.get("beta") in list(grid.index):
            ax.scatter([list(grid.columns).index(best["omega"])], [list(grid.index).index(best["beta"])],
                       s=900, facecolors="none", edgecolors="red", linewidths=2)
        fig.colorbar(image, ax=ax)
    fig.suptitle("omega / beta sweep: last evaluation of each trial (red circle: best trial)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def trial_name(result) -> str:
    return Path(result.path).name


def score_trials(results: list, job: RLJob, inputs, folder: Path) -> dict[str, dict]:
    """Each trial's last policy exported to ``folder/<trial>/policy`` and stored with its cheapest
    decision rule; per trial, that rule and its rolling validation cost."""
    out = {}
    for result in results:
        dest = folder / trial_name(result) / "policy"
        with result.checkpoint.as_directory() as directory:
            export_checkpoint(directory, dest)
        rule = choose_stored_rule(job, inputs, dest)
        print(f"[sweep] {trial_name(result)}: decision rule {rule['chosen']}, rolling validation cost "
              f"{rule['chosen_cost']:.0f}", flush=True)
        out[trial_name(result)] = {"trial": trial_name(result), "rolling_rule": rule["chosen"],
                                   "val_rolling_cost": rule["chosen_cost"]}
    return out


def best_rolling_cost(table: pd.DataFrame, trial: str) -> float | None:
    """The best trial's rolling validation cost (None when trials were not scored that way)."""
    if "val_rolling_cost" not in table:
        return None
    return float(table.loc[table["trial"] == trial, "val_rolling_cost"].iloc[0])


def export_best(results, table: pd.DataFrame, job: RLJob, inputs, out_dir: Path) -> tuple:
    """The best trial, its policy exported to ``best/policy``; the trials table (with each trial's
    rolling rule and cost when trials are scored so) and the extra files written."""
    finished = [result for result in results if result.checkpoint is not None]
    if not finished:
        raise RuntimeError(f"no trial of the sweep reported a checkpoint (errors: {results.errors})")
    if not job.cfg.rl.choose_decision_quantile:
        sweep = job.cfg.rl.sweep
        best = results.get_best_result(metric=sweep.metric, mode=sweep.mode, scope="last")
        with best.checkpoint.as_directory() as directory:
            export_checkpoint(directory, out_dir / "best" / "policy")
        return best, table, []
    rolling = score_trials(finished, job, inputs, out_dir / TRIALS_FOLDER)
    best = min(finished, key=lambda result: rolling[trial_name(result)]["val_rolling_cost"])
    export_checkpoint(out_dir / TRIALS_FOLDER / trial_name(best) / "policy", out_dir / "best" / "policy")
    return (best, table.merge(pd.DataFrame(rolling.values()), on="trial", how="left"),
            [f"{TRIALS_FOLDER}/{trial}/policy/{CHECKPOINT_FILE}" for trial in rolling])


def run_sweep(cfg: OrprConfig, space: SweepSpace, checkpoint_dir: str | Path, out_dir: str | Path, *,
              data_dir: str | Path | None = None, labels_dir: str | Path | None = None,
              fail_after: int | None = None) -> dict:
    """Run (or resume) the sweep from the policy in ``checkpoint_dir``; returns the manifest.

    ``fail_after``: fault injection for tests (every fresh trial raises after that many reports).
    """
    from orpr_ray.core.ray_env import ensure_ray

    out_dir = Path(out_dir)
    data_dir, labels_dir = start_inputs(checkpoint_dir, data_dir, labels_dir)
    state_dict, meta = load_start(cfg, checkpoint_dir)
    inputs = load_inputs(cfg, data_dir, labels_dir)
    inputs.sources["start"] = source_record(checkpoint_dir, "policy")
    job = build_job(cfg, inputs, state_dict, meta)
    storage = cfg.rl.sweep.storage_path or str((out_dir / "tune").resolve())
    name = experiment_name(cfg, space, job.run_key)
    ensure_ray()
    results = make_tuner(job, space, storage, name, fail_after=fail_after).fit()
    if results.errors:
        raise RuntimeError(f"{len(results.errors)} trial(s) of {storage}/{name} failed (first: {results.errors[0]}); "
                           f"re-run the same command to resume them from their last checkpoints")
    table = trials_table(results, space)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    best, table, trial_outputs = export_best(results, table, job, inputs, out_dir)
    write_text_atomic(out_dir / "trials.csv", table.to_csv(index=False))
    best_values = {name: best.config.get(name) for name in space.dims}
    outputs = ["trials.csv", f"best/policy/{CHECKPOINT_FILE}", "stages.csv", *trial_outputs]
    if {"omega", "beta"} <= set(space.dims):
        plot_grid(table, out_dir / PLOT_NAME, best_values)
        outputs.append(PLOT_NAME)
    best_job = dataclasses.replace(job, config=trial_config(job.config, best_values).model_dump(mode="json"))
    rolling_cost = best_rolling_cost(table, trial_name(best))
    figures = stage_figures(best_job, inputs, inputs.labels, out_dir / "best" / "policy")
    write_text_atomic(out_dir / "stages.csv", stages_table(figures).to_csv(index=False))
    report = {"experiment": f"{storage}/{name}", "best": {"config": best_values, "trial": trial_name(best),
                                                          "metrics": {k: v for k, v in best.metrics.items()
                                                                      if k.startswith("val_")}},
              "stages": figures, "done_when": {**done_checks(figures, start_name(best_job), best_job.stage),
                                               **({} if rolling_cost is None else
                                                  rolling_check(best_job, inputs, rolling_cost))},
              "trials": table.to_dict(orient="records"), "space": space.model_dump(mode="json")["dims"]}
    write_json_atomic(out_dir / "report.json", report)
    write_manifest(out_dir, stage="sweep", config=cfg.model_dump(mode="json"),
                   inputs={"data": data_dir, "labels": labels_dir, "start": str(Path(checkpoint_dir).resolve())},
                   outputs=[*outputs, "report.json"],
                   figures={"best": best_values, "best_val_total_cost": best.metrics.get("val_total_cost"),
                            "best_val_rolling_cost": rolling_cost,
                            "trials": len(table), "errored_trials": int(table["error"].sum())},
                   extra={"experiment": f"{storage}/{name}"})
    return read_manifest(out_dir)
