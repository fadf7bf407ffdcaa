"""Drift tracking by phase correlation: sign convention, integer and sub-pixel accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vegard.analysis.grains import level_topography
from vegard.analysis.image_registration import image_shift_px, line_shift_px
from vegard.simulators.esm_sample import EsmSample

PIXELS = 64
STEP_NM = 12.5


@pytest.fixture(scope="module")
def topography():
    """Simulator topography of a 0.8 µm field whose content is moved by (dy, dx) pixels:
    image[y, x] = surface(x − dx, y − dy), sampled exactly (no interpolation)."""
    sample = EsmSample(seed=3)
    centres_nm = (np.arange(PIXELS) + 0.5) * STEP_NM - PIXELS * STEP_NM / 2
    rng = np.random.default_rng(0)

    def image(dy_px=0.0, dx_px=0.0):
        heights = sample.properties(centres_nm[None, :] - dx_px * STEP_NM,
                                    centres_nm[:, None] - dy_px * STEP_NM)["height_nm"]
        return heights + rng.normal(0.0, 0.05, heights.shape)

    return image


def blobs(rows, columns, dy=0.0, dx=0.0):
    """A smooth analytic surface (three Gaussian bumps), content moved by (dy, dx)."""
    y, x = np.indices((rows, columns), dtype=float)
    surface = np.zeros((rows, columns))
    for (cy, cx, width, height) in ((20, 15, 4.0, 2.0), (40, 45, 6.0, -1.0), (12, 40, 3.0, 1.5)):
        surface += height * np.exp(-((y - cy - dy) ** 2 + (x - cx - dx) ** 2) / (2 * width**2))
    return surface


def test_sign_convention_a_feature_moves_by_plus_the_shift():
    reference = blobs(60, 60)
    image = blobs(60, 60, dy=5.0, dx=-7.0)  # every bump 5 rows up, 7 columns left
    peak_reference = np.unravel_index(np.argmax(reference), reference.shape)
    peak_image = np.unravel_index(np.argmax(image), image.shape)
    assert (peak_image[0] - peak_reference[0], peak_image[1] - peak_reference[1]) == (5, -7)
    dy, dx, quality = image_shift_px(reference, image)
    assert dy == pytest.approx(5.0, abs=0.1) and dx == pytest.approx(-7.0, abs=0.1)
    assert quality > 0.9


def test_integer_shift_of_a_crop_is_exact(topography):
    big = topography()
    reference = big[12:52, 12:52]
    dy, dx = 7, -9  # image[y, x] = reference[y − dy, x − dx]
    image = big[12 - dy:52 - dy, 12 - dx:52 - dx]
    found_dy, found_dx, quality = image_shift_px(reference, image)
    assert found_dy == pytest.approx(dy, abs=0.05)
    assert found_dx == pytest.approx(dx, abs=0.05)
    assert quality > 0.9  # < 1: each crop is levelled on its own


@pytest.mark.parametrize("dy, dx", [(0.0, 0.0), (0.5, -0.5), (3.3, 7.8), (-12.25, 4.6),
                                    (18.7, -21.4), (-25.6, -25.6), (25.2, 0.4), (-2.2, 25.9)])
def test_sub_pixel_shifts_of_simulator_topography(topography, dy, dx):
    """Up to 40 % of the field along each axis; accuracy goal 0.3 px."""
    found_dy, found_dx, quality = image_shift_px(topography(), topography(dy, dx))
    assert found_dy == pytest.approx(dy, abs=0.3)
    assert found_dx == pytest.approx(dx, abs=0.3)
    assert quality > 0.8


def test_accuracy_over_many_random_shifts(topography):
    rng = np.random.default_rng(11)
    shifts = rng.uniform(-0.3, 0.3, (20, 2)) * PIXELS
    errors = []
    for dy, dx in shifts:
        found_dy, found_dx, _ = image_shift_px(topography(), topography(dy, dx))
        errors.append((found_dy - dy, found_dx - dx))
    errors = np.asarray(errors)
    assert np.abs(errors).max() < 0.3
    assert np.sqrt(np.mean(errors**2)) < 0.15


def test_interpolated_shift_of_the_map_is_found(topography):
    big = topography()
    shifted = ndimage.shift(big, (2.4, -3.7), order=3, mode="nearest")
    dy, dx, _ = image_shift_px(big[10:54, 10:54], shifted[10:54, 10:54])
    assert dy == pytest.approx(2.4, abs=0.3) and dx == pytest.approx(-3.7, abs=0.3)


def test_pure_noise_has_no_trusted_peak():
    rng = np.random.default_rng(5)
    qualities = [image_shift_px(rng.normal(size=(PIXELS, PIXELS)),
                                rng.normal(size=(PIXELS, PIXELS)))[2] for _ in range(10)]
    assert max(qualities) < 0.2


def test_nan_pixels_and_a_tilt_do_not_matter(topography):
    reference, image = topography(), topography(4.0, -6.0)
    rows, columns = np.indices(image.shape)
    image = image + 0.05 * columns + 0.02 * rows + 3.0
    image[:5] = np.nan
    dy, dx, quality = image_shift_px(reference, image)
    assert dy == pytest.approx(4.0, abs=0.3) and dx == pytest.approx(-6.0, abs=0.3)
    assert quality > 0.6


def test_quality_is_the_correlation_of_the_overlapping_parts(topography):
    big = topography()
    reference, image = big[:48, :48], big[5:53, 9:57]  # content moved by (−5, −9)
    dy, dx, quality = image_shift_px(reference, image)
    assert (round(dy), round(dx)) == (-5, -9)
    a, b = level_topography(reference)[5:, 9:], level_topography(image)[:-5, :-9]
    assert quality == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-9)


def test_images_of_different_shapes_are_an_error():
    with pytest.raises(ValueError):
        image_shift_px(np.zeros((10, 10)), np.zeros((10, 12)))


@pytest.mark.parametrize("length", [1, 2, 5, 16, 63, 64, 96])
@pytest.mark.parametrize("taper_fraction", [0.1, 0.3, 1.0])
def test_the_window_is_scipys_periodic_tukey(length, taper_fraction):
    from scipy.signal import windows

    from vegard.analysis.image_registration import periodic_tukey

    np.testing.assert_allclose(
        periodic_tukey(length, taper_fraction),
        windows.tukey(length, taper_fraction, sym=False), atol=1e-12)


@pytest.mark.parametrize("shift_px", [0.0, 2.0, -3.4, 1.25])
def test_a_haadf_line_shift_is_recovered_to_a_fifth_of_a_pixel(shift_px: float) -> None:
    """The EELS plan's drift re-registration: a boundary dip and a thickness ramp, moved."""
    x = np.arange(61, dtype=float)

    def haadf(moved_px: float) -> np.ndarray:  # the whole specimen moves
        at = x - moved_px
        return 100 + 0.5 * at - 30 * np.exp(-0.5 * ((at - 30.0) / 2.0) ** 2)

    assert line_shift_px(haadf(0.0), haadf(shift_px)) == pytest.approx(shift_px, abs=0.2)


def test_a_noisy_haadf_line_shift_is_recovered_without_bias() -> None:
    """Counting noise of a 1 ms registration line (~4000 electrons a pixel): the mean of 50
    estimates within 0.2 px of the 2 px shift, each within 1 px."""
    x = np.arange(61, dtype=float)
    rng = np.random.default_rng(7)

    def haadf(moved_px: float) -> np.ndarray:
        at = x - moved_px
        return rng.poisson(4000 + 7 * at - 1200 * np.exp(-0.5 * ((at - 30.0) / 2.0) ** 2))

    estimates = np.array([line_shift_px(haadf(0.0), haadf(2.0)) for _ in range(50)])
    assert np.mean(estimates) == pytest.approx(2.0, abs=0.2)
    assert np.all(np.abs(estimates - 2.0) < 1.0)


def test_a_flat_line_gives_no_shift() -> None:
    assert line_shift_px(np.ones(20), np.ones(20)) == 0.0
