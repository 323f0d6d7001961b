"""The serving engine, request conversion and application builder, without Ray or HTTP."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema
from serve_support import GRID, TINY, WINDOW, assert_matches, expected

from orpr_ray.core.errors import ConfigError, InputError
from orpr_ray.model.policy import Policy
from orpr_ray.serve.app import build_app
from orpr_ray.serve.cli import write_decisions
from orpr_ray.serve.client import read_stock, units_from_dataset
from orpr_ray.serve.engine import DecisionEngine, model_version, trailing_daily_demand
from orpr_ray.serve.schemas import UnitRequest, field_path
from orpr_ray.sim.policies import trailing_mean_demand


def engine_for(directory, chunk_units: int = 512) -> DecisionEngine:
    return DecisionEngine.load(directory, demand_window_days=WINDOW, top_k=5, chunk_units=chunk_units)


def test_engine_matches_the_in_process_policy_across_chunks(checkpoint, units):
    directory, _ = checkpoint
    answers = engine_for(directory, chunk_units=7).decide([UnitRequest.model_validate(u) for u in units])
    want = expected(Policy.load(directory), units)
    assert len(answers) == len(units) == 40
    for answer, unit, w in zip(answers, units, want):
        assert (answer["sku"], answer["dc"]) == (unit["sku"], unit["dc"])
        assert_matches(answer, w, GRID)
        assert answer["inventory_position"] == unit["on_hand"] + unit["on_order"]
        assert answer["fallbacks"] == []
    # The sharpened untrained network must still spread its choices, or equality would be trivial.
    assert len({a["inventory_days"] for a in answers}) > 1


def test_chunked_forward_equals_one_pass(checkpoint, units):
    directory, _ = checkpoint
    requests = [UnitRequest.model_validate(u) for u in units]
    one = engine_for(directory, chunk_units=1000).decide(requests)
    chunked = engine_for(directory, chunk_units=3).decide(requests)
    assert [a["inventory_days"] for a in one] == [a["inventory_days"] for a in chunked]
    np.testing.assert_allclose([a["forecast"] for a in one], [a["forecast"] for a in chunked], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("days", [7, 20, 28, 60])
def test_daily_demand_is_the_simulators_trailing_mean(days):
    sales = list(np.random.default_rng(days).poisson(3.0, days).astype(float))
    unit = UnitRequest.model_validate({"sku": "A", "category": "c", "decision_date": "2024-03-01", "sales": sales,
                                       "unit_cost": 1.0, "unit_price": 2.0, "lead_time_days": 2,
                                       "review_period_days": 7, "on_hand": 0.0})
    got = trailing_daily_demand([unit], WINDOW)[0]
    want = trailing_mean_demand(np.asarray(sales + [0.0])[None, :], WINDOW)[0, -1]
    assert math.isclose(got, want, rel_tol=1e-12)


def test_order_quantity_is_level_minus_position_never_negative(checkpoint, units):
    directory, _ = checkpoint
    engine = engine_for(directory)
    empty = {**units[0], "on_hand": 0.0, "on_order": 0.0}
    full = {**units[0], "on_hand": 1e6, "on_order": 0.0}
    a_empty, a_full = engine.decide([UnitRequest.model_validate(empty), UnitRequest.model_validate(full)])
    assert a_empty["order_quantity"] == a_empty["order_up_to_level"] > 0
    assert a_full["order_quantity"] == 0.0


def test_unknown_category_dc_and_text_value_fall_back_and_are_flagged(checkpoint, units):
    directory, _ = checkpoint
    odd = {**units[1], "category": "never-seen", "dc": "DC-new", "extra": {**units[1]["extra"], "brand": "no-brand"}}
    answer = engine_for(directory).decide([UnitRequest.model_validate(odd)])[0]
    assert answer["fallbacks"] == ["category", "dc", "extra.brand"]
    assert_matches(answer, expected(Policy.load(directory), [odd])[0], GRID)


def test_model_refuses_extra_attributes_it_was_not_trained_with(checkpoint, units):
    directory, _ = checkpoint
    odd = {**units[0], "extra": {**units[0]["extra"], "colour": "red"}}
    with pytest.raises(InputError) as err:
        engine_for(directory).decide([UnitRequest.model_validate(units[0]), UnitRequest.model_validate(odd)])
    assert err.value.field == "extra" and "record 1" in err.value.where and "colour" in err.value.problem


def test_info_is_json_and_leaves_out_resume_state(checkpoint):
    directory, _ = checkpoint
    engine = engine_for(directory)
    engine.policy.meta.training = {"epoch": 2, "optimizer": {"state": [1]}, "history": [{"loss": float("nan")}]}
    info = engine.info()
    json.dumps(info, allow_nan=False)
    assert info["training"] == {"epoch": 2, "history": [{"loss": None}]}
    assert info["model_version"] == model_version(directory, "untrained") == engine.version
    assert info["grid"] == GRID and info["config"] == TINY.model_dump(mode="json")
    assert info["features"]["extra_categorical"] == ["brand"]


def test_build_app_binds_and_checks_its_arguments(checkpoint, tmp_path):
    directory, _ = checkpoint
    assert isinstance(build_app({"checkpoint": str(directory), "overrides": ["serve.replicas=2"]}), Application)
    with pytest.raises(InputError, match="no model.pt"):
        build_app({"checkpoint": str(tmp_path / "missing")})
    with pytest.raises(ConfigError) as err:
        build_app({"checkpoint": str(directory), "replicas": 2})
    assert err.value.field == "replicas"
    with pytest.raises(ConfigError) as err:
        build_app({"checkpoint": str(directory), "overrides": ["serve.replicas=0"]})
    assert err.value.field == "serve.replicas"
    with pytest.raises(ConfigError, match="never hold a full batch"):
        build_app({"checkpoint": str(directory), "overrides": ["serve.max_ongoing_requests=4"]})


def test_stock_file_and_dataset_conversion_name_the_problem(checkpoint, tmp_path):
    _, ds = checkpoint
    path = tmp_path / "stock.csv"
    path.write_text("sku,dc,on_hand,on_order\nA,DC1,3,0\nB,DC1,-1,0\n")
    with pytest.raises(InputError) as err:
        read_stock(path)
    assert (err.value.field, err.value.where) == ("on_hand", "unit (sku=B, dc=DC1), line 3")
    partial = pd.DataFrame({"sku": ds.units["sku"][1:], "dc": ds.units["dc"][1:], "on_hand": 1.0, "on_order": 0.0})
    with pytest.raises(InputError, match="no stock row") as err:
        units_from_dataset(ds, partial, TINY)
    assert ds.units["sku"][0] in err.value.where


def test_units_from_dataset_carry_the_last_history_days(checkpoint, units):
    _, ds = checkpoint
    first = units[0]
    assert first["sales"] == ds.sales[0, -TINY.history_days:].tolist()
    assert first["decision_date"] == str(ds.dates[-1] + np.timedelta64(1, "D"))
    assert set(first["extra"]) == set(ds.extra_attributes)
    assert 0 < first["sales_share"] <= 1


def test_field_path_reads_like_the_request():
    assert field_path(("body", "units", 3, "sales", 5)) == "units[3].sales[5]"
    assert field_path(("body",)) == "body"


def test_write_decisions_csv_and_json(tmp_path):
    decisions = [{"sku": "A", "dc": "D", "inventory_days": 3, "order_quantity": 2.0, "forecast": [1.0],
                  "top": [{"inventory_days": 3, "probability": 0.9}], "fallbacks": ["dc"]}]
    csv = pd.read_csv(write_decisions(decisions, "v1", tmp_path / "d.csv"))
    assert csv.loc[0, "inventory_days"] == 3 and csv.loc[0, "fallbacks"] == "dc" and csv.loc[0, "model_version"] == "v1"
    assert json.loads((write_decisions(decisions, "v1", tmp_path / "d.json")).read_text())["decisions"] == decisions
    with pytest.raises(InputError, match="unknown output format"):
        write_decisions(decisions, "v1", tmp_path / "d.xlsx")


def test_serve_config_file_is_valid_for_ray_and_builds_the_app(checkpoint):
    """jobs/serve_config.yaml passes Ray's own schema, binds loopback, and its args build the application."""
    text = (Path(__file__).resolve().parents[1] / "jobs" / "serve_config.yaml").read_text()
    schema = ServeDeploySchema.model_validate(yaml.safe_load(text))
    assert schema.http_options.host == "127.0.0.1"
    app = schema.applications[0]
    module, _, name = app.import_path.partition(":")
    assert (module, name) == ("orpr_ray.serve.app", "build_app")
    assert isinstance(build_app({**app.args, "checkpoint": str(checkpoint[0])}), Application)
