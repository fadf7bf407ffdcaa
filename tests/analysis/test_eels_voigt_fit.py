"""The batched Voigt fitter against spectra with known parameters.

Noiseless spectra must come back to 1e-3 meV in centres and widths; noisy ones (Poisson
counts, ≈3·10⁴ per peak) within 3 stated standard errors, and the stated errors must be
honest: over 200 independent noise draws the pulls (error / stderr) have a standard
deviation within 0.8–1.2. The variance passed is the expected counts, so the test checks
the covariance itself and not the choice of weights.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import voigt_profile

from vegard.analysis.eels_voigt_fit import (
    BACKGROUND,
    FIXED,
    FREE,
    SHARED,
    PowerLawTerm,
    VoigtPeak,
    fit_voigt_peaks,
    voigt_fwhm_mev,
    voigt_profile_and_derivatives,
)

ENERGY_MEV = np.arange(20.0, 100.0, 0.4)
TRUTH = np.array([  # area (counts·meV/channel units), centre, σ, γ
    [3.0e4, 35.0, 4.0, 1.0],
    [2.0e4, 50.0, 5.0, 0.8],
    [4.0e4, 70.0, 5.0, 1.0],
])
BOXES = [((0, c - 4, 2, 0), (np.inf, c + 4, 8, 3)) for c in TRUTH[:, 1]]


def spectra_of(truth: np.ndarray, energy=ENERGY_MEV) -> np.ndarray:
    """(M, N) for truth (M, K, 4)."""
    e = np.broadcast_to(energy, (truth.shape[0], np.shape(energy)[-1]))
    return np.einsum("mk,mkn->mn", truth[..., 0], voigt_profile(
        e[:, None, :] - truth[..., 1, None], truth[..., 2, None], truth[..., 3, None]))


def peaks_from(start: np.ndarray, modes=(FREE,) * 4) -> list[VoigtPeak]:
    return [VoigtPeak(f"p{k}", *start[k], lower=BOXES[k][0], upper=BOXES[k][1], modes=modes)
            for k in range(start.shape[0])]


def offset_start(scale=1.0) -> np.ndarray:
    return TRUTH * np.array([1.3, 1.0, 1.2, 0.7]) + np.array([0, 1.5, 0, 0]) * scale


def test_profile_and_derivatives_match_scipy_and_finite_differences():
    x = np.linspace(-40, 40, 33)
    s, g, h = 3.7, 1.3, 1e-6
    v, dx, ds, dg = voigt_profile_and_derivatives(x, s, g)
    np.testing.assert_allclose(v, voigt_profile(x, s, g), rtol=1e-12, atol=1e-18)
    for d, numeric in ((dx, (voigt_profile(x + h, s, g) - voigt_profile(x - h, s, g))),
                       (ds, (voigt_profile(x, s + h, g) - voigt_profile(x, s - h, g))),
                       (dg, (voigt_profile(x, s, g + h) - voigt_profile(x, s, g - h)))):
        np.testing.assert_allclose(d, numeric / (2 * h), atol=1e-8)


@pytest.mark.parametrize(("sigma", "gamma"), [(4.0, 0.0), (1e-3, 3.0), (5.0, 1.0)])
def test_fwhm_formula(sigma, gamma):
    x = np.linspace(-60, 60, 240001)
    v = voigt_profile(x, sigma, gamma)
    above = x[v >= v.max() / 2]
    assert abs(voigt_fwhm_mev(sigma, gamma) - (above[-1] - above[0])) < 3e-4 * (
        above[-1] - above[0]) + 1e-3


def test_noiseless_spectra_recover_centres_and_widths():
    truth = np.stack([TRUTH, TRUTH + np.array([0, 0.7, 0.3, 0.1]),
                      TRUTH + np.array([0, -1.1, -0.4, 0.3])])
    y = spectra_of(truth)
    fit = fit_voigt_peaks(ENERGY_MEV, y, peaks_from(offset_start()), variance=np.maximum(y, 1))
    assert fit.converged.all()
    np.testing.assert_allclose(fit.values[..., 1:], truth[..., 1:], atol=1e-3)
    np.testing.assert_allclose(fit.values[..., 0], truth[..., 0], rtol=1e-4)
    assert not fit.at_bound.any()


@pytest.fixture(scope="module")
def noisy_fit():
    rng = np.random.default_rng(11)
    expected = spectra_of(np.broadcast_to(TRUTH, (200, 3, 4)))
    y = rng.poisson(expected).astype(float)
    return fit_voigt_peaks(ENERGY_MEV, y, peaks_from(offset_start()), variance=expected)


def test_noisy_spectra_land_within_three_stated_errors(noisy_fit):
    pull = (noisy_fit.values - TRUTH) / noisy_fit.stderr
    assert noisy_fit.converged.all()
    assert np.mean(np.abs(pull[..., 1:3]) <= 3.0) >= 0.99


def test_stated_errors_are_honest(noisy_fit):
    pull = (noisy_fit.values - TRUTH) / noisy_fit.stderr
    for j in (0, 1, 2):  # area, centre, σ (γ sits near its bound for some draws)
        assert 0.8 <= np.std(pull[..., j]) <= 1.2, (j, np.std(pull[..., j], axis=0))
    assert np.all(np.abs(np.mean(pull[..., 1], axis=0)) < 0.3)
    assert 0.8 < np.median(noisy_fit.reduced_chi_square) < 1.2


def test_shared_widths_are_tied_within_groups_and_beat_free_ones():
    rng = np.random.default_rng(5)
    truth = np.broadcast_to(TRUTH, (20, 3, 4)).copy()
    truth[10:, :, 2] += 0.5  # a second group with wider peaks
    expected = spectra_of(truth)
    y = rng.poisson(expected).astype(float)
    groups = np.repeat([0, 1], 10)
    tied = fit_voigt_peaks(ENERGY_MEV, y, peaks_from(offset_start(), (FREE, FREE, SHARED,
                                                                        SHARED)),
                           variance=expected, groups=groups)
    free = fit_voigt_peaks(ENERGY_MEV, y, peaks_from(offset_start()), variance=expected)
    sigma = tied.values[..., 2]
    assert np.all(sigma[:10] == sigma[0]) and np.all(sigma[10:] == sigma[10])
    assert np.all(np.abs(sigma[[0, 10]] - truth[[0, 10], :, 2]) < 3 * tied.stderr[[0, 10], :, 2])
    assert np.all(tied.stderr[..., 1] < free.stderr[..., 1])
    # Shared parameters correlate the spectra of a group, and only of a group.
    cov = tied.covariance([(0, "p1", "centre_mev"), (1, "p1", "centre_mev"),
                           (12, "p1", "centre_mev"), (0, "p1", "sigma_mev")])
    assert cov[0, 1] != 0.0 and cov[0, 2] == 0.0
    np.testing.assert_allclose(np.sqrt(cov[0, 0]), tied.stderr[0, 1, 1], rtol=1e-9)
    np.testing.assert_allclose(np.sqrt(cov[3, 3]), tied.stderr[0, 1, 2], rtol=1e-9)


def test_bounds_are_respected_and_flagged():
    truth = TRUTH.copy()
    truth[1, 1] = 56.0  # outside the second peak's box (46–54)
    y = spectra_of(truth[None])
    start = offset_start()
    start[2, 2] = 9.0  # an initial σ above its bound 8
    fit = fit_voigt_peaks(ENERGY_MEV, y, peaks_from(start), variance=np.maximum(y, 1))
    assert fit.value("p1", "centre_mev")[0] == pytest.approx(54.0)
    assert fit.bound_hit("p1", "centre_mev")[0]
    lower = np.array([b[0] for b in BOXES], float)
    upper = np.array([b[1] for b in BOXES], float)
    assert np.all(fit.values[0] >= lower - 1e-12) and np.all(fit.values[0] <= upper + 1e-12)
    assert any("p2: initial sigma_mev" in w for w in fit.warnings)


def test_fixed_parameters_and_tied_amplitudes():
    rng = np.random.default_rng(2)
    expected = spectra_of(np.broadcast_to(TRUTH, (50, 3, 4)))
    y = rng.poisson(expected).astype(float)
    ratio = TRUTH[1, 0] / TRUTH[2, 0]
    peaks = peaks_from(offset_start(0.0))
    peaks[0] = VoigtPeak("p0", 1e4, *TRUTH[0, 1:], modes=(FREE, FIXED, FIXED, FIXED))
    for mode in (FIXED, SHARED):
        peaks[1] = VoigtPeak("p1", 0.5 if mode == SHARED else ratio, *TRUTH[1, 1:],
                             lower=(0, -np.inf, 1e-3, 0), modes=(mode, FIXED, FIXED, FIXED),
                             amplitude_relative_to="p2")
        fit = fit_voigt_peaks(ENERGY_MEV, y, peaks, variance=expected)
        assert np.all(fit.value("p0", "centre_mev") == TRUTH[0, 1])
        assert np.all(fit.error("p0", "centre_mev") == 0.0)
        np.testing.assert_allclose(fit.value("p1", "amplitude"),
                                   fit.amplitude_ratio["p1"] * fit.value("p2", "amplitude"))
        if mode == FIXED:
            np.testing.assert_allclose(fit.amplitude_ratio["p1"], ratio)
        else:
            assert abs(fit.amplitude_ratio["p1"][0] - ratio) < 3 * fit.amplitude_ratio_stderr[
                "p1"][0]
        pull = (fit.value("p2", "amplitude") - TRUTH[2, 0]) / fit.error("p2", "amplitude")
        assert np.all(np.abs(pull) < 4)


def test_power_law_background_with_a_soft_core_is_fitted_with_the_peaks():
    e = np.arange(10.0, 100.0, 0.4)  # close enough to the ZLP for its core to show
    level, exponent, core = 400.0, 2.0, 4.0
    tail = level * ((e**2 + core**2) / (50.0**2 + core**2)) ** (-exponent / 2)
    y = spectra_of(TRUTH[None], e) + tail
    background = PowerLawTerm(300.0, 1.7, 3.0, modes=(FREE, FREE, FREE))
    fit = fit_voigt_peaks(e, y, peaks_from(offset_start()), variance=np.maximum(y, 1),
                          background=background)
    np.testing.assert_allclose(fit.background[0], [level, exponent, core], rtol=1e-4)
    np.testing.assert_allclose(fit.values[0, :, 1:], TRUTH[:, 1:], atol=1e-3)
    np.testing.assert_allclose(fit.model(e)[0], y[0], rtol=1e-6)
    cov = fit.covariance([(0, BACKGROUND, "exponent")])
    np.testing.assert_allclose(np.sqrt(cov[0, 0]), fit.background_stderr[0, 1], rtol=1e-9)


def test_per_spectrum_axes_and_masks():
    shifts = np.array([-0.3, 0.0, 0.25])
    energies = ENERGY_MEV[None, :] - shifts[:, None]
    y = spectra_of(np.broadcast_to(TRUTH, (3, 3, 4)), energies)
    y[:, :5] = 1e9  # garbage in channels the mask leaves out
    mask = np.ones_like(y, dtype=bool)
    mask[:, :5] = False
    fit = fit_voigt_peaks(energies, y, peaks_from(offset_start()), variance=np.maximum(y, 1),
                          mask=mask)
    np.testing.assert_allclose(fit.values[..., 1], np.broadcast_to(TRUTH[:, 1], (3, 3)),
                               atol=1e-3)
    assert np.all(fit.points == y.shape[1] - 5)
