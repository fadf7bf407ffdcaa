"""The SXDM centre-of-mass sums as one compiled pass over the integer detector frames.

`sxdm_maps.q_sums` as numpy converts every chunk of frames to float32 and multiplies it
with the (voxels, 4) matrix [Q − Q_ref, 1]: two passes over the data and a product with
only four columns, which BLAS runs far below the memory bandwidth. Here each map pixel's
frames are read once, converted in registers and multiplied into Σw·(Q − Q_ref) and Σw
with the three Q components as separate contiguous float32 rows, which the compiler
vectorises; the pass keeps up with reading the frames from the page cache.

Rounding: the products are added in float32 within segments of `SEGMENT_VOXELS` voxels
(what keeps the loop vectorised) and the segment sums in float64, so a pixel's sums carry
≈10⁻⁷ relative rounding, no worse than the float32 matrix product. Every pixel is summed
on its own, in a fixed order: results do not depend on how pixels are split into chunks
or threads. Skipping the zeros (≈98 % of the voxels, ≈94 % of 8-byte words) was measured
slower than this dense pass (5-6 GB/s against 13 GB/s on one core): the branch per word
costs more than the vector lanes it saves.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # the numpy path in `sxdm_maps` is the fallback
    numba = None

SEGMENT_VOXELS = 4096
"""Voxels whose products are added in float32 before the float64 sum of a pixel."""

KERNEL_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32,
                                                np.int16, np.int32))
"""Frame types the kernel takes (detector counters); others go through numpy."""

_FASTMATH = {"reassoc", "contract"}  # reorder the additions (vector lanes), fuse multiply-add


def available(frames: np.ndarray) -> bool:
    """Whether the compiled pass can take these (n_pixels, n_voxels) frames."""
    return numba is not None and frames.dtype in KERNEL_DTYPES and frames.ndim == 2


def q_sums_compiled(
    frames: np.ndarray,
    q_rows: np.ndarray,
    background_counts: float,
    threshold_counts: float,
    out: np.ndarray,
) -> None:
    """Σw·(Q − Q_ref) and Σw of every row of `frames` (n_pixels, n_voxels) into `out`
    (n_pixels, 4) float64; `q_rows` (3, n_voxels) float32 holds Q − Q_ref by component.

    w = max(counts − background, 0), zeroed at or below the threshold, in float32 as the
    numpy path does; both 0 leave the counts as they are.
    """
    frames = np.ascontiguousarray(frames)
    clean = bool(background_counts) or bool(threshold_counts)
    _kernel()(frames, q_rows, np.float32(background_counts), np.float32(threshold_counts),
              clean, out)


_compiled = None


def _kernel():
    """Compile on first use (cached on disk), so importing the analysis costs nothing."""
    global _compiled
    if _compiled is None:
        _compiled = numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)(_q_sums_loop)
    return _compiled


def _q_sums_loop(frames, q_rows, background, threshold, clean, out):  # pragma: no cover
    n_voxels = frames.shape[1]
    qx, qy, qz = q_rows[0], q_rows[1], q_rows[2]
    zero = np.float32(0.0)
    for pixel in range(frames.shape[0]):
        row = frames[pixel]
        s0 = s1 = s2 = s3 = 0.0
        for start in range(0, n_voxels, SEGMENT_VOXELS):
            counts = row[start:start + SEGMENT_VOXELS]
            x = qx[start:start + SEGMENT_VOXELS]
            y = qy[start:start + SEGMENT_VOXELS]
            z = qz[start:start + SEGMENT_VOXELS]
            t0 = t1 = t2 = t3 = zero
            if clean:
                for v in range(counts.shape[0]):
                    w = np.float32(counts[v]) - background
                    w = w if w > zero else zero
                    w = w if w > threshold else zero
                    t0 += w * x[v]
                    t1 += w * y[v]
                    t2 += w * z[v]
                    t3 += w
            else:
                for v in range(counts.shape[0]):
                    w = np.float32(counts[v])
                    t0 += w * x[v]
                    t1 += w * y[v]
                    t2 += w * z[v]
                    t3 += w
            s0 += t0
            s1 += t1
            s2 += t2
            s3 += t3
        out[pixel, 0] = s0
        out[pixel, 1] = s1
        out[pixel, 2] = s2
        out[pixel, 3] = s3
