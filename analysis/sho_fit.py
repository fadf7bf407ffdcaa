"""Simple-harmonic-oscillator fits of band-excitation spectra, all pixels at once.

Model, per spectrum (frequencies in hertz; the ratio is the same in angular units):

    H(f) = A · exp(iφ) · f0² / (f² − i·f·f0/Q − f0²),    so |H(f0)| = A·Q.

Method. The model is linear in the complex prefactor, so only (f0, Q) are searched for
(variable projection): for given (f0, Q) the best prefactor c is the projection of the
spectrum on b(f) = 1/(f² − i·f·s − p), with p = f0² and s = f0/Q, and what is minimised is the
residual left over, Σ|H − c·b|².

* Start: the linearised equation H·(f² − i·f·s − p) = r, linear in p, s and the complex r, is
  solved per pixel in closed form (r is eliminated, leaving a 2×2 system), with weights refined
  in a few Sanathanan–Koerner passes (first |H|², then 1/|f² − i·f·s − p|²). Where that start
  leaves more than a quarter of the spectrum's power unexplained, a coarse grid in Q at the
  peak bin competes with it and the better of the two is kept.
* Refinement: batched Levenberg–Marquardt on (f0, ln Q) with Kaufman's Jacobian of the
  projected residual; its 2×2 normal equations are assembled from a few per-pixel sums and
  solved in closed form. Each pixel has its own damping and stopping: it has converged when
  the undamped Gauss–Newton step would lower its residual by less than 1e-8 of it or move f0
  and Q by less than 1e-10 (relative), which is checked before spending an evaluation on it.

Spectra are processed in chunks small enough for the CPU cache; pixels that have stopped leave
the working set, and the few slow ones of each chunk are set aside and finished together with
those of the other chunks, so that a long tail of iterations is paid once rather than per chunk.
Every per-pixel sum is computed the same way whatever the batch, so a pixel's result does not
depend on its neighbours or on `chunk_size`, and a bad pixel never changes the others; spectra
with non-finite or all-zero values give NaN. Pure numpy, no per-pixel Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_Q_MIN = 0.5
_Q_MAX = 1.0e5
_GRID_Q = np.geomspace(1.0, 3000.0, 8)
_GUESS_PASSES = 3
_POOR = 0.25  # the grid start is tried where the linear one leaves this much power unexplained
_FTOL = 1.0e-8  # converged: the Gauss–Newton step would lower the residual by less than this
_XTOL = 1.0e-10  # converged: ... or move f0 and Q by less than this (relative)
_COST_SLACK = 1.0e-13  # rounding allowance on the residual, relative to the spectrum's power
_PAUSE = 0.1  # a chunk is set aside once fewer than this fraction of its pixels still iterate
_dot = np.vecdot  # row-wise dot products, bit-identical whatever the batch they are in


@dataclass(frozen=True)
class ShoFit:
    """Per-spectrum SHO parameters; every field has the leading (pixel) shape of the input.

    `converged` is False for spectra that could not be fitted (non-finite or all-zero input,
    where all the other fields are NaN), for fits that ran out of iterations, and for fits that
    ended on a parameter bound (f0 more than one band width outside the band, Q outside
    [0.5, 1e5]) — typically pure noise; such fits keep their last parameters and `r_squared`.
    """

    amplitude: np.ndarray
    resonance_frequency_hz: np.ndarray
    quality_factor: np.ndarray
    phase_rad: np.ndarray
    r_squared: np.ndarray
    converged: np.ndarray

    def model(self, frequencies_hz: np.ndarray) -> np.ndarray:
        """The fitted responses at `frequencies_hz`, shape (*leading, n_frequencies)."""
        return sho_response(
            frequencies_hz,
            self.amplitude,
            self.resonance_frequency_hz,
            self.quality_factor,
            self.phase_rad,
        )


def sho_response(
    frequencies_hz: np.ndarray,
    amplitude: np.ndarray | float,
    resonance_frequency_hz: np.ndarray | float,
    quality_factor: np.ndarray | float,
    phase_rad: np.ndarray | float,
) -> np.ndarray:
    """SHO response; parameters broadcast together, frequencies become the last axis."""
    f = np.asarray(frequencies_hz, dtype=float)
    a, f0, q, phi = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in
          (amplitude, resonance_frequency_hz, quality_factor, phase_rad))
    )
    a, f0, q, phi = (x[..., None] for x in (a, f0, q, phi))
    return a * np.exp(1j * phi) * f0**2 / (f**2 - 1j * f * f0 / q - f0**2)


def fit_sho(
    frequencies_hz: np.ndarray,
    spectra: np.ndarray,
    *,
    max_iterations: int = 100,
    chunk_size: int = 512,
) -> ShoFit:
    """Fit the SHO model to every spectrum in `spectra` (shape (..., n_bins), complex).

    `chunk_size` spectra are worked on together; it changes the speed, not the results.
    """
    f = np.asarray(frequencies_hz, dtype=float)
    spectra = np.asarray(spectra)
    if f.ndim != 1 or f.size < 4:
        raise ValueError("frequencies_hz must be 1-D with at least 4 bins")
    if not np.all(np.isfinite(f)) or np.any(f <= 0) or np.any(np.diff(f) <= 0):
        raise ValueError("frequencies_hz must be finite, positive and strictly increasing")
    if spectra.ndim < 1 or spectra.shape[-1] != f.size:
        raise ValueError(f"spectra must have shape (..., {f.size}), got {spectra.shape}")
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")

    leading = spectra.shape[:-1]
    flat = spectra.reshape(-1, f.size)
    ctx = _Context(f, max_iterations)
    out = _Output(flat.shape[0])

    pool = []
    for start in range(0, flat.shape[0], chunk_size):
        batch = _Batch.start(ctx, flat[start:start + chunk_size], start)
        if batch is not None:
            pool.append(_advance(ctx, batch, out, pause=True))
    # The stragglers of all chunks, together; set aside again until few enough are left.
    pool = [batch for batch in pool if batch.size]
    while pool:
        merged = _Batch.concat(pool)
        final = merged.size <= chunk_size
        pool = []
        for start in range(0, merged.size, chunk_size):
            rest = _advance(ctx, merged[start:start + chunk_size], out, pause=not final)
            if rest.size:
                pool.append(rest)

    return ShoFit(**{name: value.reshape(leading) for name, value in vars(out).items()})


class _Context:
    """What every batch of one call shares: normalised frequencies, bounds, limits."""

    def __init__(self, f, max_iterations):
        self.f_ref = float(np.mean(f))
        self.fn = f / self.f_ref
        self.f2 = self.fn * self.fn
        self.ones = np.ones_like(self.fn)
        band = self.fn[-1] - self.fn[0]
        self.f0_lo = max(self.fn[0] - band, 0.01 * self.fn[0])
        self.f0_hi = self.fn[-1] + band
        self.lnq_lo, self.lnq_hi = np.log(_Q_MIN), np.log(_Q_MAX)
        self.max_iterations = max_iterations


class _Output:
    """The fields of the `ShoFit` being filled in, flat; NaN (not converged) until written."""

    def __init__(self, count):
        self.amplitude = np.full(count, np.nan)
        self.resonance_frequency_hz = np.full(count, np.nan)
        self.quality_factor = np.full(count, np.nan)
        self.phase_rad = np.full(count, np.nan)
        self.r_squared = np.full(count, np.nan)
        self.converged = np.zeros(count, dtype=bool)


class _Batch:
    """Pixels being fitted: normalised spectra as contiguous real arrays, and their state.

    Spectra hr, hi = Re, Im of H/scale and fhr, fhi = f·hr, f·hi, shape (k, n); per pixel: the
    index `idx` into the output, `scale`, hh = Σ|H/scale|², the parameters f0 (normalised) and
    lnq = ln Q, the residual `cost`, the prefactor `c` of b, the Gauss–Newton `system`
    (k, 5) = (a11, a12, a22, g1, g2), the damping `lam`, the iterations used `iters`, `done`
    and `stopped` (done because converged, as opposed to given up).
    """

    _FIELDS = ("hr", "hi", "fhr", "fhi", "idx", "scale", "hh", "f0", "lnq", "cost", "c",
               "system", "lam", "iters", "done", "stopped")

    @property
    def size(self):
        return self.idx.size

    def __getitem__(self, rows):
        new = object.__new__(_Batch)
        for name in self._FIELDS:
            if hasattr(self, name):  # while starting, only the spectra are set
                setattr(new, name, getattr(self, name)[rows])
        return new

    @classmethod
    def concat(cls, batches):
        new = object.__new__(cls)
        for name in cls._FIELDS:
            setattr(new, name, np.concatenate([getattr(b, name) for b in batches]))
        return new

    @classmethod
    def start(cls, ctx, spectra, offset):
        """Normalise the valid spectra of a chunk and find starting points; None if none."""
        with np.errstate(invalid="ignore"):
            magnitude = np.abs(spectra)
            valid = np.all(np.isfinite(spectra), axis=-1) & (np.max(magnitude, axis=-1) > 0)
        if not np.any(valid):
            return None
        b = object.__new__(cls)
        if valid.all():
            b.idx = offset + np.arange(spectra.shape[0])
        else:
            b.idx = offset + np.flatnonzero(valid)
            spectra, magnitude = spectra[valid], magnitude[valid]
        b.scale = np.max(magnitude, axis=-1)
        inv_scale = (1.0 / b.scale)[:, None]
        b.hr = np.ascontiguousarray(spectra.real, dtype=float) * inv_scale
        if np.iscomplexobj(spectra):
            b.hi = np.ascontiguousarray(spectra.imag, dtype=float) * inv_scale
        else:
            b.hi = np.zeros_like(b.hr)
        b.fhr, b.fhi = b.hr * ctx.fn, b.hi * ctx.fn
        b.hh = _dot(b.hr, b.hr) + _dot(b.hi, b.hi)
        _start_points(ctx, b)
        b.lam = np.full(b.size, 1e-3)
        b.iters = np.zeros(b.size, dtype=int)
        b.done = ~np.isfinite(b.cost)
        b.stopped = np.zeros(b.size, dtype=bool)
        return b


def _start_points(ctx, b):
    """Linear start, grid start where that is poor; sets f0, lnq, cost, c, system of `b`."""
    p, s = _linear_guess(ctx, b)
    with np.errstate(invalid="ignore"):
        lin_ok = (p > 0) & (s > 0) & np.isfinite(p) & np.isfinite(s)
        f0 = np.where(lin_ok, np.clip(np.sqrt(np.abs(p)), ctx.f0_lo, ctx.f0_hi), ctx.fn[0])
        q = np.where(lin_ok, np.clip(f0 / np.where(lin_ok, s, 1.0), _Q_MIN, _Q_MAX), 1.0)
    cost, c, system = _evaluate(ctx, b, f0, q)
    poor = ~(cost <= _POOR * b.hh)
    if np.any(poor):
        f0_grid, q_grid, cost_grid = _grid_guess(ctx, b[poor])
        take = ~(cost[poor] <= cost_grid)
        idx = np.flatnonzero(poor)[take]
        if idx.size:
            f0[idx], q[idx] = f0_grid[take], q_grid[take]
            cost[idx], c[idx], system[idx] = _evaluate(ctx, b[idx], f0[idx], q[idx])
    b.f0, b.lnq, b.cost, b.c, b.system = f0, np.log(q), cost, c, system


def _linear_guess(ctx, b, passes=_GUESS_PASSES):
    """(p, s) = (f0², f0/Q) from H·(f² − i f s − p) = r, reweighted by 1/|denominator|².

    The normal equations of the four real unknowns (p, s, Re r, Im r) only need weighted sums
    of |H|², Re H and Im H against 1, f and f²; r is eliminated in closed form.
    """
    fn, f2 = ctx.fn, ctx.f2
    hr, hi = b.hr, b.hi
    h2 = hr * hr + hi * hi
    f2h2 = f2 * h2
    f2hr, f2hi = f2 * hr, f2 * hi
    w = h2
    p = s = np.full(hr.shape[0], np.nan)
    with np.errstate(all="ignore"):
        for k in range(passes):
            sw = _dot(w, ctx.ones)
            a00, a11 = _dot(w, h2), _dot(w, f2h2)  # a11 is also the right-hand side b0
            a02, a03 = _dot(w, hr), _dot(w, hi)
            a12, a13 = -_dot(w, b.fhi), _dot(w, b.fhr)
            b2, b3 = _dot(w, f2hr), _dot(w, f2hi)
            m11 = a00 - (a02 * a02 + a03 * a03) / sw
            m12 = -(a02 * a12 + a03 * a13) / sw
            m22 = a11 - (a12 * a12 + a13 * a13) / sw
            r1 = a11 - (a02 * b2 + a03 * b3) / sw
            r2 = -(a12 * b2 + a13 * b3) / sw
            det = m11 * m22 - m12 * m12
            p = (m22 * r1 - m12 * r2) / det
            s = (m11 * r2 - m12 * r1) / det
            if k + 1 < passes:
                u = f2 - p[:, None]
                v = fn * s[:, None]
                d2 = u * u
                d2 += v * v
                # Normalise the weights per pixel (the solution does not depend on their scale).
                d2 /= np.min(d2, axis=-1, keepdims=True)
                w = np.divide(1.0, d2, out=d2)
                w[~np.isfinite(w)] = 0.0
    return p, s


def _grid_guess(ctx, b):
    """f0 at the peak bin, Q the best of a coarse log grid (by projected residual)."""
    f0 = ctx.fn[np.argmax(b.hr * b.hr + b.hi * b.hi, axis=-1)]
    costs = np.stack(
        [_evaluate(ctx, b, f0, np.full_like(f0, q), jacobian=False)[0] for q in _GRID_Q],
        axis=-1,
    )
    best = np.argmin(costs, axis=-1)
    return f0, _GRID_Q[best], np.take_along_axis(costs, best[:, None], axis=-1)[:, 0]


def _evaluate(ctx, b, f0, q, jacobian=True):
    """Projected residual at (f0, Q), best prefactor c of b, and the Gauss–Newton system.

    With b = 1/d, d = f² − i f s − p (p = f0², s = f0/Q), u = f² − p, v = f s, D = u² + v²:
    b = (u + i v)/D and |b|² = 1/D. Kaufman's Jacobian of the projected residual in (p, s) is
    c·P⊥·∂b/∂(p, s), with ∂b/∂p = t = b² and ∂b/∂s = w = i f b², P⊥ the projection orthogonal
    to b; its normal matrix and gradient reduce to sums over the bins. They are returned in
    (f0, ln Q), as rows (a11, a12, a22, g1, g2) of a (k, 5) array; the gradient is exact.
    """
    with np.errstate(all="ignore"):
        p = f0 * f0
        s = f0 / q
        u = ctx.f2 - p[:, None]
        v = ctx.fn * s[:, None]
        inv_d = u * u
        inv_d += v * v
        np.divide(1.0, inv_d, out=inv_d)
        br = u * inv_d
        bi = np.multiply(v, inv_d, out=v)
        bb = _dot(inv_d, ctx.ones)
        hb_r = _dot(br, b.hr) + _dot(bi, b.hi)
        hb_i = _dot(br, b.hi) - _dot(bi, b.hr)
        c = (hb_r + 1j * hb_i) / bb
        cost = b.hh - (hb_r * hb_r + hb_i * hb_i) / bb
        cost = np.where(np.isfinite(cost), np.maximum(cost, 0.0), np.inf)
        if not jacobian:
            return cost, c, None

        # conj(b)² = e1 − 2i·e2; <t, h> = Σ conj(b)² h, <w, h> = −i Σ f conj(b)² h
        e1 = br * br
        e1 -= np.square(bi, out=u)
        e2 = np.multiply(br, bi, out=bi)
        th = (_dot(e1, b.hr) + 2 * _dot(e2, b.hi)) + 1j * (_dot(e1, b.hi) - 2 * _dot(e2, b.hr))
        wh = (_dot(e1, b.fhi) - 2 * _dot(e2, b.fhr)) - 1j * (_dot(e1, b.fhr) + 2 * _dot(e2, b.fhi))
        # <t, t> = Σ D⁻², <w, w> = Σ f² D⁻², <t, w> imaginary; <b, t> = Σ b/D, <b, w> = i Σ f b/D
        u_dd = np.multiply(br, inv_d, out=br)  # u/D²
        inv_d2 = np.square(inv_d, out=inv_d)
        tt, ww = _dot(inv_d2, ctx.ones), _dot(inv_d2, ctx.f2)
        bt = _dot(u_dd, ctx.ones) + 1j * s * _dot(inv_d2, ctx.fn)  # v = f s
        bw = 1j * _dot(u_dd, ctx.fn) - s * ww
        cc = (c * np.conj(c)).real
        m_pp = cc * (tt - (bt * np.conj(bt)).real / bb)
        m_ss = cc * (ww - (bw * np.conj(bw)).real / bb)
        m_ps = -cc * (np.conj(bt) * bw).real / bb
        g_p = (np.conj(c) * (th - c * np.conj(bt))).real
        g_s = (np.conj(c) * (wh - c * np.conj(bw))).real
        # chain rule to (f0, ln Q): p = f0², s = f0/Q
        k11, k21, k22 = 2 * f0, 1 / q, -s
        system = np.stack(
            [
                k11 * k11 * m_pp + 2 * k11 * k21 * m_ps + k21 * k21 * m_ss,
                k11 * k22 * m_ps + k21 * k22 * m_ss,
                k22 * k22 * m_ss,
                k11 * g_p + k21 * g_s,
                k22 * g_s,
            ],
            axis=-1,
        )
    return cost, c, system


def _steps(system, lam, f0):
    """Levenberg–Marquardt step (Marquardt scaling, closed-form 2×2) and convergence test.

    Converged: the undamped Gauss–Newton step would lower the residual by less than _FTOL of
    `cost` — its predicted gain is gᵀA⁻¹g — or move f0 and Q by less than _XTOL.
    """
    a11, a12, a22, g1, g2 = system.T
    with np.errstate(all="ignore"):
        d1, d2 = np.sqrt(a11), np.sqrt(a22)
        rho = np.clip(a12 / (d1 * d2), -1.0, 1.0)
        y1, y2 = g1 / d1, g2 / d2
        det0 = 1.0 - rho * rho
        x1, x2 = (y1 - rho * y2) / det0, (y2 - rho * y1) / det0
        gain = y1 * x1 + y2 * x2
        small = (np.abs(x1 / (d1 * f0)) <= _XTOL) & (np.abs(x2 / d2) <= _XTOL)
        diag = 1.0 + lam
        det = diag * diag - rho * rho
        step_f0 = (diag * y1 - rho * y2) / (det * d1)
        step_lnq = (diag * y2 - rho * y1) / (det * d2)
    return step_f0, step_lnq, gain, small


def _advance(ctx, b, out, pause):
    """Iterate the pixels of `b` that are not done; write out the finished ones.

    With `pause`, stops once fewer than _PAUSE of them still iterate. Returns the rest.
    """
    rows = np.flatnonzero(~b.done)
    work = b[rows]  # the spectra of `rows`; `live` marks those still iterating
    live = np.ones(rows.size, dtype=bool)
    start_size = rows.size
    slack = _COST_SLACK * b.hh
    while rows.size:
        f0, lnq, cost, lam = b.f0[rows], b.lnq[rows], b.cost[rows], b.lam[rows]
        step_f0, step_lnq, gain, small = _steps(b.system[rows], lam, f0)
        with np.errstate(invalid="ignore"):
            converged = live & ((gain <= _FTOL * cost) | small)
        exhausted = live & ~converged & (b.iters[rows] >= ctx.max_iterations)
        b.stopped[rows[converged]] = True
        b.done[rows[converged | exhausted]] = True
        live &= ~(converged | exhausted)
        n_live = np.count_nonzero(live)
        if n_live == 0 or (pause and n_live < _PAUSE * start_size):
            break
        if n_live < 0.75 * rows.size:  # drop finished pixels from the working set
            rows, work = rows[live], work[live]
            f0, lnq, cost, lam, step_f0, step_lnq = (
                x[live] for x in (f0, lnq, cost, lam, step_f0, step_lnq)
            )
            live = np.ones(rows.size, dtype=bool)
        bad_step = ~(np.isfinite(step_f0) & np.isfinite(step_lnq))
        trial_f0 = np.clip(f0 + np.where(bad_step, 0.0, step_f0), ctx.f0_lo, ctx.f0_hi)
        trial_lnq = np.clip(lnq + np.where(bad_step, 0.0, step_lnq), ctx.lnq_lo, ctx.lnq_hi)
        new_cost, new_c, new_system = _evaluate(ctx, work, trial_f0, np.exp(trial_lnq))
        b.iters[rows[live]] += 1

        better = live & (new_cost <= cost + slack[rows])
        acc = rows[better]
        b.f0[acc], b.lnq[acc], b.cost[acc] = trial_f0[better], trial_lnq[better], new_cost[better]
        b.c[acc], b.system[acc] = new_c[better], new_system[better]
        lam = np.where(better, np.maximum(lam * 0.3, 1e-12), lam * 10.0)
        b.lam[rows[live]] = lam[live]
        # Also done: a step that cannot be computed (given up), one that does not move (held
        # by a bound) and damping so strong that no step lowers the residual (at a minimum).
        with np.errstate(invalid="ignore"):
            pinned = better & (np.abs(trial_f0 - f0) <= _XTOL * f0) & (
                np.abs(trial_lnq - lnq) <= _XTOL
            )
        stalled = lam > 1e12
        finished = live & (bad_step | pinned | stalled)
        b.done[rows[finished]] = True
        b.stopped[rows[finished & ~bad_step]] = True
        live &= ~finished

    _write(ctx, b[b.done], out)
    return b[~b.done]


def _write(ctx, b, out):
    """Final parameters and goodness of fit of the finished pixels in `b`."""
    if not b.size:
        return
    with np.errstate(all="ignore"):
        q = np.exp(b.lnq)
        c = b.c * b.scale / (b.f0 * b.f0)  # prefactor of b -> prefactor of f0²·b
        sum_r, sum_i = _dot(b.hr, ctx.ones), _dot(b.hi, ctx.ones)
        ss_tot = b.hh - (sum_r * sum_r + sum_i * sum_i) / ctx.ones.size  # Σ|h − mean h|²
        phase = np.angle(c)
        on_bound = (
            (np.abs(b.f0 - ctx.f0_lo) <= 1e-9 * ctx.f0_lo + 1e-12)
            | (np.abs(b.f0 - ctx.f0_hi) <= 1e-9 * ctx.f0_hi + 1e-12)
            | (np.abs(b.lnq - ctx.lnq_lo) <= 1e-9 * abs(ctx.lnq_lo) + 1e-12)
            | (np.abs(b.lnq - ctx.lnq_hi) <= 1e-9 * abs(ctx.lnq_hi) + 1e-12)
        )
        out.amplitude[b.idx] = np.abs(c)
        out.resonance_frequency_hz[b.idx] = b.f0 * ctx.f_ref
        out.quality_factor[b.idx] = q
        out.phase_rad[b.idx] = np.where(phase <= -np.pi, phase + 2 * np.pi, phase)
        out.r_squared[b.idx] = 1.0 - b.cost / ss_tot
        out.converged[b.idx] = (
            b.stopped & ~on_bound & np.isfinite(b.f0) & np.isfinite(b.lnq) & np.isfinite(c)
        )
