"""SXDM maps (d spacing, strain, tilt) from the 3-D centre of mass of each rocking curve.

Every map pixel holds a rocking curve: n_eta detector frames of an ROI. All map pixels share
the same sample-frame Q of every (eta, row, col) voxel (`vegard.diffraction_geometry.pixel_q`),
so the centre of mass in Q of all map pixels is one matrix product: frames as a
(n_pixels, n_eta·R·C) float32 matrix times the fixed (n_eta·R·C, 4) matrix [qx, qy, qz, 1].
That single pass over the data is the whole cost of the analysis; no 3-D Q histogram
is needed (XSOCS grids every pixel into one first), so the analysis keeps up with the read.
Integer frames go through a compiled pass (`sxdm_kernel`, numba) that reads each frame once;
the numpy matrix product is the fallback and the reference it is tested against.

From the centres: d = 2π/|Q|, strain relative to the intensity-weighted mean d of the bright
(masked-in) pixels, and the tilt of Q from the intensity-weighted mean Q̄, as an altitude
(angle from Q̄) and an azimuth around Q̄ (0° toward sample +x, 90° toward +y; the convention
of `vegard.diffraction_geometry.tilt_altitude_azimuth_deg`, shared with the simulator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from vegard.diffraction_geometry import tilt_altitude_azimuth_deg

from . import sxdm_kernel

MASK_FRACTION = 0.2
"""Pixels with at least this fraction of the largest integrated intensity are analysed."""

CHUNK_BYTES = 8 * 2**20
"""Size of one float32 working copy of frames: small enough to stay in cache between the
conversion and the product (measured: 8 MB chunks run ≈ 1.5× faster than 64 MB ones)."""


@dataclass(frozen=True)
class QGrid:
    """The (n_eta·R·C, 4) float32 matrix [Q − Q_ref, 1] shared by every map pixel.

    Q is taken relative to its mean over the voxels, Q_ref (float64), so that float32 keeps
    the small differences that carry strain and tilt (10⁻⁴ of |Q|) well above its rounding.
    Build it once per scan: it is reused for every line.
    """

    matrix: np.ndarray
    q_ref_inv_angstrom: np.ndarray
    voxel_shape: tuple[int, ...]

    @classmethod
    def from_pixels(cls, q_pixels: np.ndarray, q_ref: np.ndarray | None = None) -> QGrid:
        """From `pixel_q(...)`, shape (n_eta, R, C, 3), Å⁻¹.

        `q_ref` defaults to the mean Q of the voxels; give a fixed one to add up the sums of
        several grids (e.g. one rocking angle at a time, `SxdmOperandoAnalysis`).
        """
        q_pixels = np.asarray(q_pixels, dtype=float)
        q = q_pixels.reshape(-1, 3)
        q_ref = q.mean(axis=0) if q_ref is None else np.asarray(q_ref, dtype=float).reshape(3)
        matrix = np.empty((q.shape[0], 4), dtype=np.float32)
        matrix[:, :3] = q - q_ref
        matrix[:, 3] = 1.0
        return cls(matrix, q_ref, q_pixels.shape[:-1])

    @cached_property
    def q_rows(self) -> np.ndarray:
        """Q − Q_ref as three contiguous float32 rows (3, n_voxels), for the compiled pass."""
        return np.ascontiguousarray(self.matrix[:, :3].T)


def q_centres(
    frames: np.ndarray,
    q_pixels: np.ndarray | QGrid,
    *,
    background_counts: float = 0.0,
    threshold_counts: float = 0.0,
    chunk_pixels: int | None = None,
    workers: int = 1,
    kernel: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass in Q (Å⁻¹) and integrated counts of every map pixel's rocking curve.

    `frames` has shape (..., n_eta, R, C) (any numeric dtype, e.g. detector uint16/uint32),
    `q_pixels` shape (n_eta, R, C, 3) or a prepared `QGrid`. Returns q_com (..., 3) and
    integrated_counts (...). `background_counts` is subtracted from every voxel (negative
    results clipped to zero), then voxels at or below `threshold_counts` are zeroed
    (isolated background photons); both 0 skip that element-wise pass. Pixels without
    counts get NaN centres. Work goes `chunk_pixels` map pixels at a time (default: a
    float32 copy of `CHUNK_BYTES`), on `workers` threads (the compiled pass, numpy's cast
    and BLAS release the GIL). `kernel`: "auto" (compiled for integer frames, else numpy),
    "compiled" or "numpy". Results do not depend on `workers`; on `chunk_pixels` not with
    the compiled pass and only to float32 rounding with numpy.
    """
    grid = q_pixels if isinstance(q_pixels, QGrid) else QGrid.from_pixels(q_pixels)
    sums = q_sums(frames, grid, background_counts=background_counts,
                  threshold_counts=threshold_counts, chunk_pixels=chunk_pixels, workers=workers,
                  kernel=kernel)
    return centres_from_sums(sums, grid.q_ref_inv_angstrom)


def q_sums(
    frames: np.ndarray,
    grid: QGrid,
    *,
    background_counts: float = 0.0,
    threshold_counts: float = 0.0,
    chunk_pixels: int | None = None,
    workers: int = 1,
    kernel: str = "auto",
) -> np.ndarray:
    """The linear sums behind `q_centres`: Σ counts·(Q − Q_ref) and Σ counts per map pixel.

    Same arguments as `q_centres` (the grid prepared); returns float64 of shape (..., 4).
    Sums over the same Q_ref add up, so a map can be accumulated part by part (e.g. one
    rocking angle of one line at a time) and finished with `centres_from_sums`.
    """
    voxel_shape = grid.voxel_shape
    frames = np.asarray(frames)
    if frames.shape[frames.ndim - len(voxel_shape):] != voxel_shape:
        raise ValueError(f"frames {frames.shape} do not end with the Q grid {voxel_shape}")
    map_shape = frames.shape[: frames.ndim - len(voxel_shape)]
    n_voxels = math.prod(voxel_shape)
    flat = frames.reshape(-1, n_voxels)
    compiled = _use_compiled(kernel, flat, background_counts)
    if chunk_pixels is None:
        chunk_pixels = max(1, CHUNK_BYTES // (4 * n_voxels))
        if compiled:  # whole blocks of the kernel's four pixels
            chunk_pixels = max(4, chunk_pixels - chunk_pixels % 4)
    sums = np.empty((flat.shape[0], 4), dtype=np.float64)
    starts = range(0, flat.shape[0], chunk_pixels)

    def run(my_starts: Sequence[int]) -> None:
        if compiled:
            for start in my_starts:
                block = flat[start:start + chunk_pixels]
                sxdm_kernel.q_sums_compiled(block, grid.q_rows, background_counts,
                                            threshold_counts, sums[start:start + block.shape[0]])
            return
        buffer = np.empty((min(chunk_pixels, flat.shape[0]), n_voxels), dtype=np.float32)
        for start in my_starts:
            block = flat[start:start + chunk_pixels]
            work = buffer[: block.shape[0]]
            np.copyto(work, block, casting="unsafe")
            _clean(work, background_counts, threshold_counts)
            sums[start:start + block.shape[0]] = work @ grid.matrix

    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, [starts[i::workers] for i in range(workers)]))
    else:
        run(starts)
    return sums.reshape(*map_shape, 4)


KERNELS = ("auto", "compiled", "numpy")


def _use_compiled(kernel: str, flat: np.ndarray, background_counts: float) -> bool:
    """The compiled pass for integer frames (a negative background would make the zeros
    counts: numpy then), unless `kernel` says otherwise."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel = {kernel!r} is not valid: allowed: {', '.join(KERNELS)}")
    if kernel == "numpy":
        return False
    can = sxdm_kernel.available(flat) and background_counts >= 0
    if kernel == "compiled" and not can:
        raise ValueError(f"kernel = 'compiled' cannot take {flat.dtype} frames with background "
                         f"{background_counts} (allowed: integer frames, background >= 0, "
                         "numba installed)")
    return can


def centres_from_sums(
    sums: np.ndarray, q_ref_inv_angstrom: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass (..., 3) and integrated counts (...) from `q_sums` (..., 4) taken
    relative to `q_ref_inv_angstrom`; NaN centres where there are no counts."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = sums[..., 3].copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        q_com = sums[..., :3] / counts[..., None] + np.asarray(q_ref_inv_angstrom, dtype=float)
    q_com[counts <= 0] = np.nan
    return q_com, counts


def _clean(work: np.ndarray, background_counts: float, threshold_counts: float) -> None:
    """Background subtraction and threshold, in place on the float32 chunk."""
    if background_counts:
        work -= np.float32(background_counts)
        np.maximum(work, 0.0, out=work)
    if threshold_counts:
        work[work <= threshold_counts] = 0.0


@dataclass(frozen=True)
class SxdmMaps:
    """Per map pixel quantities (shape of the map) and their summary over the mask.

    Values are computed wherever there are counts (NaN elsewhere); `mask` marks the bright
    pixels that the means and the summary use.
    """

    q_com_inv_angstrom: np.ndarray  # (..., 3), sample frame
    d_angstrom: np.ndarray
    strain: np.ndarray
    tilt_altitude_deg: np.ndarray
    tilt_azimuth_deg: np.ndarray
    intensity: np.ndarray
    mask: np.ndarray
    d_mean_angstrom: float
    q_mean_inv_angstrom: np.ndarray  # (3,) intensity-weighted mean Q of the mask

    @property
    def microstrain(self) -> float:
        """Width of the d histogram of masked-in pixels: std(d)/mean(d), each pixel counted once."""
        d = self.d_angstrom[self.mask]
        return float(np.std(d) / np.mean(d)) if d.size else math.nan

    @property
    def tilt_altitude_max_deg(self) -> float:
        """Largest tilt from the mean Q over the masked-in pixels."""
        tilt = self.tilt_altitude_deg[self.mask]
        return float(tilt.max()) if tilt.size else math.nan

    def histogram(self, name: str, bins: int | np.ndarray = 50) -> tuple[np.ndarray, np.ndarray]:
        """Histogram (counts, bin edges) of one map (e.g. "d_angstrom") over the mask."""
        values = np.asarray(getattr(self, name))[self.mask]
        return np.histogram(values[np.isfinite(values)], bins=bins)

    def summary(self) -> dict[str, float]:
        return {
            "d_mean_angstrom": self.d_mean_angstrom,
            "microstrain": self.microstrain,
            "tilt_altitude_max_deg": self.tilt_altitude_max_deg,
            "masked_in_pixels": int(self.mask.sum()),
        }


def intensity_mask(intensity: np.ndarray, fraction: float = MASK_FRACTION) -> np.ndarray:
    """Pixels with at least `fraction` of the largest intensity (all False if none)."""
    intensity = np.nan_to_num(np.asarray(intensity, dtype=float))
    top = intensity.max() if intensity.size else 0.0
    if top <= 0:
        return np.zeros(intensity.shape, dtype=bool)
    return intensity >= fraction * top


def sxdm_maps(
    q_com: np.ndarray, counts: np.ndarray, *, mask_fraction: float = MASK_FRACTION
) -> SxdmMaps:
    """d, strain and tilt maps from the centres of mass (`q_centres`) and integrated counts."""
    q_com = np.asarray(q_com, dtype=float)
    intensity = np.asarray(counts, dtype=float)
    mask = intensity_mask(intensity, mask_fraction) & np.all(np.isfinite(q_com), axis=-1)
    d = 2.0 * math.pi / np.linalg.norm(q_com, axis=-1)
    if mask.any():
        weight = intensity[mask]
        d_mean = float(np.average(d[mask], weights=weight))
        q_mean = np.average(q_com[mask], axis=0, weights=weight)
        altitude, azimuth = tilt_altitude_azimuth_deg(q_com, q_mean)
    else:
        d_mean, q_mean = math.nan, np.full(3, np.nan)
        altitude = azimuth = np.full(d.shape, np.nan)
    return SxdmMaps(
        q_com_inv_angstrom=q_com,
        d_angstrom=d,
        strain=(d - d_mean) / d_mean,
        tilt_altitude_deg=altitude,
        tilt_azimuth_deg=azimuth,
        intensity=intensity,
        mask=mask,
        d_mean_angstrom=d_mean,
        q_mean_inv_angstrom=q_mean,
    )
