"""Grains in a topography map, and the region of a map a temperature series averages over.

A polished polycrystal shows its grains in AFM topography in two ways: grooves along the
boundaries (a pixel or two wide, ~1 nm deep) and height steps between neighbouring grains.
Inside a grain the surface is a slightly tilted plane with roughness. So after levelling, a
boundary pixel is one where the surface is steep (a step) or curves up strongly across a line
(a groove): the gradient magnitude and the largest eigenvalue of the Hessian, both on a
lightly smoothed map, each in units of its own robust spread over the map. Boundaries are
traced with two thresholds (weak pixels kept only when connected to strong ones), the rest
is labelled into 4-connected grains.

A boundary line with a short gap lets a grain leak into its neighbours. For the largest grain
(the single big grain of the paper's temperature series) the leak is cut by a morphological
opening with a disk whose radius is a fraction of the grain's inscribed radius: necks and
clusters of small grains narrower than that disk vanish, a roughly round grain survives.

Limits: the thresholds were set on simulator topography (12.5 nm pixels, grooves 1.5 nm deep
and 10 nm wide, 0.3 nm roughness, a 500 nm grain among 125 nm ones); with half the groove
depth or 0.5 nm roughness the big grain is still found in ~95 % of random fields. The opening
trims the ends of a strongly elongated grain, and a "largest grain" only a few times the size
of the others may be a merged cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

SMOOTHING_PX = 0.7
WEAK_BOUNDARY_SPREADS = 2.0
STRONG_BOUNDARY_SPREADS = 4.0
OPENING_FRACTION_OF_INSCRIBED_RADIUS = 0.6
_MAD_TO_SIGMA = 1.4826
_LINE_NEIGHBOURHOOD = 5


def _filled(topography_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The map with missing pixels set to the median of the others, and the missing mask."""
    heights = np.asarray(topography_nm, dtype=float)
    if heights.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {heights.shape}")
    missing = ~np.isfinite(heights)
    if missing.all():
        return np.zeros_like(heights), missing
    return np.where(missing, np.median(heights[~missing]), heights), missing


def level_topography(topography_nm: np.ndarray) -> np.ndarray:
    """Scan-line offsets and the mean plane removed, grain steps kept (nm, NaN → median).

    A line's offset (slow-axis jump) is the median, along the line, of its difference from
    the running median of the lines around it: most pixels of neighbouring lines lie in the
    same grains, so grain height steps do not pull it (unlike a per-line median or mean), and
    errors do not add up from line to line. Then a least-squares plane is removed.
    """
    heights, _ = _filled(topography_nm)
    if heights.shape[0] >= _LINE_NEIGHBOURHOOD:
        neighbourhood = ndimage.median_filter(
            heights, size=(_LINE_NEIGHBOURHOOD, 1), mode="nearest"
        )
        heights = heights - np.median(heights - neighbourhood, axis=1, keepdims=True)
    rows, columns = np.indices(heights.shape)
    design = np.column_stack([np.ones(heights.size), columns.ravel(), rows.ravel()])
    coefficients, *_ = np.linalg.lstsq(design, heights.ravel(), rcond=None)
    return heights - (design @ coefficients).reshape(heights.shape)


def _robust_score(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(value − median) / (1.4826·MAD) with both taken over the `valid` pixels: how many
    typical spreads above the map's median."""
    reference = values[valid] if valid.any() else values.ravel()
    median = np.median(reference)
    spread = _MAD_TO_SIGMA * np.median(np.abs(reference - median))
    if spread <= 0:
        spread = float(np.std(reference)) or 1.0
    return (values - median) / spread


def _hessian_largest_eigenvalue(heights: np.ndarray, sigma_px: float) -> np.ndarray:
    """Largest principal curvature (1/px units × nm): large and positive across a groove."""
    h_yy = ndimage.gaussian_filter(heights, sigma_px, order=(2, 0))
    h_xx = ndimage.gaussian_filter(heights, sigma_px, order=(0, 2))
    h_xy = ndimage.gaussian_filter(heights, sigma_px, order=(1, 1))
    return 0.5 * (h_xx + h_yy) + np.sqrt((0.5 * (h_xx - h_yy)) ** 2 + h_xy**2)


def boundary_strength(topography_nm: np.ndarray, smoothing_px: float = SMOOTHING_PX) -> np.ndarray:
    """Per pixel, the larger of the step score (gradient) and the groove score (curvature),
    in robust spreads above the map's typical value. Missing pixels score +inf."""
    heights = level_topography(topography_nm)
    _, missing = _filled(topography_nm)
    valid = ~ndimage.binary_dilation(missing, iterations=2)  # the filled area is flat, not data
    step = _robust_score(ndimage.gaussian_gradient_magnitude(heights, smoothing_px), valid)
    groove = _robust_score(_hessian_largest_eigenvalue(heights, smoothing_px), valid)
    return np.where(missing, np.inf, np.maximum(step, groove))


def grain_boundaries(
    topography_nm: np.ndarray,
    weak: float = WEAK_BOUNDARY_SPREADS,
    strong: float = STRONG_BOUNDARY_SPREADS,
) -> np.ndarray:
    """Boolean boundary map: pixels above `weak` that connect (8-neighbours) to one above
    `strong` (hysteresis: grooves stay continuous, isolated rough spots are dropped)."""
    strength = boundary_strength(topography_nm)
    candidates, count = ndimage.label(strength > weak, structure=np.ones((3, 3)))
    keep = np.zeros(count + 1, dtype=bool)
    keep[np.unique(candidates[strength > strong])] = True
    keep[0] = False
    return keep[candidates]


def label_grains(topography_nm: np.ndarray) -> tuple[np.ndarray, int]:
    """Grain labels 1..n (0 on boundaries and missing pixels) and n; 4-connected grains,
    so a diagonal boundary line separates them."""
    return ndimage.label(~grain_boundaries(topography_nm))


def _largest_component(mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    labels, count = ndimage.label(mask, structure=structure)
    if count == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _disk(radius_px: int) -> np.ndarray:
    offsets = np.arange(-radius_px, radius_px + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius_px**2 + 0.5


def largest_grain_mask(topography_nm: np.ndarray, erode_px: int = 2) -> np.ndarray:
    """The largest grain, leaks into neighbours cut, holes filled, eroded by `erode_px`.

    The erosion keeps the region away from the boundary, whose groove, softer contact and
    faster transport change every ESM amplitude. All False if no grain is found.
    """
    grain = _largest_component(label_grains(topography_nm)[0] > 0)
    if not grain.any():
        return grain
    inscribed_radius_px = ndimage.distance_transform_edt(np.pad(grain, 1))[1:-1, 1:-1].max()
    radius_px = max(1, int(OPENING_FRACTION_OF_INSCRIBED_RADIUS * inscribed_radius_px))
    grain = ndimage.binary_opening(grain, structure=_disk(radius_px))
    grain = ndimage.binary_fill_holes(_largest_component(grain))
    if erode_px > 0:
        grain = ndimage.binary_erosion(grain, iterations=int(erode_px), border_value=0)
    return grain


def disk_mask(
    shape: Sequence[int],
    extent_nm: Sequence[float],
    center_nm: Sequence[float],
    radius_nm: float,
) -> np.ndarray:
    """Pixels whose centres lie within `radius_nm` of `center_nm` = (x, y).

    `shape` is (pixels_y, pixels_x); `extent_nm` = (x_left, x_right, y_bottom, y_top) with
    row 0 at y_bottom, the map convention of `esm_map`.
    """
    pixels_y, pixels_x = (int(n) for n in shape)
    x_left, x_right, y_bottom, y_top = (float(v) for v in extent_nm)
    x_nm = x_left + (x_right - x_left) / pixels_x * (np.arange(pixels_x) + 0.5)
    y_nm = y_bottom + (y_top - y_bottom) / pixels_y * (np.arange(pixels_y) + 0.5)
    center_x_nm, center_y_nm = (float(v) for v in center_nm)
    return (x_nm[None, :] - center_x_nm) ** 2 + (y_nm[:, None] - center_y_nm) ** 2 <= float(
        radius_nm
    ) ** 2
