"""Demand specs of the classic setting: the families, their moments, sampling, and the errors a
bad spec gets."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from orpr_ray.classic.distributions import parse_demand
from orpr_ray.core.errors import InputError


def test_poisson_pmf_and_moments():
    d = parse_demand("poisson:5")
    assert d.pmf[0] == pytest.approx(math.exp(-5))
    assert d.pmf[3] == pytest.approx(math.exp(-5) * 5 ** 3 / 6)
    assert d.pmf.sum() == pytest.approx(1.0, abs=1e-14)
    assert d.mean == pytest.approx(5.0, abs=1e-10)
    assert d.variance == pytest.approx(5.0, abs=1e-9)


@pytest.mark.parametrize("spec, mean, variance", [
    ("geometric:5", 5.0, 30.0),  # mean m on {0, 1, ...}: variance m (1 + m)
    ("negbin:5:2.5", 5.0, 12.5),  # variance = dispersion x mean
    ("pmf:0.25,0.5,0.25", 1.0, 0.5),
])
def test_family_moments(spec, mean, variance):
    d = parse_demand(spec)
    assert d.mean == pytest.approx(mean, abs=1e-9)
    assert d.variance == pytest.approx(variance, abs=1e-8)


def test_convolution_and_quantile():
    two = parse_demand("poisson:2").sum_of(2)
    assert np.allclose(two.pmf[:20], parse_demand("poisson:4").pmf[:20], atol=1e-14)
    d = parse_demand("pmf:0.25,0.5,0.25")
    assert [d.quantile(a) for a in (0.1, 0.25, 0.5, 0.75, 0.8, 1.0)] == [0, 0, 1, 1, 2, 2]


def test_sampling_follows_the_pmf():
    d = parse_demand("negbin:3:2")
    draws = d.sample(np.random.default_rng(0), 200_000)
    freq = np.bincount(draws, minlength=len(d.pmf))[:len(d.pmf)] / len(draws)
    sd = np.sqrt(d.pmf * (1 - d.pmf) / len(draws))
    assert np.all(np.abs(freq - d.pmf) <= 5 * sd + 1e-12)
    assert draws.max() <= d.support_max
    again = d.sample(np.random.default_rng(0), 200_000)
    assert np.array_equal(draws, again)


def test_empirical_from_csv_column(tmp_path):
    path = tmp_path / "demand.csv"
    pd.DataFrame({"day": range(6), "sales": [0, 2, 2, 3, 2, 0]}).to_csv(path, index=False)
    d = parse_demand(f"empirical:{path}:sales")
    assert d.pmf.tolist() == pytest.approx([2 / 6, 0, 3 / 6, 1 / 6])
    one = tmp_path / "one.csv"
    pd.DataFrame({"q": [1, 1, 4]}).to_csv(one, index=False)
    assert parse_demand(f"empirical:{one}").mean == pytest.approx(2.0)


@pytest.mark.parametrize("spec, message", [
    ("poison:5", "unknown demand distribution"),
    ("poisson", "poisson:MEAN"),
    ("poisson:-1", "MEAN must be > 0"),
    ("poisson:abc", "numbers expected"),
    ("negbin:5:0.5", "DISPERSION"),
    ("negbin:5", "negbin:MEAN:DISPERSION"),
    ("pmf:0.5,0.6", "sum to"),
    ("pmf:0.5,-0.5,1", "demand 1"),
    ("empirical:", "empirical:FILE"),
    ("empirical:/nonexistent/demand.csv", "not found"),
])
def test_bad_specs_are_named(spec, message):
    with pytest.raises(InputError, match=message) as info:
        parse_demand(spec, field="--demand")
    assert "--demand" in str(info.value) or "/nonexistent" in str(info.value)


def test_empirical_errors_name_file_column_and_row(tmp_path):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"sales": [1, 2, -3, 4], "x": [0, 0, 0, 0]}).to_csv(path, index=False)
    with pytest.raises(InputError) as info:
        parse_demand(f"empirical:{path}:sales")
    text = str(info.value)
    assert str(path) in text and "'sales'" in text and "row 3" in text and "non-negative integer" in text
    with pytest.raises(InputError, match="name one"):
        parse_demand(f"empirical:{path}")
    with pytest.raises(InputError, match="no such column"):
        parse_demand(f"empirical:{path}:demand")
