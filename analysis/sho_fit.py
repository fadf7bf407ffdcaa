"""Simple-harmonic-oscillator fits of band-excitation spectra, all pixels at once.

Model, per spectrum (frequencies in hertz; the ratio is the same in angular units):

    H(f) = A · exp(iφ) · f0² / (f² − i·f·f0/Q − f0²),    so |H(f0)| = A·Q.

Method. The starting point comes from the linearised equation H·(f² − i·f·q − p) = r with
p = f0², q = f0/Q and r = A·exp(iφ)·f0², which is linear in the four real unknowns; it is
solved as a batched 4×4 weighted least-squares problem whose weights 1/|f² − i·f·q − p| are
refined in a few Sanathanan–Koerner passes (first pass weights |H|), and a coarse grid in Q
at the peak bin competes with it as a fallback, the one with the lower residual being kept.
Batched Levenberg–Marquardt iterations on the complex residual, with the analytic Jacobian in
(Re C, Im C, f0, ln Q), per-pixel damping and per-pixel stopping, then polish every pixel at
once with `np.linalg.solve` on stacked 4×4 normal equations; pixels are independent, so a bad
pixel never changes the others, and spectra with non-finite or all-zero values give NaN.

Pure numpy: no per-pixel Python loop; large maps are processed in chunks of pixels to bound
memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_Q_MIN = 0.5
_Q_MAX = 1.0e5
_GRID_Q = np.geomspace(1.0, 3000.0, 12)
_TINY = 1.0e-300


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
    """Fit the SHO model to every spectrum in `spectra` (shape (..., n_bins), complex)."""
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
    flat = spectra.reshape(-1, f.size).astype(complex)
    f_ref = float(np.mean(f))
    fn = f / f_ref
    band = fn[-1] - fn[0]
    f0_bounds = (max(fn[0] - band, 0.01 * fn[0]), fn[-1] + band)

    count = flat.shape[0]
    out = {name: np.full(count, np.nan) for name in ("a", "f0", "q", "phi", "r2")}
    converged = np.zeros(count, dtype=bool)
    for start in range(0, count, chunk_size):
        sl = slice(start, start + chunk_size)
        a, f0, q, phi, r2, ok = _fit_block(fn, flat[sl], f0_bounds, max_iterations)
        out["a"][sl], out["f0"][sl], out["q"][sl] = a, f0 * f_ref, q
        out["phi"][sl], out["r2"][sl], converged[sl] = phi, r2, ok

    def shaped(x: np.ndarray) -> np.ndarray:
        return x.reshape(leading)

    return ShoFit(
        amplitude=shaped(out["a"]),
        resonance_frequency_hz=shaped(out["f0"]),
        quality_factor=shaped(out["q"]),
        phase_rad=shaped(out["phi"]),
        r_squared=shaped(out["r2"]),
        converged=shaped(converged),
    )


def _fit_block(fn, spectra, f0_bounds, max_iterations):
    m = spectra.shape[0]
    a, f0, q, phi, r2 = (np.full(m, np.nan) for _ in range(5))
    converged = np.zeros(m, dtype=bool)
    valid = np.all(np.isfinite(spectra), axis=-1) & (np.max(np.abs(spectra), axis=-1) > 0)
    if not np.any(valid):
        return a, f0, q, phi, r2, converged

    h_raw = spectra[valid]
    scale = np.max(np.abs(h_raw), axis=-1)
    h = h_raw / scale[:, None]

    lo, hi = f0_bounds
    f0_0, q_0 = _linear_guess(fn, h)
    lin_ok = np.isfinite(f0_0) & np.isfinite(q_0)
    f0_0 = np.where(lin_ok, np.clip(f0_0, lo, hi), fn[0])
    q_0 = np.where(lin_ok, np.clip(q_0, _Q_MIN, _Q_MAX), 1.0)
    c_0, cost_0 = _project(fn, h, f0_0, q_0)
    # The grid competes only where the linear guess failed or explains little of the data.
    poor = ~(cost_0 <= 0.25 * np.sum(np.abs(h) ** 2, axis=-1))
    if np.any(poor):
        f0_grid, q_grid = _grid_guess(fn, h[poor])
        c_grid, cost_grid = _project(fn, h[poor], f0_grid, q_grid)
        take = ~(cost_0[poor] <= cost_grid)
        idx = np.flatnonzero(poor)[take]
        f0_0[idx], q_0[idx], c_0[idx] = f0_grid[take], q_grid[take], c_grid[take]
    theta = np.stack(
        [
            np.nan_to_num(c_0.real),
            np.nan_to_num(c_0.imag),
            f0_0,
            np.log(q_0),
        ],
        axis=-1,
    )

    theta, cost, ok = _levenberg_marquardt(fn, h, theta, f0_bounds, max_iterations)

    c = (theta[:, 0] + 1j * theta[:, 1]) * scale
    phase = np.angle(c)
    ss_tot = np.sum(np.abs(h - np.mean(h, axis=-1, keepdims=True)) ** 2, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2_valid = 1.0 - cost / ss_tot
    a[valid] = np.abs(c)
    f0[valid] = theta[:, 2]
    q[valid] = np.exp(theta[:, 3])
    phi[valid] = np.where(phase <= -np.pi, phase + 2 * np.pi, phase)
    r2[valid] = r2_valid
    converged[valid] = ok
    return a, f0, q, phi, r2, converged


def _shape(fn, f0, q):
    """g = f0² / (f² − i f f0/Q − f0²) and its denominator, shape (m, n)."""
    f0 = f0[:, None]
    d = fn**2 - 1j * fn * f0 / q[:, None] - f0**2
    return f0**2 / d, d


def _project(fn, h, f0, q):
    """Best complex prefactor for fixed (f0, Q) and the resulting residual sum of squares."""
    g, _ = _shape(fn, f0, q)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gg = np.sum(np.abs(g) ** 2, axis=-1)
        c = np.sum(np.conj(g) * h, axis=-1) / gg
        cost = np.sum(np.abs(h - c[:, None] * g) ** 2, axis=-1)
    return c, cost


def _solve(a, b):
    """Batched solve of (m, k, k) @ x = (m, k) with Jacobi scaling; NaN where hopeless."""
    k = a.shape[-1]
    diag = np.diagonal(a, axis1=-2, axis2=-1)
    ok = (
        np.all(np.isfinite(a), axis=(-2, -1))
        & np.all(np.isfinite(b), axis=-1)
        & np.all(diag > 0, axis=-1)
    )
    d = np.sqrt(np.where(ok[:, None] & (diag > 0), diag, 1.0))
    an = a / (d[:, :, None] * d[:, None, :])
    bn = b / d
    an[~ok] = np.eye(k)
    bn[~ok] = 0.0
    an = an + 1e-13 * np.eye(k)
    try:
        x = np.linalg.solve(an, bn[..., None])[..., 0]
    except np.linalg.LinAlgError:
        x = (np.linalg.pinv(an) @ bn[..., None])[..., 0]
    x = x / d
    x[~ok] = np.nan
    return x


def _linear_guess(fn, h, passes=4):
    """(f0, Q) from H·(f² − i f q − p) = r, reweighted by 1/|denominator| each pass."""
    ones = np.ones_like(h)
    cols = np.stack([h, 1j * fn * h, ones, 1j * ones], axis=-1)  # unknowns p, q, Re r, Im r
    y = h * fn**2
    w = np.abs(h)
    p = q = np.full(h.shape[0], np.nan)
    for _ in range(passes):
        w = w / np.maximum(np.max(w, axis=-1, keepdims=True), _TINY)
        xw = cols * w[..., None]
        xh = np.conj(xw).swapaxes(-1, -2)
        theta = _solve(np.real(xh @ xw), np.real(xh @ (y * w)[..., None])[..., 0])
        p, q = theta[:, 0], theta[:, 1]
        with np.errstate(invalid="ignore"):
            d = np.abs(fn**2 - 1j * fn * q[:, None] - p[:, None])
        w = np.where(np.isfinite(d), 1.0 / np.maximum(d, 1e-12), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        good = (p > 0) & (q > 0)
        f0 = np.where(good, np.sqrt(np.abs(p)), np.nan)
        return f0, np.where(good, f0 / q, np.nan)


def _grid_guess(fn, h):
    """f0 at the peak bin, Q the best of a coarse log grid (by projected residual)."""
    f0 = fn[np.argmax(np.abs(h), axis=-1)]
    costs = np.stack([_project(fn, h, f0, np.full_like(f0, q))[1] for q in _GRID_Q], axis=-1)
    best = np.argmin(np.where(np.isfinite(costs), costs, np.inf), axis=-1)
    return f0, _GRID_Q[best]


def _model_and_jacobian(fn, theta):
    c = theta[:, 0] + 1j * theta[:, 1]
    f0, q = theta[:, 2], np.exp(theta[:, 3])
    g, d = _shape(fn, f0, q)
    c, f0, q = c[:, None], f0[:, None], q[:, None]
    d2 = d**2
    dg_df0 = f0 * (2 * fn**2 - 1j * fn * f0 / q) / d2
    dg_dlnq = -1j * fn * f0**3 / (q * d2)
    jac = np.stack([g, 1j * g, c * dg_df0, c * dg_dlnq], axis=-1)
    return c * g, jac


def _cost(fn, h, theta):
    with np.errstate(all="ignore"):
        c = theta[:, 0] + 1j * theta[:, 1]
        g, _ = _shape(fn, theta[:, 2], np.exp(theta[:, 3]))
        cost = np.sum(np.abs(h - c[:, None] * g) ** 2, axis=-1)
    return np.where(np.isfinite(cost), cost, np.inf)


def _levenberg_marquardt(fn, h, theta, f0_bounds, max_iterations):
    """Batched LM, each pixel with its own damping and stopping; returns theta, cost, ok."""
    lo_f0, hi_f0 = f0_bounds
    lower = np.array([-np.inf, -np.inf, lo_f0, np.log(_Q_MIN)])
    upper = np.array([np.inf, np.inf, hi_f0, np.log(_Q_MAX)])
    m = h.shape[0]
    theta = np.clip(theta, lower, upper)
    cost = _cost(fn, h, theta)
    floor = 1e-24 * np.sum(np.abs(h) ** 2, axis=-1)
    lam = np.full(m, 1e-3)
    ok = np.zeros(m, dtype=bool)
    active = np.flatnonzero(np.isfinite(cost) & np.all(np.isfinite(theta), axis=-1))
    stopped = np.zeros(m, dtype=bool)

    for _ in range(max_iterations):
        if active.size == 0:
            break
        th, hh = theta[active], h[active]
        with np.errstate(all="ignore"):
            model, jac = _model_and_jacobian(fn, th)
            jh = np.conj(jac).swapaxes(-1, -2)
            jtj = np.real(jh @ jac)
            grad = np.real(jh @ (hh - model)[..., None])[..., 0]
        diag = np.diagonal(jtj, axis1=-2, axis2=-1)
        damp = np.maximum(diag, 1e-12 * np.max(diag, axis=-1, keepdims=True))
        step = _solve(jtj + lam[active, None, None] * np.eye(4) * damp[:, None, :], grad)
        trial = np.clip(th + np.nan_to_num(step), lower, upper)
        new_cost = _cost(fn, hh, trial)
        old_cost = cost[active]
        better = new_cost < old_cost

        moved = np.max(np.abs(trial - th) / (np.abs(th) + 1e-8), axis=-1)
        tiny_change = better & (
            ((old_cost - new_cost) <= 1e-12 * old_cost) | (moved <= 1e-11)
        )
        at_floor = np.minimum(new_cost, old_cost) <= floor[active]
        theta[active[better]] = trial[better]
        cost[active[better]] = new_cost[better]
        lam[active] = np.where(better, lam[active] * 0.3, lam[active] * 10.0)
        stalled = lam[active] > 1e12  # no descent even for tiny steps: at a minimum
        done = tiny_change | at_floor | stalled | ~np.isfinite(step).all(axis=-1)
        ok[active[done]] = np.isfinite(step[done]).all(axis=-1) | at_floor[done]
        stopped[active[done]] = True
        active = active[~done]

    on_bound = np.any(
        (np.abs(theta[:, 2:] - lower[2:]) <= 1e-9 * np.abs(lower[2:]) + 1e-12)
        | (np.abs(theta[:, 2:] - upper[2:]) <= 1e-9 * np.abs(upper[2:]) + 1e-12),
        axis=-1,
    )
    ok &= stopped & ~on_bound & np.all(np.isfinite(theta), axis=-1)
    return theta, cost, ok
