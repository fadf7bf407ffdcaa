"""Diffractometer geometry: Bragg's law at the centre pixel, pixel directions, xrayutilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vegard.diffraction_geometry import (
    DetectorRoi,
    DiffractometerGeometry,
    bragg_angles,
    bragg_eta_deg,
    detector_angles_for_specular,
    pixel_of_q,
    pixel_q,
)

GEOMETRY = DiffractometerGeometry(distance_m=1.4, center_row=250.3, center_col=260.7)
D400_ANGSTROM = 2.0409


def test_wavelength_and_wavevector_at_10_kev() -> None:
    assert GEOMETRY.wavelength_angstrom == pytest.approx(1.23984, abs=1e-5)
    assert GEOMETRY.k_inv_angstrom == pytest.approx(2 * math.pi / 1.23984, rel=1e-5)


def test_specular_setting_puts_q_along_the_sample_normal_at_the_centre_pixel() -> None:
    eta, delta = detector_angles_for_specular(D400_ANGSTROM, GEOMETRY.energy_ev)
    theta = bragg_angles(D400_ANGSTROM, GEOMETRY.energy_ev)
    assert (eta, delta) == pytest.approx((theta, 2 * theta))
    assert theta == pytest.approx(17.683, abs=0.001)
    # A geometry whose centre falls exactly on a pixel, so that pixel is the direct beam.
    geometry = DiffractometerGeometry(distance_m=1.5, center_row=256, center_col=250)
    q = pixel_q(geometry, eta, 0.0, 0.0, delta, rows=[256], cols=[250])[0, 0]
    expected = 4 * math.pi * math.sin(math.radians(theta)) / geometry.wavelength_angstrom
    assert np.linalg.norm(q) == pytest.approx(expected, abs=1e-12)
    assert np.linalg.norm(q) == pytest.approx(2 * math.pi / D400_ANGSTROM, abs=1e-12)
    assert q[:2] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert pixel_of_q(geometry, q, eta, 0.0, 0.0, delta) == pytest.approx((256.0, 250.0))


def test_rows_grow_downwards_and_columns_toward_minus_y() -> None:
    q = pixel_q(GEOMETRY, 0.0, 0.0, 0.0, 0.0, rows=[250, 251], cols=[260, 261])
    down = q[1, 0] - q[0, 0]
    right = q[0, 1] - q[0, 0]
    assert down[2] < 0 and abs(down[1]) < 1e-9
    assert right[1] < 0 and abs(right[2]) < 1e-9
    step = GEOMETRY.pixel_q_step_inv_angstrom
    assert np.linalg.norm(down) == pytest.approx(step, rel=1e-4)


def test_roi_slices_index_arrays_and_eta_vectorisation_agree() -> None:
    roi = DetectorRoi(200, 230, 16, 24)
    etas = np.array([17.5, 17.7, 17.9])
    stacked = pixel_q(GEOMETRY, etas, 3.0, 0.4, 35.4, rows=roi.rows, cols=roi.cols)
    assert stacked.shape == (3, 16, 24, 3)
    full = pixel_q(GEOMETRY, etas[1], 3.0, 0.4, 35.4)
    assert full.shape == (512, 512, 3)
    np.testing.assert_allclose(stacked[1], full[roi.rows, roi.cols], atol=1e-14)
    picked = pixel_q(GEOMETRY, etas[2], 3.0, 0.4, 35.4,
                     rows=np.arange(200, 216), cols=np.arange(230, 254))
    np.testing.assert_allclose(stacked[2], picked, atol=1e-14)


def test_bragg_eta_and_pixel_of_q_invert_pixel_q() -> None:
    eta, phi, nu, delta = 17.63, 12.0, 0.3, 35.2
    q = pixel_q(GEOMETRY, eta, phi, nu, delta, rows=[231], cols=[275])[0, 0]
    assert bragg_eta_deg(GEOMETRY, q, phi) == pytest.approx(eta, abs=1e-9)
    assert pixel_of_q(GEOMETRY, q, eta, phi, nu, delta) == pytest.approx((231.0, 275.0))


def test_agrees_with_xrayutilities_area_detector_conversion() -> None:
    xu = pytest.importorskip("xrayutilities")
    rows, cols = GEOMETRY.pixels
    qconv = xu.experiment.QConversion(["y-", "z-"], ["z-", "y-"], [1, 0, 0])
    hxrd = xu.HXRD([1, 0, 0], [0, 0, 1], en=GEOMETRY.energy_ev, qconv=qconv)
    # Channel 1 = row (grows along −z), channel 2 = column (grows along −y).
    hxrd.Ang2Q.init_area("z-", "y-", cch1=GEOMETRY.center_row, cch2=GEOMETRY.center_col,
                         Nch1=rows, Nch2=cols, pwidth1=GEOMETRY.pixel_size_m,
                         pwidth2=GEOMETRY.pixel_size_m, distance=GEOMETRY.distance_m)
    assert hxrd.wavelength == pytest.approx(GEOMETRY.wavelength_angstrom, rel=1e-12)
    rng = np.random.default_rng(7)
    worst = 0.0
    for eta, phi, nu, delta in rng.uniform([-5, -180, -10, 0], [40, 180, 10, 60], (6, 4)):
        theirs = np.stack(hxrd.Ang2Q.area(eta, phi, nu, delta), axis=-1)
        mine = pixel_q(GEOMETRY, eta, phi, nu, delta)
        worst = max(worst, float(np.abs(mine - theirs).max()))
    print(f"largest |Q| difference to xrayutilities: {worst:.2e} 1/Å")
    assert worst < 1e-6
    # The mirrored column direction ('y+') does not agree: the choice matters.
    hxrd.Ang2Q.init_area("z-", "y+", cch1=GEOMETRY.center_row, cch2=GEOMETRY.center_col,
                         Nch1=rows, Nch2=cols, pwidth1=GEOMETRY.pixel_size_m,
                         pwidth2=GEOMETRY.pixel_size_m, distance=GEOMETRY.distance_m)
    mirrored = np.stack(hxrd.Ang2Q.area(17.7, 0.0, 0.0, 35.4), axis=-1)
    assert np.abs(pixel_q(GEOMETRY, 17.7, 0.0, 0.0, 35.4) - mirrored).max() > 1e-3
