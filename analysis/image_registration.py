"""The translation between two images of the same surface, for drift tracking.

After a temperature step the sample has drifted under the tip; the same area is found again
by comparing a fresh topography image with the reference taken at the first temperature.

Both images are levelled first (scan-line jumps and plane, `grains.level_topography`).

Integer shift: the Pearson correlation of the overlapping parts of the two images, for every
shift at once (sums over each overlap are correlations with a mask of ones, done with
zero-padded FFTs). Unlike a plain phase-correlation peak, this cannot be fooled by image
edges or by a small overlap at large shifts, and its maximum is a quality with a meaning:
≈ 1 for the same surface, ≈ 0 for unrelated images.

Sub-pixel part: on the two overlapping crops (now aligned to within a pixel) by phase
correlation: the normalised cross-power spectrum of a pure translation is a plane wave; with
a Tukey taper at the edges and a Gaussian taper in frequency (peak width ~0.7 px, damping
noisy high frequencies) its inverse transform is a smooth peak, whose maximum is located on a
1/20 px grid (a local inverse DFT) and refined by a parabola.
"""

from __future__ import annotations

import numpy as np

from .grains import level_topography

WINDOW_TAPER_FRACTION = 0.3
PEAK_WIDTH_PX = 0.7
MINIMUM_OVERLAP_FRACTION = 0.2
_FINE_STEPS_PER_PX = 20


def periodic_tukey(length: int, taper_fraction: float) -> np.ndarray:
    """Tukey (tapered cosine) window for DFT use: flat in the middle, a raised-cosine
    taper over `taper_fraction` of the length split between both ends. Written out
    rather than taken from scipy.signal, whose import costs half a second per process."""
    if length <= 1:
        return np.ones(length)
    points = length + 1  # periodic: the symmetric window one longer, its last point cut
    ramp = np.arange(points) / (taper_fraction * (points - 1))
    rising = 0.5 * (1.0 - np.cos(2.0 * np.pi * np.minimum(ramp, 0.5)))
    window = np.minimum(rising, rising[::-1])
    return window[:length]


def _window(shape: tuple[int, int]) -> np.ndarray:
    rows, columns = shape
    return np.outer(
        periodic_tukey(rows, WINDOW_TAPER_FRACTION),
        periodic_tukey(columns, WINDOW_TAPER_FRACTION),
    )


def _angular_frequencies(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """k_y (column vector) and k_x (row vector) in radians per pixel."""
    return (
        2 * np.pi * np.fft.fftfreq(shape[0])[:, None],
        2 * np.pi * np.fft.fftfreq(shape[1])[None, :],
    )


def _cross_power(reference: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Normalised, low-pass-weighted cross-power spectrum (image · conj(reference))."""
    window = _window(reference.shape)
    cross = np.fft.fft2(image * window) * np.conj(np.fft.fft2(reference * window))
    magnitude = np.abs(cross)
    floor = 1e-12 * magnitude.max() if magnitude.max() > 0 else 1.0
    k_y, k_x = _angular_frequencies(reference.shape)
    weight = np.exp(-0.5 * (k_y**2 + k_x**2) * PEAK_WIDTH_PX**2)
    weight[0, 0] = 0.0  # the mean carries no position
    return cross / np.maximum(magnitude, floor) * weight


def _signed(index: int, size: int) -> int:
    """Circular index → shift in −size/2 .. size/2 − 1."""
    return (int(index) + size // 2) % size - size // 2


def _overlaps(
    reference: np.ndarray, image: np.ndarray, dy: int, dx: int
) -> tuple[np.ndarray, np.ndarray]:
    """The parts of reference and image that show the same area for an integer shift."""
    rows, columns = reference.shape
    image_rows = slice(max(dy, 0), rows + min(dy, 0))
    reference_rows = slice(max(-dy, 0), rows + min(-dy, 0))
    image_columns = slice(max(dx, 0), columns + min(dx, 0))
    reference_columns = slice(max(-dx, 0), columns + min(-dx, 0))
    return reference[reference_rows, reference_columns], image[image_rows, image_columns]


def _overlap_correlation_map(
    reference: np.ndarray, image: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of the overlapping parts for every integer shift, and the overlap
    size, via zero-padded FFTs (the sums over each overlap are correlations with a mask).
    Index [dy, dx] (negative shifts wrap around) follows the `image_shift_px` convention."""
    rows, columns = reference.shape
    padded = (2 * rows, 2 * columns)

    def spectrum(values):
        return np.fft.rfft2(values, s=padded)

    def correlate(first, second):  # Σ_y first[y − d] · second[y], for all d
        return np.fft.irfft2(np.conj(first) * second, s=padded)

    ones = spectrum(np.ones_like(reference))
    a, b = spectrum(reference), spectrum(image)
    overlap = np.rint(correlate(ones, ones))
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.maximum(overlap, 1.0)
        sum_a, sum_b = correlate(a, ones), correlate(ones, b)
        covariance = correlate(a, b) - sum_a * sum_b / n
        variance_a = correlate(spectrum(reference**2), ones) - sum_a**2 / n
        variance_b = correlate(ones, spectrum(image**2)) - sum_b**2 / n
        correlation = covariance / np.sqrt(np.maximum(variance_a * variance_b, 0.0))
    trusted = overlap >= MINIMUM_OVERLAP_FRACTION * reference.size
    return np.where(trusted & np.isfinite(correlation), correlation, -1.0), overlap


def _integer_shift(reference: np.ndarray, image: np.ndarray) -> tuple[int, int, float]:
    """The integer shift with the best-correlated overlap (at least 20 % of the image)."""
    correlation, _ = _overlap_correlation_map(reference, image)
    row, column = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    return (
        _signed(row, correlation.shape[0]),
        _signed(column, correlation.shape[1]),
        float(np.clip(correlation[row, column], -1.0, 1.0)),
    )


def _fractional_shift(reference: np.ndarray, image: np.ndarray) -> tuple[float, float]:
    """Residual shift (|.| ≲ 1 px) of two nearly aligned images: the maximum of their phase
    correlation on a grid 1/20 px fine over ±1.5 px, refined by a parabola."""
    spectrum = _cross_power(reference, image)
    k_y, k_x = _angular_frequencies(reference.shape)
    offsets = np.arange(-1.5 * _FINE_STEPS_PER_PX, 1.5 * _FINE_STEPS_PER_PX + 1)
    offsets = offsets / _FINE_STEPS_PER_PX
    rows_to_y = np.exp(1j * np.outer(offsets, k_y[:, 0]))
    columns_to_x = np.exp(1j * np.outer(k_x[0], offsets))
    fine = np.real(rows_to_y @ spectrum @ columns_to_x)
    row, column = np.unravel_index(int(np.argmax(fine)), fine.shape)

    def vertex(before: float, at: float, after: float) -> float:
        curvature = before - 2 * at + after
        return 0.5 * (before - after) / curvature if curvature < 0 else 0.0

    last = offsets.size - 1
    dy = offsets[row] + (
        vertex(*fine[row - 1: row + 2, column]) / _FINE_STEPS_PER_PX if 0 < row < last else 0.0
    )
    dx = offsets[column] + (
        vertex(*fine[row, column - 1: column + 2]) / _FINE_STEPS_PER_PX
        if 0 < column < last else 0.0
    )
    return float(dy), float(dx)


def image_shift_px(reference: np.ndarray, image: np.ndarray) -> tuple[float, float, float]:
    """(dy_px, dx_px, peak_quality): where `reference` content sits in `image`.

    Sign convention: image[y, x] ≈ reference[y − dy, x − dx]; a feature at row r, column c of
    `reference` appears at row r + dy, column c + dx of `image` (rows = first index). With
    maps stored row 0 at the lowest y (the `esm_map` convention), dy > 0 means the content
    moved to larger y. So if the sample drifted by (dx, dy) pixels, moving the scan centre by
    +(dx, dy)·pixel size brings the area back.

    Both images must have the same shape; NaN pixels are filled (median) before levelling.
    Works for shifts up to ~40 % of the field of view along each axis (needs ≥ 20 % overlap).
    `peak_quality` is the Pearson correlation (−1…1) of the levelled images' overlapping parts
    at the integer shift: ≳ 0.8 for the same simulator topography, ≲ 0.15 for unrelated
    images (−1: no shift with ≥ 20 % overlap).
    """
    reference = np.asarray(reference, dtype=float)
    image = np.asarray(image, dtype=float)
    if reference.shape != image.shape or reference.ndim != 2:
        raise ValueError(f"need two 2-D images of one shape, got {reference.shape}, {image.shape}")
    reference, image = level_topography(reference), level_topography(image)
    dy, dx, quality = _integer_shift(reference, image)
    reference_part, image_part = _overlaps(reference, image, dy, dx)
    if min(reference_part.shape) >= 4:
        fraction_y, fraction_x = _fractional_shift(
            level_topography(reference_part), level_topography(image_part)
        )
        if max(abs(fraction_y), abs(fraction_x)) <= 1.0:
            return dy + fraction_y, dx + fraction_x, quality
    return float(dy), float(dx), quality


def line_shift_px(reference: np.ndarray, line: np.ndarray) -> float:
    """How many pixels the features of `line` sit beyond those of `reference`.

    Each line's straight trend is removed first (a thickness ramp would otherwise dominate
    the correlation), and each lag's correlation is divided by the samples it overlaps:
    plain correlation of finite lines favours small lags, and pulled a 2 px shift on a
    steep ramp to 1.4 px. Only lags that still compare half the line count. Sub-pixel by
    a parabola through the peak."""
    a, b = _detrended(reference), _detrended(line)
    if a.size != b.size or a.size < 3 or not np.any(a) or not np.any(b):
        return 0.0
    overlap = np.correlate(np.ones_like(b), np.ones_like(a), mode="full")
    usable = overlap >= a.size / 2
    correlation = np.where(usable, np.correlate(b, a, mode="full") / overlap, -np.inf)
    peak = int(np.argmax(correlation))
    offset = 0.0
    if 0 < peak < correlation.size - 1 and usable[peak - 1:peak + 2].all():
        left, centre, right = correlation[peak - 1:peak + 2]
        curvature = left - 2 * centre + right
        if curvature < 0:
            offset = 0.5 * (left - right) / curvature
    return peak - (a.size - 1) + offset


def _detrended(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return values - values.mean() if values.size else values
    position = np.arange(values.size)
    return values - np.polyval(np.polyfit(position, values, 1), position)
