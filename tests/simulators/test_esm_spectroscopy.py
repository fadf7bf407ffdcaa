"""Ionic switching under the tip: loops switch at V_c ± imprint, open as the sweep slows,
follow Arrhenius, vary by grain; the controller's sweep is the plans' waveform."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.analysis.loop_fit import enclosed_area, fit_loops
from vegard.plans.spectroscopy_waveforms import bipolar_triangle_v, dc_modulation
from vegard.simulators.esm_spectroscopy import IonicSwitching, dc_modulation_sweep


def loops(switching: IonicSwitching, grains, step_s: float, cycles: int = 2,
          temperature_k: float = 300.0) -> np.ndarray:
    """θ on the write steps of the last cycle at points of `grains`, (points, 64)."""
    point = switching.at(np.asarray(grains), np.ones(len(grains)))
    sweep = dc_modulation_sweep(8.0, 0.0, 64, cycles, 0.0)
    theta = switching.states(point, sweep.bias_v, step_s, temperature_k,
                             np.zeros(len(grains)))
    return theta[:, sweep.in_field][:, -64:]


def test_the_controller_sweeps_the_plans_dc_modulation_waveform():
    sweep = dc_modulation_sweep(8.0, 0.5, 64, 3, 0.0)
    expected = dc_modulation(bipolar_triangle_v(8.0, 0.5, 64, 3), 0.0)
    np.testing.assert_allclose(sweep.bias_v, expected.bias_v)
    np.testing.assert_array_equal(sweep.in_field, expected.in_field)


def test_quasi_static_loops_switch_at_the_threshold_plus_and_minus_the_imprint():
    switching = IonicSwitching({"switching_threshold_v": 2.5, "switching_imprint_v": -0.4,
                                "switching_threshold_spread_v": 0.5,
                                "switching_imprint_spread_v": 0.3})
    grains = [1, 2, 3, 4]
    truth = switching.at(np.array(grains), np.ones(4))
    fit = fit_loops(dc_modulation_sweep(8.0, 0.0, 64, 1, 0.0).dc_v,
                    loops(switching, grains, step_s=0.1))
    np.testing.assert_allclose(fit.coercive_voltage_negative_v,
                               truth.coercive_voltage_negative_v, atol=0.02)
    np.testing.assert_allclose(fit.coercive_voltage_positive_v,
                               truth.coercive_voltage_positive_v, atol=0.02)
    threshold = (truth.coercive_voltage_positive_v - truth.coercive_voltage_negative_v) / 2
    assert np.all(np.abs(threshold - 2.5) <= 0.5) and np.ptp(threshold) > 0.05
    np.testing.assert_allclose(fit.switchable_response, 2.0, atol=0.01)  # θ from −1 to +1


def test_a_slower_sweep_switches_more_completely_and_opens_the_loop_more():
    """Steps short against τ (50 ms here) leave the loop barely open; slower sweeps switch
    more of the state (the loop's height grows to the full ±1) and, while the steps are
    shorter than τ/5, enclose more area. Beyond that the area falls back to the
    quasi-static loop's as the kinetic widening of the coercive biases goes."""
    switching = IonicSwitching({"switching_time_300k_s": 0.05})
    dc_v = dc_modulation_sweep(8.0, 0.0, 64, 1, 0.0).dc_v
    steps_s = (0.001, 0.002, 0.005, 0.01, 0.05, 0.5)
    theta = [loops(switching, [1], step_s)[0] for step_s in steps_s]
    switched = [float(np.ptp(t)) for t in theta]
    assert switched == sorted(switched) and switched[0] < 0.2 * switched[-1]
    assert switched[-1] == pytest.approx(2.0)
    areas = [float(enclosed_area(dc_v, t)) for t in theta[:4]]
    assert areas == sorted(areas) and areas[0] < 0.25 * areas[-1]
    fast, slow = (fit_loops(dc_v, loops(switching, [1], s)) for s in (0.01, 0.5))
    assert fast.switchable_response[0] < slow.switchable_response[0]
    # a lagging sweep switches later: its coercive biases lie further out
    assert fast.coercive_voltage_positive_v[0] > slow.coercive_voltage_positive_v[0] + 0.1


def test_switching_is_faster_when_hot_arrhenius():
    switching = IonicSwitching({"switching_time_300k_s": 0.01,
                                "switching_activation_energy_ev": 0.26})
    assert switching.relaxation_time_s(300.0) == pytest.approx(0.01)
    ratio = switching.relaxation_time_s(350.0) / switching.relaxation_time_s(300.0)
    assert ratio == pytest.approx(np.exp(0.26 / 8.617333262e-5 * (1 / 350 - 1 / 300)))


def test_a_grain_has_one_set_of_parameters_and_grains_differ():
    switching = IonicSwitching(seed=5)
    point = switching.at(np.array([7, 7, 8]), np.array([0.2, 0.3, 0.2]))
    assert point.coercive_voltage_positive_v[0] == point.coercive_voltage_positive_v[1]
    assert point.coercive_voltage_positive_v[0] != point.coercive_voltage_positive_v[2]
    np.testing.assert_allclose(point.switchable_strain_pm_per_v, [4.0, 6.0, 4.0])


def test_a_read_step_at_0_v_never_switches_and_the_state_holds():
    switching = IonicSwitching()
    point = switching.at(np.array([1]), np.ones(1))
    theta = switching.states(point, np.zeros(10), 1.0, 300.0, np.array([0.7]))
    np.testing.assert_allclose(theta, 0.7)


def test_an_imprint_that_would_switch_at_0_v_is_refused():
    with pytest.raises(ValueError, match=r"= 1\.1 V must stay below switching_threshold_v = 1 V"):
        IonicSwitching({"switching_threshold_v": 1.0, "switching_imprint_v": 0.9})
