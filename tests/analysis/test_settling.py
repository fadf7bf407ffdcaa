"""Settling statistics from the per-step readings and the monitored trace."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.analysis.settling import hold_window_statistics, summarise_step


def step(**changes):
    times_s = np.arange(0.0, 200.0, 2.0)
    temperatures_k = np.where(times_s < 100.0, 290.0 + times_s * 0.1, 300.02)
    arguments = dict(
        setpoint_k=300.0, temperature_k=300.03, sample_temperature_k=299.9,
        settling_time_s=100.0, heater_output_percent=44.0, settle_tolerance_k=0.1,
        step_time_s=198.0, hold_time_s=60.0, monitor_times_s=times_s,
        monitor_temperatures_k=temperatures_k,
    )
    arguments.update(changes)
    return summarise_step(**arguments)


def test_hold_window_covers_only_the_hold_before_the_step():
    times_s = np.array([0.0, 10.0, 50.0, 60.0, 70.0])
    temperatures_k = np.array([250.0, 280.0, 299.9, 300.1, 300.0])
    mean_k, peak_k, count = hold_window_statistics(times_s, temperatures_k, 300.0, 70.0, 20.0)
    assert count == 3
    assert mean_k == pytest.approx(300.0)
    assert peak_k == pytest.approx(0.1)


def test_a_settled_step_is_within_tolerance():
    result = step()
    assert result.within_tolerance
    assert result.hold_samples == 31
    assert result.hold_mean_temperature_k == pytest.approx(300.02)


def test_an_excursion_during_the_hold_fails_the_step():
    times_s = np.arange(0.0, 200.0, 2.0)
    temperatures_k = np.full_like(times_s, 300.0)
    temperatures_k[90] = 300.5  # t = 180 s, inside the 60 s hold before 198 s
    result = step(monitor_temperatures_k=temperatures_k, monitor_times_s=times_s)
    assert not result.within_tolerance
    assert result.hold_peak_deviation_k == pytest.approx(0.5)


def test_a_final_reading_out_of_tolerance_fails_the_step_even_without_a_trace():
    result = step(temperature_k=300.2, monitor_times_s=np.array([]),
                  monitor_temperatures_k=np.array([]))
    assert not result.within_tolerance
    assert result.hold_samples == 0 and result.hold_mean_temperature_k is None
