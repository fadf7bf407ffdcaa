"""Grain segmentation of AFM topography: the largest grain must be the simulator's big grain."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vegard.analysis.grains import (
    disk_mask,
    grain_boundaries,
    label_grains,
    largest_grain_mask,
    level_topography,
)
from vegard.simulators.esm_sample import EsmSample

PIXELS = 64
STEP_NM = 12.5  # 0.8 µm over 64 pixels, as in the example map


def simulated(seed, offset_nm=(0.0, 0.0), noise_nm=0.05, **parameters):
    """Topography (noise added) and the truth mask of the big grain over a 0.8 µm map."""
    sample = EsmSample(parameters=parameters or None, seed=seed)
    centres_nm = (np.arange(PIXELS) + 0.5) * STEP_NM - PIXELS * STEP_NM / 2
    properties = sample.properties(centres_nm[None, :] + offset_nm[0],
                                   centres_nm[:, None] + offset_nm[1])
    rng = np.random.default_rng(seed)
    topography = properties["height_nm"] + rng.normal(0.0, noise_nm, (PIXELS, PIXELS))
    return topography, properties["grain_id"] == sample.largest_grain_id()


def precision_and_coverage(mask, truth):
    """Fraction of the mask inside the grain; fraction of the grain's interior covered."""
    interior = ndimage.binary_erosion(truth, iterations=2)
    return (mask & truth).sum() / max(mask.sum(), 1), (mask & interior).sum() / interior.sum()


@pytest.mark.parametrize("seed, offset_nm", [(0, (0.0, 0.0)), (1, (60.0, -40.0)),
                                             (2, (-100.0, 80.0)), (3, (120.0, 120.0)),
                                             (4, (-150.0, -20.0)), (5, (30.0, 150.0))])
def test_largest_grain_is_the_big_grain(seed, offset_nm):
    topography, truth = simulated(seed, offset_nm)
    mask = largest_grain_mask(topography)
    precision, coverage = precision_and_coverage(mask, truth)
    assert precision >= 0.9
    assert coverage >= 0.7


def test_scan_line_offsets_and_missing_lines_do_not_break_it():
    topography, truth = simulated(7, (40.0, -60.0))
    rng = np.random.default_rng(1)
    topography = topography + rng.normal(0.0, 0.5, (PIXELS, 1))  # line-to-line jumps
    topography[56:] = np.nan  # a scan stopped early
    mask = largest_grain_mask(topography)
    precision, coverage = precision_and_coverage(mask, truth)
    assert precision >= 0.9 and coverage >= 0.6
    assert not mask[56:].any()


def test_erosion_keeps_the_mask_away_from_the_boundary():
    topography, _ = simulated(0)
    wide = largest_grain_mask(topography, erode_px=0)
    narrow = largest_grain_mask(topography, erode_px=3)
    assert narrow.sum() < wide.sum()
    assert (narrow & ~wide).sum() == 0
    steps_to_outside = ndimage.distance_transform_cdt(wide, metric="taxicab")
    assert steps_to_outside[narrow].min() == 4  # 3 pixels kept clear, counted along the axes


def test_boundaries_lie_on_the_true_boundaries():
    topography, _ = simulated(2, (-100.0, 80.0))
    sample = EsmSample(seed=2)
    centres_nm = (np.arange(PIXELS) + 0.5) * STEP_NM - PIXELS * STEP_NM / 2
    grain_id = sample.properties(centres_nm[None, :] - 100.0, centres_nm[:, None] + 80.0)[
        "grain_id"]
    true_edges = (ndimage.maximum_filter(grain_id, size=3)
                  != ndimage.minimum_filter(grain_id, size=3))
    found = grain_boundaries(topography)
    near_true = ndimage.binary_dilation(true_edges)
    assert (found & near_true).sum() / found.sum() > 0.85
    labels, count = label_grains(topography)
    assert count > 10 and labels[found].max() == 0


def test_level_topography_removes_plane_and_line_jumps_but_keeps_steps():
    rows, columns = np.indices((40, 50))
    step = np.where(columns > 25, 2.0, 0.0)  # a grain boundary with a 2 nm step
    surface = 5.0 + 0.1 * columns - 0.01 * rows + step
    levelled = level_topography(surface)
    expected = step - step.mean()
    expected -= np.polyval(np.polyfit(columns.ravel(), expected.ravel(), 1), columns)
    np.testing.assert_allclose(levelled, expected, atol=1e-9)
    jumps = np.zeros((40, 1))
    jumps[[7, 20, 33]] = [[1.5], [-2.0], [1.0]]  # isolated lines off by a jump
    np.testing.assert_allclose(level_topography(surface + jumps), expected, atol=0.02)
    random_offsets = np.random.default_rng(0).normal(0.0, 1.0, (40, 1))
    residual = level_topography(surface + random_offsets) - expected
    assert residual.std() < 0.6  # every line off: about halved, no drift built up


def test_flat_or_empty_maps_give_an_empty_or_whole_mask_without_error():
    assert largest_grain_mask(np.full((20, 20), np.nan)).sum() == 0
    flat = largest_grain_mask(np.zeros((20, 20)), erode_px=0)
    assert flat.dtype == bool and flat.shape == (20, 20)


def test_disk_mask_geometry():
    # 10 × 8 pixels of 10 nm over x −50…50, y 0…80: centres at −45…45 and 5…75
    mask = disk_mask((8, 10), (-50.0, 50.0, 0.0, 80.0), (5.0, 25.0), 10.0)
    assert mask.shape == (8, 10)
    rows, columns = np.nonzero(mask)
    assert set(zip(rows.tolist(), columns.tolist(), strict=True)) == {
        (2, 5), (1, 5), (3, 5), (2, 4), (2, 6),
    }
    x_nm = -45.0 + 10.0 * columns
    y_nm = 5.0 + 10.0 * rows
    assert np.all((x_nm - 5.0) ** 2 + (y_nm - 25.0) ** 2 <= 100.0)
