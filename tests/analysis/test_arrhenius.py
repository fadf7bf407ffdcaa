"""Arrhenius fits of ln y against 1/T and the activation energy from a_f ∝ sqrt(D)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vegard.analysis.arrhenius import (
    GAS_CONSTANT_J_PER_MOL_K,
    activation_energy_from_sqrt_d,
    fit_arrhenius,
)

TEMPERATURES_K = np.array([250.0, 275.0, 300.0, 325.0, 350.0, 375.0, 400.0])


def sqrt_d_amplitude(temperatures_k, energy_kj_mol=27.0, at_300k=5.0):
    """An amplitude ∝ sqrt(D): exp(−E_A/(2RT)), `at_300k` at 300 K."""
    exponent = -energy_kj_mol * 1e3 / (2 * GAS_CONSTANT_J_PER_MOL_K)
    return at_300k * np.exp(exponent * (1 / np.asarray(temperatures_k) - 1 / 300.0))


def test_exact_line_gives_slope_intercept_and_zero_errors():
    y = np.exp(2.0 - 1500.0 / TEMPERATURES_K)
    fit = fit_arrhenius(TEMPERATURES_K, y)
    assert fit.slope_k == pytest.approx(-1500.0)
    assert fit.intercept == pytest.approx(2.0)
    assert fit.slope_stderr_k == pytest.approx(0.0, abs=1e-6)
    assert fit.points_used == 7 and fit.points_excluded == 0
    assert fit.y_at(300.0) == pytest.approx(math.exp(2.0 - 5.0))
    assert fit.usable


def test_factor_two_for_an_amplitude_growing_with_sqrt_d():
    energy = activation_energy_from_sqrt_d(TEMPERATURES_K, sqrt_d_amplitude(TEMPERATURES_K))
    assert energy.kj_mol == pytest.approx(27.0, rel=1e-9)
    assert energy.fit.y_at(300.0) == pytest.approx(5.0)


def test_standard_error_matches_the_textbook_formula():
    rng = np.random.default_rng(4)
    ln_y = 3.0 - 1600.0 / TEMPERATURES_K + rng.normal(0.0, 0.05, TEMPERATURES_K.size)
    fit = fit_arrhenius(TEMPERATURES_K, np.exp(ln_y))
    x = 1 / TEMPERATURES_K
    slope, intercept = np.polyfit(x, ln_y, 1)
    residuals = ln_y - (intercept + slope * x)
    s2 = np.sum(residuals**2) / (x.size - 2)
    assert fit.slope_k == pytest.approx(slope)
    assert fit.slope_stderr_k == pytest.approx(math.sqrt(s2 / np.sum((x - x.mean()) ** 2)))
    assert fit.intercept_stderr == pytest.approx(
        math.sqrt(s2 * (1 / x.size + x.mean() ** 2 / np.sum((x - x.mean()) ** 2)))
    )
    energy = activation_energy_from_sqrt_d(TEMPERATURES_K, np.exp(ln_y))
    assert energy.stderr_kj_mol == pytest.approx(2 * GAS_CONSTANT_J_PER_MOL_K / 1e3
                                                 * fit.slope_stderr_k)


def test_weights_favour_the_precise_points():
    y = sqrt_d_amplitude(TEMPERATURES_K)
    y_bad = y.copy()
    y_bad[0] *= 1.5  # a wild point ...
    sigma = np.full(y.size, 0.01) * y
    sigma[0] = 10.0 * y[0]  # ... that its standard error says not to trust
    weighted = activation_energy_from_sqrt_d(TEMPERATURES_K, y_bad, sigma)
    unweighted = activation_energy_from_sqrt_d(TEMPERATURES_K, y_bad)
    assert weighted.kj_mol == pytest.approx(27.0, abs=0.05)
    assert abs(unweighted.kj_mol - 27.0) > 1.0


def test_non_positive_and_non_finite_points_are_excluded_and_counted():
    y = sqrt_d_amplitude(TEMPERATURES_K)
    y[[1, 3]] = [-0.5, np.nan]
    temperatures = TEMPERATURES_K.copy()
    temperatures[5] = np.inf
    energy = activation_energy_from_sqrt_d(temperatures, y)
    assert energy.fit.points_used == 4 and energy.fit.points_excluded == 3
    assert energy.kj_mol == pytest.approx(27.0)


def test_two_points_give_a_slope_but_no_standard_error():
    energy = activation_energy_from_sqrt_d([250.0, 400.0], sqrt_d_amplitude([250.0, 400.0]))
    assert energy.kj_mol == pytest.approx(27.0)
    assert math.isnan(energy.stderr_kj_mol)
    assert energy.fit.as_dict()["slope_stderr_k"] is None


@pytest.mark.parametrize("temperatures, values", [([], []), ([300.0], [5.0]),
                                                  ([300.0, 300.0], [5.0, 6.0]),
                                                  ([250.0, 300.0], [0.0, 5.0])])
def test_fewer_than_two_usable_temperatures_give_no_fit(temperatures, values):
    energy = activation_energy_from_sqrt_d(temperatures, values)
    assert math.isnan(energy.kj_mol) and not energy.fit.usable
    json.dumps(energy.fit.as_dict(), allow_nan=False)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError):
        fit_arrhenius([250.0, 300.0], [1.0])
    with pytest.raises(ValueError):
        fit_arrhenius([250.0, 300.0], [1.0, 2.0], [0.1])
