"""The targets of the learned and hindsight policies of a backtest, decided ahead for every review
point (orpr_ray.sim.scheduled rolls them): the network's and PPO's from the feature streams of days
before the review day (plus promotions planned ahead), the OR labels' from their hindsight table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from orpr_ray.data.dataset import Dataset
from orpr_ray.sim.scheduled import ReviewPoints, in_batches


# ---------------------------------------------------------------------------------- OR labels


def latest_known(table: pd.DataFrame, column: str, unit: np.ndarray, day: np.ndarray,
                 known_from: str = "day") -> np.ndarray:
    """(N,) ``column`` of the unit's latest ``table`` row with ``known_from <= day`` (NaN if none)."""
    known = table[["unit", known_from, column]].rename(columns={known_from: "_known"}).sort_values("_known")
    query = pd.DataFrame({"unit": np.asarray(unit, dtype=np.int64), "day": np.asarray(day, dtype=np.int64)})
    query = query.reset_index().sort_values("day")
    merged = pd.merge_asof(query, known.astype({"unit": np.int64, "_known": np.int64}), left_on="day",
                           right_on="_known", by="unit", direction="backward")
    return merged.set_index("index")[column].reindex(range(len(query))).to_numpy(np.float64)


def label_targets(labels: pd.DataFrame, points: ReviewPoints, fallback: np.ndarray) -> tuple[np.ndarray, int]:
    """The hindsight OR-label target at each review point: the unit's latest label on or before the
    day (its first label before that; ``fallback`` (U,) for a unit without labels).

    Labels come on a fixed stride of decision dates, each the knapsack's choice for the demand that
    actually followed it, so this policy knows the future: an oracle, not a deployable rule.
    Returns the (N,) targets and the number of review points that used the fallback.
    """
    v = latest_known(labels, "v_label", points.unit, points.day)
    first = labels.groupby("unit")["v_label"].first()  # labels are sorted by (unit, day)
    missing = np.isnan(v)
    v[missing] = pd.Series(points.unit[missing]).map(first).to_numpy(np.float64)
    without = np.isnan(v)
    v[without] = fallback[points.unit[without]]
    return v, int(without.sum())


# ---------------------------------------------------------------------------------- the network


def network_targets(checkpoint_dir, ds: Dataset, points: ReviewPoints, known: np.ndarray | None,
                    batch_size: int) -> np.ndarray:
    """(N,) the deterministic (z = mu) inventory-days target of a trained network at each point.

    known: (N, len(LABEL_OBJECTIVES)) what past labels tell at each point (``LabelHistory.lookup``:
    only labels whose horizon had passed), None without labels (the network sees them masked).
    """
    from orpr_ray.model.policy import Policy

    policy = Policy.load(checkpoint_dir)
    panel = policy.panel(ds)

    def decide(rows: slice) -> np.ndarray:
        features = policy.features_from_panel(panel, points.unit[rows], points.day[rows],
                                              None if known is None else known[rows])
        return policy.decide(features).v

    return in_batches(len(points), batch_size, decide)
