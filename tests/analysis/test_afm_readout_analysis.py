"""The tr-KPFM relaxation fit and the c-AFM threshold analysis against synthetic truth
(numbers chosen here, not the simulator's), including records with nothing to find."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.analysis.afm_readout_metadata import CafmIvMetadata, TrKpfmMetadata
from vegard.analysis.cafm_iv_map import analyse_points
from vegard.analysis.exponential_relaxation import (
    diffusion_coefficient_m2_per_s,
    fit_exponential_relaxation,
)
from vegard.analysis.iv_threshold import branch_threshold, capacitive_current_a, lobe_area_a_v
from vegard.analysis.trkpfm_map import fit_records


@pytest.mark.parametrize("tau_s", [0.4, 2.7, 9.0])
def test_tau_and_amplitudes_come_back_from_noisy_records(tau_s):
    rng = np.random.default_rng(7)
    t = np.arange(0.1, 30.0, 0.02)
    cpd = -0.3 + 0.8 * np.exp(-t / tau_s) + 0.01 * rng.standard_normal(t.size)
    fit = fit_exponential_relaxation(t, cpd)
    assert fit.relaxation_time_s == pytest.approx(tau_s, rel=0.03)
    assert abs(fit.relaxation_time_s - tau_s) < 4 * fit.relaxation_time_error_s + 0.01 * tau_s
    assert fit.offset_v == pytest.approx(-0.3, abs=0.01)
    assert fit.amplitude_v == pytest.approx(0.8, rel=0.03)  # referred to t = 0, the step


def test_a_flat_record_has_no_relaxation_time():
    rng = np.random.default_rng(2)
    t = np.arange(0.1, 10.0, 0.02)
    assert fit_exponential_relaxation(t, 0.2 + 0.005 * rng.standard_normal(t.size)) is None


def test_records_of_a_grid_give_d_from_d_squared_over_tau_in_both_units():
    meta = TrKpfmMetadata(device="afm-cpd_transient", points_x=2, points_y=1, width_nm=10,
                          height_nm=10, step_bias_v=5, baseline_v=0, sample_interval_s=0.02,
                          samples_before=50, samples=1550, interelectrode_distance_um=40,
                          fit_start_s=0.1)
    u = meta.time_since_step_s()
    taus = np.array([1.5, 6.0])
    records = np.where(u[None, :] < 0, 0.0, 1.0 + 2.0 * np.exp(-np.clip(u, 0, None)[None, :]
                                                               / taus[:, None]))
    fits = fit_records(meta, records)
    assert fits["relaxation_time_s"] == pytest.approx(taus, rel=1e-6)
    expected = (40e-6) ** 2 / taus
    assert fits["diffusion_coefficient_m2_per_s"] == pytest.approx(expected, rel=1e-6)
    assert fits["diffusion_coefficient_cm2_per_s"] == pytest.approx(1e4 * expected, rel=1e-6)
    assert diffusion_coefficient_m2_per_s(100.0, 5.0) == pytest.approx(2e-9)  # the review's


def synthetic_iv(v_th: float, amplitude_v=4.0, points=128, capacitance_f=30e-12, rate=2.0,
                 g_on=1e-9, g_off=1e-10, noise_a=2e-12, seed=0):
    """An abrupt memristor: the state flips at the first step beyond ±v_th."""
    q = points // 4
    ramp = np.arange(q) / q
    v = amplitude_v * np.concatenate([ramp, 1 - ramp, -ramp, ramp - 1])
    state, g = 0, np.empty(points)
    for k, bias in enumerate(v):
        state = 1 if bias > v_th else (0 if bias < -v_th else state)
        g[k] = g_on if state else g_off
    diode = 1e-12 * np.expm1(v / 0.5)
    rng = np.random.default_rng(seed)
    current = g * v + diode + capacitive_current_a(v, capacitance_f, rate) + (
        noise_a * rng.standard_normal(points))
    return v, current


@pytest.mark.parametrize("v_th", [1.37, 2.0, 2.93])
def test_set_and_reset_thresholds_are_found_within_half_a_step(v_th):
    v, current = synthetic_iv(v_th)
    step = 4.0 / 32
    up, down = branch_threshold(v, current, +1), branch_threshold(v, current, -1)
    assert abs(up.threshold_v - v_th) <= step / 2 + 1e-9
    assert abs(down.threshold_v + v_th) <= step / 2 + 1e-9
    assert up.slope_s == pytest.approx(0.9e-9, rel=0.02)
    assert -up.intercept_a / (2 * 2.0) == pytest.approx(30e-12, rel=0.05)


def test_a_sweep_below_the_threshold_has_none_and_no_lobes():
    v, current = synthetic_iv(5.0)
    assert np.isnan(branch_threshold(v, current, +1).threshold_v)
    conduction = current - capacitive_current_a(v, 30e-12, 2.0)
    v2, switching = synthetic_iv(2.0)
    switched = lobe_area_a_v(v2, switching - capacitive_current_a(v2, 30e-12, 2.0))
    assert lobe_area_a_v(v, conduction) < 0.01 * switched


def test_grid_analysis_of_cycles_reports_thresholds_capacitance_and_areas():
    v, first = synthetic_iv(2.0, seed=1)
    _, second = synthetic_iv(2.0, seed=2)
    meta = CafmIvMetadata(device="afm-iv_curve", points_x=1, points_y=1, width_nm=0,
                          height_nm=0, bias_v=list(v), cycles=2, step_duration_s=0.0625,
                          sweep_rate_v_per_s=2.0, current_range_a=1e-8)
    values, cycles, _ = analyse_points(meta, np.concatenate([first, second])[None, :])
    assert cycles[0] == pytest.approx(second)  # the first cycle is left out
    assert abs(values["threshold_v"][0] - 2.0) <= 4.0 / 64 + 1e-9
    assert values["stray_capacitance_pf"][0] == pytest.approx(30.0, rel=0.05)
    assert values["lobe_area_na_v"][0] > 0
