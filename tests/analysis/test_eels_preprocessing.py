"""EELS preprocessing against synthetic spectra with known truth (see eels_synthetic).

Tolerances: the ZLP maximum is good to half a channel (0.2 meV); the sub-channel vertex to
0.05 meV at ≈3·10⁶ counts in the ZLP maximum (its Poisson error is ≈0.003 meV; the rest is
the Lorentzian wing's curvature); t/λ to 0.01 (the synthetic valence axis ends at 198 eV,
which cuts ≈0.5 % of the highest plural orders at t/λ = 1.5); Li:Co to 4 % per pixel at
≈4·10⁴ edge counts per channel scale.
"""

from __future__ import annotations

import numpy as np
import pytest
from eels_synthetic import (
    CORE_EV,
    DISPERSION_MEV,
    ENERGY_MEV,
    VALENCE_EV,
    ZLP_COUNTS,
    core_spectra,
    line_scan,
    valence_spectra,
    zlp_counts,
)
from scipy.special import ndtr

from vegard.analysis import eels_preprocessing as pre


@pytest.fixture(scope="module")
def scan():
    return line_scan(seed=3, pixels=21)


def test_zlp_maximum_is_good_to_half_a_channel(scan):
    zero = pre.zlp_zero_at_maximum(scan.energy_mev, scan.spectra)
    assert np.all(np.abs(zero - scan.shift_mev) <= DISPERSION_MEV / 2 + 1e-9)
    assert np.all(np.isin(np.round((zero - ENERGY_MEV[0]) / DISPERSION_MEV, 9) % 1, [0.0]))


def test_subchannel_zero_is_far_better_than_a_channel(scan):
    noisy = pre.zlp_zero_subchannel(scan.energy_mev, scan.spectra)
    clean = pre.zlp_zero_subchannel(scan.energy_mev, scan.expected)
    assert np.max(np.abs(clean - scan.shift_mev)) < 1e-3
    assert np.max(np.abs(noisy - scan.shift_mev)) < 0.05


def test_calibrated_energies_put_each_zero_at_zero(scan):
    zero = pre.zlp_zero_subchannel(scan.energy_mev, scan.expected)
    energies = pre.calibrated_energies(scan.energy_mev, zero)
    assert energies.shape == scan.spectra.shape
    peak = np.argmax(scan.expected, axis=1)
    assert np.all(np.abs(energies[np.arange(len(peak)), peak]) <= DISPERSION_MEV / 2 + 1e-9)


def test_zlp_integral_matches_the_known_zlp():
    shifts = np.array([-0.17, 0.0, 0.13, 0.31])
    counts = zlp_counts(ENERGY_MEV, np.full(shifts.size, ZLP_COUNTS), shifts)
    energies = pre.calibrated_energies(ENERGY_MEV, shifts)
    sigma = 8.0 / (2 * np.sqrt(2 * np.log(2)))
    gauss = ndtr(2.5 / sigma) - ndtr(-2.5 / sigma)
    lorentz = 2 * np.arctan(2.5 / 4.0) / np.pi
    truth = ZLP_COUNTS * (0.99 * gauss + 0.01 * lorentz)
    fractional = pre.zlp_integral(energies, counts)
    np.testing.assert_allclose(fractional, truth, rtol=2e-3)
    whole = pre.zlp_integral(energies, counts, fractional=False)
    inside = np.abs(energies) <= 2.5 + 1e-9
    np.testing.assert_allclose(whole, np.sum(np.where(inside, counts, 0.0), axis=1))


def test_power_law_from_two_windows_is_exact_on_a_power_law():
    amplitude = np.array([3e5, 1e6, 4e4])
    exponent = np.array([1.7, 2.0, 2.6])
    energies = pre.calibrated_energies(ENERGY_MEV, np.array([0.1, -0.2, 0.0]))
    tail = amplitude[:, None] * np.where(energies > 0, energies, np.nan) ** -exponent[:, None]
    counts = np.nan_to_num(tail)
    fit = pre.fit_power_law(energies, counts, ((15.0, 22.0), (100.0, 119.0)))
    np.testing.assert_allclose(fit.amplitude, amplitude, rtol=1e-9)
    np.testing.assert_allclose(fit.exponent, exponent, rtol=1e-9)
    signal, _ = pre.subtract_power_law(energies, counts, ((15.0, 22.0), (100.0, 119.0)))
    assert np.nanmax(np.abs(signal[energies > 15])) < 1e-6 * counts[energies > 15].max()


def test_power_law_on_noisy_counts_is_unbiased_to_its_noise():
    rng = np.random.default_rng(1)
    expected = 2e6 * ENERGY_MEV[ENERGY_MEV > 10] ** -2.0
    counts = rng.poisson(np.broadcast_to(expected, (200, expected.size))).astype(float)
    fit = pre.fit_power_law(ENERGY_MEV[ENERGY_MEV > 10], counts, ((15.0, 22.0), (100.0, 119.0)))
    assert abs(np.mean(fit.exponent) - 2.0) < 3 * np.std(fit.exponent) / np.sqrt(200)


def test_thickness_by_log_ratio():
    tau = np.array([0.05, 0.3, 0.7, 1.0, 1.5])
    noisy, expected = valence_spectra(tau, seed=2)
    np.testing.assert_allclose(pre.thickness_log_ratio(VALENCE_EV, expected), tau, atol=0.01)
    np.testing.assert_allclose(pre.thickness_log_ratio(VALENCE_EV, noisy), tau, atol=0.01)
    fixed_cut = pre.thickness_log_ratio(VALENCE_EV, expected, zlp_upper_ev=1.0)
    np.testing.assert_allclose(fixed_cut, tau, atol=0.01)


def test_li_to_co_relative_with_the_li_tail_removed():
    truth = np.array([1.0, 0.9, 0.73, 0.9, 1.0])
    noisy, expected, kappa = core_spectra(truth, seed=4, li_tail=True)
    grains = np.array([True, False, False, False, True])
    clean = pre.li_to_co_relative(
        pre.core_loss_edge_intensities(CORE_EV, expected, li_tail_in_co_window=kappa), grains)
    np.testing.assert_allclose(clean, truth, rtol=1e-6)
    edges = pre.core_loss_edge_intensities(CORE_EV, noisy, li_tail_in_co_window=kappa)
    np.testing.assert_allclose(pre.li_to_co_relative(edges, grains), truth, rtol=0.04)
    assert np.all(edges.li_k_variance > 0) and np.all(edges.co_m23_variance > 0)


def test_li_to_co_without_the_tail_correction_is_monotonic_but_compressed():
    truth = np.array([1.0, 0.73])
    _, expected, _ = core_spectra(truth, li_tail=True)
    relative = pre.li_to_co_relative(
        pre.core_loss_edge_intensities(CORE_EV, expected), np.array([True, False]))
    assert 0.73 < relative[1] < 1.0  # the Li tail in the Co window hides part of the change


def test_pooling_aligns_whole_channels_and_keeps_counts():
    shifts = np.array([0.0, 0.4, -0.8, 0.13, 0.55])
    counts = zlp_counts(ENERGY_MEV, np.full(shifts.size, 1e6), shifts)
    member = pre.region_membership(np.array([0, 0, 0, 1, 1]), 2)
    axes, pooled = pre.pool_aligned(ENERGY_MEV, counts, shifts, member)
    # Pool 0: whole-channel shifts only, so the sum equals 3 unshifted ZLPs where defined.
    ref = zlp_counts(ENERGY_MEV, np.array([3e6]), np.zeros(1))[0]
    ok = np.isfinite(pooled[0])
    np.testing.assert_allclose(pooled[0, ok], ref[ok], rtol=1e-12)
    np.testing.assert_allclose(axes[0], ENERGY_MEV, atol=1e-12)
    assert np.count_nonzero(~ok) == 3  # the channels one of the moved pixels cannot fill
    # Pool 1: remainders 0.13 and 0.15 meV average into the pool's axis.
    np.testing.assert_allclose(axes[1], ENERGY_MEV - np.mean([0.13, 0.55 - 0.4]), atol=1e-3)
    # Counts are kept, up to the edge channel the moved pixel leaves empty.
    assert abs(np.nansum(pooled[1]) - np.sum(counts[3:])) < 1e-5 * np.sum(counts[3:])


def test_resampling_interpolates_inside_and_is_nan_outside():
    energies = pre.calibrated_energies(ENERGY_MEV, np.array([0.1]))
    spectra = (2.0 * energies + 1.0)
    out, var = pre.resample_to_axis(energies, spectra, np.ones_like(spectra), ENERGY_MEV)
    inside = np.isfinite(out[0])
    np.testing.assert_allclose(out[0, inside], 2.0 * ENERGY_MEV[inside] + 1.0)
    np.testing.assert_allclose(var[0, inside], 1.0)
    assert not inside[-1] and inside[0]


def test_zlp_fwhm_is_the_resolution():
    counts = zlp_counts(ENERGY_MEV, np.array([1e7]), np.zeros(1))
    assert abs(pre.zlp_fwhm(ENERGY_MEV, counts)[0] - 8.0) <= 2 * DISPERSION_MEV
