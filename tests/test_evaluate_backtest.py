"""The backtest machinery on a tiny catalogue: same setup as the classic baseline, metrics that add
up to the simulator's own, groups, paired bootstrap, the hindsight label policy, and a whole run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from evaluate_support import tiny_config, write_data

from orpr_ray.cli import main
from orpr_ray.core.artifacts import read_manifest
from orpr_ray.core.errors import InputError
from orpr_ray.data.io import load_dataset
from orpr_ray.data.stats import abc_classes, xyz_classes
from orpr_ray.evaluate.backtest import (DAY_MASKS, POLICY_INFO, VERSUS_BEST, backtest_setup, bootstrap_weights,
                                        changes, classic_candidates, format_headline, group_table, groups_of, ratios,
                                        run_backtest, segment_labels, simulate_policy, unit_sums)
from orpr_ray.evaluate.config import CLASSIC_POLICIES, EvaluateConfig
from orpr_ray.evaluate.policies import label_targets
from orpr_ray.sim.scheduled import ReviewPoints, review_points, scheduled_policy
from orpr_ray.sim.baseline import run_baseline
from orpr_ray.sim.policies import InventoryDaysPolicy
from orpr_ray.sim.rolling import review_mask, simulate_rolling
from orpr_ray.sim.tuning import TUNERS

CFG = tiny_config()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_data(CFG, tmp_path_factory.mktemp("evaluate_run"))


@pytest.fixture(scope="module")
def dataset(run_dir):
    return load_dataset(run_dir / "data")


@pytest.fixture(scope="module")
def setup(dataset):
    return backtest_setup(dataset, CFG.sim, CFG.data.split)


@pytest.fixture(scope="module")
def classic(dataset):
    return classic_candidates(dataset, CFG)


def test_config_names_every_classic_tuner_and_requires_the_incumbent():
    assert set(CLASSIC_POLICIES) == set(TUNERS)
    assert set(CLASSIC_POLICIES) <= set(POLICY_INFO)
    with pytest.raises(ValueError, match="incumbent"):
        EvaluateConfig(classic_policies=["base_stock"])
    with pytest.raises(ValueError, match="unknown"):
        EvaluateConfig(frontier_families=["nope"])


def test_classic_policies_rolled_here_score_exactly_what_the_baseline_reports(dataset, setup, classic):
    """Same windows, start state and metrics as sim.baseline.run_baseline, policy by policy."""
    policies, _ = classic
    baseline = run_baseline(dataset, CFG.sim, CFG.data.split).summary.set_index("policy")
    everything = np.ones((dataset.n_units, len(setup.scored_days)), dtype=bool)
    for name, policy in policies.items():
        run = simulate_policy(setup, name, policy)
        ours = ratios(unit_sums(setup, run, everything).sum(axis=0))
        for metric, value in ours.items():
            assert value == pytest.approx(baseline.loc[name, metric], rel=1e-9), (name, metric)


def test_unit_sums_match_the_rolling_simulator_per_unit_and_days_split_into_promo_and_other(setup, classic):
    policy = classic[0]["incumbent"]
    reference = simulate_rolling(policy, setup.ds.sales, setup.params, start=setup.eval_start,
                                 record_from=setup.split.test_start, state=setup.start_state,
                                 holding_rate=CFG.sim.holding_rate_per_day,
                                 penalty_share=CFG.sim.lost_sales_penalty_share).metrics
    run = simulate_policy(setup, "incumbent", policy)
    promo = setup.ds.promo[:, setup.scored_days] > 0
    assert promo.any() and (~promo).any()
    every, on_promo, off_promo = (unit_sums(setup, run, m) for m in (np.ones_like(promo), promo, ~promo))
    columns = {"stock_value": 0, "sales_value": 1, "lost_value": 2, "demand_value": 3, "holding_cost": 4,
               "penalty_cost": 5, "in_stock_days": 6}
    for name, k in columns.items():
        np.testing.assert_allclose(every[:, k], getattr(reference, name)[:, 0], rtol=1e-12, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(on_promo + off_promo, every, rtol=1e-12)
    assert every[:, 7].tolist() == [len(setup.scored_days)] * setup.ds.n_units


def test_ratios_follow_the_simulator_conventions_for_empty_groups():
    totals = np.array([[10.0, 5.0, 1.0, 6.0, 2.0, 3.0, 4.0, 8.0],   # normal
                       [10.0, 0.0, 0.0, 0.0, 2.0, 0.0, 8.0, 8.0],   # stock, no sales, no demand
                       [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 8.0]])   # nothing at all
    out = ratios(totals)
    assert out["turnover_days"].tolist() == [2.0, np.inf, 0.0]
    assert out["fill_rate"].tolist() == [5.0 / 6.0, 1.0, 1.0]
    assert out["in_stock_rate"].tolist() == [0.5, 1.0, 0.0]
    assert out["total_cost"].tolist() == [5.0, 2.0, 0.0]


def test_changes_are_relative_except_in_stock_in_points():
    base = ratios(np.array([10.0, 5.0, 1.0, 6.0, 2.0, 3.0, 4.0, 8.0]))
    better = ratios(np.array([5.0, 5.0, 1.0, 6.0, 1.0, 3.0, 6.0, 8.0]))
    out = changes(better, base)
    assert out["turnover_days_change"] == pytest.approx(-0.5)
    assert out["holding_cost_change"] == pytest.approx(-0.5)
    assert out["total_cost_change"] == pytest.approx(4.0 / 5.0 - 1.0)
    assert out["in_stock_change"] == pytest.approx(0.25)


def test_segments_are_the_data_layers_classes_on_the_training_window(dataset, setup):
    segments = segment_labels(dataset, setup.split, "train")
    train = dataset.window(0, setup.split.val_start)
    assert segments["abc"].tolist() == abc_classes(train).tolist()
    assert segments["xyz"].tolist() == xyz_classes(train).tolist()
    assert (segments["abc_xyz"] == segments["abc"] + segments["xyz"]).all()
    groups = groups_of(segments)
    for dimension in ("category", "abc", "xyz", "abc_xyz"):
        assert sum(g.rows.sum() for g in groups if g.dimension == dimension) == dataset.n_units
    assert {(g.segment, g.days) for g in groups if g.dimension == "days"} == {("promotion", "promo"),
                                                                             ("other", "other")}


def test_bootstrap_is_seeded_paired_and_brackets_the_estimate(setup, classic, dataset):
    names = ["incumbent", "base_stock"]
    promo = setup.ds.promo[:, setup.scored_days] > 0
    masks = {"all": np.ones_like(promo), "promo": promo, "other": ~promo}
    sums = np.stack([np.stack([unit_sums(setup, simulate_policy(setup, n, classic[0][n]), masks[m])
                               for m in DAY_MASKS]) for n in names])
    groups = groups_of(segment_labels(dataset, setup.split, "train"))
    weights = bootstrap_weights(dataset.n_units, 300, seed=3)
    assert np.array_equal(weights, bootstrap_weights(dataset.n_units, 300, seed=3))
    table = group_table(names, sums, groups, weights, 0.9, "incumbent")
    again = group_table(names, sums, groups, bootstrap_weights(dataset.n_units, 300, seed=3), 0.9, "incumbent")
    pd.testing.assert_frame_equal(table, again)
    overall = table[table["dimension"] == "overall"].set_index("policy")
    incumbent = overall.loc["incumbent"]
    for change in ("total_cost_change", "in_stock_change", "total_cost_change_lo", "total_cost_change_hi"):
        assert incumbent[change] == 0.0  # paired: the incumbent against itself, in every replicate
    for name in names:
        for metric in ("total_cost", "in_stock_rate", "turnover_days"):
            row = overall.loc[name]
            assert row[f"{metric}_lo"] <= row[metric] <= row[f"{metric}_hi"]
    other = table[(table["policy"] == "base_stock") & (table["dimension"] == "overall")].iloc[0]
    assert other["total_cost_change_lo"] < other["total_cost_change_hi"]


def test_review_points_are_the_simulators_review_days(setup):
    points = review_points(setup.params, setup.eval_start, setup.ds.n_days)
    for t in (setup.eval_start, setup.eval_start + 5, setup.ds.n_days - 1):
        assert sorted(points.unit[points.day == t]) == np.flatnonzero(review_mask(t, setup.params)).tolist()


def test_a_scheduled_constant_target_rolls_exactly_like_the_inventory_days_policy(setup):
    points = review_points(setup.params, setup.eval_start, setup.ds.n_days)
    days = np.arange(setup.ds.n_units) % 9 + 3.0
    scheduled = scheduled_policy(points, days[points.unit], setup.d_hat)
    everything = np.ones((setup.ds.n_units, len(setup.scored_days)), dtype=bool)
    a = unit_sums(setup, simulate_policy(setup, "a", scheduled), everything)
    b = unit_sums(setup, simulate_policy(setup, "b", InventoryDaysPolicy(days, setup.d_hat)), everything)
    np.testing.assert_array_equal(a, b)


def test_label_targets_take_the_latest_label_then_the_first_then_the_fallback():
    labels = pd.DataFrame({"unit": [0, 0, 0, 1], "day": [10, 17, 24, 17], "v_label": [5, 7, 9, 4]})
    points = ReviewPoints(unit=np.array([0, 0, 0, 0, 1, 1, 2]), day=np.array([3, 10, 16, 30, 20, 5, 12]),
                          start=0, stop=40)
    v, fallback = label_targets(labels, points, fallback=np.array([1.0, 2.0, 33.0]))
    assert v.tolist() == [5, 5, 5, 9, 4, 4, 33]
    assert fallback == 1


def test_run_backtest_with_only_data_writes_every_table_and_notes_the_absent_policies(run_dir):
    manifest = run_backtest(run_dir, CFG)
    out = run_dir / "backtest"
    assert read_manifest(out) is not None
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["policy"]) == set(CLASSIC_POLICIES)
    assert summary["best_classic"].sum() == 1
    best = summary.loc[summary["best_classic"], "policy"].iloc[0]
    assert best != "incumbent" and summary.set_index("policy").loc[best, "kind"] == "classic"
    # The paired change vs the best classic policy agrees with the totals, its interval brackets it.
    rows = summary.set_index("policy")
    for name, row in rows.iterrows():
        assert row[VERSUS_BEST] == pytest.approx(row["total_cost"] / rows.loc[best, "total_cost"] - 1.0)
        assert row[f"{VERSUS_BEST}_lo"] <= row[VERSUS_BEST] + 1e-12 <= row[f"{VERSUS_BEST}_hi"] + 2e-12
    assert rows.loc[best, VERSUS_BEST] == 0.0 and (rows.drop(best)[VERSUS_BEST] > 0).all()
    assert "vs best classic [CI]" in format_headline(manifest)
    assert set(manifest["absent"]) == {"or_labels", "network", "orpr", "orpr_promo", "ppo"}
    segments = pd.read_parquet(out / "segments.parquet")
    assert set(segments["dimension"]) == {"overall", "category", "abc", "xyz", "abc_xyz", "days"}
    units = pd.read_parquet(out / "units.parquet")
    assert len(units) == len(CLASSIC_POLICIES) * CFG.data.synth.units
    frontier = pd.read_csv(out / "frontier.csv")
    assert len(frontier) == len(CFG.evaluate.frontier_families) * len(CFG.evaluate.frontier_targets)
    incumbent_rows = frontier[frontier["family"] == "incumbent"].sort_values("target")
    assert incumbent_rows["in_stock_rate"].is_monotonic_increasing  # a higher target buys more service
    trajectories = pd.read_parquet(out / "trajectories.parquet")
    assert trajectories["unit"].nunique() == CFG.evaluate.trajectory_units
    assert len(trajectories) == (CFG.evaluate.trajectory_units * len(CLASSIC_POLICIES)
                                 * CFG.data.split.test_days)
    # A finished backtest with the same config and inputs is not redone.
    assert run_backtest(run_dir, CFG)["created"] == manifest["created"]


def test_a_run_without_data_is_an_input_error_and_writes_nothing(tmp_path):
    with pytest.raises(InputError, match="data"):
        run_backtest(tmp_path, CFG)
    assert not (tmp_path / "backtest").exists()
    assert main(["backtest", "--run", str(tmp_path)]) == 2


def test_cli_backtest_and_report(run_dir, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CFG.model_dump(mode="json")))
    args = ["--config", str(config), "--set", "evaluate.bootstrap_samples=50",
            "--set", "evaluate.frontier_targets=[0.95]"]
    assert main(["backtest", "--run", str(run_dir), *args]) == 0
    printed = capsys.readouterr().out
    assert "incumbent" in printed and "best classic" in printed
    assert read_manifest(run_dir / "backtest")["bootstrap"]["samples"] == 50
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report" / "report.html").is_file()
