"""The FORC and relaxation physics without noise: loop area exactly κ·max(0, V_p − V_c)
(zero below the threshold), smaller loops for sweeps fast against τ, and the relaxation
after a pulse a stretched exponential with an irreversible part only above V_c."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.analysis.loop_fit import enclosed_area
from vegard.simulators.esm_forc import IonicInjection, forc_sweep
from vegard.simulators.esm_relaxation import StrainRelaxation, relaxation_schedule

U_AC_V = 1.0


def loop_areas(model: IonicInjection, step_s: float, threshold_v: float = 2.6):
    injection = model.at(np.array([3]), np.array([1.0]))
    injection = type(injection)(np.array([threshold_v]), injection.switchable_strain_pm_per_v)
    waveform = forc_sweep(1.0, 5.0, 9, 32, 2, 0.0)
    theta, _ = model.states(injection, waveform.bias_v, step_s, 300.0, model.virgin_sites(1))
    response = model.step_amplitudes_pm(injection, theta, waveform.bias_v, U_AC_V, [0.0], [0.0])
    out_of_field = response[0, 1::2].reshape(9, 2, 32)[:, 1]
    dc = waveform.dc_v.reshape(9, 2, 32)[:, 1]
    areas = np.array([enclosed_area(dc[k], out_of_field[k]) for k in range(9)])
    return waveform.peak_v, areas, model.area_slope_pm(injection, U_AC_V)[0]


def test_forc_loop_area_is_the_hinge_of_the_peak_bias_and_zero_below_the_threshold():
    model = IonicInjection({"injection_strain_pm_per_v": 25.0})
    peaks, areas, kappa = loop_areas(model, step_s=0.016)
    assert kappa == pytest.approx(4 * 25.0 / np.log(4.0))
    expected = kappa * np.maximum(0.0, peaks - 2.6)
    assert np.all(areas[peaks < 2.6] == 0.0)
    # the polygon of DC steps resolves the area to a few % of one FORC step's worth
    assert np.allclose(areas, expected, atol=0.03 * kappa * 0.5)


def test_a_sweep_fast_against_the_switching_time_opens_a_smaller_loop():
    model = IonicInjection({"injection_time_300k_s": 0.05})
    _, slow, _ = loop_areas(model, step_s=0.5)
    _, fast, _ = loop_areas(model, step_s=0.01)
    assert fast[-1] < 0.7 * slow[-1] and fast[-1] > 0


def test_switching_time_is_arrhenius():
    model = IonicInjection({"injection_activation_energy_ev": 0.3})
    ratio = model.relaxation_time_s(250.0) / model.relaxation_time_s(300.0)
    assert ratio == pytest.approx(np.exp(0.3 / 8.617333262e-5 * (1 / 250 - 1 / 300)))


def test_relaxation_is_a_stretched_exponential_with_an_irreversible_part_above_v_c():
    model = StrainRelaxation({"relaxation_stretch_exponent": 0.7})
    points = model.at(np.array([5]), np.array([1.0]), 300.0)
    tau = points.relaxation_time_s[0]
    relaxing, irreversible = model.pulse_parts_pm(points, 4.0, 3.0, U_AC_V)
    assert relaxing == pytest.approx(10.0 * 4.0) and irreversible == pytest.approx(4.0 * 1.0)
    assert model.pulse_parts_pm(points, -2.5, 3.0, U_AC_V)[1] == 0.0  # below V_c: none stays
    assert model.pulse_parts_pm(points, -4.0, 3.0, U_AC_V)[1] == pytest.approx(-4.0)
    assert model.decay(np.array([tau]), tau)[0] == pytest.approx(np.exp(-1.0))
    assert model.decay(np.array([0.0]), tau)[0] == 1.0
    colder = model.at(np.array([5]), np.array([1.0]), 250.0).relaxation_time_s[0]
    assert colder / tau == pytest.approx(np.exp(0.26 / 8.617333262e-5 * (1 / 250 - 1 / 300)))


def test_relaxation_schedule_reads_at_the_middle_of_each_spectrum():
    schedule = relaxation_schedule(2, 4, 1.0, 0.1, 0.02)
    assert schedule.read_time_s == pytest.approx([-0.59, -0.34, 0.01, 0.26, 0.51, 0.76])
    assert schedule.total_s == pytest.approx(0.5 + 0.1 + 1.0)
