"""Python client of the decision service, and the conversion of a demand file into request units.

``DecisionClient`` wraps the HTTP routes; a 4xx answer becomes an :class:`InputError` naming the
field the server named, anything else (no server, 5xx) a :class:`ServiceError`. Large lists are
split into requests of at most ``MAX_BATCH_UNITS`` units, the server's documented limit.
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from pathlib import Path
from typing import Any, Iterable

import httpx
import numpy as np
import pandas as pd

from orpr_ray.core.errors import InputError
from orpr_ray.data.dataset import Dataset
from orpr_ray.data.tables import numeric_column, read_table, require_columns, text_column, unit_index
from orpr_ray.model.config import ModelConfig
from orpr_ray.model.features import PanelFeatures
from orpr_ray.serve.schemas import MAX_BATCH_UNITS, UnitRequest

STOCK_COLUMNS = ("sku", "dc", "on_hand", "on_order")


class ServiceError(RuntimeError):
    """The service could not be reached or failed (not a problem with the request)."""


class DecisionClient:
    def __init__(self, url: str, *, timeout_s: float = 120.0, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)

    def __enter__(self) -> "DecisionClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def model(self) -> dict:
        return self._call("GET", "/v1/model")

    def decide(self, unit: dict | UnitRequest) -> dict:
        """Decision for one unit (a dict of UnitRequest fields, or the model)."""
        return self._call("POST", "/v1/decide", _body(unit))

    def decide_batch(self, units: Iterable[dict | UnitRequest], *, chunk: int = MAX_BATCH_UNITS) -> dict:
        """Decisions for many units, in requests of ``chunk`` units; ``{"model_version", "decisions"}``.

        Refuses to mix answers of two model versions (the service was redeployed mid-run).
        """
        units = [_body(u) for u in units]
        if not 1 <= chunk <= MAX_BATCH_UNITS:
            raise InputError(f"must be between 1 and {MAX_BATCH_UNITS}", field="chunk")
        decisions: list[dict] = []
        versions = set()
        for lo in range(0, len(units), chunk):
            try:
                answer = self._call("POST", "/v1/decide/batch", {"units": units[lo:lo + chunk]})
            except InputError as exc:  # the server counts units within the request: count them in the whole list
                raise InputError(exc.problem, field=_shift_unit_index(exc.field, lo),
                                 where=f"request of units {lo}..{min(lo + chunk, len(units)) - 1}"
                                       + (f", {exc.where}" if exc.where else "")) from exc
            decisions += answer["decisions"]
            versions.add(answer["model_version"])
        if len(versions) > 1:
            raise ServiceError(f"the service changed model version during the run: {sorted(versions)}")
        return {"model_version": versions.pop() if versions else None, "decisions": decisions}

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServiceError(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from exc
        if 400 <= response.status_code < 500:
            raise _client_error(response, f"{method} {path}")
        if response.status_code >= 300:
            raise ServiceError(f"{method} {self.url}{path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()


def _shift_unit_index(field: str | None, offset: int) -> str | None:
    """``units[3].sales[5]`` -> ``units[3 + offset].sales[5]``; other fields unchanged."""
    match = re.fullmatch(r"units\[(\d+)\](.*)", field or "")
    return f"units[{int(match[1]) + offset}]{match[2]}" if match else field


def _body(unit: dict | UnitRequest) -> dict:
    return unit.model_dump(mode="json") if isinstance(unit, UnitRequest) else unit


def _client_error(response: httpx.Response, call: str) -> InputError:
    """The server's first problem as an InputError (field and where as the server named them)."""
    try:
        first = response.json()["detail"][0]
        return InputError(first["message"], field=first["field"],
                          where=first.get("where") or f"HTTP {response.status_code} from {call}")
    except (ValueError, KeyError, IndexError, TypeError):
        return InputError(f"HTTP {response.status_code} from {call}: {response.text[:500]}")


# ----------------------------------------------------------------------------------------------
# A dataset folder (the project's demand + units files) as request units.

def read_stock(path: str | Path) -> pd.DataFrame:
    """``sku, dc, on_hand, on_order`` per unit (CSV or Parquet), checked like every input table."""
    table = read_table(Path(path), text_columns=("sku", "dc"))
    require_columns(table, STOCK_COLUMNS, allowed=STOCK_COLUMNS)
    frame = pd.DataFrame({"sku": text_column(table, "sku"), "dc": text_column(table, "dc")})
    for column in ("on_hand", "on_order"):
        values = numeric_column(table, column)
        table.fail(column, values < 0, "must be >= 0")
        frame[column] = values
    table.fail("sku", unit_index(frame["sku"].to_numpy(), frame["dc"].to_numpy()).duplicated(),
               "unit (sku, dc) appears more than once")
    return frame


def units_from_dataset(ds: Dataset, stock: pd.DataFrame, model_config: ModelConfig | dict, *,
                       source: str = "dataset") -> list[dict]:
    """One request unit per unit of ``ds``, deciding on the day after its last date.

    The sales, prices, promo flags and sales share are gathered by the training feature code
    (:class:`PanelFeatures`), so a unit is described to the service as it was in training.
    Every unit must be observed on the last day (else its recent sales are not "just before"
    the decision date) and must have a stock row.
    """
    cfg = model_config if isinstance(model_config, ModelConfig) else ModelConfig.model_validate(model_config)
    last = ds.n_days - 1
    stale = np.flatnonzero(ds.last_day < last)
    if stale.size:
        sku, dc = ds.unit_keys[int(stale[0])]
        raise InputError(f"has no sales row on the last date {ds.dates[last]}, so it cannot be decided for that "
                         f"date ({stale.size} units like this)", file=source, field="date",
                         where=f"unit (sku={sku}, dc={dc})")
    stock_rows = unit_index(stock["sku"].to_numpy(), stock["dc"].to_numpy()).get_indexer(
        unit_index(ds.units["sku"].to_numpy(), ds.units["dc"].to_numpy()))  # (U,) row in stock, -1 = none
    if (stock_rows < 0).any():
        sku, dc = ds.unit_keys[int(np.flatnonzero(stock_rows < 0)[0])]
        raise InputError(f"no stock row for this unit ({int((stock_rows < 0).sum())} units without one)",
                         field="on_hand", where=f"unit (sku={sku}, dc={dc})")
    unit = np.arange(ds.n_units)
    raw = PanelFeatures(ds, cfg).raw(unit, np.full(ds.n_units, ds.n_days))
    decision_date = (ds.dates[last] + np.timedelta64(1, "D")).astype(_dt.date).isoformat()
    history = cfg.history_days
    units = ds.units
    out = []
    for u in range(ds.n_units):
        seen = raw.observed[u]  # (T,) a contiguous tail: the unit is observed on the last day
        out.append({
            "sku": str(units["sku"].iat[u]), "dc": str(units["dc"].iat[u]), "category": str(units["category"].iat[u]),
            "decision_date": decision_date,
            "sales": raw.sales[u][seen].tolist(), "promo": _unless_all(raw.promo[u, :history][seen], 0.0),
            "price": _unless_all(raw.price[u][seen], float(units["unit_price"].iat[u])),
            "unit_cost": float(units["unit_cost"].iat[u]), "unit_price": float(units["unit_price"].iat[u]),
            "lead_time_days": int(units["lead_time_days"].iat[u]),
            "review_period_days": int(units["review_period_days"].iat[u]),
            "extra": {name: _optional(units[name].iat[u]) for name in ds.extra_attributes},
            "target_turnover_days": _optional(raw.objectives[u, 0]), "sales_share": _optional(raw.objectives[u, 1]),
            "on_hand": float(stock["on_hand"].iat[stock_rows[u]]),
            "on_order": float(stock["on_order"].iat[stock_rows[u]]),
        })
    return out


def _unless_all(values: np.ndarray, default: float) -> list[float] | None:
    """The values, or None (the request's "all default") when every one equals ``default``: a smaller body."""
    return None if bool(np.all(values == default)) else values.tolist()


def _optional(value: Any) -> Any:
    """NaN / None -> None (JSON null), numpy scalars -> Python values."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
