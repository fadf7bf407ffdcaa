"""Nanodiffraction frames: the peak sits at the crystal's local Q, counts and noise are right."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from vegard.diffraction_geometry import DiffractometerGeometry, pixel_of_q, pixel_q
from vegard.simulators.lmno_crystal import LmnoCrystal, tilt_normal
from vegard.simulators.nanodiffraction import (
    ROCKING_POINTS,
    NanoBeam,
    detector_setting_for,
    expected_counts,
    frames,
    rocking_eta_deg,
)

GEOMETRY = DiffractometerGeometry(distance_m=1.4, center_row=255.0, center_col=260.0)
POINTS_UM = np.array([[0.1, 0.0], [0.6, -0.5], [-0.5, 0.4], [0.3, 0.6], [-0.2, -0.7]])
CENTRE_ONLY = NanoBeam({"footprint_ring_points": 0})


@pytest.fixture(scope="module")
def crystal() -> LmnoCrystal:
    return LmnoCrystal(seed=0)


def scan(crystal: LmnoCrystal, x_li: float, phase: str) -> tuple:
    setting = detector_setting_for(crystal.d400_mean_angstrom(x_li, phase), GEOMETRY)
    return setting, rocking_eta_deg(setting.eta_center_deg)


def centre_of_mass_q(counts: np.ndarray, setting, etas: np.ndarray) -> np.ndarray:
    """Intensity-weighted mean sample-frame Q of every (eta, pixel) voxel, per position."""
    q = pixel_q(GEOMETRY, etas, 0.0, setting.nu_deg, setting.delta_deg, setting.roi.rows,
                setting.roi.cols)
    return np.einsum("perc,erci->pi", counts, q) / counts.sum(axis=(1, 2, 3))[:, None]


def d_and_tilts(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    norm = np.linalg.norm(q, axis=-1)
    n = q / norm[:, None]
    return 2 * math.pi / norm, -np.degrees(np.arcsin(n[:, 1])), np.degrees(
        np.arctan2(n[:, 0], n[:, 2]))


def footprint_truth(crystal, x_li, phase, beam, eta_deg) -> tuple:
    """The mean G of one phase under the beam footprint (weights: beam × strength × fraction)."""
    offsets, weights = beam.footprint(eta_deg)
    state = crystal.maps(x_li, POINTS_UM[:, None, :] + offsets)
    w = weights * state["strength"] * state[f"{phase}_fraction"]
    g = (2 * math.pi / state[f"{phase}_d400_angstrom"])[..., None] * tilt_normal(
        state["tilt_x_deg"], state["tilt_y_deg"])
    return d_and_tilts(np.einsum("ps,psi->pi", w, g) / w.sum(axis=1)[:, None])


def test_beam_parameters_declare_units() -> None:
    for parameter in NanoBeam.PARAMETERS:
        assert parameter.unit, parameter.name
        assert parameter.minimum <= parameter.default <= parameter.maximum
    with pytest.raises(ValueError, match="unknown"):
        NanoBeam({"nope": 1.0})


def test_footprint_has_the_beam_size_stretched_along_the_beam() -> None:
    offsets, weights = NanoBeam().footprint(17.7)
    assert weights.sum() == pytest.approx(1.0)
    sigma_um = 0.08 / (2 * math.sqrt(2 * math.log(2)))
    spread = np.sqrt(weights @ offsets**2)
    assert spread[1] == pytest.approx(sigma_um, rel=1e-9)
    assert spread[0] == pytest.approx(sigma_um / math.sin(math.radians(17.7)), rel=1e-9)


def test_detector_setting_puts_the_mean_peak_in_the_middle_of_the_roi(crystal) -> None:
    setting, etas = scan(crystal, 0.9, "li1")
    assert etas.size == ROCKING_POINTS
    assert etas[1] - etas[0] == pytest.approx(0.016)
    assert setting.eta_center_deg == pytest.approx(etas.mean())
    d = crystal.d400_mean_angstrom(0.9, "li1")
    row, col = pixel_of_q(GEOMETRY, np.array([0, 0, 2 * math.pi / d]), setting.eta_center_deg,
                          0.0, setting.nu_deg, setting.delta_deg)
    roi = setting.roi
    assert abs(row - (roi.row_start + (roi.n_rows - 1) / 2)) <= 0.5 + 1e-9
    assert abs(col - (roi.col_start + (roi.n_cols - 1) / 2)) <= 0.5 + 1e-9


@pytest.mark.parametrize(
    ("x_li", "phase", "smooth"), [(1.0, "li1", True), (0.9, "li1", True), (0.5, "li05", False)]
)
def test_centre_of_mass_recovers_the_local_d400_and_tilt(crystal, x_li, phase, smooth) -> None:
    setting, etas = scan(crystal, x_li, phase)
    state = crystal.maps(x_li, POINTS_UM)

    # A point-like beam: the peak's centre is the local reciprocal-lattice point.
    counts = expected_counts(crystal, x_li, POINTS_UM, etas, GEOMETRY, setting.roi,
                             setting.nu_deg, setting.delta_deg, 0.01, 1e12, beam=CENTRE_ONLY,
                             background=False)
    d, tilt_x, tilt_y = d_and_tilts(centre_of_mass_q(counts, setting, etas))
    np.testing.assert_allclose(d, state[f"{phase}_d400_angstrom"], atol=1e-6)
    np.testing.assert_allclose(tilt_x, state["tilt_x_deg"], atol=1e-3)
    np.testing.assert_allclose(tilt_y, state["tilt_y_deg"], atol=1e-3)

    # The 80 nm beam (≈ 260 nm along the beam on the surface) measures the footprint
    # average; where the crystal's pattern is smooth (plateau 1) that is within 2e-4 Å and
    # 0.01° of the value at the beam centre. The Li0.5 pattern of plateau 2 is rougher.
    beam = NanoBeam()
    counts = expected_counts(crystal, x_li, POINTS_UM, etas, GEOMETRY, setting.roi,
                             setting.nu_deg, setting.delta_deg, 0.01, 1e12, beam=beam,
                             background=False)
    d, tilt_x, tilt_y = d_and_tilts(centre_of_mass_q(counts, setting, etas))
    d_fp, tilt_x_fp, tilt_y_fp = footprint_truth(crystal, x_li, phase, beam, etas.mean())
    np.testing.assert_allclose(d, d_fp, atol=1e-5)
    np.testing.assert_allclose(tilt_x, tilt_x_fp, atol=2e-3)
    np.testing.assert_allclose(tilt_y, tilt_y_fp, atol=2e-3)
    d_error = np.abs(d - state[f"{phase}_d400_angstrom"])
    tilt_error = np.hypot(tilt_x - state["tilt_x_deg"], tilt_y - state["tilt_y_deg"])
    print(f"x = {x_li}: |d − local| ≤ {d_error.max():.1e} Å, tilt ≤ {tilt_error.max():.4f}°")
    if smooth:
        assert d_error.max() < 2e-4
        assert tilt_error.max() < 0.01


def test_counts_scale_with_flux_exposure_and_strength(crystal) -> None:
    setting, etas = scan(crystal, 0.9, "li1")
    counts = expected_counts(crystal, 0.9, POINTS_UM, etas, GEOMETRY, setting.roi,
                             setting.nu_deg, setting.delta_deg, 0.01, 1e9, beam=CENTRE_ONLY,
                             background=False)
    strength = crystal.maps(0.9, POINTS_UM)["strength"]
    best_frame = counts.sum(axis=(2, 3)).max(axis=1)
    expected = crystal.parameters["peak_frame_counts_per_photon"] * 1e7 * strength
    print(f"frame counts at the rocking maximum (10 ms, 1e9 ph/s): {np.round(best_frame)}")
    np.testing.assert_allclose(best_frame, expected, rtol=0.05)
    assert np.all((best_frame > 2e3) & (best_frame < 2e4))
    doubled = expected_counts(crystal, 0.9, POINTS_UM, etas, GEOMETRY, setting.roi,
                              setting.nu_deg, setting.delta_deg, 0.02, 1e9, beam=CENTRE_ONLY,
                              background=False)
    np.testing.assert_allclose(doubled, 2 * counts, atol=1e-12)


def test_frames_are_poisson_around_the_expectation(crystal) -> None:
    setting, etas = scan(crystal, 0.9, "li1")
    point = POINTS_UM[:1]
    expected = expected_counts(crystal, 0.9, point, etas, GEOMETRY, setting.roi,
                               setting.nu_deg, setting.delta_deg, 0.01, 1e9)
    rng = np.random.default_rng(11)
    draws = np.stack([frames(crystal, 0.9, point, etas, GEOMETRY, setting.roi, setting.nu_deg,
                             setting.delta_deg, 0.01, 1e9, rng)[0] for _ in range(200)])
    assert draws.dtype == np.uint32
    bright = expected[0] > 20
    assert bright.sum() > 50
    mean = draws.mean(axis=0)[bright]
    variance = draws.var(axis=0, ddof=1)[bright]
    ratio_mean = np.mean(mean / expected[0][bright])
    ratio_variance = np.mean(variance / expected[0][bright])
    print(f"mean/expected {ratio_mean:.4f}, variance/expected {ratio_variance:.3f}")
    assert ratio_mean == pytest.approx(1.0, abs=0.01)
    assert ratio_variance == pytest.approx(1.0, abs=0.05)
    # Far from the peak: background only, 1e-9 × 1e7 = 0.01 counts per pixel and frame.
    dark = expected[0] < 0.0101
    assert draws[:, dark].mean() == pytest.approx(0.01, rel=0.1)


def test_off_crystal_frames_hold_only_background(crystal) -> None:
    setting, etas = scan(crystal, 0.9, "li1")
    counts = expected_counts(crystal, 0.9, np.array([[2.9, 2.9]]), etas, GEOMETRY, setting.roi,
                             setting.nu_deg, setting.delta_deg, 0.01, 1e9)
    assert counts.shape == (1, ROCKING_POINTS, 64, 64)
    np.testing.assert_allclose(counts, 0.01)


def test_one_scan_line_is_fast(crystal) -> None:
    setting, etas = scan(crystal, 0.9, "li1")
    line = np.column_stack((np.linspace(-3, 3, 75), np.full(75, 0.2)))
    rng = np.random.default_rng(0)
    frames(crystal, 0.9, line, etas, GEOMETRY, setting.roi, setting.nu_deg, setting.delta_deg,
           0.01, 1e9, rng)
    start = time.perf_counter()
    counts = frames(crystal, 0.9, line, etas, GEOMETRY, setting.roi, setting.nu_deg,
                    setting.delta_deg, 0.01, 1e9, rng)
    elapsed = time.perf_counter() - start
    assert counts.shape == (75, ROCKING_POINTS, 64, 64)
    print(f"one scan line (75 points × 30 angles × 64×64 pixels): {elapsed * 1e3:.0f} ms")
