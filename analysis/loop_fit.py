"""Hysteresis loops of ESM/PFM voltage spectroscopy, fitted all at once.

Model (Jesse et al., Rev. Sci. Instrum. 77, 073702 (2006); the parameterisation BGlib's
`loop_fit_function` uses). Each DC step belongs to the descending or the ascending branch (the
direction of the step that leaves it, so +A is on the descending and −A on the ascending
branch, as in BGlib). On either branch the response is

    R(V) = a0 + a1·y(V) + a4·V,
    y(V) = (b·erf((V − c)/b) + b_lo) / (b_lo + b_hi),   b = b_lo for V < c, b_hi for V ≥ c,

which rises smoothly from 0 far below c to 1 far above it, steepest at c, with width b_lo below
c and b_hi above it. The descending branch switches about c− (widths b0, b1), the ascending one
about c+ (widths b2, b3); a0 = R−, a0 + a1 = R+, a1 is the switchable response and a4 a linear
background. Parameter order (a0, a1, c−, c+, a4, b0, b1, b2, b3) is BGlib's coefficient vector.

Coercive voltages. BGlib reports the centres c± as V±. With unequal widths c is the bias of the
steepest slope, not of half switching (y(c) = b_lo/(b_lo + b_hi)), and it trades off against the
width ratio: on noisy loops it is uncertain by a good fraction of a width, while the bias where
the branch is half switched (y = ½, the response midway between R− and R+) is pinned by the
data. Here V± are those half-switched biases; they equal c± when b_lo = b_hi.

Method, all loops at once (numpy arrays over loops; Python loops only over iterations and over
blocks of `_BLOCK` loops):

1. Projection. Complex responses are rotated onto the principal axis of their points in the
   complex plane (largest variance), keeping the component along a line through the origin,
   signed so the response is larger at positive bias (positive covariance with V). A loop
   traversed counter-clockwise then has a positive area; an inverted loop a negative one.
   Real responses are used as given.
2. Start. Per branch, a grid over (c, b) of the symmetric switching curve with a free offset,
   step height and slope: for each grid point the design is the same for every loop, so the
   best grid point of all loops comes from one matrix product with the grids' orthonormal
   bases. a0, a1, a4 then follow from linear least squares with both branches joined.
3. Refinement. Levenberg–Marquardt with the analytic Jacobian, in coordinates where the fit is
   well conditioned: the half-switched biases V± instead of c± (c = V − g(b_lo, b_hi) in closed
   form) and log widths. Per-loop damping and stopping (a lightly damped accepted step that
   lowers the residual by < 2e-6 of it, i.e. ~1e-4 σ²); loops that stop leave the working
   set. The normal equations of the last accepted point are kept, so each iteration costs one
   model-and-Jacobian evaluation. Bounds by projection, parameters on a bound frozen while the
   gradient pushes them out: V± within the swept range, widths from a tenth of a DC step to
   the swept span, |a0|, |a1| ≤ 50 and |a4| ≤ 50/span in units of the loop's rms.
   The DC steps are sorted into the two branches once, so each branch is evaluated as a block.

Derived quantities are documented on `LoopFitResult`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf, erfinv

PARAMETER_NAMES = (
    "response_negative",  # a0 = R−, the response saturated at negative bias
    "switchable_response",  # a1 = R+ − R−
    "switching_centre_negative_v",  # c of the descending branch (BGlib's V−)
    "switching_centre_positive_v",  # c of the ascending branch (BGlib's V+)
    "slope_per_v",  # a4, linear background
    "width_descending_below_v",  # b0
    "width_descending_above_v",  # b1
    "width_ascending_below_v",  # b2
    "width_ascending_above_v",  # b3
)
NUCLEATION_FRACTION = 0.03  # a branch has nucleated once it has switched 3 % of a1
_N_PARAMETERS = 9
_BLOCK = 2048
_MAX_ITERATIONS = 200
# Converged: a lightly damped accepted step lowered the residual by less than this; 2e-6 of a
# residual of S − 9 ≈ 55 σ² is 1e-4 σ², parameter changes far below their standard errors.
_STEP_GAIN = 2.0e-6
_LAMBDA_START = 1.0e-3
_LAMBDA_GIVE_UP = 1.0e10
_LINEAR_BOUND = 50.0  # |a0|, |a1| in units of the loop's rms response
_GRID_CENTRES = 33
# the parameters each branch depends on: a0, a1, its centre, a4 and its two widths
_BRANCH_ROWS = (np.array([0, 1, 2, 4, 5, 6]), np.array([0, 1, 3, 4, 7, 8]))
_STRONG_EVIDENCE = 6.0  # ΔBIC above which the loop model is chosen (Kass & Raftery: "strong")
_TWO_OVER_SQRT_PI = 2.0 / np.sqrt(np.pi)


@dataclass(frozen=True)
class LoopFitResult:
    """Per-loop results; every field has the leading (loop) shape of the responses.

    * `coercive_voltage_negative_v`/`_positive_v`: V− and V+, the biases at which the
      descending and the ascending branch of the model are half switched (y = ½); their
      standard errors `coercive_voltage_*_error_v` (delta method, full covariance);
      `imprint_v` = (V− + V+)/2. BGlib's V± are the centres c±, in `parameters`.
    * `nucleation_bias_negative_v`: on the descending branch, the bias at which its switching
      curve y has fallen to 1 − 3 % (R has dropped by 3 % of a1 from R+, background aside);
      `nucleation_bias_positive_v`: on the ascending branch, where y has risen to 3 %. These
      are the onsets of switching, from the model in closed form.
    * `switchable_response` a1 (signed; R+ − R−), `response_negative`/`_positive` R−, R+.
    * `loop_area`: the signed area enclosed by the measured projected loop, −∮R dV by the
      trapezoid rule over the closed polygon of the DC steps (response units × V), positive
      for a counter-clockwise loop (descending branch above the ascending one). Not BGlib's
      "work of switching" |V+ − V−|·|a1|, which is a rectangle.
    * `r_squared` of the loop model against the projected loop.
    * `is_loop`: the switching model is preferred over a straight line R = α + βV by the
      Bayesian information criterion, BIC = S·ln(SSR/S) + k·ln S with k = 9 and 2, with strong
      evidence: `delta_bic` = BIC(line) − BIC(loop) > 6 (the 9-parameter model can fit a step
      to noise now and then; on noisy lines ΔBIC > 0 happens in ~0.05 % of them, > 6 not seen).
      It says the response switches, not that it is hysteretic: compare |V+ − V−| with its
      standard error for that.
    * `parameters`, `standard_errors` (…, 9) in `PARAMETER_NAMES` order, errors from the
      Jacobian at the optimum, σ²·(JᵀJ)⁻¹ with σ² = SSR/(S − 9); NaN where JᵀJ is singular.
    * `converged` False where the iterations ran out; `at_bound` where a parameter ended on a
      bound — a centre at the end of the sweep, a width as wide as the sweep, a0, a1 or a4 at
      their limits: typically an unsaturated loop or no switching at all. A width on its lower
      bound (a tenth of a DC step) only means switching too abrupt to resolve; not flagged.
    * `projected_loops` (…, S) the real loops fitted; `projection_angle_rad` the rotation.
    Loops with non-finite values give NaN everywhere and False flags.
    """

    parameters: np.ndarray
    standard_errors: np.ndarray
    coercive_voltage_negative_v: np.ndarray
    coercive_voltage_positive_v: np.ndarray
    coercive_voltage_negative_error_v: np.ndarray
    coercive_voltage_positive_error_v: np.ndarray
    imprint_v: np.ndarray
    nucleation_bias_negative_v: np.ndarray
    nucleation_bias_positive_v: np.ndarray
    switchable_response: np.ndarray
    response_negative: np.ndarray
    response_positive: np.ndarray
    loop_area: np.ndarray
    r_squared: np.ndarray
    is_loop: np.ndarray
    delta_bic: np.ndarray
    converged: np.ndarray
    at_bound: np.ndarray
    projected_loops: np.ndarray
    projection_angle_rad: np.ndarray

    def model(self, dc_voltages_v: np.ndarray) -> np.ndarray:
        """The fitted loops at the DC steps `dc_voltages_v` (one cycle), shape (…, S)."""
        return loop_model(dc_voltages_v, self.parameters)


def descending_steps(dc_voltages_v: np.ndarray) -> np.ndarray:
    """True for the DC steps on the descending branch: the step leaving them goes down.

    The cycle is taken as closed (the last step leads back to the first). A flat step takes the
    direction of the step before it.
    """
    v = np.asarray(dc_voltages_v, dtype=float)
    direction = np.sign(np.roll(v, -1) - v)
    if not np.any(direction):
        raise ValueError("dc_voltages_v is constant: there is no sweep to fit a loop to")
    first = int(np.flatnonzero(direction)[0])
    for index in range(first + 1, first + v.size):  # over the S steps, not over loops
        if direction[index % v.size] == 0:
            direction[index % v.size] = direction[(index - 1) % v.size]
    return direction < 0


def loop_model(dc_voltages_v: np.ndarray, parameters: np.ndarray) -> np.ndarray:
    """The 9-parameter loop at the DC steps of one cycle; parameters (…, 9) → (…, S)."""
    v = np.asarray(dc_voltages_v, dtype=float)
    theta = np.asarray(parameters, dtype=float)
    branches = _Branches.of(v)
    sorted_values = _evaluate(branches, theta.reshape(-1, _N_PARAMETERS), jacobian=False)
    values = np.empty_like(sorted_values)
    values[:, branches.order] = sorted_values
    return values.reshape((*theta.shape[:-1], v.size))


def project_loops(dc_voltages_v: np.ndarray, responses: np.ndarray):
    """Real loops from complex ones: the component along each loop's principal axis.

    Returns (projected (N, S), angle_rad (N,)); the projection of z is Re(z·exp(−iθ)), with θ
    the direction of largest variance, turned by π where needed so the projected response
    grows with bias (positive covariance with V).
    """
    v = np.asarray(dc_voltages_v, dtype=float)
    z = np.asarray(responses)
    if not np.iscomplexobj(z):
        return z.astype(float), np.zeros(z.shape[:-1])
    x, y = z.real, z.imag
    dx = x - x.mean(axis=-1, keepdims=True)
    dy = y - y.mean(axis=-1, keepdims=True)
    angle = 0.5 * np.arctan2(2.0 * np.mean(dx * dy, axis=-1),
                             np.mean(dx * dx, axis=-1) - np.mean(dy * dy, axis=-1))
    projected = x * np.cos(angle)[..., None] + y * np.sin(angle)[..., None]
    growth = np.mean((projected - projected.mean(axis=-1, keepdims=True)) * (v - v.mean()),
                     axis=-1)
    flip = growth < 0
    projected = np.where(flip[..., None], -projected, projected)
    angle = np.where(flip, angle + np.pi, angle)
    return projected, np.angle(np.exp(1j * angle))


def enclosed_area(dc_voltages_v: np.ndarray, loops: np.ndarray) -> np.ndarray:
    """Signed area −∮R dV of closed loops (trapezoids over every step, last back to first)."""
    v = np.asarray(dc_voltages_v, dtype=float)
    r = np.asarray(loops, dtype=float)
    dv = v - np.roll(v, -1)
    return np.sum(0.5 * (r + np.roll(r, -1, axis=-1)) * dv, axis=-1)


def fit_loops(dc_voltages_v: np.ndarray, responses: np.ndarray) -> LoopFitResult:
    """Fit the 9-parameter loop model to every loop in `responses` (…, S), real or complex.

    `dc_voltages_v` (S,) are the DC steps of one cycle, in the order measured; the cycle must
    both rise and fall, with at least 5 steps on each branch.
    """
    v = np.asarray(dc_voltages_v, dtype=float)
    data = np.asarray(responses)
    if v.ndim != 1 or not np.all(np.isfinite(v)):
        raise ValueError(f"dc_voltages_v must be one finite cycle (S,), got shape {v.shape}")
    if data.ndim < 1 or data.shape[-1] != v.size:
        raise ValueError(f"responses {data.shape} must end with the {v.size} DC steps")
    descending = descending_steps(v)
    if min(descending.sum(), (~descending).sum()) < 5:
        raise ValueError(
            f"dc_voltages_v has {descending.sum()} descending and {(~descending).sum()} "
            "ascending steps; a loop needs at least 5 on each branch")
    leading = data.shape[:-1]
    flat = data.reshape(-1, v.size)
    projected, angle = project_loops(v, flat)
    good = np.all(np.isfinite(projected), axis=-1)

    n = flat.shape[0]
    out = {name: np.full(n, np.nan) for name in _SCALAR_FIELDS}
    parameters = np.full((n, _N_PARAMETERS), np.nan)
    errors = np.full((n, _N_PARAMETERS), np.nan)
    flags = {name: np.zeros(n, dtype=bool) for name in ("is_loop", "converged", "at_bound")}
    context = _FitContext.build(v)
    for start in range(0, n, _BLOCK):  # blocks of loops, for memory; no loop over loops
        rows = np.flatnonzero(good[start:start + _BLOCK]) + start
        if rows.size:
            block = _fit_block(context, projected[rows][:, context.branches.order])
            parameters[rows], errors[rows] = block.pop("parameters"), block.pop("errors")
            for name in flags:
                flags[name][rows] = block.pop(name)
            for name, values in block.items():
                out[name][rows] = values
    projected = np.where(good[:, None], projected, np.nan)
    area = enclosed_area(v, projected)
    p = parameters
    coercive_negative = switched_bias(0.5, p[:, 2], p[:, 5], p[:, 6])
    coercive_positive = switched_bias(0.5, p[:, 3], p[:, 7], p[:, 8])
    nucleation_negative = switched_bias(1.0 - NUCLEATION_FRACTION, p[:, 2], p[:, 5], p[:, 6])
    nucleation_positive = switched_bias(NUCLEATION_FRACTION, p[:, 3], p[:, 7], p[:, 8])

    def shaped(values: np.ndarray) -> np.ndarray:
        return values.reshape(leading + values.shape[1:])

    return LoopFitResult(
        parameters=shaped(parameters),
        standard_errors=shaped(errors),
        coercive_voltage_negative_v=shaped(coercive_negative),
        coercive_voltage_positive_v=shaped(coercive_positive),
        coercive_voltage_negative_error_v=shaped(out["coercive_negative_error"]),
        coercive_voltage_positive_error_v=shaped(out["coercive_positive_error"]),
        imprint_v=shaped(0.5 * (coercive_negative + coercive_positive)),
        nucleation_bias_negative_v=shaped(nucleation_negative),
        nucleation_bias_positive_v=shaped(nucleation_positive),
        switchable_response=shaped(parameters[:, 1]),
        response_negative=shaped(parameters[:, 0]),
        response_positive=shaped(parameters[:, 0] + parameters[:, 1]),
        loop_area=shaped(area),
        r_squared=shaped(out["r_squared"]),
        is_loop=shaped(flags["is_loop"]),
        delta_bic=shaped(out["delta_bic"]),
        converged=shaped(flags["converged"]),
        at_bound=shaped(flags["at_bound"]),
        projected_loops=shaped(projected),
        projection_angle_rad=shaped(np.where(good, angle, np.nan)),
    )


_SCALAR_FIELDS = ("r_squared", "delta_bic", "coercive_negative_error", "coercive_positive_error")


def switching_curve(v, centre_v, width_below_v, width_above_v):
    """The branch's switching fraction y(V), 0 far below the centre and 1 far above it."""
    x = np.asarray(v, dtype=float) - centre_v
    below = x < 0.0
    w = np.where(below, width_below_v, width_above_v)
    return (w * erf(x / w) + width_below_v) / (width_below_v + width_above_v)


def switched_bias(fraction, centre_v, width_below_v, width_above_v):
    """The bias at which a branch's switching curve y reaches `fraction` (0 < fraction < 1)."""
    total = width_below_v + width_above_v
    below = fraction * total < width_below_v
    with np.errstate(invalid="ignore", divide="ignore"):
        v_below = centre_v + width_below_v * erfinv(fraction * total / width_below_v - 1.0)
        v_above = centre_v + width_above_v * erfinv((fraction * total - width_below_v)
                                                    / width_above_v)
    return np.where(below, v_below, v_above)


def _half_offset(w_lo: np.ndarray, w_hi: np.ndarray):
    """g = V(y = ½) − c of a branch, and its derivatives in w_lo and w_hi (closed form)."""
    wider_below = w_hi <= w_lo
    w = np.where(wider_below, w_lo, w_hi)
    z = erfinv((w_hi - w_lo) / (2.0 * w))
    slope = 0.5 * np.sqrt(np.pi) * np.exp(z * z)  # d erfinv(q) / dq
    dg_dlo = np.where(wider_below, z - slope * w_hi / (2.0 * w_lo), -0.5 * slope)
    dg_dhi = np.where(wider_below, 0.5 * slope, z + slope * w_lo / (2.0 * w_hi))
    return w * z, dg_dlo, dg_dhi


@dataclass(frozen=True)
class _Branches:
    """The DC steps sorted into the descending block, then the ascending one."""

    order: np.ndarray  # sorted position k holds DC step order[k]
    v_descending: np.ndarray
    v_ascending: np.ndarray

    @classmethod
    def of(cls, v: np.ndarray) -> _Branches:
        descending = descending_steps(v)
        order = np.concatenate([np.flatnonzero(descending), np.flatnonzero(~descending)])
        return cls(order=order, v_descending=v[descending], v_ascending=v[~descending])

    @property
    def v_sorted(self) -> np.ndarray:
        return np.concatenate([self.v_descending, self.v_ascending])


def _evaluate(branches: _Branches, theta: np.ndarray, *, jacobian: bool,
              internal: bool = False):
    """Model (n, S) on the sorted steps and, if asked, its Jacobian per branch.

    The Jacobian comes as two blocks (n, 6, S_branch), one per branch, over the parameters
    that branch depends on (`_BRANCH_ROWS`): the other three columns are zero there.

    `internal` parameters replace the centres by the half-switched biases and the widths by
    their logarithms: the fit's coordinates, in which c no longer slides along the width ratio.
    """
    widths = np.exp(theta[:, 5:]) if internal else theta[:, 5:]
    a0, a1, a4 = theta[:, 0:1], theta[:, 1:2], theta[:, 4:5]
    n_down = branches.v_descending.size
    model = np.empty((theta.shape[0], n_down + branches.v_ascending.size))
    jac = []
    blocks = ((slice(0, n_down), branches.v_descending, 2, 5),
              (slice(n_down, None), branches.v_ascending, 3, 7))
    for part, v, centre_col, width_col in blocks:  # the two branches
        w_lo = widths[:, width_col - 5:width_col - 4]
        w_hi = widths[:, width_col - 4:width_col - 3]
        centre = theta[:, centre_col:centre_col + 1]
        if internal:
            offset, dg_dlo, dg_dhi = _half_offset(w_lo, w_hi)
            centre = centre - offset
        x = v - centre
        below = x < 0.0
        w = w_hi + below * (w_lo - w_hi)  # arithmetic select: faster than np.where here
        u = x / w
        e = erf(u)
        total = w_lo + w_hi
        y = (w * e + w_lo) / total
        model[:, part] = a0 + a1 * y + a4 * v
        if not jacobian:
            continue
        gauss = _TWO_OVER_SQRT_PI * np.exp(-u * u)
        dnum_dw = e - u * gauss
        scale = a1 / total
        d_centre = -gauss * scale
        below_part = below * dnum_dw  # the width in use is w_lo below c, w_hi above
        d_lo = (below_part + 1.0 - y) * scale
        d_hi = (dnum_dw - below_part - y) * scale
        if internal:  # c = m − g(w_lo, w_hi), and w = exp(s)
            d_lo = (d_lo - d_centre * dg_dlo) * w_lo
            d_hi = (d_hi - d_centre * dg_dhi) * w_hi
        block = np.empty((theta.shape[0], 6, v.size))  # rows as in _BRANCH_ROWS
        block[:, 0] = 1.0
        block[:, 1] = y
        block[:, 2] = d_centre
        block[:, 3] = v
        block[:, 4] = d_lo
        block[:, 5] = d_hi
        jac.append(block)
    return (model, jac) if jacobian else model


def _to_natural(theta: np.ndarray) -> np.ndarray:
    """Internal (half-switched biases, log widths) → BGlib's parameters (centres, widths)."""
    natural = theta.copy()
    natural[:, 5:] = np.exp(theta[:, 5:])
    natural[:, 2] -= _half_offset(natural[:, 5], natural[:, 6])[0]
    natural[:, 3] -= _half_offset(natural[:, 7], natural[:, 8])[0]
    return natural


@dataclass(frozen=True)
class _FitContext:
    """What depends on the DC steps only: branches, bounds (volts) and the start grids."""

    branches: _Branches
    v_min: float
    v_max: float
    span_v: float
    width_min_v: float
    grid_centres_v: np.ndarray  # (K,)
    grid_widths_v: np.ndarray  # (K,)
    grid_bases: tuple[np.ndarray, np.ndarray]  # per branch (S_branch, 3K) orthonormal bases

    @classmethod
    def build(cls, v: np.ndarray) -> _FitContext:
        branches = _Branches.of(v)
        v_min, v_max = float(v.min()), float(v.max())
        span = v_max - v_min
        steps = np.abs(np.diff(v))
        step = float(np.median(steps[steps > 0]))
        centres = np.linspace(v_min, v_max, _GRID_CENTRES)[1:-1]
        widths = np.geomspace(0.5 * step, 0.125 * span, 3)
        grid_c, grid_w = (g.ravel() for g in np.meshgrid(centres, widths, indexing="ij"))
        bases = tuple(_grid_basis(vb, grid_c, grid_w)
                      for vb in (branches.v_descending, branches.v_ascending))
        return cls(branches=branches, v_min=v_min, v_max=v_max, span_v=span,
                   width_min_v=0.1 * step, grid_centres_v=grid_c, grid_widths_v=grid_w,
                   grid_bases=bases)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the internal parameters (normalised response, half-switched V, ln width)."""
        slope = _LINEAR_BOUND / self.span_v
        log_w = (np.log(self.width_min_v), np.log(self.span_v))
        lower = np.array([-_LINEAR_BOUND, -_LINEAR_BOUND, self.v_min, self.v_min, -slope]
                         + [log_w[0]] * 4)
        upper = np.array([_LINEAR_BOUND, _LINEAR_BOUND, self.v_max, self.v_max, slope]
                         + [log_w[1]] * 4)
        return lower, upper


def _grid_basis(v_branch: np.ndarray, centres: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Orthonormal bases of span{1, y(V; c, b), V} for every grid point, as (S_b, 3K)."""
    y = 0.5 * (1.0 + erf((v_branch[None, :] - centres[:, None]) / widths[:, None]))
    design = np.stack([np.ones_like(y), y, np.broadcast_to(v_branch, y.shape)], axis=-1)
    u, s, _ = np.linalg.svd(design, full_matrices=False)  # (K, S_b, 3)
    u = u * (s > 1e-9 * s[:, :1])[:, None, :]  # rank-deficient grid points lose a column
    return u.transpose(1, 0, 2).reshape(v_branch.size, -1)


def _start(context: _FitContext, loops: np.ndarray) -> np.ndarray:
    """Internal starting parameters (n, 9): best grid point per branch, then a0, a1, a4."""
    branches = context.branches
    n, n_down = loops.shape[0], branches.v_descending.size
    n_grid = context.grid_centres_v.size
    centre = np.empty((n, 2))
    width = np.empty((n, 2))
    for branch, part in enumerate((slice(0, n_down), slice(n_down, None))):
        captured = (loops[:, part] @ context.grid_bases[branch]) ** 2
        best = np.argmax(captured.reshape(n, n_grid, 3).sum(axis=-1), axis=1)
        centre[:, branch] = context.grid_centres_v[best]
        width[:, branch] = context.grid_widths_v[best]
    v = branches.v_sorted
    on_down = np.arange(v.size) < n_down
    c = np.where(on_down, centre[:, :1], centre[:, 1:])
    w = np.where(on_down, width[:, :1], width[:, 1:])
    y = 0.5 * (1.0 + erf((v - c) / w))
    design = np.stack([np.ones_like(y), y, np.broadcast_to(v, y.shape)], axis=-1)
    normal = design.transpose(0, 2, 1) @ design + 1e-9 * np.eye(3)
    linear = np.linalg.solve(normal, (design.transpose(0, 2, 1) @ loops[..., None]))[..., 0]
    theta = np.empty((n, _N_PARAMETERS))
    theta[:, 0], theta[:, 1], theta[:, 4] = linear[:, 0], linear[:, 1], linear[:, 2]
    theta[:, 2], theta[:, 3] = centre[:, 0], centre[:, 1]  # symmetric: centre = half-switched
    theta[:, 5:7] = np.log(width[:, :1])
    theta[:, 7:9] = np.log(width[:, 1:])
    lower, upper = context.bounds()
    return np.clip(theta, lower, upper)


def _normal_equations(jac: list[np.ndarray], residual: np.ndarray):
    """JᵀJ (n, 9, 9) and Jᵀr (n, 9) from the branch Jacobians and the residual (n, S)."""
    n, n_down = residual.shape[0], jac[0].shape[2]
    normal = np.zeros((n, _N_PARAMETERS, _N_PARAMETERS))
    gradient = np.zeros((n, _N_PARAMETERS))
    for block, rows, part in zip(jac, _BRANCH_ROWS, (slice(0, n_down), slice(n_down, None)),
                                 strict=True):
        normal[:, rows[:, None], rows[None, :]] += block @ block.transpose(0, 2, 1)
        gradient[:, rows] += (block @ residual[:, part, None])[..., 0]
    return normal, gradient


def _levenberg_marquardt(context: _FitContext, loops: np.ndarray, theta: np.ndarray):
    """Refine internal `theta` (n, 9); returns (theta, converged, JᵀJ and SSR at the end)."""
    lower, upper = context.bounds()
    n = loops.shape[0]
    model, jac = _evaluate(context.branches, theta, jacobian=True, internal=True)
    residual = model - loops
    cost = np.einsum("ns,ns->n", residual, residual)
    normal, gradient = _normal_equations(jac, residual)
    del model, jac
    damping = np.full(n, _LAMBDA_START)
    converged = np.zeros(n, dtype=bool)
    active = np.arange(n)
    eye = np.eye(_N_PARAMETERS, dtype=bool)
    for _ in range(_MAX_ITERATIONS):
        if active.size == 0:
            break
        th, g = theta[active], gradient[active]
        frozen = ((th <= lower) & (g > 0)) | ((th >= upper) & (g < 0))
        keep = ~frozen
        a = normal[active] * (keep[:, :, None] & keep[:, None, :])
        g = g * keep
        diagonal = np.diagonal(a, axis1=1, axis2=2)
        floor = 1e-12 * np.maximum(diagonal.max(axis=1, keepdims=True), 1e-300)
        diagonal = np.maximum(diagonal, floor)
        damped = a + eye * (damping[active, None] * diagonal + frozen)[:, None, :]
        step = -np.linalg.solve(damped, g[..., None])[..., 0]
        candidate = np.clip(th + step, lower, upper)
        trial, trial_jac = _evaluate(context.branches, candidate, jacobian=True, internal=True)
        trial -= loops[active]
        trial_cost = np.einsum("ns,ns->n", trial, trial)
        old_cost = cost[active]
        better = trial_cost < old_cost
        moved = active[better]
        theta[moved], cost[moved] = candidate[better], trial_cost[better]
        normal[moved], gradient[moved] = _normal_equations([j[better] for j in trial_jac],
                                                           trial[better])
        gain = (old_cost - trial_cost) / np.maximum(old_cost, 1e-300)
        settled = better & (gain < _STEP_GAIN) & (damping[active] <= 1.0)
        damping[active] = np.where(better, np.maximum(damping[active] * 0.3, 1e-12),
                                   damping[active] * 10.0)
        done = settled | (damping[active] > _LAMBDA_GIVE_UP)
        done |= old_cost <= 1e-28 * loops.shape[1]
        converged[active[done]] = True
        active = active[~done]
    return theta, converged, normal, cost


def _fit_block(context: _FitContext, projected: np.ndarray) -> dict[str, np.ndarray]:
    """Fit one block of real loops (n, S) on the sorted steps; results in natural units."""
    n_steps = projected.shape[1]
    centre = projected.mean(axis=1, keepdims=True)
    scale = projected.std(axis=1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    loops = (projected - centre) / scale

    theta = _start(context, loops)
    theta, converged, normal, ssr = _levenberg_marquardt(context, loops, theta)
    lower, upper = context.bounds()
    # A width on its lower bound is abrupt switching, not a failure: it is not flagged.
    on_bound = (theta <= lower) | (theta >= upper)
    at_bound = np.any(on_bound[:, :5], axis=1) | np.any(theta[:, 5:] >= upper[5:], axis=1)

    natural = _to_natural(theta)
    sst = np.einsum("ns,ns->n", loops, loops)  # loops are centred
    variance = ssr / (n_steps - _N_PARAMETERS)
    # parameters on a bound are held fixed (zero error); the others' errors are conditional.
    # The half-switched biases are fit parameters; the natural covariance is T·C·Tᵀ with T
    # the Jacobian of internal → natural, which is what (J_natᵀ J_nat)⁻¹ gives exactly.
    internal = variance[:, None, None] * _inverse(normal, on_bound)
    coercive_errors = np.sqrt(np.diagonal(internal, axis1=1, axis2=2)[:, 2:4])
    transform = _natural_transform(natural)
    covariance = transform @ internal @ transform.transpose(0, 2, 1)
    errors = np.sqrt(np.diagonal(covariance, axis1=1, axis2=2))

    v = context.branches.v_sorted
    line = np.stack([np.ones(n_steps), v - v.mean()], axis=1)
    basis, _ = np.linalg.qr(line)
    line_ssr = sst - np.sum((loops @ basis) ** 2, axis=1)
    tiny = 1e-30 * np.maximum(sst, 1e-300)
    bic_loop = n_steps * np.log(np.maximum(ssr, tiny) / n_steps) + 9 * np.log(n_steps)
    bic_line = n_steps * np.log(np.maximum(line_ssr, tiny) / n_steps) + 2 * np.log(n_steps)

    s = scale[:, 0]
    natural[:, 0] = natural[:, 0] * s + centre[:, 0]
    natural[:, 1] *= s
    natural[:, 4] *= s
    errors[:, [0, 1, 4]] *= s[:, None]
    return {
        "parameters": natural,
        "errors": errors,
        "r_squared": 1.0 - ssr / np.where(sst > 0, sst, np.nan),
        "delta_bic": bic_line - bic_loop,
        "coercive_negative_error": coercive_errors[:, 0],
        "coercive_positive_error": coercive_errors[:, 1],
        "is_loop": bic_line - bic_loop > _STRONG_EVIDENCE,
        "converged": converged,
        "at_bound": at_bound,
    }


def _natural_transform(natural: np.ndarray) -> np.ndarray:
    """∂(natural parameters)/∂(internal parameters), (n, 9, 9)."""
    transform = np.zeros((natural.shape[0], _N_PARAMETERS, _N_PARAMETERS))
    transform[:, np.arange(5), np.arange(5)] = 1.0
    transform[:, np.arange(5, 9), np.arange(5, 9)] = natural[:, 5:]  # w = exp(s)
    for centre, lo, hi in ((2, 5, 6), (3, 7, 8)):  # c = m − g(w_lo, w_hi)
        _, dg_dlo, dg_dhi = _half_offset(natural[:, lo], natural[:, hi])
        transform[:, centre, lo] = -dg_dlo * natural[:, lo]
        transform[:, centre, hi] = -dg_dhi * natural[:, hi]
    return transform


def _inverse(normal: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Inverses of symmetric (n, 9, 9) matrices over the free parameters (`fixed` (n, 9) get
    zero rows and columns); NaN where the free block is singular relative to its largest value.
    """
    free = ~fixed
    pair = free[:, :, None] & free[:, None, :]
    scale = np.sqrt(np.where(free, np.diagonal(normal, axis1=1, axis2=2), 1.0))
    scale = np.where(scale > 0, scale, 1.0)
    scaled = np.where(pair, normal / (scale[:, :, None] * scale[:, None, :]), 0.0)
    scaled = scaled + np.eye(normal.shape[1]) * fixed[:, None, :]
    values, vectors = np.linalg.eigh(scaled)  # unit diagonal: conditioning, not units, decides
    singular = values[:, 0] <= 1e-12 * values[:, -1]
    safe = np.where(singular[:, None], 1.0, values)
    inverse = (vectors / safe[:, None, :]) @ vectors.transpose(0, 2, 1)
    inverse = np.where(pair, inverse, 0.0) / (scale[:, :, None] * scale[:, None, :])
    inverse[singular] = np.nan
    return inverse
