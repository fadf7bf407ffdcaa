"""SHO fits of band-excitation spectra against synthetic data with known parameters."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.analysis.sho_fit import ShoFit, fit_sho, sho_response

FREQUENCIES_HZ = np.linspace(80e3, 320e3, 128)


def population(n, seed, q_range=(30.0, 300.0)):
    """Ground truth: f0 in 180-300 kHz, Q in q_range, A over two decades, any phase."""
    rng = np.random.default_rng(seed)
    return dict(
        amplitude=10 ** rng.uniform(-1.0, 1.0, n),
        resonance_frequency_hz=rng.uniform(180e3, 300e3, n),
        quality_factor=rng.uniform(*q_range, n),
        phase_rad=rng.uniform(-np.pi, np.pi, n),
    )


def synthesise(truth, peak_snr=None, seed=0):
    """Spectra, with complex Gaussian noise of rms |peak| / peak_snr per bin if asked."""
    spectra = sho_response(FREQUENCIES_HZ, **truth)
    if peak_snr is None:
        return spectra
    rng = np.random.default_rng(seed)
    sigma = truth["amplitude"] * truth["quality_factor"] / peak_snr
    noise = rng.standard_normal(spectra.shape) + 1j * rng.standard_normal(spectra.shape)
    return spectra + sigma[..., None] / np.sqrt(2) * noise


def relative_errors(fit: ShoFit, truth):
    return {
        "f0": np.abs(fit.resonance_frequency_hz / truth["resonance_frequency_hz"] - 1),
        "q": np.abs(fit.quality_factor / truth["quality_factor"] - 1),
        "a": np.abs(fit.amplitude / truth["amplitude"] - 1),
        "phase": np.abs(np.angle(np.exp(1j * (fit.phase_rad - truth["phase_rad"])))),
    }


def test_response_has_peak_amplitude_a_times_q_at_resonance():
    h = sho_response(np.array([150e3]), 2.0, 150e3, 40.0, 0.3)
    assert np.abs(h[0]) == pytest.approx(80.0)
    assert np.angle(h[0]) == pytest.approx(0.3 + np.pi / 2)


def test_noise_free_recovery_is_exact():
    truth = population(4096, seed=1)
    fit = fit_sho(FREQUENCIES_HZ, synthesise(truth))
    errors = relative_errors(fit, truth)
    assert fit.converged.all()
    assert errors["f0"].max() < 1e-8
    for name in ("q", "a", "phase"):
        assert errors[name].max() < 1e-6, name
    assert fit.r_squared.min() > 1 - 1e-12
    assert np.all((fit.phase_rad > -np.pi) & (fit.phase_rad <= np.pi))


def test_noisy_population_reaches_the_least_squares_optimum():
    # Peak SNR 20 over the whole Q range: at Q = 300 the resonance is narrower than one bin,
    # so Q and A are noise-limited there; f0 stays tight and the fit must beat the truth.
    truth = population(2048, seed=2)
    spectra = synthesise(truth, peak_snr=20.0, seed=3)
    fit = fit_sho(FREQUENCIES_HZ, spectra)
    errors = relative_errors(fit, truth)
    assert fit.converged.all()
    assert errors["f0"].max() < 2e-3
    assert np.median(errors["q"]) < 0.05
    assert np.median(errors["a"]) < 0.05
    assert np.median(errors["phase"]) < 0.05
    fitted_cost = np.sum(np.abs(spectra - fit.model(FREQUENCIES_HZ)) ** 2, axis=-1)
    true_cost = np.sum(np.abs(spectra - sho_response(FREQUENCIES_HZ, **truth)) ** 2, axis=-1)
    assert np.all(fitted_cost <= true_cost * (1 + 1e-9))


def test_resolved_resonances_at_moderate_noise_are_recovered_within_tolerance():
    truth = population(1024, seed=4, q_range=(30.0, 100.0))
    fit = fit_sho(FREQUENCIES_HZ, synthesise(truth, peak_snr=100.0, seed=5))
    errors = relative_errors(fit, truth)
    assert fit.converged.all()
    assert errors["f0"].max() < 5e-4
    assert errors["q"].max() < 0.05
    assert errors["a"].max() < 0.05
    assert errors["phase"].max() < 0.05
    assert fit.r_squared.min() > 0.99


def test_leading_dimensions_are_kept():
    truth = {k: v.reshape(8, 8) for k, v in population(64, seed=6).items()}
    spectra = synthesise(truth, peak_snr=200.0, seed=7)
    assert spectra.shape == (8, 8, 128)
    fit = fit_sho(FREQUENCIES_HZ, spectra)
    for value in vars(fit).values():
        assert value.shape == (8, 8)
    flat = fit_sho(FREQUENCIES_HZ, spectra.reshape(64, 128))
    np.testing.assert_allclose(fit.resonance_frequency_hz.ravel(), flat.resonance_frequency_hz)
    assert relative_errors(fit, truth)["f0"].max() < 1e-3
    assert fit.model(FREQUENCIES_HZ).shape == (8, 8, 128)


def test_bad_pixels_are_flagged_and_do_not_change_good_ones():
    truth = population(200, seed=8)
    good = synthesise(truth, peak_snr=50.0, seed=9)
    rng = np.random.default_rng(10)
    pure_noise = rng.standard_normal(128) + 1j * rng.standard_normal(128)
    zeros = np.zeros(128, complex)
    with_nan = good[0].copy()
    with_nan[40] = np.nan
    mixed = np.concatenate([good[:100], [pure_noise, zeros, with_nan], good[100:]])

    alone = fit_sho(FREQUENCIES_HZ, good)
    together = fit_sho(FREQUENCIES_HZ, mixed, chunk_size=64)
    keep = np.r_[0:100, 103:203]
    for name, value in vars(alone).items():
        np.testing.assert_allclose(vars(together)[name][keep], value, rtol=1e-12, err_msg=name)
    assert alone.converged.all()

    assert together.r_squared[100] < 0.3  # a fitted pure-noise spectrum explains little
    for bad in (101, 102):
        assert not together.converged[bad]
        for name in ("amplitude", "resonance_frequency_hz", "quality_factor", "phase_rad",
                     "r_squared"):
            assert np.isnan(vars(together)[name][bad]), name


@pytest.mark.parametrize("f0_hz", [88e3, 100e3, 300e3, 316e3])
def test_resonance_near_band_edge_is_fitted(f0_hz):
    truth = dict(amplitude=np.full(16, 1.5), resonance_frequency_hz=np.full(16, f0_hz),
                 quality_factor=np.full(16, 60.0), phase_rad=np.full(16, -2.0))
    fit = fit_sho(FREQUENCIES_HZ, synthesise(truth, peak_snr=100.0, seed=11))
    errors = relative_errors(fit, truth)
    assert fit.converged.all()
    assert errors["f0"].max() < 1e-3
    assert errors["q"].max() < 0.1
    assert errors["a"].max() < 0.1
    assert errors["phase"].max() < 0.1


def test_single_spectrum_gives_scalar_shaped_results():
    fit = fit_sho(FREQUENCIES_HZ, sho_response(FREQUENCIES_HZ, 3.0, 211e3, 150.0, 3.1))
    assert fit.quality_factor.shape == ()
    assert float(fit.quality_factor) == pytest.approx(150.0, rel=1e-8)
    assert float(fit.phase_rad) == pytest.approx(3.1, abs=1e-8)
    assert float(fit.amplitude) == pytest.approx(3.0, rel=1e-8)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        fit_sho(FREQUENCIES_HZ[::-1], np.ones(128, complex))
    with pytest.raises(ValueError):
        fit_sho(FREQUENCIES_HZ, np.ones((3, 127), complex))
