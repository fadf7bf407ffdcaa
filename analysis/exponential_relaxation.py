"""CPD(t) = A + B·exp(−t/τ) fitted to a tr-KPFM record (the review's single-exponential
model), by variable projection: for a given τ, A and B follow from linear least squares, so
only τ is searched (a log grid, then a bounded scalar refinement of log τ). The standard
error of τ comes from the three-parameter Jacobian at the optimum. Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

GRID_POINTS = 160
SIGNIFICANCE_F = 25.0
"""F ratio (2 extra parameters over a constant) below which no relaxation is reported."""


@dataclass(frozen=True)
class ExponentialFit:
    offset_v: float  # A
    amplitude_v: float  # B
    relaxation_time_s: float  # τ
    relaxation_time_error_s: float
    r_squared: float


def _linear(t_s: np.ndarray, y: np.ndarray, tau_s: float):
    basis = np.stack([np.ones_like(t_s), np.exp(-t_s / tau_s)], axis=1)
    coefficients, *_ = np.linalg.lstsq(basis, y, rcond=None)
    residual = y - basis @ coefficients
    return coefficients, float(residual @ residual)


def fit_exponential_relaxation(t_s: np.ndarray, values: np.ndarray) -> ExponentialFit | None:
    """Fit `values` at times `t_s` (s since the step; ≥ 4 finite points); None if the record
    shows no relaxation within the τ range searched (a tenth of a sample to 20× the record),
    or none above the noise (F test against a constant, τ known to better than half)."""
    t = np.asarray(t_s, dtype=float)
    y = np.asarray(values, dtype=float)
    keep = np.isfinite(t) & np.isfinite(y)
    t, y = t[keep], y[keep]
    if t.size < 4:
        return None
    span_s = float(t.max() - t.min())
    if span_s <= 0:
        return None
    t0 = float(t.min())
    u = t - t0  # fit from the window's start (A, B referred back to the step below)
    low, high = np.log(max(span_s / t.size / 10.0, 1e-9)), np.log(20.0 * span_s)
    grid = np.linspace(low, high, GRID_POINTS)
    costs = np.array([_linear(u, y, float(np.exp(g)))[1] for g in grid])
    best = int(np.argmin(costs))
    if best in (0, GRID_POINTS - 1):
        return None
    refined = minimize_scalar(lambda g: _linear(u, y, float(np.exp(g)))[1],
                              bounds=(grid[best - 1], grid[best + 1]), method="bounded",
                              options={"xatol": 1e-7})
    tau = float(np.exp(refined.x))
    (a, b_window), cost = _linear(u, y, tau)
    decay = np.exp(-u / tau)
    jacobian = np.stack([np.ones_like(u), decay, b_window * u / tau**2 * decay], axis=1)
    dof = max(u.size - 3, 1)
    try:
        covariance = np.linalg.inv(jacobian.T @ jacobian) * (cost / dof)
        tau_error = float(np.sqrt(max(covariance[2, 2], 0.0)))
    except np.linalg.LinAlgError:
        tau_error = float("nan")
    total = float(np.sum((y - y.mean()) ** 2))
    if not (total - cost) / 2 > SIGNIFICANCE_F * cost / dof or not tau_error < 0.5 * tau:
        return None  # the exponential explains no more than noise would
    return ExponentialFit(
        offset_v=float(a), amplitude_v=float(b_window * np.exp(t0 / tau)),
        relaxation_time_s=tau, relaxation_time_error_s=tau_error,
        r_squared=1.0 - cost / total if total > 0 else float("nan"))


def diffusion_coefficient_m2_per_s(distance_um: float, relaxation_time_s: float) -> float:
    """D ≈ d²/τ (the review's estimate for tr-KPFM, d the interelectrode distance)."""
    return (distance_um * 1e-6) ** 2 / relaxation_time_s
