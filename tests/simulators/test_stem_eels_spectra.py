"""Spectrum formation of the monochromated STEM: ZLP, vibrational peaks, valence and core
losses, counting; checked with the analyses a microscopist would run on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.special import voigt_profile

from vegard.simulators.stem_eels_specimen import GrainBoundarySpecimen, dipole_decay
from vegard.simulators.stem_eels_spectra import (
    ALOOF_PEAKS,
    BeamDamage,
    EnergyAxis,
    EnergyDrift,
    PixelConditions,
    SpectrumFormation,
)

VIBRATIONAL = EnergyAxis(-50.0, 0.4, 2048)
VALENCE = EnergyAxis(-2000.0, 50.0, 2048)
CORE_LOSS = EnergyAxis(30_000.0, 100.0, 2048)
ELECTRONS_1S_20PA = 20e-12 / 1.602176634e-19
CUTOFF_NM = 5.0


def conditions(x_nm, specimen=None, electrons=ELECTRONS_1S_20PA, shift_mev=0.0):
    specimen = specimen or GrainBoundarySpecimen()
    profile = specimen.profile(np.atleast_1d(np.asarray(x_nm, dtype=float)))
    n = profile["position_nm"].size
    bulk = specimen.parameters["li_to_co_bulk"]
    return PixelConditions(
        electrons=np.full(n, float(electrons)),
        thickness_t_over_lambda=profile["thickness_t_over_lambda"],
        impact_parameter_nm=profile["impact_parameter_nm"],
        in_vacuum=profile["in_vacuum"],
        grain_contrast=profile["grain_contrast"],
        ldo_centre_mev=profile["ldo_centre_mev"],
        lithium_relative=profile["li_to_co"] / bulk,
        li_to_co=profile["li_to_co"],
        energy_shift_mev=np.full(n, float(shift_mev)),
    ), profile


def fwhm(energy: np.ndarray, counts: np.ndarray) -> float:
    peak = int(np.argmax(counts))
    half = counts[peak] / 2
    left = np.interp(half, counts[: peak + 1], energy[: peak + 1])
    right = np.interp(-half, -counts[peak:], energy[peak:])
    return float(right - left)


def voigt(x, area, centre, sigma, gamma):
    return area * voigt_profile(x - centre, sigma, gamma)


@pytest.fixture(scope="module")
def formation() -> SpectrumFormation:
    return SpectrumFormation()


@pytest.mark.parametrize("slit_mev", [5.0, 7.6, 15.0, 40.0])
def test_zlp_fwhm_follows_the_monochromator_slit(formation, slit_mev) -> None:
    c, _ = conditions([-185.0])
    resolution = formation.zlp_fwhm_mev(slit_mev)
    assert resolution == pytest.approx(math.hypot(slit_mev, 2.5))
    counts = formation.expected_counts(VIBRATIONAL, c, resolution, CUTOFF_NM)[0]
    assert fwhm(VIBRATIONAL.centres_mev(), counts) == pytest.approx(resolution, abs=0.1)


def test_zlp_sits_where_the_energy_drift_puts_it(formation) -> None:
    c, _ = conditions([-185.0, -185.0], shift_mev=0.0)
    c_shifted, _ = conditions([-185.0], shift_mev=1.3)
    energy = VIBRATIONAL.centres_mev()
    still = formation.expected_counts(VIBRATIONAL, c, 8.0, CUTOFF_NM)[0]
    moved = formation.expected_counts(VIBRATIONAL, c_shifted, 8.0, CUTOFF_NM)[0]
    assert energy[np.argmax(still)] == pytest.approx(0.0, abs=0.2)
    assert energy[np.argmax(moved)] == pytest.approx(1.3, abs=0.2)
    drift = EnergyDrift({"energy_drift_mev_per_min": 0.5, "energy_drift_oscillation_mev": 0.0,
                         "energy_drift_period_min": 20.0}, phase_rad=0.0)
    assert drift.shift_mev(np.array([0.0, 600.0])) == pytest.approx([0.0, 5.0])


@pytest.mark.parametrize("shift_mev", [1.8, 0.0, -1.0])
def test_ldo_centre_at_the_boundary_is_bulk_plus_the_boundary_shift(formation, shift_mev) -> None:
    specimen = GrainBoundarySpecimen({"ldo_boundary_shift_mev": shift_mev})
    c, _ = conditions([0.0, -50.0], specimen)
    parts = formation.components(VIBRATIONAL, c, 8.0, CUTOFF_NM)
    total = sum(parts.values())
    others = sum(part for name, part in parts.items() if name != "ldo")
    ldo_alone = total - others  # the noiseless spectrum with every other part subtracted
    energy = VIBRATIONAL.centres_mev()
    window = (energy > 25) & (energy < 75)
    for pixel, expected in ((0, 48.5 + shift_mev), (1, 48.5)):
        fitted, _ = curve_fit(voigt, energy[window], ldo_alone[pixel, window] / 0.4,
                              p0=[2e4, 49.0, 6.0, 0.7])
        assert fitted[1] == pytest.approx(expected, abs=0.05)


def test_a_typical_pixel_has_about_3e4_counts_in_the_ldo_peak(formation) -> None:
    """The dose assumption: 20 pA, 1 s, grain A near the boundary."""
    c, profile = conditions([-5.0])
    assert profile["thickness_t_over_lambda"][0] == pytest.approx(0.5, abs=0.05)
    ldo = formation.components(VIBRATIONAL, c, 8.0, CUTOFF_NM)["ldo"].sum()
    assert 2.5e4 < ldo < 3.5e4
    expected = formation.expected_counts(VIBRATIONAL, c, 8.0, CUTOFF_NM)
    assert expected.max() < formation.parameters["camera_saturation_counts"]


def test_aloof_spectrum_has_polaritons_decaying_as_k0_and_no_phonons(formation) -> None:
    x = np.array([-185.0, -220.0, -420.0, -60.0])  # b = 65, 100, 300 nm; on the specimen
    c, profile = conditions(x)
    parts = formation.components(VIBRATIONAL, c, 8.0, CUTOFF_NM)
    energy = VIBRATIONAL.centres_mev()
    near_34 = (energy > 30) & (energy < 38)
    assert parts["phononic"][:3].sum() == 0 and parts["ldo"][:3].sum() == 0
    assert parts["phononic"][3].sum() > 0 and parts["polaritonic"][3].sum() > 0
    polaritons = parts["polaritonic"][:, near_34].sum(axis=1)
    expected = dipole_decay(profile["impact_parameter_nm"], ALOOF_PEAKS[0].centre_mev, 60.0,
                            CUTOFF_NM)
    # the 34 meV peak dominates its window; the others decay a little faster
    assert polaritons[1] / polaritons[0] == pytest.approx(expected[1] / expected[0], rel=0.02)
    assert polaritons[2] / polaritons[0] == pytest.approx(expected[2] / expected[0], rel=0.03)
    assert polaritons[3] > polaritons[0]  # on the specimen: the cut-off value, above 65 nm's


def test_energy_gain_peaks_obey_detailed_balance(formation) -> None:
    c, _ = conditions([-185.0])
    polaritons = formation.components(VIBRATIONAL, c, 8.0, CUTOFF_NM)["polaritonic"][0]
    energy = VIBRATIONAL.centres_mev()
    loss = polaritons[np.argmin(abs(energy - 34.0))]
    gain = polaritons[np.argmin(abs(energy + 34.0))]
    assert gain / loss == pytest.approx(math.exp(-34.0 / (8.617333e-2 * 295.0)), rel=0.1)


def test_log_ratio_of_the_valence_spectrum_recovers_the_thickness(formation) -> None:
    x = np.array([-110.0, -60.0, 0.0, 40.0, 80.0])
    c, profile = conditions(x, electrons=2e6)  # a 16 ms exposure: the ZLP unsaturated
    expected = formation.expected_counts(VALENCE, c, 8.0, CUTOFF_NM)
    counts, saturated = formation.detect(expected, np.random.default_rng(1))
    assert not saturated.any()
    energy = VALENCE.centres_mev()
    zero_loss = (energy > -1000) & (energy < 1500)
    estimate = np.log(counts.sum(axis=1) / counts[:, zero_loss].sum(axis=1))
    assert estimate == pytest.approx(profile["thickness_t_over_lambda"], rel=0.05)


def test_edge_intensities_follow_the_li_to_co_profile(formation) -> None:
    x = np.linspace(-30.0, 30.0, 61)
    c, profile = conditions(x)
    parts = formation.components(CORE_LOSS, c, 8.0, CUTOFF_NM)
    energy_ev = CORE_LOSS.centres_mev() / 1000
    li_window = (energy_ev >= 55) & (energy_ev < 59)
    co_window = (energy_ev >= 60) & (energy_ev < 68)
    truth = profile["li_to_co"] / profile["li_to_co"][0]

    # the relation itself: I_Li/I_Co over fixed windows ∝ Li:Co, whatever the thickness
    ratio = parts["li_k"][:, li_window].sum(1) / parts["co_m23"][:, co_window].sum(1)
    assert ratio / ratio[0] == pytest.approx(truth, rel=1e-9)

    # what a microscopist measures: power-law background just below the edge, windows
    total = sum(parts.values())
    fit = (energy_ev >= 52) & (energy_ev < 54.8)
    measured = []
    for spectrum in total:
        slope, intercept = np.polyfit(np.log(energy_ev[fit]), np.log(spectrum[fit]), 1)
        signal = spectrum - np.exp(intercept) * energy_ev**slope
        measured.append(signal[li_window].sum() / signal[co_window].sum())
    measured = np.asarray(measured)
    bulk = np.mean(np.r_[measured[:5], measured[-5:]])
    assert measured[30] / bulk - 1 == pytest.approx(-0.27, abs=0.03)
    assert np.all(np.abs(measured[[0, -1]] / bulk - 1) < 0.05)


def test_counting_noise_is_poisson(formation) -> None:
    expected = np.full((200, 500), 400.0)
    counts, _ = formation.detect(expected, np.random.default_rng(7))
    assert counts.dtype == np.float32
    assert np.all(counts == np.round(counts))
    assert counts.mean() == pytest.approx(400.0, rel=0.005)
    assert counts.var() == pytest.approx(counts.mean(), rel=0.03)


def test_the_camera_clips_at_its_saturation(formation) -> None:
    saturation = formation.parameters["camera_saturation_counts"]
    expected = np.array([[10.0, 0.5 * saturation, 3.0 * saturation, 10 * saturation]])
    counts, saturated = formation.detect(expected, np.random.default_rng(0))
    assert counts[0, 2:].tolist() == [saturation, saturation]
    assert counts[0, 1] < saturation
    assert saturated.tolist() == [2]


def test_same_generator_seed_same_counts_different_seed_different(formation) -> None:
    c, _ = conditions(np.linspace(-150, 50, 20))
    expected = formation.expected_counts(VIBRATIONAL, c, 8.0, CUTOFF_NM)
    first, _ = formation.detect(expected, np.random.default_rng(5))
    again, _ = formation.detect(expected, np.random.default_rng(5))
    other, _ = formation.detect(expected, np.random.default_rng(6))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_counts_are_conserved_when_the_axis_covers_every_loss(formation) -> None:
    wide = EnergyAxis(-5000.0, 100.0, 2048)  # −5 … 200 eV
    c, _ = conditions([-185.0, -100.0, 0.0, 60.0])
    total = formation.expected_counts(wide, c, 8.0, CUTOFF_NM).sum(axis=1)
    assert total == pytest.approx(c.electrons, rel=0.01)


def test_beam_damage_removes_li_only_beyond_the_budget() -> None:
    damage = BeamDamage({"damage_dose_budget_e_per_nm2": 1e8,
                         "damage_li_loss_dose_e_per_nm2": 5e7, "damage_spread_nm": 1.0})
    remaining = damage.lithium_remaining(np.array([0.0, 1e8, 1.5e8, 2e8]))
    assert remaining == pytest.approx([1.0, 1.0, math.exp(-1), math.exp(-2)])


def test_out_of_range_parameters_are_refused_naming_parameter_and_range() -> None:
    with pytest.raises(ValueError, match=r"camera_saturation_counts = 1e\+08 is out of range: "
                                         r"allowed 1 … 1\.6e\+07 counts"):
        SpectrumFormation({"camera_saturation_counts": 1e8})


def test_summed_frames_clip_at_frames_times_the_saturation(formation) -> None:
    """Each frame fills its own well: four frames hold four wells, one frame one."""
    saturation = formation.parameters["camera_saturation_counts"]
    expected = np.array([[10.0, 2.0 * saturation, 3.5 * saturation, 10 * saturation]])
    counts, saturated = formation.detect(expected, np.random.default_rng(0), frames=4)
    assert counts[0, 1:3] == pytest.approx([2.0 * saturation, 3.5 * saturation], rel=1e-3)
    assert counts[0, 3] == np.float32(4 * saturation)
    assert saturated.tolist() == [1]
    one, saturated_one = formation.detect(expected, np.random.default_rng(0))
    assert one[0, 1:].tolist() == [saturation] * 3 and saturated_one.tolist() == [3]


def test_one_frame_is_the_default_detection(formation) -> None:
    expected = np.array([[10.0, 400.0, 3.0 * formation.parameters["camera_saturation_counts"]]])
    default = formation.detect(expected, np.random.default_rng(3))
    one = formation.detect(expected, np.random.default_rng(3), frames=1)
    assert np.array_equal(default[0], one[0]) and np.array_equal(default[1], one[1])
