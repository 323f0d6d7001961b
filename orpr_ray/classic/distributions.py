"""Per-period demand distributions of the classic setting, all held as one finite pmf.

Every distribution becomes ``pmf[k] = P(D = k)`` for ``k = 0..K``. Unbounded families (Poisson,
geometric, negative binomial) are cut where the remaining tail is below ``TAIL_MASS`` and the head is
renormalised, so the exact solver, the heuristics and the simulator all use *the same* law: a
simulated cost then estimates exactly the number the solver computes, and their agreement is a test.

Specs (the ``--demand`` value):
    poisson:MEAN                   Poisson with mean MEAN > 0
    geometric:MEAN                 geometric on {0, 1, 2, ...} with mean MEAN > 0
    negbin:MEAN:DISPERSION         negative binomial with mean MEAN and index of dispersion
                                   DISPERSION = variance / mean > 1 (1 would be Poisson)
    pmf:P0,P1,...,PK               explicit probabilities of 0..K (non-negative, summing to 1)
    empirical:FILE[:COLUMN]        the observed frequencies of the non-negative integer values in a
                                   CSV (with a header row) or Parquet file; COLUMN may be left out
                                   when the file has one column
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orpr_ray.core.errors import InputError

TAIL_MASS = 1e-15  # mass an unbounded family may drop at its far tail (renormalised away)
QUANTILE_SLACK = 1e-12  # cdf rounding allowance, so a convolved cdf of 0.7499999999 counts as 0.75
PMF_SUM_TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class DemandDistribution:
    """i.i.d. per-period demand. ``pmf``: float64 (K + 1,), ``pmf[k] = P(D = k)``, sums to 1."""

    spec: str
    pmf: np.ndarray

    @property
    def support_max(self) -> int:
        return len(self.pmf) - 1

    @property
    def mean(self) -> float:
        return float(np.arange(len(self.pmf)) @ self.pmf)

    @property
    def variance(self) -> float:
        k = np.arange(len(self.pmf))
        return float((k - self.mean) ** 2 @ self.pmf)

    def pmf_upto(self, n: int) -> np.ndarray:
        """P(D = k) for k = 0..n (zeros past the support), shape (n + 1,)."""
        out = np.zeros(n + 1)
        m = min(n, self.support_max) + 1
        out[:m] = self.pmf[:m]
        return out

    def cdf_upto(self, n: int) -> np.ndarray:
        """P(D <= k) for k = 0..n, shape (n + 1,)."""
        return np.minimum(np.cumsum(self.pmf_upto(n)), 1.0)

    def quantile(self, alpha: float) -> int:
        """Smallest k with P(D <= k) >= alpha (the newsvendor fractile)."""
        cdf = np.cumsum(self.pmf)
        return int(min(np.searchsorted(cdf, alpha - QUANTILE_SLACK, side="left"), self.support_max))

    def sum_of(self, n: int) -> "DemandDistribution":
        """Demand over ``n`` periods (the n-fold convolution), with the same tail cut."""
        pmf = np.array([1.0])
        for _ in range(n):
            pmf = _cut_tail(np.convolve(pmf, self.pmf))
        return DemandDistribution(f"{self.spec} x {n} periods", pmf)

    def sample(self, rng: np.random.Generator, size) -> np.ndarray:
        """Draws by inversion of the cdf, so simulation uses exactly this pmf. int64, shape ``size``."""
        cdf = np.cumsum(self.pmf)
        cdf[-1] = 1.0  # a rounding shortfall must not yield K + 1
        return np.searchsorted(cdf, rng.random(size), side="right").astype(np.int64)

    def describe(self) -> dict:
        return {"spec": self.spec, "mean": self.mean, "variance": self.variance,
                "support_max": self.support_max}


def parse_demand(spec: str, *, field: str = "demand") -> DemandDistribution:
    """Build the distribution a spec names; a bad spec raises InputError naming ``field``."""
    text = spec.strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind == "empirical":
        return _empirical(rest, spec=text, field=field)
    args = rest.split(":") if rest else []
    if kind == "poisson":
        (mean,) = _numbers(args, 1, "poisson:MEAN", spec=text, field=field)
        pmf = _poisson_pmf(_positive(mean, "MEAN", spec=text, field=field))
    elif kind == "geometric":
        (mean,) = _numbers(args, 1, "geometric:MEAN", spec=text, field=field)
        pmf = _geometric_pmf(_positive(mean, "MEAN", spec=text, field=field))
    elif kind == "negbin":
        mean, dispersion = _numbers(args, 2, "negbin:MEAN:DISPERSION", spec=text, field=field)
        _positive(mean, "MEAN", spec=text, field=field)
        if not dispersion > 1:
            raise InputError(f"DISPERSION (variance / mean) must be > 1, got {dispersion:g} in {text!r}; "
                             "use poisson:MEAN for dispersion 1", field=field)
        pmf = _negbin_pmf(mean, dispersion)
    elif kind == "pmf":
        pmf = _explicit_pmf(rest, spec=text, field=field)
    else:
        raise InputError(f"unknown demand distribution {kind!r} in {text!r}; expected one of poisson:MEAN, "
                         "geometric:MEAN, negbin:MEAN:DISPERSION, pmf:P0,P1,..., empirical:FILE[:COLUMN]",
                         field=field)
    return DemandDistribution(text, pmf)


def _numbers(args: list[str], n: int, form: str, *, spec: str, field: str) -> list[float]:
    if len(args) != n:
        raise InputError(f"{spec!r} is not of the form {form}", field=field)
    try:
        values = [float(a) for a in args]
    except ValueError:
        raise InputError(f"{spec!r} is not of the form {form} (numbers expected)", field=field) from None
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{spec!r} has a non-finite number", field=field)
    return values


def _positive(value: float, name: str, *, spec: str, field: str) -> float:
    if not value > 0:
        raise InputError(f"{name} must be > 0, got {value:g} in {spec!r}", field=field)
    return value


def _cut_tail(pmf: np.ndarray) -> np.ndarray:
    """Drop the far tail holding less than TAIL_MASS and renormalise the head."""
    tail = np.cumsum(pmf[::-1])[::-1]  # tail[k] = P(D >= k)
    keep = int(np.searchsorted(-tail, -TAIL_MASS, side="left"))  # first k with P(D >= k) < TAIL_MASS
    head = pmf[:max(keep, 1)]
    return head / head.sum()


def _log_pmf_to_pmf(log_pmf: np.ndarray) -> np.ndarray:
    pmf = np.exp(log_pmf - log_pmf.max())  # shifted so the largest term is 1: no underflow of the mode
    return _cut_tail(pmf / pmf.sum())


def _span(mean: float, sd: float) -> np.ndarray:
    """0..K with K far enough out that the dropped mass is negligible before the tail cut."""
    return np.arange(int(mean + 40 * sd + 60))


def _poisson_pmf(mean: float) -> np.ndarray:
    k = _span(mean, math.sqrt(mean))
    lgam = np.array([math.lgamma(x + 1.0) for x in k])
    return _log_pmf_to_pmf(k * math.log(mean) - mean - lgam)


def _geometric_pmf(mean: float) -> np.ndarray:
    theta = mean / (1.0 + mean)  # P(D >= k + 1 | D >= k)
    n = int(math.ceil(math.log(TAIL_MASS) / math.log(theta))) + 2
    k = np.arange(n)
    return _cut_tail((1.0 - theta) * theta ** k)


def _negbin_pmf(mean: float, dispersion: float) -> np.ndarray:
    size = mean / (dispersion - 1.0)  # numpy's n: variance = mean + mean^2 / size
    success = 1.0 / dispersion
    k = _span(mean, math.sqrt(mean * dispersion) * 3)
    lgam = np.array([math.lgamma(x + size) - math.lgamma(size) - math.lgamma(x + 1.0) for x in k])
    return _log_pmf_to_pmf(lgam + size * math.log(success) + k * math.log1p(-success))


def _explicit_pmf(rest: str, *, spec: str, field: str) -> np.ndarray:
    try:
        pmf = np.array([float(x) for x in rest.split(",")], dtype=np.float64)
    except ValueError:
        raise InputError(f"{spec!r} is not of the form pmf:P0,P1,...,PK (numbers expected)",
                         field=field) from None
    if not np.all(np.isfinite(pmf)) or np.any(pmf < 0):
        bad = int(np.flatnonzero(~np.isfinite(pmf) | (pmf < 0))[0])
        raise InputError(f"probability of demand {bad} is {pmf[bad]:g}; probabilities must be >= 0",
                         field=field, where=spec)
    if abs(pmf.sum() - 1.0) > PMF_SUM_TOLERANCE:
        raise InputError(f"probabilities sum to {pmf.sum():.12g}, not 1", field=field, where=spec)
    return _trim_zeros(pmf / pmf.sum())


def _trim_zeros(pmf: np.ndarray) -> np.ndarray:
    """Drop trailing zero probabilities so ``support_max`` is the largest possible demand."""
    last = int(np.flatnonzero(pmf > 0)[-1])
    return pmf[:last + 1]


def _empirical(rest: str, *, spec: str, field: str) -> DemandDistribution:
    if not rest:
        raise InputError(f"{spec!r} is not of the form empirical:FILE[:COLUMN]", field=field)
    path_text, column = rest, None
    if not Path(path_text).is_file() and ":" in rest:
        path_text, _, column = rest.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise InputError("demand file not found", file=path_text, field=field)
    frame = _read_table(path)
    column = _pick_column(frame, column, file=path_text)
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"demand must be a non-negative integer, got {frame[column].iloc[row]!r}",
                         file=path_text, field=column, where=f"row {row + 1}")
    if len(values) == 0:
        raise InputError("no demand observations", file=path_text, field=column)
    counts = np.bincount(values.astype(np.int64))
    return DemandDistribution(spec, counts / counts.sum())


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:  # any reader failure is a problem with the user's file
        raise InputError(f"cannot read the file: {exc}", file=str(path)) from exc


def _pick_column(frame: pd.DataFrame, column: str | None, *, file: str) -> str:
    if column is None:
        if frame.shape[1] != 1:
            raise InputError(f"the file has columns {list(frame.columns)}; name one as "
                             "empirical:FILE:COLUMN", file=file)
        return str(frame.columns[0])
    if column not in frame.columns:
        raise InputError(f"no such column; the file has {list(frame.columns)}", file=file, field=column)
    return column
