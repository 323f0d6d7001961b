"""Time-based train / validation / test windows over the shared calendar."""
from __future__ import annotations

from dataclasses import dataclass

from orpr_ray.core.errors import ConfigError
from orpr_ray.data.config import SplitConfig


@dataclass(frozen=True)
class TimeSplit:
    """Day indices: train = [0, val_start), validation = [val_start, test_start), test = [test_start, n_days)."""

    val_start: int
    test_start: int
    n_days: int

    def window_of(self, day: int) -> str:
        if day >= self.test_start:
            return "test"
        return "val" if day >= self.val_start else "train"


def time_split(n_days: int, cfg: SplitConfig, *, min_train_days: int = 56) -> TimeSplit:
    """Cut the calendar from its end: the last ``test_days`` are test, the ``val_days`` before are validation."""
    test_start = n_days - cfg.test_days
    val_start = test_start - cfg.val_days
    if val_start < min_train_days:
        raise ConfigError(
            f"{n_days} days leave {val_start} training days after validation ({cfg.val_days}) and test "
            f"({cfg.test_days}) windows; at least {min_train_days} are needed",
            field="data.split")
    return TimeSplit(val_start=val_start, test_start=test_start, n_days=n_days)
