"""Spectroscopy waveforms: shapes, turning points, phase, FORC growth and argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.plans.spectroscopy_waveforms import (
    bipolar_triangle_v,
    dc_modulation,
    forc_amplitudes_v,
    forc_waveform,
    iv_triangle,
    kpfm_bias_step,
    plot_waveform,
    time_relaxation_waveform,
    waveform_figure,
)


def test_triangle_starts_at_offset_and_turns_at_the_quarter_points():
    bias = bipolar_triangle_v(8.0, offset_v=0.5, steps_per_cycle=64, cycles=3)
    assert bias.shape == (64 * 3,)
    assert bias[0] == pytest.approx(0.5)
    assert bias[16] == pytest.approx(8.5)
    assert bias[48] == pytest.approx(-7.5)
    assert bias.max() == pytest.approx(8.5) and bias.min() == pytest.approx(-7.5)
    np.testing.assert_allclose(np.abs(np.diff(bias[:64])), 0.5)  # one step is 4A/N
    np.testing.assert_array_equal(bias[:64], bias[64:128])


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_phase_shift_rolls_the_cycle_by_quarters(shift):
    base = bipolar_triangle_v(2.0, steps_per_cycle=16)
    shifted = bipolar_triangle_v(2.0, steps_per_cycle=16, phase_shift=shift)
    np.testing.assert_allclose(shifted, np.roll(base, 4 * shift))
    assert shifted[0] == pytest.approx({1: -2.0, 2: 0.0, 3: 2.0}[shift])


def test_half_cycle_keeps_the_positive_lobe_at_full_resolution():
    half = bipolar_triangle_v(4.0, steps_per_cycle=32, cycle_fraction="half", cycles=2)
    full = bipolar_triangle_v(4.0, steps_per_cycle=64)
    assert half.shape == (64,)
    np.testing.assert_allclose(half[:32], full[:32])
    assert half.min() >= 0.0


def test_dc_modulation_alternates_in_and_out_of_field():
    dc = bipolar_triangle_v(3.0, steps_per_cycle=8)
    wave = dc_modulation(dc, read_bias_v=0.1)
    assert wave.bias_v.shape == (16,)
    np.testing.assert_array_equal(wave.in_field, np.tile([True, False], 8))
    np.testing.assert_allclose(wave.in_field_bias_v, dc)
    np.testing.assert_allclose(wave.out_of_field_bias_v, 0.1)


def test_forc_peaks_grow_monotonically_from_start_to_end():
    forc = forc_waveform(2.0, 10.0, forc_cycles=5, steps_per_cycle=16)
    np.testing.assert_allclose(forc.peak_v, [2.0, 4.0, 6.0, 8.0, 10.0])
    np.testing.assert_allclose(forc.trough_v, -forc.peak_v)
    maxima = [forc.bias_v[forc.forc_cycle == k].max() for k in range(5)]
    minima = [forc.bias_v[forc.forc_cycle == k].min() for k in range(5)]
    np.testing.assert_allclose(maxima, forc.peak_v)
    np.testing.assert_allclose(minima, forc.trough_v)
    assert np.all(np.diff(maxima) > 0)
    assert forc.bias_v.shape == (5 * 16,)
    np.testing.assert_allclose(forc_amplitudes_v(1.0, 3.0, 3), [1.0, 2.0, 3.0])


def test_forc_with_asymmetric_troughs():
    forc = forc_waveform(1.0, 5.0, 3, trough_start_v=-1.0, trough_end_v=-2.0, steps_per_cycle=8)
    np.testing.assert_allclose(forc.trough_v, [-1.0, -1.5, -2.0])
    assert forc.bias_v[forc.forc_cycle == 2].min() == pytest.approx(-2.0)


def test_time_relaxation_write_then_reads():
    wave = time_relaxation_waveform(6.0, 0.05, read_duration_s=2.0, read_points=10, pulses=2)
    assert wave.bias_v.shape == (22,)
    assert wave.bias_v[0] == 6.0 and not wave.measure[0]
    np.testing.assert_allclose(wave.bias_v[1:11], 0.0)
    assert wave.measure[1:11].all()
    assert wave.time_s[1] == pytest.approx(0.05)
    assert wave.time_s[11] == pytest.approx(2.05)
    assert wave.total_duration_s == pytest.approx(4.1)


def test_kpfm_step_switches_at_the_step_time():
    wave = kpfm_bias_step(5.0, before_s=0.2, after_s=10.0, sample_interval_s=0.02)
    assert wave.time_s.shape == (510,)
    assert np.all(wave.bias_v[wave.time_s < 0.2 - 1e-9] == 0.0)
    assert np.all(wave.bias_v[wave.time_s >= 0.2 - 1e-9] == 5.0)


def test_iv_triangle_runs_at_the_sweep_rate():
    wave = iv_triangle(2.0, points_per_cycle=40, cycles=2, sweep_rate_v_per_s=4.0)
    rate = np.abs(np.diff(wave.bias_v)) / np.diff(wave.time_s)
    np.testing.assert_allclose(rate, 4.0)
    assert wave.total_duration_s == pytest.approx(2 * 4 * 2.0 / 4.0)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: bipolar_triangle_v(-1.0), "amplitude_v=-1.0"),
        (lambda: bipolar_triangle_v(250.0), "(0, 200]"),
        (lambda: bipolar_triangle_v(8.0, steps_per_cycle=30), "multiple of 4"),
        (lambda: bipolar_triangle_v(8.0, cycles=0), "cycles=0"),
        (lambda: bipolar_triangle_v(8.0, phase_shift=5), "0, 1, 2 or 3"),
        (lambda: bipolar_triangle_v(8.0, cycle_fraction="third"), "'full'"),
        (lambda: bipolar_triangle_v(150.0, offset_v=100.0), "[0, 200] V"),
        (lambda: forc_waveform(1.0, 2.0, 3, trough_start_v=2.0), "peak_v - trough_v"),
        (lambda: time_relaxation_waveform(5.0, 0.0, 1.0, 10), "write_duration_s=0.0"),
        (lambda: kpfm_bias_step(5.0, 1.0, 1.0, sample_interval_s=-1.0), "sample_interval_s"),
        (lambda: iv_triangle(1.0, 30, 1, 1.0), "points_per_cycle=30"),
        (lambda: dc_modulation(np.array([1.0, np.inf])), "dc_bias_v"),
    ],
)
def test_bad_arguments_are_refused_with_the_allowed_range(call, fragment):
    with pytest.raises(ValueError, match="allowed range") as caught:
        call()
    assert fragment in str(caught.value)


def test_plot_helpers_draw_every_kind(tmp_path):
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    plot_waveform(ax, dc_modulation(bipolar_triangle_v(1.0, steps_per_cycle=8)), label="dc")
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "tip bias (V)"
    path = waveform_figure(
        tmp_path / "waves.png",
        {
            "triangle": bipolar_triangle_v(8.0),
            "FORC": forc_waveform(2.0, 8.0, 4),
            "relaxation": time_relaxation_waveform(5.0, 0.1, 1.0, 20),
            "I-V": iv_triangle(1.0, 40, 1, 1.0),
        },
    )
    assert path.stat().st_size > 1000
