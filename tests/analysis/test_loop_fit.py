"""Batched hysteresis-loop fits on synthetic loops with known parameters."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.analysis import loop_fit
from vegard.analysis.loop_fit import (
    NUCLEATION_FRACTION,
    descending_steps,
    enclosed_area,
    fit_loops,
    loop_model,
    switched_bias,
    switching_curve,
)
from vegard.plans.spectroscopy_waveforms import bipolar_triangle_v

DC_V = bipolar_triangle_v(8.0, steps_per_cycle=64)  # 0.5 V steps
NOISE = 0.02  # rms noise as a fraction of the switchable response
TOLERANCE_V = 0.05  # 95 % of coercive voltages within this at NOISE


def synthetic_parameters(n: int, seed: int, symmetric: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    widths = rng.uniform(0.3, 1.0, (n, 4))
    if symmetric:
        widths[:, 1], widths[:, 3] = widths[:, 0], widths[:, 2]
    return np.column_stack([
        rng.uniform(-1.5, -0.5, n),  # R−
        rng.uniform(1.0, 3.0, n),  # switchable response
        rng.uniform(-5.0, -1.0, n),  # c−
        rng.uniform(1.0, 5.0, n),  # c+
        rng.uniform(-0.02, 0.02, n),  # slope
        widths,
    ])


def noisy_loops(parameters: np.ndarray, seed: int, noise: float = NOISE) -> np.ndarray:
    rng = np.random.default_rng(seed + 1000)
    clean = loop_model(DC_V, parameters)
    return clean + noise * parameters[:, 1:2] * rng.standard_normal(clean.shape)


def true_coercive(parameters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = parameters
    return (switched_bias(0.5, p[:, 2], p[:, 5], p[:, 6]),
            switched_bias(0.5, p[:, 3], p[:, 7], p[:, 8]))


def coercive_errors(result, parameters) -> np.ndarray:
    negative, positive = true_coercive(parameters)
    return np.abs(np.concatenate([result.coercive_voltage_negative_v - negative,
                                  result.coercive_voltage_positive_v - positive]))


def test_branches_follow_the_sweep_direction():
    descending = descending_steps(DC_V)
    assert not descending[0] and descending[16] and not descending[48]  # +A falls, −A rises
    assert descending.sum() == 32
    assert np.all(np.diff(DC_V)[descending[:-1]] < 0)


def test_model_branch_is_a_smooth_step_from_zero_to_one():
    v = np.linspace(-20.0, 20.0, 4001)
    y = switching_curve(v, 1.0, 0.5, 2.0)
    assert y[0] == pytest.approx(0.0, abs=1e-9) and y[-1] == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.diff(y) >= 0)
    centre = np.argmin(np.abs(v - 1.0))
    assert y[centre] == pytest.approx(0.5 / 2.5, abs=1e-3)  # y(c) = b_lo / (b_lo + b_hi)
    slope = np.diff(y) / np.diff(v)
    assert abs(v[np.argmax(slope)] - 1.0) < 0.02  # steepest at the centre
    for fraction in (0.03, 0.5, 0.97):
        where = switched_bias(fraction, 1.0, 0.5, 2.0)
        assert np.interp(where, v, y) == pytest.approx(fraction, abs=1e-4)


def test_coercive_voltages_recovered_within_tolerance():
    truth = synthetic_parameters(400, seed=1)
    result = fit_loops(DC_V, noisy_loops(truth, seed=1))
    errors = coercive_errors(result, truth)
    assert np.median(errors) < 0.02
    assert np.percentile(errors, 95) < TOLERANCE_V
    assert np.all(result.r_squared > 0.98) and np.all(result.is_loop)
    assert np.mean(result.converged) > 0.98
    np.testing.assert_allclose(
        result.imprint_v,
        0.5 * (result.coercive_voltage_negative_v + result.coercive_voltage_positive_v))
    np.testing.assert_allclose(result.switchable_response, truth[:, 1], rtol=0.05)
    np.testing.assert_allclose(result.response_negative, truth[:, 0], atol=0.1)


def test_standard_errors_match_the_scatter():
    truth = synthetic_parameters(600, seed=2)
    result = fit_loops(DC_V, noisy_loops(truth, seed=2, noise=0.05))
    negative, _ = true_coercive(truth)
    error_v = result.coercive_voltage_negative_error_v
    pulls = (result.coercive_voltage_negative_v - negative) / error_v
    pulls = pulls[np.isfinite(pulls)]
    assert pulls.size > 550
    assert 0.8 < np.std(pulls) < 1.25
    assert np.all(np.isfinite(result.standard_errors[np.isfinite(result.standard_errors[:, 0])]))


def test_half_switched_bias_is_better_determined_than_the_centre():
    truth = synthetic_parameters(200, seed=3, symmetric=True)
    result = fit_loops(DC_V, noisy_loops(truth, seed=3))
    np.testing.assert_allclose(true_coercive(truth)[0], truth[:, 2], atol=1e-12)
    assert np.percentile(coercive_errors(result, truth), 95) < TOLERANCE_V
    # the fit may make the widths unequal, and c then slides along the width ratio
    centre_errors = np.abs(result.parameters[:, 2] - truth[:, 2])
    assert np.median(centre_errors) > 2 * np.median(coercive_errors(result, truth))
    se = result.standard_errors
    assert np.median(se[:, 2]) > 2 * np.median(result.coercive_voltage_negative_error_v)


def test_complex_loops_at_any_phase_are_projected_and_recovered():
    truth = synthetic_parameters(300, seed=4)
    real = noisy_loops(truth, seed=4)
    rng = np.random.default_rng(44)
    phase = rng.uniform(-np.pi, np.pi, (300, 1))
    quadrature = NOISE * truth[:, 1:2] * rng.standard_normal(real.shape)
    result = fit_loops(DC_V, (real + 1j * quadrature) * np.exp(1j * phase))
    errors = coercive_errors(result, truth)  # the fitted axis leaks some quadrature noise
    assert np.median(errors) < 0.02 and np.percentile(errors, 95) < 1.2 * TOLERANCE_V
    assert np.all(result.switchable_response > 0)  # signed so R+ > R−
    np.testing.assert_allclose(result.projected_loops, real, atol=0.2)
    turned = np.angle(np.exp(1j * (result.projection_angle_rad - phase[:, 0])))
    np.testing.assert_allclose(turned, 0.0, atol=0.1)


def test_a_straight_line_is_not_a_loop():
    rng = np.random.default_rng(5)
    lines = 0.3 + rng.uniform(-0.2, 0.2, (500, 1)) * DC_V + 0.05 * rng.standard_normal((500, 64))
    result = fit_loops(DC_V, lines)
    assert not np.any(result.is_loop)
    assert np.all(result.delta_bic < 6.0)
    assert np.mean(result.delta_bic < 0) > 0.99
    loops = fit_loops(DC_V, noisy_loops(synthetic_parameters(50, seed=5), seed=5, noise=0.05))
    assert np.all(loops.is_loop)


def test_loop_area_is_the_trapezoid_integral_of_the_data():
    truth = synthetic_parameters(100, seed=6)
    data = noisy_loops(truth, seed=6, noise=0.1)
    result = fit_loops(DC_V, data)
    closed_v = np.append(DC_V, DC_V[0])
    closed = np.concatenate([data, data[:, :1]], axis=1)
    np.testing.assert_allclose(result.loop_area, -np.trapezoid(closed, closed_v, axis=1))
    shoelace = 0.5 * np.sum(DC_V * np.roll(data, -1, axis=1) - np.roll(DC_V, -1) * data, axis=1)
    np.testing.assert_allclose(result.loop_area, shoelace)
    assert np.all(result.loop_area > 0)  # counter-clockwise: descending branch on top
    # The measured area, not the model's: a rectangle |V+ − V−|·a1 would be larger.
    rectangle = np.abs(truth[:, 3] - truth[:, 2]) * truth[:, 1]
    assert np.all(np.abs(result.loop_area - rectangle) > 1e-3)
    assert np.all(enclosed_area(DC_V, -data) < 0)  # an inverted loop has a negative area


def test_nucleation_biases_are_where_three_percent_has_switched():
    truth = synthetic_parameters(50, seed=7)
    result = fit_loops(DC_V, noisy_loops(truth, seed=7))
    p = result.parameters
    ascending = switched_bias(NUCLEATION_FRACTION, p[:, 3], p[:, 7], p[:, 8])
    np.testing.assert_allclose(result.nucleation_bias_positive_v, ascending)
    assert np.all(result.nucleation_bias_positive_v < result.coercive_voltage_positive_v)
    assert np.all(result.nucleation_bias_negative_v > result.coercive_voltage_negative_v)
    # on each fitted branch, the switching curve has moved by 3 % at its nucleation bias
    rising = switching_curve(result.nucleation_bias_positive_v, p[:, 3], p[:, 7], p[:, 8])
    falling = switching_curve(result.nucleation_bias_negative_v, p[:, 2], p[:, 5], p[:, 6])
    np.testing.assert_allclose(rising, NUCLEATION_FRACTION, atol=1e-9)
    np.testing.assert_allclose(falling, 1.0 - NUCLEATION_FRACTION, atol=1e-9)


def test_the_model_is_the_switching_curve_on_each_branch():
    truth = synthetic_parameters(3, seed=10)
    model = loop_model(DC_V, truth)
    down = descending_steps(DC_V)
    for p, loop in zip(truth, model, strict=True):
        curve = np.where(down, switching_curve(DC_V, p[2], p[5], p[6]),
                         switching_curve(DC_V, p[3], p[7], p[8]))
        np.testing.assert_allclose(loop, p[0] + p[1] * curve + p[4] * DC_V, atol=1e-12)


def test_a_large_batch_is_fitted_in_one_pass_over_iterations(monkeypatch):
    calls = {"n": 0}
    evaluate = loop_fit._evaluate

    def counting(*args, **kwargs):
        calls["n"] += 1
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(loop_fit, "_evaluate", counting)
    truth = synthetic_parameters(1200, seed=8)
    data = noisy_loops(truth, seed=8).reshape(30, 40, 64)  # a 30 × 40 map
    result = fit_loops(DC_V, data)
    # evaluations are counted per iteration, not per loop: one block, ≤ 2 per iteration
    assert calls["n"] <= 2 * loop_fit._MAX_ITERATIONS + 2
    assert result.coercive_voltage_negative_v.shape == (30, 40)
    assert result.parameters.shape == (30, 40, 9)
    negative, positive = true_coercive(truth)
    errors = np.abs(np.concatenate([result.coercive_voltage_negative_v.ravel() - negative,
                                    result.coercive_voltage_positive_v.ravel() - positive]))
    assert np.percentile(errors, 95) < TOLERANCE_V
    assert np.all(result.is_loop) and np.mean(result.converged) > 0.98
    single = fit_loops(DC_V, data[3, 7])
    assert single.coercive_voltage_negative_v.shape == ()
    assert float(single.coercive_voltage_negative_v) == pytest.approx(
        result.coercive_voltage_negative_v[3, 7], abs=1e-4)


def test_bad_loops_give_nan_and_leave_the_others_alone():
    truth = synthetic_parameters(5, seed=9)
    data = noisy_loops(truth, seed=9)
    data[2, 10] = np.nan
    result = fit_loops(DC_V, data)
    assert np.isnan(result.coercive_voltage_negative_v[2]) and not result.converged[2]
    assert np.all(np.isfinite(result.coercive_voltage_negative_v[[0, 1, 3, 4]]))
    alone = fit_loops(DC_V, data[[0, 1, 3, 4]])
    np.testing.assert_allclose(alone.parameters, result.parameters[[0, 1, 3, 4]], atol=1e-6)


@pytest.mark.parametrize(
    ("dc", "responses", "message"),
    [
        (DC_V, np.zeros((3, 63)), "must end with"),
        (np.zeros(64), np.zeros((3, 64)), "constant"),
        (np.linspace(-1, 1, 64), np.zeros((3, 64)), "at least 5"),
        (np.full(64, np.nan), np.zeros((3, 64)), "finite"),
    ],
)
def test_bad_sweeps_are_refused(dc, responses, message):
    with pytest.raises(ValueError, match=message):
        fit_loops(dc, responses)
