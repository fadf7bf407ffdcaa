"""SXDM maps: the centre of mass in Q recovers the simulated crystal's d400 and tilt per pixel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vegard.analysis.sxdm_maps import (
    QGrid,
    intensity_mask,
    q_centres,
    q_sums,
    sxdm_maps,
    tilt_altitude_azimuth_deg,
)
from vegard.diffraction_geometry import DiffractometerGeometry, pixel_q
from vegard.simulators.lmno_crystal import LmnoCrystal, tilt_normal
from vegard.simulators.nanodiffraction import (
    NanoBeam,
    detector_setting_for,
    frames,
    rocking_eta_deg,
)

GEOMETRY = DiffractometerGeometry(distance_m=1.4, center_row=255.0, center_col=260.0)
X_LI, PHASE = 0.9, "li1"
X_UM = np.linspace(-1.6, 1.9, 12)
Y_UM = np.linspace(-1.8, 1.6, 12)
ROI_SHAPE = (48, 48)


@pytest.fixture(scope="module")
def scan() -> dict:
    """A 12 × 12 map over the crystal: 30 angles × 0.016°, 48 × 48 ROI, 10 ms at 10⁹ ph/s."""
    crystal = LmnoCrystal(seed=0)
    setting = detector_setting_for(crystal.d400_mean_angstrom(X_LI, PHASE), GEOMETRY, ROI_SHAPE)
    etas = rocking_eta_deg(setting.eta_center_deg)
    gx, gy = np.meshgrid(X_UM, Y_UM)
    points = np.stack((gx, gy), axis=-1).reshape(-1, 2)
    counts = frames(crystal, X_LI, points, etas, GEOMETRY, setting.roi, setting.nu_deg,
                    setting.delta_deg, 0.01, 1e9, np.random.default_rng(3))
    q = pixel_q(GEOMETRY, etas, 0.0, setting.nu_deg, setting.delta_deg, setting.roi.rows,
                setting.roi.cols)
    # Truth: the mean G under the beam footprint (as in test_nanodiffraction).
    offsets, beam_weight = NanoBeam().footprint(etas.mean())
    state = crystal.maps(X_LI, points[:, None, :] + offsets)
    weight = beam_weight * state["strength"] * state[f"{PHASE}_fraction"]
    g = (2 * math.pi / state[f"{PHASE}_d400_angstrom"])[..., None] * tilt_normal(
        state["tilt_x_deg"], state["tilt_y_deg"])
    with np.errstate(invalid="ignore"):
        g_truth = np.einsum("ps,psi->pi", weight, g) / weight.sum(axis=1)[:, None]
    shape = (Y_UM.size, X_UM.size)
    return {
        "frames": counts.reshape(*shape, *counts.shape[1:]),
        "q": q,
        "g_truth": g_truth.reshape(*shape, 3),
        "ground_truth": crystal.ground_truth_maps(X_LI, (X_UM, Y_UM), PHASE),
    }


def test_centre_of_mass_of_a_single_voxel_is_its_q() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 6, 7, 3)) + np.array([0.0, 0.0, 3.0])
    counts = np.zeros((2, 3, 5, 6, 7), dtype=np.uint16)
    counts[1, 2, 3, 4, 5] = 17
    counts[0, 0, 1, 2, 3] = 4
    counts[0, 0, 4, 0, 6] = 12
    q_com, total = q_centres(counts, q)
    np.testing.assert_allclose(q_com[1, 2], q[3, 4, 5], atol=1e-6)
    np.testing.assert_allclose(q_com[0, 0], (4 * q[1, 2, 3] + 12 * q[4, 0, 6]) / 16, atol=1e-6)
    assert total[1, 2] == 17 and total[0, 0] == 16 and total[0, 1] == 0
    assert np.all(np.isnan(q_com[0, 1]))


def test_background_and_threshold_remove_isolated_photons() -> None:
    q = np.random.default_rng(1).normal(size=(4, 5, 6, 3))
    counts = np.ones((1, 4, 5, 6), dtype=np.uint32)
    counts[0, 2, 3, 4] = 50
    for options in ({"threshold_counts": 1.0}, {"background_counts": 1.0}):
        q_com, _ = q_centres(counts, q, **options)
        np.testing.assert_allclose(q_com[0], q[2, 3, 4], atol=1e-6)
    assert q_centres(counts, q, threshold_counts=1.0)[1][0] == 50
    assert q_centres(counts, q, background_counts=1.0)[1][0] == 49


def test_chunking_gives_the_same_result(scan) -> None:
    """Same sums up to float32 rounding: BLAS may order a block's additions differently."""
    whole = q_centres(scan["frames"], scan["q"])
    for chunk in (1, 7, 50):
        q_com, total = q_centres(scan["frames"], scan["q"], chunk_pixels=chunk)
        np.testing.assert_allclose(q_com, whole[0], rtol=0, atol=1e-7, equal_nan=True)
        np.testing.assert_array_equal(total, whole[1])
    grid = QGrid.from_pixels(scan["q"])
    one = q_centres(scan["frames"], grid, chunk_pixels=7)
    two = q_centres(scan["frames"], grid, chunk_pixels=7, workers=2)
    np.testing.assert_array_equal(two[0], one[0])
    np.testing.assert_array_equal(two[1], one[1])


@pytest.mark.parametrize("options", [{}, {"threshold_counts": 1.0},
                                     {"background_counts": 0.5, "threshold_counts": 1.0}])
def test_compiled_pass_agrees_with_the_numpy_product(scan, options) -> None:
    """The compiled pass and the float32 matrix product give the same sums up to float32
    rounding: ≤ 2·10⁻⁶ of the largest |sum| per component (both are ≈10⁻⁷ from exact; the
    threshold moves that by a count where float32 rounding puts a voxel on either side of
    it), and centres within 10⁻⁶ Å⁻¹, 10⁻² of the strain resolution at |Q| ≈ 6 Å⁻¹.
    uint16 and uint32 frames, the detector's two counter widths."""
    grid = QGrid.from_pixels(scan["q"])
    for counts in (scan["frames"], scan["frames"].astype(np.uint16)):
        compiled = q_sums(counts, grid, kernel="compiled", **options)
        reference = q_sums(counts, grid, kernel="numpy", **options)
        scale = np.abs(reference).reshape(-1, 4).max(axis=0)
        assert np.all(np.abs(compiled - reference) <= 2e-6 * scale)
        q_compiled, _ = q_centres(counts, grid, kernel="compiled", **options)
        q_reference, _ = q_centres(counts, grid, kernel="numpy", **options)
        np.testing.assert_allclose(q_compiled, q_reference, rtol=0, atol=1e-6, equal_nan=True)
        assert np.isfinite(q_compiled).sum() > 0.9 * q_compiled.size
    # the compiled pass sums each pixel alone: no chunk or thread split changes a bit
    whole = q_sums(scan["frames"], grid, kernel="compiled", chunk_pixels=1000)
    split = q_sums(scan["frames"], grid, kernel="compiled", chunk_pixels=5, workers=2)
    np.testing.assert_array_equal(split, whole)


def test_mask_keeps_pixels_above_a_fifth_of_the_maximum() -> None:
    intensity = np.array([[0.0, 19.0, 20.0], [50.0, 100.0, np.nan]])
    np.testing.assert_array_equal(intensity_mask(intensity),
                                  [[False, False, True], [True, True, False]])
    assert not intensity_mask(np.zeros(3)).any()
    q = np.tile([0.0, 0.0, 3.0], (2, 3, 1))
    maps = sxdm_maps(q, np.nan_to_num(intensity))
    np.testing.assert_array_equal(maps.mask, intensity_mask(intensity))


def test_tilt_azimuth_follows_the_simulator_convention() -> None:
    rng = np.random.default_rng(2)
    q_mean = np.array([0.01, -0.02, 3.0])
    q = q_mean + rng.normal(scale=0.01, size=(20, 3))
    altitude, azimuth = tilt_altitude_azimuth_deg(q, q_mean)
    # the convention spelled out here, independently of the shared implementation
    unit = q / np.linalg.norm(q, axis=-1, keepdims=True)
    axis = q_mean / np.linalg.norm(q_mean)
    e1 = np.array([1.0, 0.0, 0.0]) - axis[0] * axis
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    expected_altitude = np.degrees(np.arccos(unit @ axis))
    expected_azimuth = np.degrees(np.arctan2(unit @ e2, unit @ e1))
    np.testing.assert_allclose(altitude, expected_altitude, atol=1e-9)
    np.testing.assert_allclose(azimuth, expected_azimuth, atol=1e-9)
    # A tilt toward +x has azimuth 0°, toward +y 90°.
    toward = np.array([[0.01, 0.0, 3.0], [0.0, 0.01, 3.0]])
    np.testing.assert_allclose(tilt_altitude_azimuth_deg(toward, [0, 0, 1])[1], [0, 90],
                               atol=1e-9)


def test_maps_recover_the_crystal_d400_and_tilt(scan) -> None:
    q_com, counts = q_centres(scan["frames"], scan["q"])
    maps = sxdm_maps(q_com, counts)
    mask = maps.mask
    truth = scan["ground_truth"]
    agreement = np.mean(mask == truth["mask"])
    assert mask.sum() >= 40 and agreement >= 0.95

    g = scan["g_truth"]
    d_truth = 2 * math.pi / np.linalg.norm(g, axis=-1)
    d_error = maps.d_angstrom[mask] - d_truth[mask]
    d_rms = float(np.sqrt(np.mean(d_error**2)))
    # Altitude of the truth, measured from the same mean direction as the analysis.
    altitude_truth, azimuth_truth = tilt_altitude_azimuth_deg(g, maps.q_mean_inv_angstrom)
    tilt_error = maps.tilt_altitude_deg[mask] - altitude_truth[mask]
    tilt_rms = float(np.sqrt(np.mean(tilt_error**2)))
    d_mean_truth = np.average(d_truth[mask], weights=maps.intensity[mask])
    print(f"{mask.sum()} pixels: d RMS error {d_rms:.2e} Å, mean d error "
          f"{maps.d_mean_angstrom - d_mean_truth:.1e} Å, tilt altitude RMS error "
          f"{tilt_rms:.4f}° (largest tilt {maps.tilt_altitude_max_deg:.3f}°), microstrain "
          f"{maps.microstrain:.2e}")
    assert d_rms < 5e-4
    assert abs(np.mean(d_error)) < 2e-4
    assert abs(maps.d_mean_angstrom - d_mean_truth) < 2e-4
    assert tilt_rms < 0.01
    # Where the tilt is clearly resolved, the azimuth matches too.
    tilted = mask & (altitude_truth > 0.015)
    azimuth_error = (maps.tilt_azimuth_deg[tilted] - azimuth_truth[tilted] + 180) % 360 - 180
    assert tilted.sum() >= 5 and np.max(np.abs(azimuth_error)) < 20

    strain = maps.strain[mask]
    assert np.average(strain, weights=maps.intensity[mask]) == pytest.approx(0, abs=1e-12)
    expected_microstrain = np.std(maps.d_angstrom[mask]) / np.mean(maps.d_angstrom[mask])
    assert maps.microstrain == pytest.approx(expected_microstrain)
    histogram, edges = maps.histogram("d_angstrom", bins=10)
    assert histogram.sum() == mask.sum() and edges.size == 11


def test_threshold_sharpens_the_maps(scan) -> None:
    g = scan["g_truth"]
    d_truth = 2 * math.pi / np.linalg.norm(g, axis=-1)
    errors = []
    for threshold in (0.0, 1.0):
        maps = sxdm_maps(*q_centres(scan["frames"], scan["q"], threshold_counts=threshold))
        mask = maps.mask
        errors.append(np.sqrt(np.mean((maps.d_angstrom[mask] - d_truth[mask]) ** 2)))
    print(f"d RMS error without / with a 1-count threshold: {errors[0]:.1e} / {errors[1]:.1e} Å")
    assert errors[1] < errors[0]
