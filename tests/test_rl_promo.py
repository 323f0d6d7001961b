"""Expert-guided promotion fine-tune: the synthetic expert, the expert-label file checks, the stage."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from rl_helpers import make_world, materialise

from orpr_ray.cli import main
from orpr_ray.core.artifacts import read_manifest
from orpr_ray.core.errors import InputError
from orpr_ray.label.candidates import evaluate_decisions, label_horizon
from orpr_ray.model.policy import BASE_FOLDER, Policy, RoutedPolicy, promotion_ahead
from orpr_ray.rl.promo import EXPERT_FILE, promotion_points, read_expert_labels, synthetic_expert, with_expert


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def expert(world):
    return synthetic_expert(world.ds, world.labels, hindsight_config(world.cfg))


def hindsight_config(cfg):
    return cfg.model_copy(update={"rl": cfg.rl.model_copy(update={"promo": cfg.rl.promo.model_copy(
        update={"synthetic_expert": "hindsight"})})})


def write(frame: pd.DataFrame, folder) -> str:
    path = folder / "expert.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_synthetic_expert_labels_promotion_points_with_the_service_level(world, expert, tmp_path):
    assert len(expert) > 0 and list(expert.columns) == ["sku", "dc", "date", "v"]
    rows = read_expert_labels(write(expert, tmp_path), world.ds, world.labels, world.cfg.label.grid)
    assert promotion_points(world.ds, rows["unit"], rows["day"], label_horizon(world.ds, world.cfg.label)).all()
    grid = np.asarray(world.cfg.label.grid, dtype=float)
    m = evaluate_decisions(world.ds, rows["unit"], rows["day"], grid, sim=world.cfg.sim, label=world.cfg.label)
    chosen = rows["expert_index"].to_numpy()
    serves = m.lost_value <= (1 - world.cfg.rl.promo.expert_service_level) * m.demand_value
    at = np.arange(len(rows))
    assert (serves[at, chosen] | (chosen == len(grid) - 1)).all()          # serves, or the largest cover
    assert not (serves & (np.arange(len(grid))[None, :] < chosen[:, None])).any()  # and is the smallest that does
    labels = with_expert(world.labels, rows)
    assert (labels["expert_index"] >= 0).sum() == len(rows) and len(labels) == len(world.labels)


def test_uplift_expert_adds_the_planned_promotions_expected_extra_demand_to_the_typical_cover(world):
    ds, labels, cfg = world.ds, world.labels, world.cfg
    frame = synthetic_expert(ds, labels, cfg)
    promo = promotion_points(ds, labels["unit"].to_numpy(), labels["day"].to_numpy(), label_horizon(ds, cfg.label))
    stop = world.split.val_start
    quiet = labels[~promo & (labels["day"] < stop)]
    expected = []
    for unit, day in labels.loc[promo, ["unit", "day"]].itertuples(index=False):  # the slow way, row by row
        on = (ds.promo[unit, :stop] > 0) & ds.observed[unit, :stop]
        off = ~(ds.promo[unit, :stop] > 0) & ds.observed[unit, :stop]
        with np.errstate(invalid="ignore", divide="ignore"):
            uplift = ds.sales[unit, :stop][on].mean() / ds.sales[unit, :stop][off].mean() if on.any() else 1.0
        uplift = uplift if np.isfinite(uplift) and uplift > 1 else 1.0
        mine = quiet[quiet["unit"] == unit]["v_label"]
        typical = mine.median() if len(mine) else quiet["v_label"].median()
        cover = int(ds.units["lead_time_days"].iloc[unit] + ds.units["review_period_days"].iloc[unit])
        planned = sum(ds.promo[unit, min(day + k, ds.n_days - 1)] > 0 for k in range(cover))
        target = typical + (uplift - 1) * planned
        expected.append(next((v for v in cfg.label.grid if v >= target - 1e-9), cfg.label.grid[-1]))
    assert len(frame) == int(promo.sum()) > 0
    assert frame["v"].tolist() == expected
    assert (frame["v"].to_numpy() > np.median(quiet["v_label"])).mean() > 0.5  # promotions raise the cover


@pytest.mark.parametrize("change, field, problem", [
    (lambda f: f.assign(sku=["nope"] + list(f["sku"][1:])), "sku", "unknown unit"),
    (lambda f: f.assign(date=["2024-01-02"] + list(f["date"][1:])), "date", "not a labelled decision date"),
    (lambda f: f.assign(v=[0.5] + list(f["v"][1:])), "v", "not on the inventory-days grid"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "date", "second label"),
    (lambda f: f.drop(columns=["v"]), "v", "required column missing"),
    (lambda f: f.assign(date=["1999-01-01"] + list(f["date"][1:])), "date", "outside the calendar"),
])
def test_bad_expert_files_name_file_field_and_row(world, expert, change, field, problem, tmp_path):
    path = write(change(expert.copy()), tmp_path)
    with pytest.raises(InputError, match=problem) as err:
        read_expert_labels(path, world.ds, world.labels, world.cfg.label.grid)
    assert err.value.file == path and err.value.field == field
    if problem != "required column missing":
        assert "line" in err.value.where


@pytest.mark.ray
@pytest.mark.slow
def test_orpr_promo_fine_tunes_from_the_rl_policy_and_reports_the_effect(ray_session, world, tmp_path):
    paths = materialise(world, tmp_path)
    rl_dir, out = tmp_path / "rl", tmp_path / "promo"
    assert main(["rl", "--checkpoint", str(paths["start"]), "--out", str(rl_dir), "--set", "rl.steps=2"]) == 0
    assert main(["promo", "--checkpoint", str(rl_dir), "--out", str(out), "--set", "rl.promo.steps=2",
                 "--set", "rl.promo.eval_every=1"]) == 0
    manifest = read_manifest(out)
    assert manifest["stage"] == "promo" and EXPERT_FILE in manifest["outputs"]
    report = json.loads((out / "report.json").read_text())
    effect = report["promotion_effect"]["val"]
    assert {"promotion_lost_sales_before", "promotion_lost_sales_after", "other_turnover_before",
            "other_turnover_after"} <= set(effect)
    stages = pd.read_csv(out / "stages.csv")
    assert set(stages["stage"]) == {"rl", "promo"}
    assert {"val/promotion", "val/other", "test/promotion", "test/other"} == set(stages["window"])
    assert pd.read_csv(out / "history.csv")["step"].tolist() == [0, 1, 2]
    # Routed: outside promotions the promotion policy decides exactly as the RL policy it started from.
    for window in ("val", "test"):
        assert effect_of(report, window, "other_turnover_after") == effect_of(report, window, "other_turnover_before")
    routed, base = Policy.load(out), Policy.load(rl_dir)
    assert isinstance(routed, RoutedPolicy) and f"policy/{BASE_FOLDER}/model.pt" in manifest["outputs"]
    unit, day = np.repeat(np.arange(world.ds.n_units), 2), np.tile([world.split.val_start, world.split.test_start],
                                                                    world.ds.n_units)
    features = routed.features_from_panel(routed.panel(world.ds), unit, day)
    promo = promotion_points(world.ds, unit, day, world.cfg.model.horizon_days)
    assert promo.any() and not promo.all()
    assert np.array_equal(promotion_ahead(features, world.cfg.model.horizon_days), promo)
    mine, theirs = routed.decide(features), base.decide(features)
    alone = Policy(routed.model, routed.meta).decide(features)
    assert np.array_equal(mine.v[~promo], theirs.v[~promo]) and np.array_equal(mine.v[promo], alone.v[promo])


def effect_of(report: dict, window: str, key: str) -> float:
    return report["promotion_effect"][window][key]
