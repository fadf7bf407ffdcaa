"""Arrhenius fits: ln y against 1/T, and the activation energy of D from a strain amplitude.

A thermally activated quantity y = y0·exp(−E/(R·T)) is a straight line in ln y against 1/T
with slope −E/R. The ESM Vegard strain a_f grows with the diffusion length, a_f ∝ sqrt(D), so
its slope is −E_A/(2R) and E_A = −2R·∂ ln a_f/∂(1/T) (ESM paper, Eq. 2).

Points whose y is not positive or whose T, y (or weight) is not finite cannot be on the
logarithmic line; they are left out and counted, not silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GAS_CONSTANT_J_PER_MOL_K = 8.314462618


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class ArrheniusFit:
    """ln y = intercept + slope_k / T; standard errors from the residuals (NaN with 2 points).

    `slope_k` is ∂ ln y/∂(1/T) in kelvin; `intercept` is ln y extrapolated to 1/T = 0.
    """

    slope_k: float
    intercept: float
    slope_stderr_k: float
    intercept_stderr: float
    points_used: int
    points_excluded: int

    @property
    def usable(self) -> bool:
        """A line exists (at least two distinct temperatures)."""
        return bool(np.isfinite(self.slope_k) and np.isfinite(self.intercept))

    def ln_y_at(self, temperature_k: float) -> float:
        """The fitted ln y at `temperature_k` (interpolated or extrapolated along the line)."""
        return self.intercept + self.slope_k / float(temperature_k)

    def y_at(self, temperature_k: float) -> float:
        """The fitted y at `temperature_k`."""
        return float(np.exp(self.ln_y_at(temperature_k)))

    def as_dict(self) -> dict[str, float | int | None]:
        """Plain, JSON-safe numbers (NaN → None)."""
        return {
            "slope_k": _json_float(self.slope_k),
            "intercept": _json_float(self.intercept),
            "slope_stderr_k": _json_float(self.slope_stderr_k),
            "intercept_stderr": _json_float(self.intercept_stderr),
            "points_used": self.points_used,
            "points_excluded": self.points_excluded,
        }


def fit_arrhenius(
    temperatures_k: Sequence[float],
    values: Sequence[float],
    values_stderr: Sequence[float] | None = None,
) -> ArrheniusFit:
    """Least-squares line through (1/T, ln y), weighted by 1/σ_ln y² if `values_stderr` given.

    σ_ln y = σ_y / y (first order). Standard errors come from the scatter of the residuals
    (covariance scaled by the reduced χ²), so they describe how well the points lie on a line
    whether or not the given σ_y are right; with only two points they are undefined (NaN).
    """
    temperatures = np.asarray(temperatures_k, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if temperatures.shape != y.shape:
        raise ValueError(f"{temperatures.size} temperatures but {y.size} values")
    sigma = (
        np.ones_like(y) if values_stderr is None
        else np.asarray(values_stderr, dtype=float).ravel()
    )
    if sigma.shape != y.shape:
        raise ValueError(f"{y.size} values but {sigma.size} standard errors")
    with np.errstate(invalid="ignore"):
        good = (
            np.isfinite(temperatures) & (temperatures > 0)
            & np.isfinite(y) & (y > 0)
            & np.isfinite(sigma) & (sigma > 0)
        )
    n = int(good.sum())
    excluded = int(y.size - n)
    nan = float("nan")
    if n < 2 or np.ptp(temperatures[good]) == 0:
        return ArrheniusFit(nan, nan, nan, nan, n, excluded)
    inverse_t = 1.0 / temperatures[good]
    ln_y = np.log(y[good])
    weights = (
        np.ones(n) if values_stderr is None else (y[good] / sigma[good]) ** 2
    )
    design = np.column_stack([np.ones(n), inverse_t])
    normal = design.T @ (weights[:, None] * design)
    intercept, slope = np.linalg.solve(normal, design.T @ (weights * ln_y))
    if n == 2:
        return ArrheniusFit(float(slope), float(intercept), nan, nan, n, excluded)
    residuals = ln_y - (intercept + slope * inverse_t)
    reduced_chi2 = float(np.sum(weights * residuals**2) / (n - 2))
    covariance = np.linalg.inv(normal) * reduced_chi2
    return ArrheniusFit(
        slope_k=float(slope),
        intercept=float(intercept),
        slope_stderr_k=float(np.sqrt(covariance[1, 1])),
        intercept_stderr=float(np.sqrt(covariance[0, 0])),
        points_used=n,
        points_excluded=excluded,
    )


@dataclass(frozen=True)
class ActivationEnergy:
    """E_A of the diffusion coefficient (kJ/mol) from an amplitude ∝ sqrt(D), and its fit."""

    kj_mol: float
    stderr_kj_mol: float
    fit: ArrheniusFit


def activation_energy_from_sqrt_d(
    temperatures_k: Sequence[float],
    amplitudes: Sequence[float],
    amplitudes_stderr: Sequence[float] | None = None,
) -> ActivationEnergy:
    """E_A = −2R·∂ ln a/∂(1/T) in kJ/mol, for an amplitude a ∝ sqrt(D(T)) (Eq. 2).

    Any unit of `amplitudes` works (only ln-differences enter). NaN when fewer than two
    usable points; NaN standard error with exactly two.
    """
    fit = fit_arrhenius(temperatures_k, amplitudes, amplitudes_stderr)
    factor_kj_mol_per_k = -2.0 * GAS_CONSTANT_J_PER_MOL_K / 1e3
    return ActivationEnergy(
        kj_mol=factor_kj_mol_per_k * fit.slope_k,
        stderr_kj_mol=abs(factor_kj_mol_per_k) * fit.slope_stderr_k,
        fit=fit,
    )
