"""Physics of the ESM sample: surface, contact resonance, compensation identity, paper numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vegard.analysis.sho_fit import sho_response
from vegard.simulators.esm_sample import (
    EXCITATIONS,
    FIELD_PERIOD_NM,
    GAS_CONSTANT_J_PER_MOL_K,
    EsmSample,
)

BAND_HZ = np.linspace(80e3, 320e3, 64)


@pytest.fixture(scope="module")
def sample() -> EsmSample:
    return EsmSample(seed=3)


@pytest.fixture(scope="module")
def area(sample: EsmSample) -> dict[str, np.ndarray]:
    """A 2 × 2 µm area around the origin on a 10 nm grid."""
    grid = np.arange(-1000.0, 1000.0, 10.0) + 5.0
    x, y = np.meshgrid(grid, grid, indexing="ij")
    return {"x": x, "y": y, **sample.properties(x, y)}


@pytest.fixture(scope="module")
def coarse(area: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same area on a 20 nm grid, for identities that hold at every point."""
    return {key: value[::2, ::2] for key, value in area.items()}


def large_grain_interior(sample: EsmSample, radius_nm: float = 150.0) -> tuple[np.ndarray, ...]:
    truth = sample.ground_truth()
    r, phi = np.meshgrid(np.linspace(0.0, radius_nm, 12), np.linspace(0, 2 * np.pi, 24))
    return truth["large_grain_x_nm"] + r * np.cos(phi), truth["large_grain_y_nm"] + r * np.sin(phi)


# ------------------------------------------------------------------ construction


def test_parameters_are_declared_with_units_and_ranges() -> None:
    names = [p.name for p in EsmSample.PARAMETERS]
    assert len(names) == len(set(names))
    for required in ("activation_energy_kj_mol", "electrostatic_pm_per_v2",
                     "electrostatic_calibration_mismatch", "contact_potential_v",
                     "contact_potential_spread_v", "eta_v", "poisson_ratio",
                     "vegard_coefficient", "diffusion_coefficient_300k_cm2_per_s",
                     "grain_boundary_diffusion_enhancement", "large_grain_diameter_nm",
                     "grain_size_nm", "roughness_nm"):
        assert required in names
    for parameter in EsmSample.PARAMETERS:
        assert parameter.admits(parameter.default), parameter.name


def test_unknown_and_out_of_range_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="bogus_knob"):
        EsmSample({"bogus_knob": 1.0, "eta_v": 400.0})
    with pytest.raises(ValueError, match="eta_v"):
        EsmSample({"eta_v": -1.0})
    given = EsmSample({"eta_v": 400.0})
    assert given.parameters["eta_v"] == 400.0
    assert given.parameters["poisson_ratio"] == 0.25


def test_same_seed_same_surface_other_seed_other_surface() -> None:
    x = np.array([-2500.3, -10.25, 0.0, 333.3333, 2999.9])
    y = np.array([1200.7, 5.5, 0.0, -777.1, -2999.9])
    first, again = EsmSample(seed=11).properties(x, y), EsmSample(seed=11).properties(x, y)
    other = EsmSample(seed=12).properties(x, y)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.allclose(first["height_nm"], other["height_nm"])
    assert EsmSample(seed=[1, 2]).properties(0.0, 0.0)["height_nm"].shape == ()


def test_properties_broadcast_at_arbitrary_float_positions(sample: EsmSample) -> None:
    x = np.array([[-3000.123], [17.000001], [1.0e6 + 0.37]])
    y = np.array([[0.5, -2999.99, 2222.2222, 1.0e-7]])
    props = sample.properties(x, y)
    for key, value in props.items():
        assert value.shape == (3, 4), key
        assert np.all(np.isfinite(value)), key
    assert props["grain_id"].dtype.kind == "i"
    assert sample.drive_amplitudes_pm(x, y, 300.0, EXCITATIONS, 1.0, 1.0).shape == (3, 4, 3)
    assert sample.vegard_strain_pm(x, y, 300.0, 1.0).shape == (3, 4)
    assert sample.properties(np.empty(0), np.empty(0))["height_nm"].shape == (0,)


def test_surface_repeats_with_the_field_period_without_a_seam(sample: EsmSample) -> None:
    x = np.linspace(-900.0, 900.0, 37)
    y = np.full_like(x, 123.4)
    here = sample.properties(x, y)
    shifted = sample.properties(x + 3 * FIELD_PERIOD_NM, y - FIELD_PERIOD_NM)
    for key in here:
        np.testing.assert_allclose(shifted[key], here[key], rtol=1e-9, atol=1e-3, err_msg=key)
    edge = FIELD_PERIOD_NM / 2
    across = sample.properties(np.array([edge - 0.01, edge + 0.01]), np.array([50.0, 50.0]))
    assert abs(np.diff(across["resonance_frequency_hz"])[0]) < 50.0
    assert abs(np.diff(across["contact_potential_v"])[0]) < 1e-3


def test_material_maps_are_continuous_across_grain_boundaries(sample: EsmSample) -> None:
    """Steps of 0.05 nm: a jump at a boundary or triple junction would exceed the gradient."""
    x = np.arange(-1500.0, 1500.0, 0.05)
    props = sample.properties(x, np.full_like(x, -211.0))
    assert len(np.unique(props["grain_id"])) > 15
    assert np.max(np.abs(np.diff(props["contact_potential_v"]))) < 0.004
    assert np.max(np.abs(np.diff(props["resonance_frequency_hz"]))) < 1500.0
    assert np.max(np.abs(np.diff(props["electrostatic_pm_per_v2"]))) < 0.015
    assert np.max(np.abs(np.diff(props["orientation_factor"]))) < 0.01
    assert np.max(np.abs(np.diff(props["grain_boundary"]))) < 0.01


# ----------------------------------------------------------------------- surface


def test_grain_sizes_and_large_grain(sample: EsmSample, area: dict[str, np.ndarray]) -> None:
    grains = area["grain_id"]
    large = sample.largest_grain_id()
    truth = sample.ground_truth()
    assert sample.properties(truth["large_grain_x_nm"], truth["large_grain_y_nm"])[
        "grain_id"] == large
    ids, counts = np.unique(grains, return_counts=True)
    border = set(np.concatenate([grains[0], grains[-1], grains[:, 0], grains[:, -1]]).tolist())
    inner = np.array([c for i, c in zip(ids, counts, strict=True)
                      if i not in border and i != large])
    assert len(inner) > 150
    diameter_nm = 2 * math.sqrt(inner.mean() * 100.0 / math.pi)
    assert 100.0 < diameter_nm < 150.0
    large_diameter_nm = 2 * math.sqrt(counts[ids == large][0] * 100.0 / math.pi)
    assert large_diameter_nm == pytest.approx(truth["large_grain_diameter_nm"], rel=0.1)
    bigger = EsmSample({"large_grain_diameter_nm": 800.0, "grain_size_nm": 200.0}, seed=3)
    props = bigger.properties(area["x"], area["y"])
    assert np.sum(props["grain_id"] == large) * 100.0 == pytest.approx(
        math.pi * 400.0**2, rel=0.1)
    assert len(np.unique(props["grain_id"])) < 0.6 * len(ids)


def test_topography_rms_grooves_and_roughness(sample: EsmSample, area) -> None:
    height = area["height_nm"]
    assert 0.8 < height.std() < 4.0
    boundary = area["grain_boundary"]
    assert 0.0 <= boundary.min() and boundary.max() <= 1.0
    assert 0.05 < np.mean(boundary > 0.5) < 0.3
    rough_only = EsmSample({"grain_height_spread_nm": 0.0, "grain_tilt_spread_rad": 0.0,
                            "grain_boundary_groove_depth_nm": 0.0, "roughness_nm": 0.3}, seed=3)
    assert rough_only.properties(area["x"], area["y"])["height_nm"].std() == pytest.approx(
        0.3, rel=0.2)
    grooves = EsmSample({"grain_height_spread_nm": 0.0, "grain_tilt_spread_rad": 0.0,
                         "roughness_nm": 0.0}, seed=3).properties(area["x"], area["y"])
    np.testing.assert_allclose(grooves["height_nm"], -1.5 * grooves["grain_boundary"])


# ------------------------------------------------------------- contact mechanics


def test_contact_resonance_in_band_and_quality_factor_range(area) -> None:
    f0 = area["resonance_frequency_hz"]
    assert np.mean((f0 > 80e3) & (f0 < 320e3)) >= 0.99
    assert 200e3 < np.mean(f0) < 300e3
    q = area["quality_factor"]
    assert np.mean((q > 40.0) & (q < 150.0)) >= 0.99
    boundary = area["grain_boundary"] > 0.9
    interior = area["grain_boundary"] < 0.05
    assert np.median(q[boundary]) < np.median(q[interior])
    assert np.median(f0[boundary]) < np.median(f0[interior])


def test_contact_stiffness_is_hertzian(sample: EsmSample, coarse) -> None:
    modulus_pa = coarse["reduced_modulus_gpa"] * 1e9
    contact_radius_m = (3 * 10e-9 * 10e-9 / (4 * modulus_pa)) ** (1 / 3)
    np.testing.assert_allclose(coarse["contact_stiffness_n_per_m"],
                               2 * contact_radius_m * modulus_pa, rtol=1e-12)


def test_sensitivity_mean_one_few_percent_variation(area) -> None:
    sensitivity = area["sensitivity"]
    assert np.mean(sensitivity) == pytest.approx(1.0, abs=0.01)
    assert 0.005 < np.std(sensitivity) < 0.05
    assert np.all((sensitivity > 0.9) & (sensitivity < 1.1))


# ---------------------------------------------------------- compensation method


def test_compensation_is_exact_when_dc_equals_ac(sample: EsmSample, coarse) -> None:
    x, y = coarse["x"], coarse["y"]
    assert np.all(np.abs(coarse["contact_potential_v"]) <= 1.0)
    amplitudes = sample.drive_amplitudes_pm(x, y, 300.0, EXCITATIONS, 1.0, 1.0)
    plus, minus, hf = np.moveaxis(amplitudes, -1, 0)
    vegard = sample.vegard_strain_pm(x, y, 300.0, 1.0)
    np.testing.assert_allclose((plus + minus) / 2 - hf, coarse["sensitivity"] * vegard,
                               rtol=1e-10, atol=1e-12)
    assert np.all(plus != minus)  # the LF terms do depend on the DC sign (V_cpd ≠ 0)


def test_hf_excitation_does_not_depend_on_dc_and_carries_no_vegard_term(
    sample: EsmSample, area
) -> None:
    x, y = area["x"][::8, ::8], area["y"][::8, ::8]
    props = sample.properties(x, y)
    hf = [sample.drive_amplitudes_pm(x, y, t, ["hf_lf"], 2.5, dc)[..., 0]
          for t, dc in ((250.0, 0.0), (400.0, 2.5), (300.0, -7.0))]
    np.testing.assert_array_equal(hf[0], hf[1])
    np.testing.assert_array_equal(hf[0], hf[2])
    np.testing.assert_allclose(hf[0], props["sensitivity"] * props["electrostatic_pm_per_v2"]
                               * 2.5**2, rtol=1e-12)


def test_compensation_residual_where_contact_potential_exceeds_dc(sample: EsmSample, coarse):
    x, y, u_dc = coarse["x"], coarse["y"], 0.05
    plus, minus, hf = np.moveaxis(
        sample.drive_amplitudes_pm(x, y, 300.0, EXCITATIONS, u_dc, u_dc), -1, 0)
    vegard = sample.vegard_strain_pm(x, y, 300.0, u_dc)
    cpd, s = coarse["contact_potential_v"], coarse["sensitivity"]
    c = coarse["electrostatic_pm_per_v2"]
    excess = np.maximum(np.abs(cpd) - u_dc, 0.0)
    assert np.mean(excess > 0) > 0.2
    np.testing.assert_allclose((plus + minus) / 2 - hf - s * vegard, s * c * u_dc * excess,
                               rtol=1e-9, atol=1e-12)


def test_calibration_mismatch_offsets_the_compensation(coarse) -> None:
    mismatched = EsmSample({"electrostatic_calibration_mismatch": 0.1}, seed=3)
    x, y = coarse["x"], coarse["y"]
    plus, minus, hf = np.moveaxis(
        mismatched.drive_amplitudes_pm(x, y, 300.0, EXCITATIONS, 2.5, 2.5), -1, 0)
    props = mismatched.properties(x, y)
    vegard = mismatched.vegard_strain_pm(x, y, 300.0, 2.5)
    expected = props["sensitivity"] * (vegard - 0.1 * props["electrostatic_pm_per_v2"] * 2.5**2)
    np.testing.assert_allclose((plus + minus) / 2 - hf, expected, rtol=1e-9, atol=1e-12)


def test_excitation_subset_and_order_and_unknown_names(sample: EsmSample) -> None:
    x, y = np.array([1.0, 250.0]), np.array([2.0, -400.0])
    full = sample.drive_amplitudes_pm(x, y, 300.0, EXCITATIONS, 1.0, 1.0)
    part = sample.drive_amplitudes_pm(x, y, 300.0, ["hf_lf", "lf_dc_plus"], 1.0, 1.0)
    np.testing.assert_array_equal(part, full[:, [2, 0]])
    with pytest.raises(ValueError, match="lf_dc_sideways"):
        sample.drive_amplitudes_pm(x, y, 300.0, ["lf_dc_sideways"], 1.0, 1.0)


# --------------------------------------------------------------- paper numbers


def test_temperature_series_numbers_on_the_large_grain(sample: EsmSample) -> None:
    x, y = large_grain_interior(sample)
    assert np.all(sample.properties(x, y)["grain_id"] == sample.largest_grain_id())
    d1 = {t: sample.vegard_strain_pm(x, y, t, 2.5) for t in (250.0, 300.0, 400.0)}
    assert np.all(np.abs(d1[300.0] / 5.0 - 1) < 0.15)
    assert 1.4 < np.median(d1[250.0]) < 2.6
    assert 15.0 < np.median(d1[400.0]) < 30.0
    hf = sample.truth_maps(x, y, 300.0, 2.5)["electrostatic_pm"]
    assert np.all(np.abs(hf / 16.0 - 1) < 0.15)
    truth = sample.ground_truth()
    assert truth["delta_c_over_c_300k"] == pytest.approx(0.005)
    assert truth["large_grain_vegard_strain_300k_pm"] == pytest.approx(5.0, rel=0.15)


def test_vegard_strain_is_equation_3(sample: EsmSample) -> None:
    x, y = large_grain_interior(sample, 50.0)
    d1 = sample.vegard_strain_pm(x, y, 300.0, 2.5, frequency_hz=250e3)
    length_m = math.sqrt(3e-10 / (2 * math.pi * 250e3))
    assert length_m == pytest.approx(14e-9, rel=0.05)
    np.testing.assert_allclose(d1, 2 * 1.25 * 0.03 * (2.5 / 500.0) * length_m * 1e12,
                               rtol=1e-12)


def test_ordinary_grains_at_one_volt_room_temperature(sample: EsmSample, area) -> None:
    d1 = sample.vegard_strain_pm(area["x"], area["y"], 300.0, 1.0)
    ordinary = area["grain_id"] != sample.largest_grain_id()
    interior = ordinary & (area["grain_boundary"] < 0.05)
    assert 0.3 < np.median(d1[interior]) < 0.8
    assert np.mean((d1[interior] > 0.3) & (d1[interior] < 0.8)) > 0.98
    boundary = ordinary & (area["grain_boundary"] > 0.8)
    assert np.median(d1[boundary]) > 1.3 * np.median(d1[interior])


@pytest.mark.parametrize("activation_energy_kj_mol", [27.0, 41.5])
def test_arrhenius_slope_of_vegard_strain_is_half_the_activation_energy(
    activation_energy_kj_mol: float, area
) -> None:
    sample = EsmSample({"activation_energy_kj_mol": activation_energy_kj_mol}, seed=3)
    x, y = area["x"][::7, ::7], area["y"][::7, ::7]
    temperatures = np.array([250.0, 275.0, 300.0, 350.0, 400.0])
    log_d1 = np.log([sample.vegard_strain_pm(x, y, t, 2.5) for t in temperatures])
    slope = np.polyfit(1 / temperatures, log_d1.reshape(len(temperatures), -1), 1)[0]
    np.testing.assert_allclose(
        -2 * GAS_CONSTANT_J_PER_MOL_K * slope / 1e3, activation_energy_kj_mol, rtol=1e-8)


def test_diffusion_coefficient(sample: EsmSample) -> None:
    assert sample.diffusion_coefficient_m2_per_s(300.0) == pytest.approx(3e-10)
    assert sample.diffusion_coefficient_m2_per_s(300.0, 1.0) == pytest.approx(9e-10)
    ratio = sample.diffusion_coefficient_m2_per_s(400.0) / sample.diffusion_coefficient_m2_per_s(
        250.0)
    assert ratio == pytest.approx(math.exp(27e3 / GAS_CONSTANT_J_PER_MOL_K * (1 / 250 - 1 / 400)))


# --------------------------------------------------------------------- spectra


def test_noise_free_spectra_are_the_sho_with_the_drive_amplitudes(sample: EsmSample) -> None:
    x = np.linspace(-600.0, 600.0, 40) + 0.3
    y = np.linspace(100.0, 140.0, 40)
    spectra = sample.response_spectra(x, y, 320.0, EXCITATIONS, 1.5, 1.5, BAND_HZ,
                                      4e-3, 20, 0.0, None)
    assert spectra.dtype == np.complex64
    assert spectra.shape == (40, 3, BAND_HZ.size)
    props = sample.properties(x, y)
    amplitudes = sample.drive_amplitudes_pm(x, y, 320.0, EXCITATIONS, 1.5, 1.5)
    expected = sho_response(BAND_HZ, amplitudes, props["resonance_frequency_hz"][:, None],
                            props["quality_factor"][:, None],
                            props["response_phase_rad"][:, None])
    np.testing.assert_allclose(spectra, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    rng = np.random.default_rng(1)
    silent = sample.response_spectra(x, y, 320.0, EXCITATIONS, 1.5, 1.5, BAND_HZ,
                                     4e-3, 20, 0.0, rng)
    np.testing.assert_array_equal(silent, spectra)
    single = sample.properties(0.0, 0.0)
    peak = np.abs(sample.response_spectra(0.0, 0.0, 300.0, ["hf_lf"], 1.0, 1.0,
                                          single["resonance_frequency_hz"], 1.0, 1, 0.0, None))
    assert peak.item() == pytest.approx(single["quality_factor"] * single["sensitivity"]
                                        * single["electrostatic_pm_per_v2"], rel=1e-5)


def test_spectrum_noise_rms_follows_the_formula(sample: EsmSample) -> None:
    x = np.linspace(-300.0, 300.0, 64)
    y = np.zeros_like(x)
    arguments = (x, y, 300.0, EXCITATIONS, 1.0, 1.0, BAND_HZ, 2e-3, 20)
    clean = sample.response_spectra(*arguments, 0.0, None)
    noisy = sample.response_spectra(*arguments, 3.0, np.random.default_rng(5))
    noise = (noisy - clean).astype(np.complex128).ravel()
    sigma = 3.0 * math.sqrt(1 / 2e-3) / math.sqrt(20)
    assert np.sqrt(np.mean(np.abs(noise) ** 2)) == pytest.approx(sigma, rel=0.03)
    assert np.std(noise.real) == pytest.approx(sigma / math.sqrt(2), rel=0.03)
    assert np.std(noise.imag) == pytest.approx(sigma / math.sqrt(2), rel=0.03)
    assert abs(np.mean(noise)) < 0.05 * sigma
    again = sample.response_spectra(*arguments, 3.0, np.random.default_rng(5))
    np.testing.assert_array_equal(again, noisy)


# -------------------------------------------------------------------- truth


def test_truth_maps_match_the_model(sample: EsmSample) -> None:
    x, y = np.meshgrid(np.linspace(-400.0, 400.0, 9), np.linspace(-300.0, 500.0, 7))
    truth = sample.truth_maps(x, y, 350.0, 2.0)
    assert set(truth) >= {"topography_nm", "vegard_strain_pm", "electrostatic_pm",
                          "contact_potential_v", "resonance_frequency_hz", "quality_factor",
                          "grain_id", "sensitivity"}
    for value in truth.values():
        assert value.shape == x.shape
    np.testing.assert_array_equal(truth["vegard_strain_pm"],
                                  sample.vegard_strain_pm(x, y, 350.0, 2.0))
    hf = sample.drive_amplitudes_pm(x, y, 350.0, ["hf_lf"], 2.0, 2.0)[..., 0]
    np.testing.assert_allclose(truth["electrostatic_pm"], hf, rtol=1e-12)
    np.testing.assert_array_equal(truth["topography_nm"], sample.properties(x, y)["height_nm"])


def test_ground_truth_is_json_and_follows_parameters() -> None:
    sample = EsmSample({"eta_v": 250.0, "activation_energy_kj_mol": 30.0}, seed=4)
    truth = json.loads(json.dumps(sample.ground_truth()))
    assert truth["eta_v"] == 250.0
    assert truth["delta_c_over_c_300k"] == pytest.approx(0.01)
    assert truth["activation_energy_kj_mol"] == 30.0
    for key in ("diffusion_coefficient_300k_cm2_per_s", "poisson_ratio", "vegard_coefficient",
                "large_grain_x_nm", "large_grain_y_nm", "large_grain_diameter_nm"):
        assert key in truth
