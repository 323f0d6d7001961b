"""The omega/beta sweep on Ray Tune (tiny sizes): 4 trials, resumed after an interruption, best policy
exported; the sweep space file; `orpr rl` in this process and data-parallel on Ray Train."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from rl_helpers import make_world, materialise, tiny_config

from orpr_ray.cli import main
from orpr_ray.core.artifacts import read_manifest
from orpr_ray.core.errors import ConfigError
from orpr_ray.model.policy import Policy
from orpr_ray.rl.config import SweepSpace
from orpr_ray.rl.driver import run_rl
from orpr_ray.rl.tune import PLOT_NAME, param_space, read_space, run_sweep
from orpr_ray.train.rules import rule_name

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_space_is_valid_and_translates_to_a_grid():
    space = read_space(ROOT / "tune_configs" / "rloo_sweep.yaml")
    assert {"omega", "beta"} <= set(space.dims)
    params = param_space(space)
    assert params["omega"] == {"grid_search": space.dims["omega"].grid}


def test_bad_spaces_name_the_file_and_field(tmp_path):
    cases = {"omega: {grid: []}\n": "omega", "omega: {grid: [1.5]}\n": None, "k: {choice: [1, 4]}\n": None,
             "gamma: {grid: [0.9]}\n": None, "omega: {grid: [0.5], uniform: [0, 1]}\n": "omega",
             "beta: {loguniform: [0, 1]}\n": "beta"}
    for text, field in cases.items():
        path = tmp_path / "space.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            read_space(path)
        assert str(path) in str(err.value)
        if field:
            assert err.value.field.startswith(field)
    with pytest.raises(ConfigError, match="not found"):
        read_space(tmp_path / "missing.yaml")


def test_bad_commands_fail_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["rl", "--checkpoint", str(tmp_path), "--out", str(out), "--set", "rl.k=1"]) == 2
    assert "rl.k" in capsys.readouterr().err
    assert main(["rl", "--checkpoint", str(tmp_path), "--out", str(out), "--set", "rl.omega=1.5"]) == 2
    assert "rl.omega" in capsys.readouterr().err
    assert main(["rl", "--checkpoint", str(tmp_path), "--out", str(out)]) == 2  # no manifest naming the data
    assert "--data" in capsys.readouterr().err
    missing = str(tmp_path / "none.yaml")
    assert main(["sweep", "--space", missing, "--checkpoint", str(tmp_path), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture(scope="module")
def disk(ray_session, tmp_path_factory):
    world = make_world()
    return world, materialise(world, tmp_path_factory.mktemp("rl_disk"))


@pytest.mark.ray
@pytest.mark.slow
def test_four_point_sweep_resumes_after_interruption_and_exports_the_best(disk, tmp_path):
    world, paths = disk
    cfg = tiny_config(steps=4, eval_every=2).model_copy(deep=True)
    cfg.rl.sweep.grace_period = 2  # no early stop at these sizes: every trial must reach step 4
    space = SweepSpace.model_validate({"dims": {"omega": {"grid": [0.25, 0.75]}, "beta": {"grid": [0.0, 0.1]}}})
    out = tmp_path / "sweep"
    with pytest.raises(RuntimeError, match="re-run the same command"):
        run_sweep(cfg, space, paths["start"], out, fail_after=1)  # every trial dies after its first report
    assert read_manifest(out) is None
    manifest = run_sweep(cfg, space, paths["start"], out)  # Tuner.restore: trials continue from step 2
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 4 and not trials["error"].any()
    assert sorted(zip(trials["omega"], trials["beta"])) == [(0.25, 0.0), (0.25, 0.1), (0.75, 0.0), (0.75, 0.1)]
    assert (trials["step"] == 4).all() and (trials["evaluations"] == 2).all()
    experiment = Path(manifest["experiment"])
    for progress in experiment.glob("*/progress.csv"):
        rows = pd.read_csv(progress)
        assert rows["step"].tolist()[-1] == 4 and 2 in rows["step"].tolist()  # resumed, not restarted
    best = manifest["figures"]["best"]
    # The best trial is the one of least rolling validation cost, each read by its own cheapest rule.
    report = json.loads((out / "report.json").read_text())
    chosen = trials.set_index("trial").loc[report["best"]["trial"]]
    assert chosen["val_rolling_cost"] == trials["val_rolling_cost"].min()
    assert (chosen["omega"], chosen["beta"]) == (best["omega"], best["beta"])
    assert manifest["figures"]["best_val_rolling_cost"] == pytest.approx(trials["val_rolling_cost"].min())
    assert report["done_when"]["rolling_cost_after"] == pytest.approx(trials["val_rolling_cost"].min())
    policy = Policy.load(out / "best")
    assert policy.meta.stage == "rl" and list(policy.grid) == world.cfg.label.grid
    assert rule_name(policy.meta.decision_quantile) == chosen["rolling_rule"]
    for trial, rule in zip(trials["trial"], trials["rolling_rule"]):
        assert rule_name(Policy.load(out / "trials" / trial).meta.decision_quantile) == rule
    assert (out / PLOT_NAME).stat().st_size > 10_000
    assert report["best"]["config"] == best and set(report["stages"]) == {"finetune", "rl"}


@pytest.mark.ray
@pytest.mark.slow
def test_orpr_rl_command_writes_policy_and_per_stage_report(disk, tmp_path):
    _, paths = disk
    out = tmp_path / "rl"
    assert main(["rl", "--checkpoint", str(paths["start"]), "--out", str(out), "--set", "rl.omega=0.25",
                 "--set", "rl.beta=0.1"]) == 0
    manifest = read_manifest(out)
    assert manifest["stage"] == "rl" and manifest["config"]["rl"]["omega"] == 0.25
    stages = pd.read_csv(out / "stages.csv")
    assert set(zip(stages["stage"], stages["window"])) == {(s, w) for s in ("finetune", "rl") for w in ("val", "test")}
    assert (stages.loc[stages["stage"] == "finetune", "kl"] == 0).all()
    history = pd.read_csv(out / "history.csv")
    assert history["step"].tolist() == [0, 2, 4]
    assert Policy.load(out).meta.stage == "rl"
    report = json.loads((out / "report.json").read_text())
    assert {"cost_improved", "in_stock_kept", "kl"} <= set(report["done_when"])
    costs = report["decision_rule"]["validation_cost"]  # the stored rule is the cheapest of the rolling simulation
    assert rule_name(Policy.load(out).meta.decision_quantile) == report["decision_rule"]["chosen"] == min(
        costs, key=costs.get)
    done = report["done_when"]  # and the start is judged by the same rolling simulation, at its own rule
    assert done["rolling_cost_after"] == costs[report["decision_rule"]["chosen"]]
    assert done["rolling_cost_improved"] is (done["rolling_cost_after"] < done["rolling_cost_before"])
    # Re-running the finished command does not train again.
    assert main(["rl", "--checkpoint", str(paths["start"]), "--out", str(out), "--set", "rl.omega=0.25",
                 "--set", "rl.beta=0.1"]) == 0
    assert read_manifest(out)["created"] == manifest["created"]


@pytest.mark.ray
@pytest.mark.slow
def test_data_parallel_run_on_ray_train(disk, tmp_path):
    world, paths = disk
    cfg = tiny_config(steps=2, eval_every=1, num_workers=2)
    manifest = run_rl(cfg, paths["start"], tmp_path / "rl2")
    history = pd.read_csv(tmp_path / "rl2" / "history.csv")
    assert history["step"].tolist() == [0, 1, 2]
    assert manifest["figures"]["rl.val.kl"] > 0  # the policy moved away from its start
