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
_weight_compiled = None
_blocks_compiled = None


def _kernel():
    """Compile on first use (cached on disk: a new process loads it in milliseconds), so
    importing the analysis does not import numba."""
    global _compiled, _weight_compiled, _blocks_compiled
    if _compiled is None:
        jit = numba.njit(nogil=True, fastmath=_FASTMATH, cache=True)
        _weight_compiled = numba.njit(inline="always", fastmath=_FASTMATH, cache=True)(_weight)
        _blocks_compiled = jit(_blocks)
        _compiled = jit(_loop)
    return _compiled


def _weight(count, background, threshold, clean):  # pragma: no cover (compiled)
    """One voxel's weight in float32, as `sxdm_maps._clean` makes it."""
    w = np.float32(count)
    if clean:
        w = w - background
        w = w if w > np.float32(0.0) else np.float32(0.0)
        w = w if w > threshold else np.float32(0.0)
    return w


def _loop(frames, q_rows, background, threshold, clean, out):  # pragma: no cover (compiled)
    """Four pixels at a time: each Q value loaded serves four pixels, which keeps the pass
    from waiting on the Q rows (1.5 MB for a 30 × 64 × 64 rocking curve, six times the
    data of one pixel) — measured 1.8× faster than one pixel at a time once the frames
    have left the cache. The last pixels are padded to a block of four with empty rows,
    so every pixel goes through the same instructions: a pixel's sums do not depend on
    its place in the chunk."""
    n_pixels, n_voxels = frames.shape
    blocked = n_pixels - n_pixels % 4
    _blocks_compiled(frames, blocked, q_rows, background, threshold, clean, out)
    if blocked < n_pixels:
        rest = np.zeros((4, n_voxels), dtype=frames.dtype)
        rest[: n_pixels - blocked] = frames[blocked:]
        rest_out = np.empty((4, 4))
        _blocks_compiled(rest, 4, q_rows, background, threshold, clean, rest_out)
        out[blocked:] = rest_out[: n_pixels - blocked]


def _blocks(frames, stop, q_rows, background, threshold, clean, out):  # pragma: no cover
    """The sums of pixels [0, stop) of `frames`, four at a time (stop a multiple of 4)."""
    n_voxels = frames.shape[1]
    weight = _weight_compiled
    qx, qy, qz = q_rows[0], q_rows[1], q_rows[2]
    s = np.zeros(16)
    for p in range(0, stop, 4):
        s[:] = 0.0
        for start in range(0, n_voxels, SEGMENT_VOXELS):
            end = start + SEGMENT_VOXELS
            r0, r1 = frames[p, start:end], frames[p + 1, start:end]
            r2, r3 = frames[p + 2, start:end], frames[p + 3, start:end]
            x, y, z = qx[start:end], qy[start:end], qz[start:end]
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0.0)
            c0 = c1 = c2 = c3 = d0 = d1 = d2 = d3 = np.float32(0.0)
            for v in range(r0.shape[0]):
                xv, yv, zv = x[v], y[v], z[v]
                w = weight(r0[v], background, threshold, clean)
                a0 += w * xv
                a1 += w * yv
                a2 += w * zv
                a3 += w
                w = weight(r1[v], background, threshold, clean)
                b0 += w * xv
                b1 += w * yv
                b2 += w * zv
                b3 += w
                w = weight(r2[v], background, threshold, clean)
                c0 += w * xv
                c1 += w * yv
                c2 += w * zv
                c3 += w
                w = weight(r3[v], background, threshold, clean)
                d0 += w * xv
                d1 += w * yv
                d2 += w * zv
                d3 += w
            s[0] += a0
            s[1] += a1
            s[2] += a2
            s[3] += a3
            s[4] += b0
            s[5] += b1
            s[6] += b2
            s[7] += b3
            s[8] += c0
            s[9] += c1
            s[10] += c2
            s[11] += c3
            s[12] += d0
            s[13] += d1
            s[14] += d2
            s[15] += d3
        for k in range(4):
            out[p, k] = s[k]
            out[p + 1, k] = s[4 + k]
            out[p + 2, k] = s[8 + k]
            out[p + 3, k] = s[12 + k]
