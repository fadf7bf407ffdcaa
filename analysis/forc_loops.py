"""FORC loops: loop area against peak bias, and the threshold V_c where it departs from zero.

A point's FORC sweep is cut into its FORC cycles (peak V_p,k); the loop of cycle k is the
mean of its repeats after the first (the first starts from the previous peak's state). The
complex responses of all the point's loops are projected on one principal axis (one sign
for the whole point: `project_loops` on the concatenated cycles), and each loop's signed area
−∮R dV is taken over its closed polygon of DC steps (`enclosed_area`).

Threshold estimator. Below V_c nothing switches and the area is zero (noise); above it the
area grows as κ·(V_p − V_c). The hinge A(V_p) = κ·max(0, V_p − V_c) is fitted to the areas of
all FORC cycles by least squares, V_c on a grid of `_GRID_STEPS_PER_FORC_STEP` candidates per
FORC step from one step below the first peak to the last peak, κ in closed form for each
(Σ h·A / Σ h², h = max(0, V_p − V_c)). The result is reported with its resolution: one FORC
step (the spacing of the peaks), the bracket [last peak ≤ V_c, first peak > V_c] being what
the measurement itself resolves; the hinge fit interpolates inside it. A point needs at least
two peaks above V_c and κ > 0 for a threshold (else NaN). Vectorised over points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .loop_fit import enclosed_area, project_loops

_GRID_STEPS_PER_FORC_STEP = 200


@dataclass(frozen=True)
class ForcLoops:
    """Per point: the projected loops (points, forc cycles, steps) and their areas."""

    dc_bias_v: np.ndarray  # (forc cycles, steps per cycle)
    loops: np.ndarray  # (points, forc cycles, steps per cycle), projected, real
    areas_pm_v: np.ndarray  # (points, forc cycles)


@dataclass(frozen=True)
class ForcThreshold:
    """The hinge fit per point; NaN where no threshold was found."""

    threshold_v: np.ndarray
    area_slope_pm: np.ndarray  # κ, pm·V of area per V of peak bias
    bracket_low_v: np.ndarray  # last peak at or below V_c
    bracket_high_v: np.ndarray  # first peak above V_c
    residual_rms_pm_v: np.ndarray
    forc_step_v: float


def cycle_loops(responses: np.ndarray, forc_cycles: int, cycles_per_forc: int) -> np.ndarray:
    """(points, steps) complex responses → (points, forc cycles, steps per cycle), each the
    mean of its repeats after the first (the only one if there is one). NaN counts as 0."""
    z = np.asarray(responses)
    z = np.where(np.isfinite(z), z, 0.0)
    z = z.reshape(z.shape[0], forc_cycles, cycles_per_forc, -1)
    return z[:, :, 1:].mean(axis=2) if cycles_per_forc > 1 else z[:, :, 0]


def forc_loops(dc_bias_v: np.ndarray, responses: np.ndarray, forc_cycles: int,
               cycles_per_forc: int) -> ForcLoops:
    """Projected loops and areas of every point's FORC cycles.

    `dc_bias_v` (steps,) every write step of the sweep; `responses` (points, steps) complex.
    """
    dc = np.asarray(dc_bias_v, dtype=float).reshape(forc_cycles, cycles_per_forc, -1)[:, 0]
    loops = cycle_loops(responses, forc_cycles, cycles_per_forc)
    points, steps = loops.shape[0], dc.shape[1]
    projected, _ = project_loops(dc.ravel(), loops.reshape(points, -1))
    projected = projected.reshape(points, forc_cycles, steps)
    areas = np.stack([enclosed_area(dc[k], projected[:, k]) for k in range(forc_cycles)],
                     axis=1)
    return ForcLoops(dc_bias_v=dc, loops=projected, areas_pm_v=areas)


def fit_threshold(peak_v: np.ndarray, areas_pm_v: np.ndarray) -> ForcThreshold:
    """Hinge fit A = κ·max(0, V_p − V_c) of the areas (points, forc cycles) at `peak_v`."""
    peaks = np.asarray(peak_v, dtype=float)
    areas = np.asarray(areas_pm_v, dtype=float)
    step_v = float(np.median(np.diff(peaks))) if peaks.size > 1 else float("nan")
    candidates = np.linspace(peaks[0] - step_v, peaks[-1],
                             _GRID_STEPS_PER_FORC_STEP * (peaks.size) + 1)
    hinge = np.maximum(0.0, peaks[None, :] - candidates[:, None])  # (candidates, peaks)
    hh = np.sum(hinge**2, axis=1)  # (candidates,)
    ha = areas @ hinge.T  # (points, candidates)
    with np.errstate(invalid="ignore", divide="ignore"):
        ssr = np.sum(areas**2, axis=1)[:, None] - np.where(hh > 0, ha**2 / hh, 0.0)
        slope = np.where(hh > 0, ha / hh, 0.0)
    ssr = np.where(slope > 0, ssr, np.inf)  # an area that falls with V_p is no threshold
    best = np.argmin(ssr, axis=1)
    rows = np.arange(areas.shape[0])
    threshold = candidates[best]
    kappa = slope[rows, best]
    above = np.sum(peaks[None, :] > threshold[:, None], axis=1)
    found = np.isfinite(ssr[rows, best]) & (kappa > 0) & (above >= 2) & np.all(
        np.isfinite(areas), axis=1)
    dof = max(peaks.size - 2, 1)
    residual = np.sqrt(np.maximum(ssr[rows, best], 0.0) / dof)
    low_index = np.searchsorted(peaks, threshold, side="right") - 1
    bracket_low = np.where(low_index >= 0, peaks[np.clip(low_index, 0, None)], np.nan)
    bracket_high = peaks[np.clip(low_index + 1, 0, peaks.size - 1)]

    def masked(values):
        return np.where(found, values, np.nan)

    return ForcThreshold(
        threshold_v=masked(threshold), area_slope_pm=masked(kappa),
        bracket_low_v=masked(bracket_low), bracket_high_v=masked(bracket_high),
        residual_rms_pm_v=masked(residual), forc_step_v=step_v)
