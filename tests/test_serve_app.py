"""The decision service over real HTTP: one Serve start on the session's Ray for the whole module.

Every route is called through Serve's HTTP proxy on loopback; answers are compared with the
in-process policy; a corpus of malformed requests must each get a 4xx naming the field, and the
service must keep answering afterwards.
"""
from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pandas as pd
import pytest
from serve_support import GRID, TINY, assert_matches, expected, free_port, running_service

from orpr_ray.cli import main
from orpr_ray.core.errors import InputError
from orpr_ray.data.io import write_dataset
from orpr_ray.model.policy import Policy
from orpr_ray.serve.client import DecisionClient, ServiceError
from orpr_ray.serve.engine import model_version
from orpr_ray.serve.schemas import MAX_BATCH_UNITS, MAX_BODY_BYTES, MAX_HISTORY_DAYS

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # one Serve start (~15-35 s on 2 busy cores)


@pytest.fixture(scope="module")
def want(checkpoint, units):
    return expected(Policy.load(checkpoint[0]), units)


@pytest.fixture(scope="module")
def url(ray_session, checkpoint):
    # Half a CPU per replica leaves room on the session's 2 logical CPUs; small chunks exercise chunking.
    with running_service(checkpoint[0], replica_cpus=0.5, chunk_units=16, max_batch_size=8,
                         batch_wait_timeout_s=0.02) as base:
        yield base


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_healthz_and_model_describe_the_checkpoint(http, checkpoint):
    version = model_version(checkpoint[0], "untrained")
    assert http.get("/healthz").json() == {"status": "ok", "model_version": version}
    info = http.get("/v1/model").json()
    assert info["model_version"] == version and info["grid"] == GRID
    assert info["config"] == TINY.model_dump(mode="json")
    assert info["features"]["extra_numeric"] == ["shelf_life_days"] and info["demand_window_days"] == 28
    assert info["sources"]["data"]["kind"] == "data" and "optimizer" not in info["training"]


def test_openapi_document_and_docs_page(http):
    assert "swagger" in http.get("/docs").text.lower()
    spec = http.get("/openapi.json").json()
    assert {"/v1/decide", "/v1/decide/batch", "/healthz", "/v1/model"} <= set(spec["paths"])
    batch = spec["components"]["schemas"]["BatchRequest"]["properties"]["units"]
    assert batch["maxItems"] == MAX_BATCH_UNITS
    sales = spec["components"]["schemas"]["UnitRequest"]["properties"]["sales"]
    assert sales["maxItems"] == MAX_HISTORY_DAYS


def test_single_route_equals_in_process_policy(http, units, want):
    for unit, w in list(zip(units, want))[:10]:
        answer = http.post("/v1/decide", json=unit).json()
        assert_matches(answer, w, GRID)
        assert answer["model_version"].startswith("untrained-")


def test_concurrent_single_requests_are_all_answered_correctly(url, units, want):
    """Concurrent requests go through @serve.batch together; each still gets its own unit's answer."""

    async def send_all():
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/decide", json=u) for u in units))

    responses = asyncio.run(send_all())
    for response, unit, w in zip(responses, units, want):
        assert response.status_code == 200
        assert response.json()["sku"] == unit["sku"]
        assert_matches(response.json(), w, GRID)


def test_batch_route_equals_in_process_policy(url, units, want):
    with DecisionClient(url) as client:
        answer = client.decide_batch(units, chunk=25)  # two requests, the second with 15 units
    assert len(answer["decisions"]) == len(units)
    for decision, w in zip(answer["decisions"], want):
        assert_matches(decision, w, GRID)


def test_unknown_category_and_dc_are_answered_with_the_fallback(http, units, checkpoint):
    odd = {**units[2], "category": "garden-gnomes", "dc": "DC-99"}
    response = http.post("/v1/decide", json=odd)
    assert response.status_code == 200
    assert response.json()["fallbacks"] == ["category", "dc"]
    assert_matches(response.json(), expected(Policy.load(checkpoint[0]), [odd])[0], GRID)


def _set(unit: dict, **changes) -> dict:
    return {**unit, **changes}


def _drop(unit: dict, key: str) -> dict:
    return {k: v for k, v in unit.items() if k != key}


def _nan_body(unit: dict) -> bytes:
    """Python's json writes NaN/Infinity tokens, which the server's parser accepts and must then refuse."""
    return json.dumps(_set(unit, sales=[float("nan")] + unit["sales"][1:])).encode()


# (route, body builder, expected field). Bodies are built from a valid unit ``u``.
MALFORMED = {
    "sales not a list": ("/v1/decide", lambda u: _set(u, sales="lots"), "sales"),
    "sales item not a number": ("/v1/decide", lambda u: _set(u, sales=u["sales"][:3] + ["x"] + u["sales"][4:]),
                                "sales[3]"),
    "missing sku": ("/v1/decide", lambda u: _drop(u, "sku"), "sku"),
    "missing on_hand": ("/v1/decide", lambda u: _drop(u, "on_hand"), "on_hand"),
    "missing decision_date": ("/v1/decide", lambda u: _drop(u, "decision_date"), "decision_date"),
    "negative sales": ("/v1/decide", lambda u: _set(u, sales=[-1.0] + u["sales"][1:]), "sales[0]"),
    "negative on_hand": ("/v1/decide", lambda u: _set(u, on_hand=-3), "on_hand"),
    "negative on_order": ("/v1/decide", lambda u: _set(u, on_order=-0.5), "on_order"),
    "history too short": ("/v1/decide", lambda u: _set(u, sales=[1.0, 2.0, 3.0], promo=None, price=None), "sales"),
    "history too long": ("/v1/decide", lambda u: _set(u, sales=[1.0] * (MAX_HISTORY_DAYS + 1), promo=None,
                                                      price=None), "sales"),
    "NaN sales": ("/v1/decide", _nan_body, "sales[0]"),
    "infinite unit_cost": ("/v1/decide", lambda u: json.dumps(_set(u, unit_cost=float("inf"))).encode(),
                           "unit_cost"),
    "price below cost": ("/v1/decide", lambda u: _set(u, unit_price=u["unit_cost"] / 2), "unit_price"),
    "fractional lead time": ("/v1/decide", lambda u: _set(u, lead_time_days=1.5), "lead_time_days"),
    "zero review period": ("/v1/decide", lambda u: _set(u, review_period_days=0), "review_period_days"),
    "unknown field": ("/v1/decide", lambda u: _set(u, colour="red"), "colour"),
    "bad date": ("/v1/decide", lambda u: _set(u, decision_date="tomorrow"), "decision_date"),
    "empty sku": ("/v1/decide", lambda u: _set(u, sku=""), "sku"),
    "share above one": ("/v1/decide", lambda u: _set(u, sales_share=1.5), "sales_share"),
    "promo length differs": ("/v1/decide", lambda u: _set(u, promo=[0.0, 1.0]), "promo"),
    "extra the model lacks": ("/v1/decide", lambda u: _set(u, extra={**u["extra"], "colour": "red"}), "extra"),
    "text for numeric extra": ("/v1/decide", lambda u: _set(u, extra={**u["extra"], "shelf_life_days": "long"}),
                               "extra.shelf_life_days"),
    "not JSON": ("/v1/decide", lambda u: b'{"sku": "A", ', "body"),
    "JSON list body": ("/v1/decide", lambda u: [u], "body"),
    "batch too large": ("/v1/decide/batch", lambda u: {"units": [_set(u, sales=u["sales"][:7], promo=None,
                                                                      price=None)] * (MAX_BATCH_UNITS + 1)},
                        "units"),
    "batch empty": ("/v1/decide/batch", lambda u: {"units": []}, "units"),
    "batch missing units": ("/v1/decide/batch", lambda u: {"unit": [u]}, "units"),
    "batch bad unit": ("/v1/decide/batch", lambda u: {"units": [u, u, _set(u, on_hand=-1)]}, "units[2].on_hand"),
    "batch unit the model refuses": ("/v1/decide/batch",
                                     lambda u: {"units": [u, _set(u, promo=[1.0])]}, "promo"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_4xx_naming_the_field(http, units, case):
    route, build, field = MALFORMED[case]
    body = build(units[0])
    if isinstance(body, bytes):
        response = http.post(route, content=body, headers={"content-type": "application/json"})
    else:
        response = http.post(route, json=body)
    assert response.status_code == 422, response.text[:300]
    answer = response.json()
    assert answer["detail"][0]["field"] == field, answer
    assert answer["error"].startswith(f"{field}: ")


def test_model_refusal_in_a_shared_batch_fails_only_that_request(url, units):
    """A unit the model refuses, sent concurrently with good ones, must not fail its batch mates."""
    bad = _set(units[0], promo=[1.0])

    async def send_all():
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/decide", json=u) for u in [bad] + units[:7]))

    responses = asyncio.run(send_all())
    assert responses[0].status_code == 422 and responses[0].json()["detail"][0]["field"] == "promo"
    assert [r.status_code for r in responses[1:]] == [200] * 7


def test_oversized_body_is_refused_before_parsing(http):
    response = http.post("/v1/decide/batch", content=b" " * (MAX_BODY_BYTES + 1),
                         headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"][0]["field"] == "body"


def test_service_keeps_serving_after_bad_requests(http, units, want):
    assert http.get("/healthz").status_code == 200
    assert_matches(http.post("/v1/decide", json=units[5]).json(), want[5], GRID)


def test_client_turns_answers_into_errors(url, units):
    with DecisionClient(url) as client:
        with pytest.raises(InputError) as err:
            client.decide(_set(units[0], on_hand=-1))
        assert err.value.field == "on_hand" and "greater than or equal to 0" in err.value.problem
        with pytest.raises(InputError) as err:  # the second request of 25: unit 30 of the whole list
            client.decide_batch(units[:30] + [_set(units[30], on_hand=-1)] + units[31:], chunk=25)
        assert err.value.field == "units[30].on_hand" and "request of units 25..39" in err.value.where
    with DecisionClient(f"http://127.0.0.1:{free_port()}", timeout_s=5) as closed:
        with pytest.raises(ServiceError):
            closed.health()


def test_cli_decide_from_json_and_from_a_dataset_folder(url, units, want, checkpoint, tmp_path, capsys):
    data = tmp_path / "units.json"
    data.write_text(json.dumps({"units": units}))
    out = tmp_path / "decisions.csv"
    assert main(["decide", "--url", url, "--data", str(data), "--out", str(out), "--chunk", "30"]) == 0
    table = pd.read_csv(out)
    assert table["inventory_days"].tolist() == [w["inventory_days"] for w in want]
    assert table["order_quantity"].tolist() == [w["order_quantity"] for w in want]

    folder = tmp_path / "dataset"
    write_dataset(checkpoint[1], folder, fmt="csv")
    stock = tmp_path / "stock.csv"
    pd.DataFrame({k: [u[k] for u in units] for k in ("sku", "dc", "on_hand", "on_order")}).to_csv(stock, index=False)
    out_json = tmp_path / "decisions.json"
    assert main(["decide", "--url", url, "--data", str(folder), "--stock", str(stock), "--out", str(out_json)]) == 0
    from_folder = json.loads(out_json.read_text())["decisions"]
    assert [d["inventory_days"] for d in from_folder] == [w["inventory_days"] for w in want]
    np.testing.assert_allclose([d["daily_demand"] for d in from_folder], [w["daily_demand"] for w in want],
                               rtol=1e-12)


def test_cli_decide_bad_unit_exits_non_zero_and_writes_nothing(url, units, tmp_path, capsys):
    data = tmp_path / "units.jsonl"
    data.write_text("\n".join(json.dumps(u) for u in [units[0], _set(units[1], sales=[-2.0] * 10, promo=None,
                                                                          price=None)]))
    out = tmp_path / "decisions.csv"
    assert main(["decide", "--url", url, "--data", str(data), "--out", str(out)]) == 2
    assert "units[1].sales[0]" in capsys.readouterr().err
    assert not out.exists()
