"""The three input streams of the network, built only from what is known at a decision date.

One implementation serves training, backtesting and serving. Two front ends gather *raw* inputs
into the same :class:`RawFeatures` arrays:

- :class:`PanelFeatures` gathers a batch of ``(unit, day)`` decision points from a :class:`Dataset`
  (training, backtests), using days ``< day`` for sales/prices and ``day .. day+H-1`` for the promo
  flags planned in advance;
- :func:`raw_from_records` gathers one :class:`UnitRecord` per unit (serving: the caller sends the
  recent sales and the unit's attributes and objectives).

:func:`encode` then does all the maths once (per-unit scaling, calendar, transforms,
standardisation with the :class:`FeatureStats` fitted on training rows) and returns the tensors
the network reads. A decision day ``t`` sees sales up to ``t - 1``: ordering happens before that
day's demand (DESIGN.md section 4).
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from orpr_ray.core.errors import ConfigError, InputError
from orpr_ray.core.schema import Strict
from orpr_ray.data.dataset import Dataset
from orpr_ray.model.config import ModelConfig

# Per-day channels of the sales stream, in tensor order; the last 7 are the day-of-week one-hot.
DAY_CHANNELS = ("sales", "log_sales", "observed", "future", "promo", "price_ratio",
                "mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Numeric attributes, before the dataset's extra attribute columns.
BASE_ATTRIBUTES = ("lead_time_days", "review_period_days", "log_unit_price", "log_unit_cost", "margin",
                   "log_sales_scale")
# Raw attribute columns gathered per unit (transformed into BASE_ATTRIBUTES by ``encode``).
RAW_ATTRIBUTES = ("lead_time_days", "review_period_days", "unit_price", "unit_cost")
# Decision objectives; NaN = not known for this unit, which the network sees as a masked token.
OBJECTIVES = ("target_turnover_days", "sales_share", "alpha", "recent_turnover_days", "recent_in_stock_rate")
# The objectives a Dataset cannot tell: they come from past OR labels (LabelHistory) or from the caller.
LABEL_OBJECTIVES = ("alpha", "recent_turnover_days", "recent_in_stock_rate")
# Floor of the sales share inside its log transform (a share of 0 is legal).
_SHARE_FLOOR = 1e-4
UNKNOWN = 0  # embedding row of a category / DC never seen in training

Features = dict[str, torch.Tensor]


@dataclass
class RawFeatures:
    """Untransformed inputs for a batch of B decision points (T history days, H days ahead).

    sales: float64 (B, T) units sold on the T days before the decision day, 0 where not observed.
    observed: bool (B, T) the day belongs to the unit's history.
    price: float64 (B, T) selling price on those days (unit price where unknown).
    promo: float64 (B, T + H) promotion flag/intensity, history days then the H planned days ahead.
    weekday: int64 (B,) day of week of the decision day (Monday = 0).
    category, dc: object (B,) names.
    attributes: float64 (B, len(RAW_ATTRIBUTES) + E) raw attributes then E numeric extra columns, NaN = missing.
    extra_categorical: object (B, K) values of the K text extra columns (None/NaN = missing).
    objectives: float64 (B, len(OBJECTIVES)), NaN = missing.
    """

    sales: np.ndarray
    observed: np.ndarray
    price: np.ndarray
    promo: np.ndarray
    weekday: np.ndarray
    category: np.ndarray
    dc: np.ndarray
    attributes: np.ndarray
    extra_categorical: np.ndarray
    objectives: np.ndarray

    def __len__(self) -> int:
        return len(self.weekday)

    @property
    def horizon_days(self) -> np.ndarray:
        """(B,) lead time + review period: the days the coming order must cover."""
        return (self.attributes[:, 0] + self.attributes[:, 1]).astype(np.int64)


@dataclass
class FeatureStats:
    """What ``encode`` learned from the training rows: vocabularies and standardisation statistics.

    extra_numeric / extra_categorical: the dataset's extra attribute columns, split by type;
    extra_vocab[k]: the known values of text column k (the most frequent ones, up to
    ``model.extra_buckets - 1``; the others share the "unknown" embedding row).
    """

    categories: list[str]
    dcs: list[str]
    extra_numeric: list[str]
    extra_categorical: list[str]
    extra_vocab: list[list[str]]
    attribute_mean: list[float]
    attribute_std: list[float]
    objective_mean: list[float]
    objective_std: list[float]

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureStats":
        return cls(**{key: list(value) for key, value in data.items()})

    @property
    def attribute_names(self) -> list[str]:
        """Numeric attribute tokens, in tensor order (text extras are embedded separately)."""
        return list(BASE_ATTRIBUTES) + self.extra_numeric

    @classmethod
    def fit(cls, raw: RawFeatures, extra_numeric: list[str], extra_categorical: list[str],
            cfg: ModelConfig) -> "FeatureStats":
        """Vocabularies and the mean/std of each transformed column over its present values.

        Fit on training rows only, so validation and test never shape the scaling.
        """
        categories = sorted(set(raw.category.tolist()))
        dcs = sorted(set(raw.dc.tolist()))
        for name, vocab, buckets in (("category_buckets", categories, cfg.category_buckets),
                                     ("dc_buckets", dcs, cfg.dc_buckets)):
            if len(vocab) + 1 > buckets:
                raise ConfigError(f"{len(vocab)} distinct values need at least {len(vocab) + 1} embedding "
                                  f"rows (one is kept for unknown values), the config has {buckets}",
                                  field=f"model.{name}")
        extra_vocab = [_frequent_values(raw.extra_categorical[:, k], cfg.extra_buckets - 1)
                       for k in range(len(extra_categorical))]
        a_mean, a_std = _masked_mean_std(_attribute_values(raw, _sales_scale(raw, cfg)))
        o_mean, o_std = _masked_mean_std(_objective_values(raw))
        return cls(categories=categories, dcs=dcs, extra_numeric=list(extra_numeric),
                   extra_categorical=list(extra_categorical), extra_vocab=extra_vocab, attribute_mean=a_mean,
                   attribute_std=a_std, objective_mean=o_mean, objective_std=o_std)


def _frequent_values(values: np.ndarray, keep: int) -> list[str]:
    """The ``keep`` most frequent text values (ties by name), missing values ignored."""
    names, counts = np.unique([v for v in values.tolist() if isinstance(v, str)], return_counts=True)
    order = sorted(range(len(names)), key=lambda i: (-counts[i], names[i]))[:keep]
    return sorted(str(names[i]) for i in order)


def _masked_mean_std(values: np.ndarray) -> tuple[list[float], list[float]]:
    """Column mean/std over finite entries; an all-missing or constant column gets (0, 1)."""
    present = np.isfinite(values)
    count = present.sum(axis=0)
    filled = np.where(present, values, 0.0)
    mean = np.where(count > 0, filled.sum(axis=0) / np.maximum(count, 1), 0.0)
    var = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1)
    std = np.sqrt(var)
    std = np.where(std > 1e-6, std, 1.0)
    return mean.tolist(), std.tolist()


# ----------------------------------------------------------------------------------------------
# The one implementation of the feature maths.

def _sales_scale(raw: RawFeatures, cfg: ModelConfig) -> np.ndarray:
    """(B,) mean daily sales over the observed history days, floored: large and small SKUs look alike."""
    n_obs = raw.observed.sum(axis=1)
    mean = np.where(n_obs > 0, (raw.sales * raw.observed).sum(axis=1) / np.maximum(n_obs, 1), 0.0)
    return np.maximum(mean, cfg.min_scale)


def _attribute_values(raw: RawFeatures, scale: np.ndarray) -> np.ndarray:
    """(B, len(BASE_ATTRIBUTES) + E) transformed attributes, NaN = missing."""
    lead, review, price, cost = (raw.attributes[:, i] for i in range(len(RAW_ATTRIBUTES)))
    with np.errstate(divide="ignore", invalid="ignore"):
        margin = (price - cost) / price
    base = np.stack([lead, review, np.log1p(price), np.log1p(cost), margin, np.log(scale)], axis=1)
    return np.concatenate([base, raw.attributes[:, len(RAW_ATTRIBUTES):]], axis=1)


def _objective_values(raw: RawFeatures) -> np.ndarray:
    """(B, len(OBJECTIVES)) transformed objectives (logs of the heavy-tailed ones), NaN = missing."""
    target, share, alpha, turnover, in_stock = (raw.objectives[:, i] for i in range(len(OBJECTIVES)))
    return np.stack([np.log1p(target), np.log(np.maximum(share, 0.0) + _SHARE_FLOOR), alpha,
                     np.log1p(turnover), in_stock], axis=1)


def _day_channels(raw: RawFeatures, scale: np.ndarray, unit_price: np.ndarray, horizon: int) -> np.ndarray:
    """(B, T + H, len(DAY_CHANNELS)): scaled history, then the H days ahead (only promo + calendar)."""
    batch, history = raw.sales.shape
    length = history + horizon
    out = np.zeros((batch, length, len(DAY_CHANNELS)), dtype=np.float32)
    scaled = np.where(raw.observed, raw.sales, 0.0) / scale[:, None]  # (B, T)
    out[:, :history, 0] = scaled
    out[:, :history, 1] = np.log1p(scaled)
    out[:, :history, 2] = raw.observed
    out[:, history:, 3] = 1.0
    out[:, :, 4] = raw.promo
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(raw.observed, raw.price / unit_price[:, None], 0.0)
    out[:, :history, 5] = np.nan_to_num(ratio, nan=0.0, posinf=0.0)
    # Day j of the window is (j - T) days from the decision day.
    weekday = (raw.weekday[:, None] + np.arange(-history, horizon)[None, :]) % 7  # (B, T + H)
    np.put_along_axis(out[:, :, 6:], weekday[:, :, None], 1.0, axis=2)
    return out


def _vocab_index(names: np.ndarray, vocab: list[str]) -> np.ndarray:
    """(B,) embedding rows: 1 + position in the training vocabulary, UNKNOWN (0) for unseen names."""
    lookup = {name: i + 1 for i, name in enumerate(vocab)}
    return np.array([lookup.get(name, UNKNOWN) if isinstance(name, str) else UNKNOWN for name in names.tolist()],
                    dtype=np.int64)


def _standardise(values: np.ndarray, mean: list[float], std: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Standardised values and presence; NaN and infinite values (e.g. the turnover of a unit that
    sold nothing) count as missing."""
    present = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        scaled = (values - np.asarray(mean)) / np.asarray(std)
    return np.where(present, scaled, 0.0).astype(np.float32), present


def encode(raw: RawFeatures, stats: FeatureStats, cfg: ModelConfig) -> Features:
    """Network inputs for a batch of B decision points.

    days: float32 (B, T + H, len(DAY_CHANNELS)); category, dc: int64 (B,); extra_categories: int64 (B, K)
    embedding rows of the text extra attributes (0 = unknown);
    attributes / attributes_mask: (B, A) standardised values and presence (A = len(stats.attribute_names));
    objectives / objectives_mask: (B, len(OBJECTIVES)); scale: float32 (B,) units/day the sales were
    divided by (multiply the sales head's output by it); horizon: int64 (B,) lead time + review period.
    """
    given = (raw.attributes.shape[1] - len(RAW_ATTRIBUTES), raw.extra_categorical.shape[1])
    if given != (len(stats.extra_numeric), len(stats.extra_categorical)):
        raise InputError(f"{given[0]} numeric and {given[1]} text extra attributes given, the model was "
                         f"trained with {stats.extra_numeric} and {stats.extra_categorical}",
                         field="extra attributes")
    scale = _sales_scale(raw, cfg)
    attributes, attributes_mask = _standardise(_attribute_values(raw, scale), stats.attribute_mean,
                                               stats.attribute_std)
    objectives, objectives_mask = _standardise(_objective_values(raw), stats.objective_mean, stats.objective_std)
    return {
        "days": torch.from_numpy(_day_channels(raw, scale, raw.attributes[:, 2], cfg.horizon_days)),
        "category": torch.from_numpy(_vocab_index(raw.category, stats.categories)),
        "dc": torch.from_numpy(_vocab_index(raw.dc, stats.dcs)),
        "extra_categories": torch.from_numpy(np.stack(
            [_vocab_index(raw.extra_categorical[:, k], vocab) for k, vocab in enumerate(stats.extra_vocab)],
            axis=1) if stats.extra_vocab else np.zeros((len(raw), 0), dtype=np.int64)),
        "attributes": torch.from_numpy(attributes),
        "attributes_mask": torch.from_numpy(attributes_mask),
        "objectives": torch.from_numpy(objectives),
        "objectives_mask": torch.from_numpy(objectives_mask),
        "scale": torch.from_numpy(scale.astype(np.float32)),
        "horizon": torch.from_numpy(raw.horizon_days),
    }


def select(features: Features, rows: torch.Tensor | np.ndarray | slice) -> Features:
    """The same features for a subset of the batch rows."""
    return {key: value[rows] for key, value in features.items()}


# ----------------------------------------------------------------------------------------------
# Front end 1: decision points of a Dataset.

def split_extra_attributes(ds: Dataset) -> tuple[list[str], list[str]]:
    """The dataset's extra attribute columns split into numeric and text (categorical) ones."""
    numeric = [c for c in ds.extra_attributes if pd.api.types.is_numeric_dtype(ds.units[c])]
    return numeric, [c for c in ds.extra_attributes if c not in numeric]


def epoch_weekday(dates: np.ndarray) -> np.ndarray:
    """Day of week (Monday = 0) of ``datetime64[D]`` dates (1970-01-01 was a Thursday)."""
    return (dates.astype("datetime64[D]").astype(np.int64) + 3) % 7


class PanelFeatures:
    """Gathers raw features of ``(unit, day)`` decision points from a Dataset, vectorised over the batch.

    Per-unit sums of sales value are prefix-summed once, so the unit's share of its category x DC
    sales over the history window costs two lookups per row.
    """

    def __init__(self, ds: Dataset, cfg: ModelConfig):
        self.ds = ds
        self.cfg = cfg
        units = ds.units
        self.category = units["category"].astype(str).to_numpy(dtype=object)
        self.dc = units["dc"].astype(str).to_numpy(dtype=object)
        self.extra_numeric, self.extra_categorical = split_extra_attributes(ds)
        self.attributes = units[list(RAW_ATTRIBUTES) + self.extra_numeric].to_numpy(dtype=np.float64)  # (U, 4 + E)
        self.extra_values = units[self.extra_categorical].to_numpy(dtype=object)  # (U, K)
        self.target_turnover = units["target_turnover_days"].to_numpy(dtype=np.float64) \
            if "target_turnover_days" in units else np.full(ds.n_units, np.nan)
        self.first_weekday = int(epoch_weekday(ds.dates[:1])[0])
        # Sales value prefix sums: unit_cum[u, t] = value sold by u on days < t.  (U, D + 1)
        value = np.where(ds.observed, ds.sales * ds.price, 0.0)
        self.unit_cum = np.concatenate([np.zeros((ds.n_units, 1)), np.cumsum(value, axis=1)], axis=1)
        groups = units["category"].astype(str) + "\x1f" + units["dc"].astype(str)
        self.group, group_names = pd.factorize(groups)
        self.group_cum = np.zeros((len(group_names), ds.n_days + 1))
        np.add.at(self.group_cum, self.group, self.unit_cum)

    def raw(self, unit: np.ndarray, day: np.ndarray, known: np.ndarray | None = None) -> RawFeatures:
        """Raw features of decision points ``(unit[i], day[i])``; day may equal n_days (the next day).

        known: (B, len(LABEL_OBJECTIVES)) values the data cannot give (see LabelHistory), NaN/None = unknown.
        """
        unit = np.asarray(unit, dtype=np.int64)
        day = np.asarray(day, dtype=np.int64)
        history, horizon = self.cfg.history_days, self.cfg.horizon_days
        n_days = self.ds.n_days
        past = day[:, None] + np.arange(-history, 0)[None, :]  # (B, T), days before the decision day
        inside = past >= 0
        past_c = np.clip(past, 0, n_days - 1)
        observed = inside & self.ds.observed[unit[:, None], past_c]
        sales = np.where(observed, self.ds.sales[unit[:, None], past_c], 0.0)
        unit_price = self.attributes[unit, 2]
        price = np.where(observed, self.ds.price[unit[:, None], past_c], unit_price[:, None])
        window = day[:, None] + np.arange(-history, horizon)[None, :]  # (B, T + H)
        in_calendar = (window >= 0) & (window < n_days)
        promo = np.where(in_calendar, self.ds.promo[unit[:, None], np.clip(window, 0, n_days - 1)], 0.0)
        start = np.maximum(day - history, 0)
        end = np.minimum(day, n_days)
        group_value = self.group_cum[self.group[unit], end] - self.group_cum[self.group[unit], start]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(group_value > 0,
                             (self.unit_cum[unit, end] - self.unit_cum[unit, start]) / group_value, np.nan)
        known = (np.full((len(unit), len(LABEL_OBJECTIVES)), np.nan) if known is None
                 else np.asarray(known, dtype=np.float64))
        objectives = np.concatenate([self.target_turnover[unit, None], share[:, None], known], axis=1)
        return RawFeatures(sales=sales, observed=observed, price=price, promo=promo,
                           weekday=(self.first_weekday + day) % 7, category=self.category[unit],
                           dc=self.dc[unit], attributes=self.attributes[unit],
                           extra_categorical=self.extra_values[unit], objectives=objectives)

    def future_sales(self, unit: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forecast targets: (B, H) sales on days ``day .. day+H-1`` and (B, H) whether each is observed."""
        unit = np.asarray(unit, dtype=np.int64)
        ahead = np.asarray(day, dtype=np.int64)[:, None] + np.arange(self.cfg.horizon_days)[None, :]
        inside = ahead < self.ds.n_days
        ahead_c = np.minimum(ahead, self.ds.n_days - 1)
        observed = inside & self.ds.observed[unit[:, None], ahead_c]
        return np.where(observed, self.ds.sales[unit[:, None], ahead_c], 0.0), observed


class LabelHistory:
    """What past OR labels tell a deployed policy about a unit at a decision day.

    A label at day d' is only known once its replay horizon has passed (day d' + horizon), so a
    decision at day t sees the unit's latest label with ``d' + horizon <= t``: its calibrated
    service level alpha and the simulated turnover / in-stock of its target (the unit's recent
    figures). The panel carries no stock records, so these are the recent figures there are.
    """

    COLUMNS = ("alpha", "turnover_days", "in_stock_rate")  # label columns, in LABEL_OBJECTIVES order

    def __init__(self, labels: pd.DataFrame, horizon: int, columns: tuple[str, ...] = COLUMNS):
        self.columns = tuple(columns)
        table = pd.DataFrame({"unit": labels["unit"].to_numpy(np.int64),
                              "known_from": labels["day"].to_numpy(np.int64) + horizon,
                              **{c: labels[c].to_numpy(np.float64) for c in self.columns}})
        self.table = table.sort_values("known_from", kind="stable")

    def lookup(self, unit: np.ndarray, day: np.ndarray) -> np.ndarray:
        """(N, len(columns)) known values at each ``(unit, day)`` (by default the LABEL_OBJECTIVES),
        NaN before the first is known."""
        query = pd.DataFrame({"unit": np.asarray(unit, np.int64), "day": np.asarray(day, np.int64),
                              "row": np.arange(len(unit))}).sort_values("day", kind="stable")
        merged = pd.merge_asof(query, self.table, left_on="day", right_on="known_from", by="unit", direction="backward")
        out = np.empty((len(unit), len(self.columns)))
        out[merged["row"].to_numpy()] = merged[list(self.columns)].to_numpy(np.float64)
        return out


# ----------------------------------------------------------------------------------------------
# Front end 2: one record per unit (serving).

class UnitRecord(Strict):
    """Everything a decision for one unit needs, as a caller sends it (sales oldest first)."""

    sku: str
    dc: str = "DC"
    category: str
    decision_date: _dt.date = Field(description="the day the order is placed (its demand is not yet known)")
    sales: list[float] = Field(min_length=1, description="daily sales of the days just before decision_date, "
                                                         "oldest first; only the last history_days are used")
    promo: list[float] | None = Field(None, description="promo flags of the same days as sales (None = none)")
    promo_ahead: list[float] = Field(default_factory=list, description="planned promo flags from decision_date "
                                                                       "on (missing days = no promotion)")
    price: list[float] | None = Field(None, description="selling prices of the same days as sales "
                                                        "(None = unit_price)")
    unit_cost: float = Field(gt=0)
    unit_price: float = Field(gt=0)
    lead_time_days: int = Field(ge=0)
    review_period_days: int = Field(ge=1)
    extra: dict[str, float | str | None] = Field(default_factory=dict,
                                                 description="extra attribute columns by name (None = unknown)")
    target_turnover_days: float | None = None
    sales_share: float | None = Field(None, ge=0, le=1, description="share of its category x DC sales value")
    alpha: float | None = Field(None, ge=0, le=1, description="calibrated service level")
    recent_turnover_days: float | None = Field(None, ge=0)
    recent_in_stock_rate: float | None = Field(None, ge=0, le=1)


def _last(values: list[float] | None, history: int, fill: float) -> tuple[np.ndarray, int]:
    """The last ``history`` values right-aligned in a length-``history`` array, and how many there were."""
    out = np.full(history, fill, dtype=np.float64)
    if values:
        tail = np.asarray(values[-history:], dtype=np.float64)
        out[history - len(tail):] = tail
        return out, len(tail)
    return out, 0


def raw_from_records(records: list[UnitRecord], stats: FeatureStats, cfg: ModelConfig) -> RawFeatures:
    """Raw features of one decision point per record, laid out exactly as :class:`PanelFeatures` does."""
    if not records:
        raise InputError("no records to decide for", field="records")
    history, horizon = cfg.history_days, cfg.horizon_days
    for i, rec in enumerate(records):
        for name in ("promo", "price"):
            values = getattr(rec, name)
            if values is not None and len(values) != len(rec.sales):
                raise InputError(f"has {len(values)} values for {len(rec.sales)} sales days", field=name,
                                 where=f"record {i} (sku {rec.sku}, dc {rec.dc})")
        where = f"record {i} (sku {rec.sku}, dc {rec.dc})"
        unknown = sorted(set(rec.extra) - set(stats.extra_numeric) - set(stats.extra_categorical))
        if unknown:
            raise InputError(f"unknown extra attributes {unknown}; the model knows "
                             f"{stats.extra_numeric + stats.extra_categorical}", field="extra", where=where)
        for name in stats.extra_numeric:
            if isinstance(rec.extra.get(name), str):
                raise InputError(f"must be a number, got {rec.extra[name]!r}", field=f"extra.{name}", where=where)
    rows = []
    for rec in records:
        sales, n = _last(rec.sales, history, 0.0)
        observed = np.arange(history) >= history - n
        promo_hist, _ = _last(rec.promo, history, 0.0)
        price, _ = _last(rec.price, history, rec.unit_price)
        ahead = np.zeros(horizon)
        ahead[:min(horizon, len(rec.promo_ahead))] = rec.promo_ahead[:horizon]
        attributes = [rec.lead_time_days, rec.review_period_days, rec.unit_price, rec.unit_cost]
        attributes += [_number(rec.extra.get(name)) for name in stats.extra_numeric]
        extra_values = [_text(rec.extra.get(name)) for name in stats.extra_categorical]
        objectives = [np.nan if v is None else v for v in (rec.target_turnover_days, rec.sales_share,
                                                           rec.alpha, rec.recent_turnover_days,
                                                           rec.recent_in_stock_rate)]
        rows.append((sales, observed, price, np.concatenate([promo_hist, ahead]), rec.decision_date.weekday(),
                     rec.category, rec.dc, attributes, extra_values, objectives))
    columns = list(zip(*rows))
    return RawFeatures(sales=np.stack(columns[0]), observed=np.stack(columns[1]), price=np.stack(columns[2]),
                       promo=np.stack(columns[3]), weekday=np.asarray(columns[4], dtype=np.int64),
                       category=np.asarray(columns[5], dtype=object), dc=np.asarray(columns[6], dtype=object),
                       attributes=np.asarray(columns[7], dtype=np.float64),
                       extra_categorical=np.asarray(columns[8], dtype=object).reshape(len(rows), -1),
                       objectives=np.asarray(columns[9], dtype=np.float64))


def _number(value: float | str | None) -> float:
    return np.nan if value is None else float(value)


def _text(value: float | str | None) -> str | None:
    """Text extras arrive as strings; a number sent for one is matched by its text form."""
    return None if value is None else str(value)
