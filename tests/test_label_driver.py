"""The labelling run on Ray: same labels as the plain code, resumable, robust to a killed worker."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from orpr_ray.cli import main
from orpr_ray.core.artifacts import sha256_file
from orpr_ray.core.errors import InputError
from orpr_ray.data.config import SynthConfig
from orpr_ray.data.io import write_dataset
from orpr_ray.data.synth import synthesize
from orpr_ray.label.candidates import decision_points
from orpr_ray.label.config import LabelConfig
from orpr_ray.label.driver import FAULT_ENV, group_names, label_shard, plan_shards, run_labels
from orpr_ray.label.io import load_groups, load_labels
from orpr_ray.sim.config import SimConfig

pytestmark = pytest.mark.ray

LABEL = LabelConfig(v_max=30, shard_size=6, crosscheck_every=4, max_in_flight=2)
SIM = SimConfig()
SCHEMA = ["unit", "sku", "dc", "category", "day", "date", "v_label", "d_hat", "group", "alpha", "fallback",
          "stock_value", "lost_value", "demand_value", "turnover_days"]


@pytest.fixture(scope="module")
def dataset():
    return synthesize(SynthConfig(units=36, days=120, categories=3, dcs=2), seed=3)


@pytest.fixture(scope="module")
def clean_run(ray_session, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("labels_clean")
    manifest = run_labels(dataset, out, label=LABEL, sim=SIM)
    return out, manifest


def run_into(dataset, out):
    return run_labels(dataset, out, label=LABEL, sim=SIM)


def shard_digests(out):
    return {p.name: sha256_file(p) for p in sorted((out / "labels").glob("*.parquet"))}


@pytest.mark.slow  # with clean_run: a full Ray labelling run, plus the run under test
def test_ray_run_equals_plain_labelling_one_row_per_decision_point(dataset, clean_run):
    out, manifest = clean_run
    labels = load_labels(out)
    assert list(labels.columns[:len(SCHEMA)]) == SCHEMA
    plan = plan_shards(dataset, LABEL, SIM)
    assert len(plan) > 2 and manifest["counts"]["shards"] == len(plan)
    plain = pd.concat([label_shard(dataset, u, d, label=LABEL, sim=SIM).labels for u, d in plan])
    plain = plain.sort_values(["unit", "day"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(labels, plain)
    unit, day = decision_points(dataset, LABEL, SIM)
    assert list(zip(labels["unit"], labels["day"])) == list(zip(unit, day))  # every point exactly once
    assert labels["v_label"].between(LABEL.v_min, LABEL.v_max).all()
    assert (labels["date"].to_numpy() == dataset.dates[labels["day"]]).all()
    groups = load_groups(out)
    assert set(groups["group"]) == set(labels["group"]) and len(groups) == manifest["counts"]["groups"]
    assert groups["status"].isin(["optimal", "feasible", "infeasible", "degenerate"]).all()
    checked = groups["crosscheck_status"] != ""
    assert checked.any() and manifest["solver"]["crosschecked_groups"] == int(groups["crosscheck_diff"].notna().sum())
    calibration = pd.read_csv(out / "calibration.csv")
    assert set(calibration["category"]) == set(dataset.units["category"])
    assert {"target_turnover", "target_source", "achieved_turnover", "alpha"} <= set(calibration.columns)


@pytest.mark.slow  # with clean_run: a full Ray labelling run, plus the run under test
def test_interrupted_run_resumes_to_identical_output(dataset, clean_run, tmp_path):
    out, manifest = clean_run
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    # What an interruption leaves: some shards finished, no combined tables, no manifest.
    for name in ("manifest.json", "groups.parquet", "calibration.csv"):
        (resumed / name).unlink()
    n = manifest["counts"]["shards"]
    for i in range(1, n, 2):
        (resumed / f"labels/shard-{i:05d}.parquet").unlink()
    again = run_into(dataset, resumed)
    assert again["counts"]["computed_shards"] == len(range(1, n, 2))
    assert again["counts"]["resumed_shards"] == n - len(range(1, n, 2))
    assert shard_digests(resumed) == shard_digests(out)
    assert again["outputs"]["calibration.csv"] == manifest["outputs"]["calibration.csv"]
    timing = ["build_s", "solve_s"]  # the only fields that differ between runs
    pd.testing.assert_frame_equal(load_groups(resumed).drop(columns=timing), load_groups(out).drop(columns=timing))
    # A finished run is not redone.
    assert run_into(dataset, resumed)["created"] == again["created"]


@pytest.mark.slow  # with clean_run: a full Ray labelling run, plus the run under test
def test_killed_worker_is_retried_and_labels_are_unchanged(dataset, clean_run, tmp_path, monkeypatch):
    out, _ = clean_run
    monkeypatch.setenv(FAULT_ENV, "1")
    manifest = run_into(dataset, tmp_path / "faulty")
    assert manifest["fault_injected_shards"] == [1]
    pd.testing.assert_frame_equal(load_labels(tmp_path / "faulty"), load_labels(out))
    assert not list((tmp_path / "faulty").glob(".fault-*"))


@pytest.mark.slow  # with clean_run: a full Ray labelling run, plus the run under test
def test_another_config_never_mixes_into_a_folder(dataset, clean_run):
    out, manifest = clean_run
    (out / "manifest.json").rename(out / "manifest.keep")
    try:
        with pytest.raises(InputError, match="another dataset or label/sim config"):
            run_labels(dataset, out, label=LABEL.model_copy(update={"v_max": 20}), sim=SIM)
    finally:
        (out / "manifest.keep").rename(out / "manifest.json")
    assert json.loads((out / "manifest.json").read_text())["created"] == manifest["created"]


def test_cli_labels_a_dataset_folder_and_rejects_bad_input(ray_session, dataset, tmp_path, capsys):
    data = write_dataset(dataset.subset(np.arange(8)), tmp_path / "data")
    out = tmp_path / "out"
    code = main(["label", "--data", str(data), "--out", str(out), "--no-progress",
                 "--set", "label.v_max=15", "--set", "label.shard_size=4"])
    assert code == 0 and "labels in" in capsys.readouterr().out
    labels = load_labels(out)
    assert len(labels) == len(decision_points(dataset.subset(np.arange(8)), LabelConfig(v_max=15), SIM)[0])
    bad_out = tmp_path / "bad"
    assert main(["label", "--data", str(data), "--out", str(bad_out), "--set", "label.group_by=[aisle]"]) == 2
    assert "label.group_by" in capsys.readouterr().err and not bad_out.exists()
    assert main(["label", "--data", str(tmp_path / "nowhere"), "--out", str(bad_out)]) == 2
    assert not bad_out.exists()
    with pytest.raises(InputError, match="no finished label run"):
        load_labels(bad_out)


def test_shards_hold_whole_groups_and_cover_every_point_once(dataset):
    label = LabelConfig(v_max=20, shard_size=4)
    plan = plan_shards(dataset, label, SIM)
    assert len(plan) > 3
    shard_of = {}
    for i, (unit, day) in enumerate(plan):
        for name in set(group_names(dataset, unit, day, label)):
            assert shard_of.setdefault(name, i) == i  # a group never spans two shards
    points = sorted((u, d) for unit, day in plan for u, d in zip(unit.tolist(), day.tolist()))
    unit, day = decision_points(dataset, label, SIM)
    assert points == sorted(zip(unit.tolist(), day.tolist()))


def test_groups_over_all_dates_when_the_date_is_not_a_key(dataset):
    label = LabelConfig(v_max=20, group_by=["category"], group_by_date=False, shard_size=1000)
    (unit, day), = plan_shards(dataset, label, SIM)
    result = label_shard(dataset, unit, day, label=label, sim=SIM)
    assert set(result.labels["group"]) == set(dataset.units["category"])
    assert len(result.groups) == dataset.units["category"].nunique() and (result.groups["day"] == -1).all()
    assert result.groups["n_units"].sum() == len(unit)


def test_a_history_too_short_for_any_decision_point_is_an_input_error(dataset, tmp_path):
    short = dataset.window(0, 40)  # 28 days of d_hat window + a 21-day horizon do not fit in 40 days
    with pytest.raises(InputError, match="no unit has a decision point"):
        run_labels(short, tmp_path / "out", label=LABEL, sim=SIM)
    assert not (tmp_path / "out").exists()
