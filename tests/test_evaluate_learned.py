"""The learned and hindsight policies in the backtest, the PPO baseline's environment tables, and the
report of a run with every stage (real labels on Ray, real but untrained network checkpoints)."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from evaluate_support import tiny_config, write_data, write_labels, write_network
from matplotlib.figure import Figure

from orpr_ray.core.artifacts import read_manifest, write_json_atomic
from orpr_ray.data.io import load_dataset
from orpr_ray.evaluate.backtest import backtest_setup, run_backtest
from orpr_ray.evaluate.policies import network_targets
from orpr_ray.sim.scheduled import review_points
from orpr_ray.evaluate.ppo import TabulatedCostEnv, Tables, build_tables, observations
from orpr_ray.evaluate.report import write_report
from orpr_ray.label.candidates import label_horizon
from orpr_ray.label.io import load_labels
from orpr_ray.model.features import LABEL_OBJECTIVES, OBJECTIVES, LabelHistory
from orpr_ray.model.checkpoint import build_from_checkpoint, read_checkpoint
from orpr_ray.model.policy import Policy
from orpr_ray.train.report import stage_report
from orpr_ray.train.runner import load_inputs
from orpr_ray.train.stages import Points

pytestmark = pytest.mark.ray
CFG = tiny_config()


@pytest.fixture(scope="module")
def run_dir(ray_session, tmp_path_factory):
    run = write_data(CFG, tmp_path_factory.mktemp("evaluate_learned"))
    write_labels(CFG, run)
    write_decision_report(write_network(CFG, run, "pretrain", "pretrain", seed=1))
    write_network(CFG, run, "rl", "rl", seed=2)
    sweep = run / "sweep"
    sweep.mkdir()
    fig = Figure(figsize=(3, 2))
    fig.subplots().plot([0, 1], [1, 0])
    fig.savefig(sweep / "omega_beta.png")
    pd.DataFrame({"omega": [0.0, 1.0], "beta": [0.1, 0.1], "val_total_cost": [3.0, 2.0]}).to_csv(
        sweep / "trials.csv", index=False)
    return run


def write_decision_report(stage_dir):
    """The pretrain stage's own report of its (untrained) decision head, as ``orpr pretrain`` writes it."""
    run = stage_dir.parent
    inputs = load_inputs(CFG, run / "data", run / "labels")
    state, meta = read_checkpoint(stage_dir / "policy")
    report = stage_report(build_from_checkpoint(state, meta), meta, inputs.ds, inputs.labels, inputs.history,
                          inputs.split, CFG, decisions=True)
    write_json_atomic(stage_dir / "report.json", {"decision": report})


@pytest.fixture(scope="module")
def manifest(run_dir):
    return run_backtest(run_dir, CFG)


def test_every_available_policy_is_backtested_and_the_oracle_is_marked(run_dir, manifest):
    summary = pd.read_csv(run_dir / "backtest" / "summary.csv").set_index("policy")
    assert {"or_labels", "network", "orpr", "incumbent"} <= set(summary.index)
    assert summary.loc["or_labels", "kind"] == "oracle" and "hindsight" in summary.loc["or_labels", "description"]
    assert summary.loc["orpr", "kind"] == "learned"
    assert manifest["policies"]["network"]["note"] == "checkpoint of pretrain/"
    assert manifest["policies"]["orpr"]["note"] == "checkpoint of rl/"
    assert set(manifest["absent"]) == {"orpr_promo", "ppo"}
    # Two different networks decide differently, so their runs differ.
    assert summary.loc["network", "total_cost"] != summary.loc["orpr", "total_cost"]


def test_network_targets_are_the_policys_own_decisions_with_what_past_labels_tell(run_dir):
    ds = load_dataset(run_dir / "data")
    setup = backtest_setup(ds, CFG.sim, CFG.data.split)
    points = review_points(setup.params, setup.eval_start, ds.n_days)
    labels = load_labels(run_dir / "labels")
    known = LabelHistory(labels, label_horizon(ds, CFG.label)).lookup(points.unit, points.day)
    v = network_targets(run_dir / "rl", ds, points, known, batch_size=len(points) // 3 + 1)  # 3 batches: order holds
    policy = Policy.load(run_dir / "rl")
    rows = np.arange(0, len(points), max(1, len(points) // 25))
    direct = policy.decide(policy.features_from_panel(policy.panel(ds), points.unit[rows], points.day[rows],
                                                      known[rows])).v
    assert v[rows].tolist() == direct.tolist()
    assert set(np.unique(v)) <= set(CFG.label.grid)


def test_ppo_tables_are_the_environments_own_observations_and_costs(run_dir):
    from orpr_ray.rl.env import ReplenishmentEnv, make_env

    env = make_env({"checkpoint": str(run_dir / "pretrain"), "window": "train"})
    tables = build_tables(env, max_states=40, seed=0, batch_size=16, chunk_cells=100)
    assert tables.obs.shape == (40, env.observation_space.shape[0]) and tables.cost.shape == (40, len(env.grid))
    # The source env with the label-derived objectives masked, as the tables are built.
    rows = np.sort(np.random.default_rng(0).choice(len(env.states), size=40, replace=False))
    states = env.states.take(rows)
    states.points = Points(states.unit, states.day, states.label)  # known objectives masked, like the tables
    plain = ReplenishmentEnv(env.ds, states, env.meta, env.cfg)
    rng = np.random.default_rng(1)
    for row in rng.choice(40, size=6, replace=False):
        plain.row, plain.steps = int(row), 0
        np.testing.assert_allclose(tables.obs[row], plain._observe(), rtol=1e-6)
        action = int(rng.integers(len(env.grid)))
        _, _, terminated, _, info = plain.step(action)
        assert terminated
        assert tables.cost[row, action] == pytest.approx(info["total_cost"], rel=1e-9)
    assert (tables.scale > 0).all()
    # The label-derived objectives are masked: their presence flags in the objectives block are 0.
    start = env.dict_space["attributes"].shape[0] + len(OBJECTIVES)
    flags = tables.obs[:, start:start + len(OBJECTIVES)]
    assert (flags[:, [OBJECTIVES.index(n) for n in LABEL_OBJECTIVES]] == 0).all()
    assert np.array_equal(observations(env, states.points.take([0, 1])), tables.obs[:2])


def test_tabulated_env_pays_minus_cost_over_scale_in_one_step_episodes(tmp_path):
    tables = Tables(obs=np.arange(6, dtype=np.float32).reshape(3, 2), cost=np.array([[1.0, 2.0], [4.0, 0.0],
                                                                                      [3.0, 3.0]]),
                    scale=np.array([1.0, 2.0, 3.0]), grid=np.array([5, 9]))
    env = TabulatedCostEnv({"tables": tables.save(tmp_path / "t.npz")})
    obs, info = env.reset(seed=4)
    row = info["row"]
    assert obs.tolist() == tables.obs[row].tolist()
    _, reward, terminated, truncated, info = env.step(1)
    assert terminated and not truncated
    assert reward == pytest.approx(-tables.cost[row, 1] / tables.scale[row]) and info["v"] == 9
    seen = {env.reset(seed=s)[1]["row"] for s in range(30)}
    assert seen == {0, 1, 2}


def test_report_is_self_contained_and_shows_every_section(run_dir, manifest):
    path = write_report(run_dir)
    text = path.read_text()
    sources = re.findall(r'src="([^"]*)"', text)
    # changes, two segment charts, frontier, label persistence, sweep, trajectories (no training history)
    assert len(sources) == 7 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(https?:)?//', text) and "<script" not in text
    for heading in ("Headline", "All policies", "ABC-XYZ", "Per category", "Promotion days", "frontier",
                    "Training curves", "naive predictors of the label", "omega / beta sweep", "day by day", "Label calibration"):
        assert heading in text, heading
    assert "hindsight oracle" in text
    assert "training curve of forecast: absent" in text  # the untrained checkpoints wrote no history
    out = run_dir / "report"
    report_manifest = read_manifest(out)
    assert report_manifest is not None
    for table in ("headline", "comparison", "segments_abc_xyz", "promotion_days", "frontier", "calibration",
                  "sweep_trials", "decision_head", "label_persistence"):
        assert f"tables/{table}.csv" in report_manifest["outputs"], table
    head = pd.read_csv(out / "tables" / "decision_head.csv").set_index("predictor")
    pretrain = json.loads((run_dir / "pretrain" / "report.json").read_text())["decision"]["decision"]["test"]
    assert head.loc["decision head (deployed rule)", "total_cost"] == pytest.approx(
        pretrain["model"]["simulated"]["total_cost"])
    assert head.loc["OR labels (hindsight)", "total_cost"] < head.loc["category median", "total_cost"]
    lags = pd.read_csv(out / "tables" / "label_persistence.csv")
    assert lags["lag_days"].iloc[0] == CFG.label.decision_stride_days
    horizon, stride = label_horizon(load_dataset(run_dir / "data"), CFG.label), CFG.label.decision_stride_days
    first_known = lags[lags["future_days_shared"] == 0].iloc[0]
    assert first_known["lag_days"] == -(-horizon // stride) * stride  # the first whole stride past the horizon
    headline = pd.read_csv(out / "tables" / "headline.csv")
    assert headline["policy"].iloc[0] == "orpr" and headline["policy"].iloc[1] == "incumbent"
    assert (out / "figures" / "sweep_omega_beta.png").is_file()


@pytest.mark.slow
def test_ppo_baseline_trains_on_a_tiny_budget_and_is_backtested(run_dir, manifest):
    cfg = tiny_config(evaluate={"ppo": {**CFG.evaluate.ppo.model_dump(), "enabled": True, "sample_budget": 512,
                                        "max_states": 200}})
    result = run_backtest(run_dir, cfg)
    assert "ppo" in result["policies"] and "ppo" not in result["absent"]
    progress = pd.read_csv(run_dir / "backtest" / "ppo" / "progress.csv")
    assert len(progress) >= 2 and progress["env_steps"].iloc[-1] >= 512
    assert np.isfinite(progress["episode_return_mean"]).all()
    summary = pd.read_csv(run_dir / "backtest" / "summary.csv").set_index("policy")
    assert summary.loc["ppo", "kind"] == "pure RL" and np.isfinite(summary.loc["ppo", "total_cost"])
    ppo_manifest = read_manifest(run_dir / "backtest" / "ppo")
    assert ppo_manifest["budget"] == 512 and ppo_manifest["states"] == 200
