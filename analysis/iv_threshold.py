"""Switching thresholds and loop areas of hysteretic c-AFM I–V curves. Pure numpy.

Below its threshold the ionic state under the tip holds, so at a bias level |V| < V_th the
descending and the ascending branch of one polarity differ only by their frozen states and
by the displacement current, which flips sign with the sweep direction:

    s(|V|) = ±(I_desc(V) − I_asc(V)) = ΔG·|V| ∓ 2·C·|dV/dt|       (|V| < V_th)

(the rectifying term is the same on both branches and cancels). Once the sweep passes V_th
the ascending (set, V > 0) or descending (reset, V < 0) branch switches and s falls back to
the displacement term. The threshold is where s leaves its line: a two-segment least-squares
split over the levels, moved down while the level below it has already switched by more than
`SWITCHED_FRACTION` of ΔG·|V| (and by 5σ of the line's residuals); V_th is taken midway
between the last level that held and the first that switched, so it is good to half a step.
The line's intercepts of both polarities give C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .loop_fit import descending_steps, enclosed_area

SWITCHED_FRACTION = 0.1
MIN_LINE_LEVELS = 3
NOISE_MARGIN = 5.0


@dataclass(frozen=True)
class BranchThreshold:
    threshold_v: float  # signed: + for set, − for reset; NaN if none within the sweep
    slope_s: float  # ΔG of the held states (S)
    intercept_a: float  # ∓ 2·C·|dV/dt|
    levels_v: np.ndarray  # |V| of the matched levels
    signal_a: np.ndarray  # s(|V|)


def cycle_mean(current_a: np.ndarray, cycles: int) -> np.ndarray:
    """One cycle (S,), the mean over cycles 2..n (all if one): the first starts fresh."""
    z = np.asarray(current_a, dtype=float).reshape(cycles, -1)
    return z[1:].mean(axis=0) if cycles > 1 else z[0]


def branch_signal(bias_v: np.ndarray, current_a: np.ndarray, polarity: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(|V| levels sorted, s at each) for one polarity, levels both branches visit."""
    v = np.asarray(bias_v, dtype=float)
    i = np.asarray(current_a, dtype=float)
    descending = descending_steps(v)
    side = polarity * v > 1e-12
    keys_down = {round(float(x), 9): k for k, x in enumerate(v) if side[k] and descending[k]}
    pairs = [(abs(float(v[k])), keys_down[round(float(v[k]), 9)], k)
             for k in range(v.size) if side[k] and not descending[k]
             and round(float(v[k]), 9) in keys_down]
    pairs.sort()
    levels = np.array([p[0] for p in pairs])
    signal = np.array([polarity * (i[d] - i[a]) for _, d, a in pairs])
    return levels, signal


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    design = np.stack([np.ones_like(x), x], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    return coefficients, float(residual @ residual)


def _switched(x: np.ndarray, y: np.ndarray, k: int) -> bool:
    """Has level k left the line of the levels below it?"""
    (intercept, slope), cost = _line(x[:k], y[:k])
    sigma = np.sqrt(cost / max(k - 2, 1))
    drop = intercept + slope * x[k] - y[k]
    return bool(slope > 0 and drop > SWITCHED_FRACTION * slope * x[k]
                and drop > NOISE_MARGIN * sigma)


def branch_threshold(bias_v: np.ndarray, current_a: np.ndarray, polarity: int
                     ) -> BranchThreshold:
    x, y = branch_signal(bias_v, current_a, polarity)
    nan = BranchThreshold(float("nan"), float("nan"), float("nan"), x, y)
    if x.size < MIN_LINE_LEVELS + 1:
        return nan
    costs = []
    for k in range(MIN_LINE_LEVELS, x.size):
        cost = _line(x[:k], y[:k])[1]
        if x.size - k >= 2:
            cost += _line(x[k:], y[k:])[1]
        costs.append(cost)
    k = MIN_LINE_LEVELS + int(np.argmin(costs))
    if not _switched(x, y, k):
        return BranchThreshold(float("nan"), *_line(x, y)[0][::-1], x, y)
    while k - 1 >= MIN_LINE_LEVELS and _switched(x, y, k - 1):
        k -= 1
    (intercept, slope), _ = _line(x[:k], y[:k])
    return BranchThreshold(polarity * 0.5 * (x[k - 1] + x[k]), float(slope), float(intercept),
                           x, y)


def capacitive_current_a(bias_v: np.ndarray, capacitance_f: float, sweep_rate_v_per_s: float
                         ) -> np.ndarray:
    """±C·|dV/dt| at each step, signed by the step arriving at it (the cycle closed)."""
    v = np.asarray(bias_v, dtype=float)
    return capacitance_f * sweep_rate_v_per_s * np.sign(v - np.roll(v, 1))


def lobe_area_a_v(bias_v: np.ndarray, current_a: np.ndarray) -> float:
    """The hysteresis of a pinched (memristive) loop: its two lobes turn opposite ways, so
    their signed areas cancel in ∮ I dV; here each lobe's area counts positive."""
    total = 0.0
    for polarity in (+1, -1):
        levels, signal = branch_signal(bias_v, current_a, polarity)
        if levels.size:
            x, y = np.concatenate([[0.0], levels]), np.concatenate([[0.0], signal])
            total += abs(float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x))))
    return total


@dataclass(frozen=True)
class IvAnalysis:
    set_threshold_v: float
    reset_threshold_v: float
    switched_conductance_s: float  # ΔG, mean of both polarities
    stray_capacitance_f: float
    loop_area_a_v: float  # −∮ I dV of the measured cycle (signed; C·dV/dt included)
    lobe_area_a_v: float  # both lobes' |∫(I_desc − I_asc) d|V||, C·dV/dt removed
    conduction_current_a: np.ndarray


def analyse_iv(bias_v: np.ndarray, current_a: np.ndarray, sweep_rate_v_per_s: float
               ) -> IvAnalysis:
    """Thresholds, ΔG, C and loop areas of one cycle."""
    positive = branch_threshold(bias_v, current_a, +1)
    negative = branch_threshold(bias_v, current_a, -1)
    # intercepts: −2C·r (set side), +2C·r (reset side)
    intercepts = [(-positive.intercept_a), negative.intercept_a]
    finite = [value for value in intercepts if np.isfinite(value)]
    capacitance = float(np.mean(finite)) / (2 * sweep_rate_v_per_s) if finite else float("nan")
    conduction = np.asarray(current_a, dtype=float) - (
        capacitive_current_a(bias_v, capacitance, sweep_rate_v_per_s)
        if np.isfinite(capacitance) else 0.0)
    slopes = [s for s in (positive.slope_s, negative.slope_s) if np.isfinite(s)]
    return IvAnalysis(
        set_threshold_v=positive.threshold_v, reset_threshold_v=negative.threshold_v,
        switched_conductance_s=float(np.mean(slopes)) if slopes else float("nan"),
        stray_capacitance_f=capacitance,
        loop_area_a_v=float(enclosed_area(bias_v, current_a)),
        lobe_area_a_v=lobe_area_a_v(bias_v, conduction),
        conduction_current_a=conduction)
