"""A synthetic e-commerce catalogue whose sales are the true (uncensored) demand.

The model, in the order it is drawn (docs/DATA.md has the full description):
- categories with their own weekly profile, yearly season (amplitude, peak day), price level,
  perishability, brands, and a target turnover for two of every three categories (NaN otherwise,
  so the historical-turnover fallback gets exercised);
- SKUs in one category, stocked in one or more DCs (half in one DC); base volume log-normal
  (ABC skew: few SKUs carry most sales), price log-normal around the category level, margin
  10-60%; units (SKU x DC) get a DC size factor, lead time 1-14 days (DC base + supplier offset)
  and a review period of 1, 2, 3 or 7 days;
- daily mean = base x weekly x yearly x trend x promotion uplift x post-promotion dip;
- daily demand: negative binomial around the mean (small dispersion = erratic), Bernoulli-gated for
  low-volume units (intermittent; lumpy when the sizes are also over-dispersed), integer-valued.

Deterministic for a seed: catalogue draws come from one child of ``SeedSequence(seed)``, daily
draws from one grandchild per fixed-size chunk of units, so memory stays bounded by the chunk.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orpr_ray.data.config import SynthConfig
from orpr_ray.data.dataset import Dataset

CATEGORY_NAMES = ("grocery", "household", "personal_care", "electronics", "apparel", "toys", "home_garden",
                  "sports", "beauty", "pet")
CHUNK_UNITS = 4096  # units simulated together; fixed so the random streams do not depend on the catalogue size
REVIEW_PERIODS = np.array([1, 2, 3, 7])
REVIEW_PROBS = np.array([0.3, 0.2, 0.2, 0.3])
PROMOTED_SHARE = 0.6  # units that ever run promotions
DIP_DAYS = 7  # post-promotion dip length: demand pulled forward recovers linearly over a week


@dataclass(frozen=True)
class _UnitModel:
    """Per-unit demand parameters, each shape (U,) (weekly: (U, 7))."""

    base: np.ndarray  # base daily mean
    weekly: np.ndarray  # day-of-week factors, Monday first, mean 1
    yearly_amp: np.ndarray
    yearly_peak: np.ndarray  # day of year of the seasonal peak
    trend: np.ndarray  # annual log-growth
    gated: np.ndarray  # bool: demand occurs on a Bernoulli share of days
    gate_p: np.ndarray  # probability of a demand day (1 when not gated)
    dispersion: np.ndarray  # negative-binomial r: small = erratic sizes
    promo_start_p: np.ndarray  # daily probability a promotion starts
    promo_days: np.ndarray  # promotion length
    uplift: np.ndarray  # demand multiplier on promotion days
    dip: np.ndarray  # demand cut on the first post-promotion day
    discount: np.ndarray  # price cut on promotion days
    unit_price: np.ndarray

    def rows(self, sl: slice) -> "_UnitModel":
        return _UnitModel(**{k: v[sl] for k, v in self.__dict__.items()})


def synthesize(cfg: SynthConfig, seed: int) -> Dataset:
    """A catalogue of ``cfg.units`` units over ``cfg.days`` days, every unit observed throughout."""
    dates = np.datetime64(cfg.start_date, "D") + np.arange(cfg.days).astype("timedelta64[D]")
    catalogue_seq, daily_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(catalogue_seq)
    units, model = _catalogue(cfg, rng)
    shape = (cfg.units, cfg.days)
    sales, promo, price = np.empty(shape), np.empty(shape, dtype=np.float32), np.empty(shape)
    starts = range(0, cfg.units, CHUNK_UNITS)
    for start, seq in zip(starts, daily_seq.spawn(len(starts))):
        rows = slice(start, min(start + CHUNK_UNITS, cfg.units))
        sales[rows], promo[rows], price[rows] = _daily(model.rows(rows), dates, np.random.default_rng(seq))
    meta = {"kind": "synthetic", "uncensored": True, "seed": seed, "config": cfg.model_dump(mode="json")}
    return Dataset(units=units, dates=dates, sales=sales, promo=promo, price=price,
                   observed=np.ones(shape, dtype=bool), extra_attributes=("brand", "shelf_life_days"), meta=meta)


def _catalogue(cfg: SynthConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, _UnitModel]:
    """Category, SKU and unit draws; returns the attribute table and the demand parameters."""
    n_cat = cfg.categories
    names = [CATEGORY_NAMES[c] if c < len(CATEGORY_NAMES) else f"category_{c + 1}" for c in range(n_cat)]
    cat_weekly = np.clip(1 + 0.2 * rng.standard_normal((n_cat, 7)), 0.5, None)
    cat_weekly /= cat_weekly.mean(axis=1, keepdims=True)  # (C, 7)
    cat_amp = rng.uniform(0.05, 0.45, n_cat)
    cat_peak = rng.uniform(0, 365, n_cat)
    cat_price = np.exp(rng.normal(np.log(12.0), 0.8, n_cat))
    cat_perishable = (np.arange(n_cat) == 0) | (rng.random(n_cat) < 0.25)
    cat_brands = rng.integers(3, 9, n_cat)
    cat_target = np.where(np.arange(n_cat) % 3 != 2, np.round(rng.uniform(3, 9, n_cat), 1), np.nan)

    # SKUs: as many as units, so even one DC per SKU fills the catalogue; the surplus is cut below.
    n_sku = cfg.units
    sku_cat = rng.choice(n_cat, size=n_sku, p=rng.dirichlet(np.full(n_cat, 3.0)))
    sku_volume = np.exp(rng.normal(np.log(cfg.volume_median), cfg.volume_sigma, n_sku))
    sku_price = np.maximum(np.round(cat_price[sku_cat] * np.exp(rng.normal(0, 0.5, n_sku)), 2), 0.5)
    sku_margin = rng.uniform(0.10, 0.60, n_sku)
    sku_brand = np.floor(rng.random(n_sku) * cat_brands[sku_cat]).astype(int)
    sku_shelf = np.where(cat_perishable[sku_cat], rng.integers(5, 61, n_sku), rng.integers(180, 1096, n_sku))
    sku_supplier_lead = rng.integers(0, 8, n_sku)
    sku_n_dcs = np.where(rng.random(n_sku) < 0.5, 1, rng.integers(1, cfg.dcs + 1, n_sku))

    # Each SKU goes to its n_dcs highest-priority DCs; units ordered by SKU then DC.
    dc_rank = rng.random((n_sku, cfg.dcs)).argsort(axis=1).argsort(axis=1)
    sku_of, dc_of = np.nonzero(dc_rank < sku_n_dcs[:, None])
    sku_of, dc_of = sku_of[: cfg.units], dc_of[: cfg.units]
    n = cfg.units
    dc_size = np.exp(rng.normal(0, 0.4, cfg.dcs))
    dc_lead = rng.integers(1, 6, cfg.dcs)

    base = sku_volume[sku_of] * dc_size[dc_of] * np.exp(rng.normal(0, 0.3, n))
    lead = np.clip(dc_lead[dc_of] + sku_supplier_lead[sku_of] + rng.integers(0, 3, n), 1, 14)
    review = rng.choice(REVIEW_PERIODS, size=n, p=REVIEW_PROBS)
    price = sku_price[sku_of]
    cost = np.clip(np.round(price * (1 - sku_margin[sku_of]), 2), 0.01, price)
    cat = sku_cat[sku_of]
    width = len(str(n_sku))
    units = pd.DataFrame({
        "sku": [f"SKU{i:0{width}d}" for i in sku_of],
        "dc": [f"DC{d + 1}" for d in dc_of],
        "category": np.array(names, dtype=object)[cat],
        "unit_cost": cost,
        "unit_price": price,
        "lead_time_days": lead.astype(np.int64),
        "review_period_days": review.astype(np.int64),
        "target_turnover_days": cat_target[cat],
        "brand": [f"{names[c]}_brand{b + 1}" for c, b in zip(cat, sku_brand[sku_of])],
        "shelf_life_days": sku_shelf[sku_of].astype(np.float64),
    })
    return units, _demand_model(rng, n, base, cat_weekly[cat], cat_amp[cat], cat_peak[cat], price, cfg)


def _demand_model(rng: np.random.Generator, n: int, base: np.ndarray, weekly: np.ndarray, amp: np.ndarray,
                  peak: np.ndarray, price: np.ndarray, cfg: SynthConfig) -> _UnitModel:
    """XYZ mix: low volumes are mostly gated (intermittent/lumpy), 40% of units have over-dispersed sizes."""
    gated = rng.random(n) < np.clip(0.9 - base / 2.5, 0.05, 0.95)
    volatile = rng.random(n) < 0.4
    gate_p = np.where(gated, np.minimum(rng.uniform(0.08, 0.45, n), base), 1.0)
    dispersion = np.where(volatile, rng.uniform(0.4, 1.2, n), rng.uniform(6.0, 30.0, n))
    promo_days = rng.integers(3, 11, n)
    promoted = rng.random(n) < PROMOTED_SHARE
    return _UnitModel(
        base=base, weekly=weekly * np.exp(rng.normal(0, 0.05, (n, 7))), yearly_amp=amp,
        yearly_peak=peak + rng.normal(0, 10, n), trend=rng.normal(0.03, 0.15, n), gated=gated,
        gate_p=gate_p, dispersion=dispersion, promo_start_p=promoted * cfg.promo_share / promo_days,
        promo_days=promo_days, uplift=rng.uniform(1.4, 3.0, n), dip=rng.uniform(0.1, 0.4, n),
        discount=rng.uniform(0.10, 0.30, n), unit_price=price)


def _daily(m: _UnitModel, dates: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Sales, promo flag and price for a chunk of units, each shape (U_c, T)."""
    n, n_days = len(m.base), len(dates)
    t = np.arange(n_days)
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
    season = m.weekly[:, weekday] * (
        1 + m.yearly_amp[:, None] * np.cos(2 * np.pi * (day_of_year - m.yearly_peak[:, None]) / 365.25))
    trend = np.exp(m.trend[:, None] * t / 365.0)
    promo = _promotion_days(rng.random((n, n_days)) < m.promo_start_p[:, None], m.promo_days)
    mean = m.base[:, None] * season * trend * np.where(promo, m.uplift[:, None], 1.0) * _dip_factor(promo, m.dip)
    # Gated units: demand on a share gate_p of days, size 1 + NB with mean (mean / gate_p - 1).
    occurs = ~m.gated[:, None] | (rng.random((n, n_days)) < m.gate_p[:, None])
    size_mean = np.maximum(np.where(m.gated[:, None], mean / m.gate_p[:, None] - 1, mean), 1e-9)
    r = m.dispersion[:, None]
    sizes = rng.negative_binomial(r, r / (r + size_mean)) + m.gated[:, None]
    sales = np.where(occurs, sizes, 0).astype(np.float64)
    price = np.round(m.unit_price[:, None] * np.where(promo, 1 - m.discount[:, None], 1.0), 2)
    return sales, promo.astype(np.float32), price


def _promotion_days(starts: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Day t is on promotion when a promotion started within the last ``length[u]`` days; (U, T) bool."""
    n, n_days = starts.shape
    started = np.zeros((n, n_days + 1), dtype=np.int32)
    np.cumsum(starts, axis=1, out=started[:, 1:])  # started[:, t + 1] = starts up to day t
    window_start = np.clip(np.arange(n_days) + 1 - length[:, None], 0, None)
    return started[:, 1:] - np.take_along_axis(started, window_start, axis=1) > 0


def _dip_factor(promo: np.ndarray, dip: np.ndarray) -> np.ndarray:
    """Demand multiplier after a promotion: ``1 - dip`` the day after, back to 1 after DIP_DAYS; (U, T)."""
    n_days = promo.shape[1]
    last_promo = np.where(promo, np.arange(n_days), -(DIP_DAYS + 1))
    np.maximum.accumulate(last_promo, axis=1, out=last_promo)
    since = np.arange(n_days) - last_promo  # days since the last promotion day
    in_dip = ~promo & (since >= 1) & (since <= DIP_DAYS)
    return np.where(in_dip, 1 - dip[:, None] * (DIP_DAYS + 1 - since) / DIP_DAYS, 1.0)
