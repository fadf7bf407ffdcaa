"""The FORC and relaxation analyses against synthetic truth: the hinge fit finds V_c and κ
from noisy areas (and no threshold where the area never grows), `forc_loops` integrates
complex loops of any phase, and the vectorised stretched-exponential fit recovers τ and β
of curves with different parameters at once."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.analysis.forc_loops import fit_threshold, forc_loops
from vegard.analysis.relaxation_map import project_curves
from vegard.analysis.stretched_exponential_fit import (
    fit_stretched_exponentials,
    stretched_exponential,
)
from vegard.simulators.esm_forc import IonicInjection, forc_sweep

PEAKS_V = np.linspace(1.0, 5.0, 9)


def test_hinge_fit_recovers_the_threshold_well_inside_one_forc_step():
    rng = np.random.default_rng(3)
    true_v = rng.uniform(1.8, 3.9, 200)
    kappa = rng.uniform(10.0, 30.0, 200)
    areas = kappa[:, None] * np.maximum(0.0, PEAKS_V[None, :] - true_v[:, None])
    areas += 0.3 * rng.standard_normal(areas.shape)
    fit = fit_threshold(PEAKS_V, areas)
    assert fit.forc_step_v == pytest.approx(0.5)
    assert np.all(np.abs(fit.threshold_v - true_v) < 0.5)
    assert np.sqrt(np.mean((fit.threshold_v - true_v) ** 2)) < 0.05
    assert np.allclose(fit.area_slope_pm, kappa, rtol=0.10)  # ≥ 2 peaks above V_c
    assert np.all((fit.bracket_low_v <= fit.threshold_v) & (fit.threshold_v < fit.bracket_high_v))


def test_no_threshold_where_the_area_never_grows():
    rng = np.random.default_rng(4)
    areas = 0.3 * rng.standard_normal((20, PEAKS_V.size))
    areas[:10] -= 5.0 * np.maximum(0, PEAKS_V - 3.0)  # falling: not a threshold either
    fit = fit_threshold(PEAKS_V, areas[:10])
    assert np.all(np.isnan(fit.threshold_v))


def test_forc_loops_integrate_complex_loops_whatever_their_phase():
    model = IonicInjection()
    waveform = forc_sweep(1.0, 5.0, 9, 32, 2, 0.0)
    injection = model.at(np.array([1, 2]), np.array([1.0, 0.5]))
    theta, _ = model.states(injection, waveform.bias_v, 0.02, 300.0, model.virgin_sites(2))
    real = model.step_amplitudes_pm(injection, theta, waveform.bias_v, 1.0, [0.0, 0.0],
                                    [0.0, 0.0])[:, 1::2]
    phase = np.exp(1j * np.array([0.4, -2.0]))[:, None]  # the second one upside down
    loops = forc_loops(waveform.dc_v, real * phase, 9, 2)
    kappa = model.area_slope_pm(injection, 1.0)
    expected = kappa[:, None] * np.maximum(0, PEAKS_V[None, :] - injection.threshold_v[:, None])
    assert np.allclose(loops.areas_pm_v, expected, atol=0.02 * kappa.max())
    fit = fit_threshold(waveform.peak_v, loops.areas_pm_v)
    assert np.allclose(fit.threshold_v, injection.threshold_v, atol=0.05)


def test_stretched_exponentials_are_fitted_all_at_once():
    rng = np.random.default_rng(5)
    t = np.arange(64) * (2.0 / 64) + 0.012
    tau = rng.uniform(0.1, 0.5, 50)
    beta = rng.uniform(0.5, 1.0, 50)
    offset = rng.uniform(-2.0, 2.0, 50)
    amplitude = rng.uniform(8.0, 15.0, 50)
    y = stretched_exponential(t[None], offset[:, None], amplitude[:, None], tau[:, None],
                              beta[:, None]) + 0.05 * rng.standard_normal((50, t.size))
    fit = fit_stretched_exponentials(t, y)
    assert fit.converged.all()
    assert np.all(np.abs(fit.relaxation_time_s / tau - 1) < 0.10)
    assert np.all(np.abs(fit.stretch_exponent - beta) < 0.05)
    assert np.allclose(fit.offset, offset, atol=0.2)
    assert np.all(fit.r_squared > 0.99)
    # the stated errors are honest: the deviations are of their size
    z = (fit.relaxation_time_s - tau) / fit.relaxation_time_error_s
    assert 0.5 < np.std(z) < 2.0


def test_curves_not_measured_or_without_relaxation_leave_the_others_fitted():
    t = np.arange(64) * (2.0 / 64) + 0.012
    y = np.stack([stretched_exponential(t, 1.0, 10.0, 0.25, 0.7), np.full(t.size, np.nan),
                  np.full(t.size, 2.0)])  # measured, not measured, flat
    fit = fit_stretched_exponentials(t, y)
    assert fit.relaxation_time_s[0] == pytest.approx(0.25, rel=1e-4)
    assert fit.stretch_exponent[0] == pytest.approx(0.7, rel=1e-4) and fit.converged[0]
    assert np.isnan(fit.relaxation_time_s[1]) and not fit.converged[1]


def test_curves_are_signed_by_the_write_pulse_after_projection():
    t = np.concatenate([[-0.2, -0.1], np.arange(32) * 0.05 + 0.01])
    curve = 1.0 + 6.0 * np.exp(-t.clip(0) / 0.3) * (t > 0)
    rotated = curve[None, :] * np.exp(1j * 2.5)
    assert np.allclose(project_curves(t, rotated, 4.0), curve)
    assert np.allclose(project_curves(t, rotated, -4.0), -curve)
