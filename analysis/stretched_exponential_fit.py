"""Relaxation curves R(t) = R∞ + ΔR·exp(−(t/τ)^β), fitted all at once.

Method, vectorised over curves (Python loops only over iterations):

1. Start: a grid over (ln τ, β) — τ log-spaced from a third of the first read time to three
   times the last, β from 0.25 to 1.1. For each grid point the basis (1, exp(−(t/τ)^β)) is
   the same for every curve, so R∞ and ΔR follow in closed form (a straight-line fit against
   the basis) and the residual of every curve at every grid point comes from one matrix
   product; each curve starts from its best grid point.
2. Refinement: Levenberg–Marquardt on (R∞, ΔR, ln τ, β) with the analytic Jacobian, per-curve
   damping, β kept within [0.1, 1.5]; stops when no curve's residual falls by more than
   1e-9 of itself.

Only reads after the pulse (t > 0) enter. R² against the curve's mean. Standard errors from
σ²(JᵀJ)⁻¹ at the optimum, σ² = SSR/(n − 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TAU_GRID = 64
_BETA_GRID = np.linspace(0.25, 1.1, 18)
_BETA_BOUNDS = (0.1, 1.5)
_ITERATIONS = 100
_N_PARAMETERS = 4


@dataclass(frozen=True)
class StretchedExponentialFit:
    """Per curve: R∞, ΔR, τ, β, their standard errors, R², converged."""

    offset: np.ndarray  # R∞
    amplitude: np.ndarray  # ΔR
    relaxation_time_s: np.ndarray
    stretch_exponent: np.ndarray
    relaxation_time_error_s: np.ndarray
    stretch_exponent_error: np.ndarray
    r_squared: np.ndarray
    converged: np.ndarray

    def model(self, time_s: np.ndarray) -> np.ndarray:
        t = np.maximum(np.asarray(time_s, dtype=float), 0.0)
        return stretched_exponential(t, self.offset[:, None], self.amplitude[:, None],
                                     self.relaxation_time_s[:, None],
                                     self.stretch_exponent[:, None])


def stretched_exponential(t, offset, amplitude, tau, beta):
    return offset + amplitude * np.exp(-(t / tau) ** beta)


def _grid_start(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    taus = np.geomspace(t.min() / 3.0, 3.0 * t.max(), _TAU_GRID)
    tau, beta = np.meshgrid(taus, _BETA_GRID, indexing="ij")
    tau, beta = tau.ravel(), beta.ravel()
    basis = np.exp(-(t[None, :] / tau[:, None]) ** beta[:, None])  # (G, n)
    b = basis - basis.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    var_b = np.sum(b**2, axis=1)  # (G,)
    cov = yc @ b.T  # (P, G)
    explained = np.where(var_b > 0, cov**2 / np.where(var_b > 0, var_b, 1.0), 0.0)
    best = np.argmax(explained, axis=1)
    rows = np.arange(y.shape[0])
    amplitude = cov[rows, best] / var_b[best]
    offset = y.mean(axis=1) - amplitude * basis[best].mean(axis=1)
    return np.column_stack([offset, amplitude, np.log(tau[best]), beta[best]])


def _model_and_jacobian(t: np.ndarray, theta: np.ndarray):
    offset, amplitude, log_tau, beta = (theta[:, i:i + 1] for i in range(_N_PARAMETERS))
    s = np.exp(beta * (np.log(t)[None, :] - log_tau))
    e = np.exp(-s)
    model = offset + amplitude * e
    jac = np.stack([np.ones_like(e), e, amplitude * e * beta * s,
                    -amplitude * e * s * (np.log(t)[None, :] - log_tau)], axis=-1)
    return model, jac


def fit_stretched_exponentials(time_s: np.ndarray, responses: np.ndarray
                               ) -> StretchedExponentialFit:
    """Fit every curve of `responses` (curves, n) read at `time_s` (n,) (reads at t ≤ 0
    are left out)."""
    t_all = np.asarray(time_s, dtype=float)
    keep = t_all > 0
    t = t_all[keep]
    y_all = np.atleast_2d(np.asarray(responses, dtype=float))
    good = np.all(np.isfinite(y_all[:, keep]), axis=1)
    fitted = _fit(t, y_all[good][:, keep])
    fields = {}
    for name, values in fitted.items():
        full = np.full(good.size, False if values.dtype == bool else np.nan, dtype=values.dtype)
        full[good] = values
        fields[name] = full
    return StretchedExponentialFit(**fields)


def _solve(system: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Batched solve; a singular system (a curve with no relaxation in it) gets no step."""
    try:
        return np.linalg.solve(system, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        step = np.zeros_like(rhs)
        for k in range(rhs.shape[0]):  # rare: only when some system is singular
            step[k] = np.linalg.lstsq(system[k], rhs[k], rcond=None)[0]
        return step


def _fit(t: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The fit of the complete curves y (curves, n): the result's fields."""
    if y.shape[0] == 0:
        empty = np.zeros(0)
        return {name: empty for name in (
            "offset", "amplitude", "relaxation_time_s", "stretch_exponent",
            "relaxation_time_error_s", "stretch_exponent_error", "r_squared")} | {
            "converged": np.zeros(0, dtype=bool)}
    theta = _grid_start(t, y)
    damping = np.full(y.shape[0], 1e-3)
    model, jac = _model_and_jacobian(t, theta)
    ssr = np.sum((y - model) ** 2, axis=1)
    converged = np.zeros(y.shape[0], dtype=bool)
    eye = np.eye(_N_PARAMETERS)
    for _ in range(_ITERATIONS):
        residual = y - model
        jtj = np.einsum("pni,pnj->pij", jac, jac)
        jtr = np.einsum("pni,pn->pi", jac, residual)
        scale = np.einsum("pii->pi", jtj)
        system = jtj + damping[:, None, None] * scale[:, :, None] * eye
        step = _solve(system, jtr)
        trial = theta + step
        trial[:, 3] = np.clip(trial[:, 3], *_BETA_BOUNDS)
        trial_model, trial_jac = _model_and_jacobian(t, trial)
        trial_ssr = np.sum((y - trial_model) ** 2, axis=1)
        better = np.isfinite(trial_ssr) & (trial_ssr < ssr)
        gain = np.where(better, (ssr - trial_ssr) / np.maximum(ssr, 1e-300), 0.0)
        theta = np.where(better[:, None], trial, theta)
        model = np.where(better[:, None], trial_model, model)
        jac = np.where(better[:, None, None], trial_jac, jac)
        ssr = np.where(better, trial_ssr, ssr)
        damping = np.clip(np.where(better, damping / 3.0, damping * 4.0), 1e-9, 1e9)
        converged = (better & (gain < 1e-9)) | (~better & (damping >= 1e9)) | converged
        if np.all(converged):
            break
    dof = max(t.size - _N_PARAMETERS, 1)
    sigma2 = ssr / dof
    jtj = np.einsum("pni,pnj->pij", jac, jac)
    errors = np.full(theta.shape, np.nan)
    invertible = np.abs(np.linalg.det(jtj)) > 0
    if invertible.any():
        covariance = np.linalg.inv(jtj[invertible]) * sigma2[invertible, None, None]
        errors[invertible] = np.sqrt(np.abs(np.einsum("pii->pi", covariance)))
    total = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    r_squared = np.where(total > 0, 1.0 - ssr / np.where(total > 0, total, 1.0), np.nan)
    tau = np.exp(theta[:, 2])
    return {
        "offset": theta[:, 0], "amplitude": theta[:, 1], "relaxation_time_s": tau,
        "stretch_exponent": theta[:, 3], "relaxation_time_error_s": tau * errors[:, 2],
        "stretch_exponent_error": errors[:, 3], "r_squared": r_squared,
        "converged": converged,
    }
