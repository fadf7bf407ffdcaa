"""Bounded least-squares fits of sums of Voigt peaks to many EELS spectra at once.

Model, per spectrum i (energies in meV, spectra in any intensity unit per meV):

    y_i(E) = Σ_k A_ik · V(E − c_ik; σ_ik, γ_ik)

V is the area-normalised Voigt profile (Gaussian σ convolved with Lorentzian HWHM γ), so the
amplitude A is the peak's area: with y in counts per meV, A is counts. V is evaluated exactly
through the Faddeeva function w(z) (`scipy.special.wofz`), V = Re w(z) / (σ√(2π)) with
z = (x + iγ)/(σ√2); its derivatives follow from the same w, since w′(z) = −2z·w + 2i/√π, so
the Jacobian is analytic and costs one w per point.

Each of a peak's four parameters is `fixed` (a given value per spectrum), `free` (one value
per spectrum) or `shared` (one value tied across all the spectra of a group: e.g. widths tied
along a line scan). Spectra of one group are coupled only through their shared parameters,
so the normal matrix is block-arrow shaped: a small block per spectrum plus one block of the
shared parameters. It is solved by eliminating the per-spectrum blocks (Schur complement),
all spectra at once with batched linear algebra — no per-spectrum Python loop.

Method: Levenberg–Marquardt with Marquardt (diagonal) scaling, one damping factor per group,
Nielsen's gain-ratio update; box bounds by projection (the step is clipped into the box, and a
parameter on a bound whose gradient points out of the box is held there for that step).
Residuals are weighted by 1/variance (Poisson: the counts). Errors come from the undamped
normal matrix at the optimum, inverted as a whole per group (so shared and per-spectrum
parameters carry their correlations), times the group's reduced χ².
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import wofz

PARAMETERS = ("amplitude", "centre_mev", "sigma_mev", "gamma_mev")
FREE, SHARED, FIXED = "free", "shared", "fixed"
_MODES = (FREE, SHARED, FIXED)
_SQRT2 = np.sqrt(2.0)
_SQRT2PI = np.sqrt(2.0 * np.pi)
_SQRTPI = np.sqrt(np.pi)
_FTOL = 1e-12  # converged: reductions below this, relative to χ² + number of points
_XTOL = 1e-12  # converged: a scaled step below this, relative to the scaled parameters
_RCOND = 1e-12  # pseudo-inverse cut-off on the unit-diagonal (Jacobi-scaled) normal matrix
_BOUND_TOL = 1e-9  # "at a bound": within this fraction of the box (or of 1 + |bound|)


def voigt_profile_and_derivatives(
    x_mev: np.ndarray, sigma_mev: np.ndarray, gamma_mev: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """V(x; σ, γ) and ∂V/∂x, ∂V/∂σ, ∂V/∂γ (arguments broadcast), from one Faddeeva call."""
    sigma = np.asarray(sigma_mev, dtype=float)
    z = (np.asarray(x_mev, dtype=float) + 1j * np.asarray(gamma_mev, dtype=float)) / (
        sigma * _SQRT2
    )
    w = wofz(z)
    dw = -2.0 * z * w + 2j / _SQRTPI
    profile = w.real / (sigma * _SQRT2PI)
    d_dx = dw.real / (2.0 * _SQRTPI * sigma**2)
    d_dgamma = -dw.imag / (2.0 * _SQRTPI * sigma**2)
    d_dsigma = -profile / sigma - (dw * z).real / (_SQRT2PI * sigma**2)
    return profile, d_dx, d_dsigma, d_dgamma


def voigt_fwhm_mev(sigma_mev: np.ndarray | float, gamma_mev: np.ndarray | float) -> np.ndarray:
    """FWHM of a Voigt profile (Olivero–Longbothum, accurate to 0.02 %)."""
    f_lorentz = 2.0 * np.asarray(gamma_mev, dtype=float)
    f_gauss = 2.0 * np.sqrt(2.0 * np.log(2.0)) * np.asarray(sigma_mev, dtype=float)
    return 0.5346 * f_lorentz + np.sqrt(0.2166 * f_lorentz**2 + f_gauss**2)


@dataclass(frozen=True)
class VoigtPeak:
    """One peak of the model: initial (or fixed) values, box bounds and modes, in the order
    of `PARAMETERS` (amplitude, centre, σ, γ). Values may be per-spectrum arrays (M,); a
    shared parameter starts from the mean over its group.

    With `amplitude_relative_to` naming another (untied) peak, this peak's amplitude is
    ρ·A_that, and `amplitude`, its bounds and mode are those of the ratio ρ: fixed (e.g. a
    ratio known from the aloof spectrum), shared (one ratio along the line) or free. Results
    report the resulting amplitude, its error by the delta method.
    """

    name: str
    amplitude: float | np.ndarray
    centre_mev: float | np.ndarray
    sigma_mev: float | np.ndarray
    gamma_mev: float | np.ndarray
    lower: tuple[float, float, float, float] = (0.0, -np.inf, 1e-3, 0.0)
    upper: tuple[float, float, float, float] = (np.inf, np.inf, np.inf, np.inf)
    modes: tuple[str, str, str, str] = (FREE, FREE, FREE, FREE)
    amplitude_relative_to: str | None = None

    def values(self) -> tuple:
        return (self.amplitude, self.centre_mev, self.sigma_mev, self.gamma_mev)


@dataclass(frozen=True)
class PowerLawTerm:
    """An optional background fitted with the peaks, for the ZLP tail (whose two-window
    estimate otherwise biases them):

        B · ((E² + w²) / (E_ref² + w²))^(−r/2)

    a power law (w = 0, the default, fixed) or one with a soft core w — exactly a Lorentzian
    wing for r = 2, w = its HWHM, and a better description of a monochromated ZLP tail close
    to the ZLP. B is the level at E_ref. Values may be per-spectrum arrays; modes and bounds
    are for (B, r, w); a free w should not start at 0, where its gradient vanishes."""

    amplitude: float | np.ndarray
    exponent: float | np.ndarray
    core_mev: float | np.ndarray = 0.0
    reference_energy_mev: float = 50.0
    lower: tuple[float, float, float] = (0.0, 0.0, 0.0)
    upper: tuple[float, float, float] = (np.inf, 10.0, 50.0)
    modes: tuple[str, str, str] = (FREE, FREE, FIXED)


BACKGROUND = "background"
"""The name under which a `PowerLawTerm` appears in `VoigtFit.covariance`."""
BACKGROUND_PARAMETERS = ("amplitude", "exponent", "core_mev")


@dataclass(frozen=True)
class VoigtFit:
    """Result for M spectra of K peaks; arrays (M, K, 4) are indexed like `PARAMETERS`.

    `stderr` is 0 for fixed parameters and NaN where the data do not determine a parameter
    (e.g. the centre of a peak whose area went to 0). `at_bound` flags parameters that ended
    on a bound: their errors describe the local curvature only, not a confidence interval.
    `reduced_chi_square` is per spectrum, χ²_i / (N_i − p_i) with p_i its free parameters;
    `group_reduced_chi_square` is that of the spectrum's group (shared parameters counted
    once), the factor the covariance was scaled by. With a `PowerLawTerm`, `background`
    (M, 3) holds its (B, r, w), with `background_stderr` and `background_at_bound`. Tied
    amplitudes are reported as amplitudes; their ratios are in `amplitude_ratio`.
    """

    peak_names: tuple[str, ...]
    modes: tuple[tuple[str, ...], ...]
    values: np.ndarray
    stderr: np.ndarray
    at_bound: np.ndarray
    chi_square: np.ndarray
    points: np.ndarray
    reduced_chi_square: np.ndarray
    group_reduced_chi_square: np.ndarray
    groups: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    warnings: tuple[str, ...] = ()
    background: np.ndarray | None = None
    background_stderr: np.ndarray | None = None
    background_at_bound: np.ndarray | None = None
    background_reference_energy_mev: float = 50.0
    amplitude_ratio: dict[str, np.ndarray] = field(default_factory=dict)
    amplitude_ratio_stderr: dict[str, np.ndarray] = field(default_factory=dict)
    _covariance_parts: dict = field(default_factory=dict, repr=False, compare=False)

    def index(self, peak: str) -> int:
        return self.peak_names.index(peak)

    def value(self, peak: str, parameter: str) -> np.ndarray:
        """(M,) values of one parameter of one peak."""
        return self.values[:, self.index(peak), PARAMETERS.index(parameter)]

    def error(self, peak: str, parameter: str) -> np.ndarray:
        """(M,) standard errors of one parameter of one peak."""
        return self.stderr[:, self.index(peak), PARAMETERS.index(parameter)]

    def bound_hit(self, peak: str, parameter: str) -> np.ndarray:
        return self.at_bound[:, self.index(peak), PARAMETERS.index(parameter)]

    @property
    def fwhm_mev(self) -> np.ndarray:
        """(M, K) full widths at half maximum."""
        return voigt_fwhm_mev(self.values[..., 2], self.values[..., 3])

    def peak_profiles(self, energy_mev: np.ndarray) -> np.ndarray:
        """(M, K, N) each peak's contribution on `energy_mev` ((N,) or (M, N))."""
        e = _energies(energy_mev, self.values.shape[0])
        v = self.values
        profile = voigt_profile_and_derivatives(
            e[:, None, :] - v[:, :, 1, None], v[:, :, 2, None], v[:, :, 3, None]
        )[0]
        return v[:, :, 0, None] * profile

    def background_model(self, energy_mev: np.ndarray) -> np.ndarray:
        """(M, N) the fitted power-law background (0 without one)."""
        e = _energies(energy_mev, self.values.shape[0])
        if self.background is None:
            return np.zeros_like(e)
        b = self.background
        return b[:, :1] * _power(e, self.background_reference_energy_mev, b[:, 1:2], b[:, 2:3])

    def model(self, energy_mev: np.ndarray) -> np.ndarray:
        """(M, N) the fitted spectra (peaks plus any background)."""
        return self.peak_profiles(energy_mev).sum(axis=1) + self.background_model(energy_mev)

    def covariance(self, items: Sequence[tuple[int, str, str]]) -> np.ndarray:
        """Covariance matrix of the listed (spectrum, peak, parameter) entries, scaled by the
        group reduced χ²; entries of different groups are uncorrelated, fixed ones are 0.
        The background is peak `BACKGROUND` with `BACKGROUND_PARAMETERS`; a
        tied amplitude's entry is that of its ratio ρ."""
        parts = self._covariance_parts
        n = len(items)
        out = np.zeros((n, n))
        keys = []
        k = len(self.peak_names)
        for spectrum, peak, parameter in items:
            if peak == BACKGROUND:
                flat = 4 * k + BACKGROUND_PARAMETERS.index(parameter)
            else:
                flat = self.index(peak) * 4 + PARAMETERS.index(parameter)
            keys.append((int(spectrum), flat))
        free_pos = parts["free_position"]
        shared_pos = parts["shared_position"]
        for a, (i, fa) in enumerate(keys):
            for b, (j, fb) in enumerate(keys):
                if self.groups[i] != self.groups[j]:
                    continue
                out[a, b] = _covariance_entry(parts, i, fa, j, fb, free_pos, shared_pos)
        return out


def _covariance_entry(parts, i, fa, j, fb, free_pos, shared_pos) -> float:
    """One covariance entry from the block-arrow pieces (see `_covariance`)."""
    if i == j:
        return float(parts["per_spectrum"][i, fa, fb])
    scale = parts["scale"][i]
    g = parts["group_of"][i]
    if fa in free_pos and fb in free_pos:
        a, b = free_pos[fa], free_pos[fb]
        return float(scale * parts["g_u"][i, a] @ parts["s_inv"][g] @ parts["g_u"][j, b])
    if fa in shared_pos and fb in shared_pos:
        return float(scale * parts["s_inv"][g][shared_pos[fa], shared_pos[fb]])
    if fa in free_pos and fb in shared_pos:
        return float(-scale * parts["g_u"][i, free_pos[fa]] @ parts["s_inv"][g][:, shared_pos[fb]])
    if fa in shared_pos and fb in free_pos:
        return float(-scale * parts["g_u"][j, free_pos[fb]] @ parts["s_inv"][g][:, shared_pos[fa]])
    return 0.0


def fit_voigt_peaks(
    energy_mev: np.ndarray,
    spectra: np.ndarray,
    peaks: Sequence[VoigtPeak],
    *,
    variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    background: PowerLawTerm | None = None,
    max_iterations: int = 300,
) -> VoigtFit:
    """Fit `peaks` to every spectrum of `spectra` (M, N) on `energy_mev` ((N,) or (M, N)).

    `variance` (M, N) weights the residuals (default: Poisson, max(|y|, 1), for counts);
    `mask` (M, N) selects the channels fitted (default: all finite ones). `groups` (M,) labels
    which spectra share their `shared` parameters (default: all spectra form one group if
    any parameter is shared, else every spectrum is fitted on its own). `background` adds a
    power law fitted together with the peaks (energies of fitted channels must be > 0).
    Initial values outside their box are clipped into it, with a note in `warnings`.
    """
    y = np.atleast_2d(np.asarray(spectra, dtype=float))
    m = y.shape[0]
    e = _energies(energy_mev, m)
    if e.shape != y.shape:
        raise ValueError(f"energy_mev must be (N,) or (M, N) like spectra {y.shape}")
    layout = _Layout(peaks, m, background)
    weight = _weights(y, variance, mask)
    y = np.where(weight > 0, y, 0.0)
    if groups is None:  # shared parameters tie all spectra; otherwise each is on its own
        group = np.zeros(m, dtype=int) if layout.shared.size else np.arange(m)
    else:
        group = np.asarray(groups).reshape(m)
    _, group = np.unique(group, return_inverse=True)
    order = np.argsort(group, kind="stable")
    problem = _Problem(layout, e[order], y[order], weight[order], group[order])
    problem.run(max_iterations)
    return problem.result(np.argsort(order))


def _energies(energy_mev, m) -> np.ndarray:
    e = np.asarray(energy_mev, dtype=float)
    return np.broadcast_to(e, (m, e.shape[-1])) if e.ndim == 1 else e


def _effective_amplitudes(t, tie):
    """(m, K) amplitudes, ρ·A_ref for the tied peaks (whose slot holds ρ)."""
    amp = t[:, :, 0].copy()
    tied = np.flatnonzero(tie >= 0)
    amp[:, tied] = t[:, tied, 0] * t[:, tie[tied], 0]
    return amp


def _core_ratio(e, reference, core):
    """u = (E² + w²)/(E_ref² + w²)."""
    w2 = np.square(core)
    return (np.square(e) + w2) / (reference**2 + w2)


def _power(e, reference, exponent, core):
    """u^(−r/2), 0 at E ≤ 0 (such channels are never fitted with a background)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = _core_ratio(e, reference, core)
        return np.where(e > 0, np.power(u, -0.5 * exponent), 0.0)


def _weights(y, variance, mask) -> np.ndarray:
    var = np.maximum(np.abs(y), 1.0) if variance is None else np.asarray(variance, dtype=float)
    var = np.broadcast_to(var, y.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where((var > 0) & np.isfinite(var) & np.isfinite(y), 1.0 / var, 0.0)
    if mask is not None:
        w = np.where(np.broadcast_to(mask, y.shape), w, 0.0)
    return w


class _Layout:
    """Where each (peak, parameter) lives: free columns, shared columns or fixed values."""

    def __init__(self, peaks: Sequence[VoigtPeak], m: int, background: PowerLawTerm | None):
        if not peaks:
            raise ValueError("at least one peak is needed")
        self.names = tuple(p.name for p in peaks)
        if len(set(self.names)) != len(self.names):
            raise ValueError("peak names must be unique")
        self.k = len(peaks)
        self.modes = tuple(tuple(p.modes) for p in peaks)
        for name, modes in zip(self.names, self.modes, strict=True):
            if len(modes) != 4 or any(mode not in _MODES for mode in modes):
                raise ValueError(f"peak {name}: modes must be 4 of {_MODES}")
        self.tie = np.full(self.k, -1)
        for k, peak in enumerate(peaks):
            if peak.amplitude_relative_to is None:
                continue
            if peak.amplitude_relative_to not in self.names:
                raise ValueError(f"peak {peak.name}: no peak {peak.amplitude_relative_to!r}")
            ref = self.names.index(peak.amplitude_relative_to)
            if ref == k or peaks[ref].amplitude_relative_to is not None:
                raise ValueError(f"peak {peak.name}: must be tied to an untied other peak")
            self.tie[k] = ref
        self.lower = np.array([p.lower for p in peaks], dtype=float)
        self.upper = np.array([p.upper for p in peaks], dtype=float)
        if np.any(self.lower > self.upper):
            raise ValueError("a lower bound is above its upper bound")
        if np.any(self.lower[:, 2] <= 0) or np.any(self.lower[:, 3] < 0):
            raise ValueError("σ needs a positive lower bound and γ a non-negative one")
        initial = np.stack(
            [np.stack([np.broadcast_to(np.asarray(v, float), (m,)) for v in p.values()], -1)
             for p in peaks], axis=1)  # (M, K, 4)
        flat_modes = [mode for modes in self.modes for mode in modes]
        labels = [f"{name}: initial {par}" for name in self.names for par in PARAMETERS]
        initial = initial.reshape(m, -1)
        lo, hi = self.lower.reshape(-1), self.upper.reshape(-1)
        self.background = background
        if background is not None:
            if any(mode not in _MODES for mode in background.modes) or len(background.modes) != 3:
                raise ValueError(f"background modes must be 3 of {_MODES}")
            start = np.stack([np.broadcast_to(np.asarray(v, float), (m,)) for v in
                              (background.amplitude, background.exponent, background.core_mev)],
                             -1)
            initial = np.concatenate([initial, start], axis=1)
            lo = np.r_[lo, background.lower]
            hi = np.r_[hi, background.upper]
            flat_modes += list(background.modes)
            labels += [f"background: initial {name}" for name in BACKGROUND_PARAMETERS]
        clipped = np.clip(initial, lo, hi)
        self.warnings = tuple(
            f"{label} outside [{lo[f]:g}, {hi[f]:g}], clipped into it"
            for f, label in enumerate(labels) if np.any(clipped[:, f] != initial[:, f])
        )
        self.initial = clipped
        self.n_flat = clipped.shape[1]
        self.free = np.array([f for f, mode in enumerate(flat_modes) if mode == FREE], dtype=int)
        self.shared = np.array([f for f, mode in enumerate(flat_modes) if mode == SHARED],
                               dtype=int)
        # Peaks whose shape (centre, σ, γ) is fixed: their profile is computed once.
        self.fixed_shape = np.array([all(mode == FIXED for mode in modes[1:])
                                     for modes in self.modes])
        self.lo_flat, self.hi_flat = lo, hi


class _Problem:
    """The LM iteration over spectra sorted by group (groups are contiguous)."""

    def __init__(self, layout: _Layout, e, y, w, group):
        self.lay = layout
        self.e, self.y, self.w, self.sqrt_w = e, y, w, np.sqrt(w)
        self.group = group
        self.m = y.shape[0]
        self.n_groups = int(group.max()) + 1 if self.m else 0
        self.theta = layout.initial.copy()  # (M, 4K [+ 2]), spectra sorted
        if layout.shared.size:
            means = np.stack([np.bincount(group, self.theta[:, f]) for f in layout.shared], -1)
            means /= np.bincount(group)[:, None]
            self.theta[:, layout.shared] = means[group]
        fixed_k = np.flatnonzero(layout.fixed_shape)
        t = self.theta[:, : 4 * layout.k].reshape(self.m, layout.k, 4)
        self.fixed_profiles = voigt_profile_and_derivatives(
            e[:, None, :] - t[:, fixed_k, 1, None], t[:, fixed_k, 2, None], t[:, fixed_k, 3, None]
        )[0] if fixed_k.size else None
        self.points = np.count_nonzero(w > 0, axis=1)
        self.iterations = np.zeros(self.m, dtype=int)
        self.converged = np.zeros(self.m, dtype=bool)

    # -- model ---------------------------------------------------------------------------
    def evaluate(self, rows, theta):
        """Weighted residuals r (m, N), Jacobians of the free (m, p, N) and shared (m, s, N)
        columns of the weighted model, for the spectra `rows` at parameters `theta` (m, 4K)."""
        lay = self.lay
        t = theta[:, : 4 * lay.k].reshape(-1, lay.k, 4)
        amp = _effective_amplitudes(t, lay.tie)
        e = self.e[rows]
        var_k = np.flatnonzero(~lay.fixed_shape)
        model = np.zeros_like(e)
        derivs = {}
        if var_k.size:
            profile, d_dx, d_ds, d_dg = voigt_profile_and_derivatives(
                e[:, None, :] - t[:, var_k, 1, None], t[:, var_k, 2, None], t[:, var_k, 3, None]
            )
            model += np.einsum("mk,mkn->mn", amp[:, var_k], profile)
            for slot, k in enumerate(var_k):
                derivs[k] = (profile[:, slot], d_dx[:, slot], d_ds[:, slot], d_dg[:, slot])
        if self.fixed_profiles is not None:
            fixed_k = np.flatnonzero(lay.fixed_shape)
            fp = self.fixed_profiles[rows]
            model += np.einsum("mk,mkn->mn", amp[:, fixed_k], fp)
            for slot, k in enumerate(fixed_k):
                derivs[k] = (fp[:, slot], None, None, None)
        if lay.background is not None:
            ref = lay.background.reference_energy_mev
            level, exponent, core = (theta[:, 4 * lay.k + j, None] for j in range(3))
            power = _power(e, ref, exponent, core)
            model += level * power
            u = _core_ratio(np.where(e > 0, e, ref), ref, core)
            w2 = np.square(core)
            du_dw = 2.0 * core * (ref**2 - np.square(e)) / (ref**2 + w2) ** 2
            derivs[lay.k] = (power, -0.5 * np.log(u) * level * power,
                             -0.5 * exponent * level * power / u * du_dw)
        sw = self.sqrt_w[rows]

        def columns(flat_indices):
            out = np.empty((len(rows), flat_indices.size, e.shape[1]))
            for c, f in enumerate(flat_indices):
                k, j = divmod(int(f), 4)
                d = derivs[k]
                if k == lay.k:  # the background: (B, r)
                    out[:, c] = d[j]
                elif j == 0 and lay.tie[k] >= 0:  # the ratio ρ of a tied amplitude
                    out[:, c] = t[:, lay.tie[k], 0, None] * d[0]
                elif j == 0:  # an amplitude, and through it the peaks tied to it
                    out[:, c] = d[0]
                    for tied in np.flatnonzero(lay.tie == k):
                        out[:, c] += t[:, tied, 0, None] * derivs[tied][0]
                else:
                    sign = -1.0 if j == 1 else 1.0  # ∂/∂c = −∂/∂x
                    out[:, c] = sign * amp[:, k, None] * d[j]
            out *= sw[:, None, :]
            return out

        r = (self.y[rows] - model) * sw
        return r, columns(lay.free), columns(lay.shared)

    # -- iteration -----------------------------------------------------------------------
    def run(self, max_iterations):
        """Iterate until every group has converged, stalled or used `max_iterations`.

        The residuals and Jacobians are kept for all spectra and replaced where a step is
        accepted; each iteration works on the spectra of the groups still live."""
        lay = self.lay
        every = np.arange(self.m)
        r, jf, js = self.evaluate(every, self.theta)
        self.cost = 0.5 * np.einsum("mn,mn->m", r, r)
        lam = np.full(self.n_groups, 1e-3)
        nu = np.full(self.n_groups, 2.0)
        live = np.ones(self.n_groups, dtype=bool)
        for _ in range(max_iterations):
            rows = np.flatnonzero(live[self.group])
            if rows.size == 0:
                break
            sub = _local_groups(self.group[rows])
            here = self.group[rows][sub.starts]  # group ids, one per local group
            theta = self.theta[rows]
            rr, jfr, jsr = r[rows], jf[rows], js[rows]
            step = self._step(theta, rr, jfr, jsr, sub, lam[here])
            trial = np.clip(theta + step, lay.lo_flat, lay.hi_flat)
            pred = self._predicted(trial - theta, rr, jfr, jsr, sub)
            cost_g = _group_sum(self.cost[rows], sub)
            points_g = _group_sum(self.points[rows].astype(float), sub)
            relative = np.max(np.abs(trial - theta) / (np.abs(theta) + 1e-300), axis=1)
            tiny_step = np.maximum.reduceat(relative, sub.starts) <= _XTOL
            # Converged: the best step cannot lower χ² measurably, or does not move.
            done = ((pred >= 0) & (pred <= _FTOL * (cost_g + points_g))) | tiny_step
            self.converged[rows[done[sub.label]]] = True
            live[here[done]] = False
            # A step that clipping at the bounds turned uphill is refused unevaluated.
            uphill = (pred < 0) & ~done
            lam[here[uphill]] *= nu[here[uphill]]
            nu[here[uphill]] *= 2.0
            try_g = ~(done | uphill)
            if np.any(try_g):
                pick = try_g[sub.label]
                rows_t = rows[pick]
                sub_t = _local_groups(self.group[rows_t])
                g_t = here[try_g]
                r_new, jf_new, js_new = self.evaluate(rows_t, trial[pick])
                cost_new = 0.5 * np.einsum("mn,mn->m", r_new, r_new)
                self.iterations[rows_t] += 1
                old_g = cost_g[try_g]
                new_g = _group_sum(cost_new, sub_t)
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    rho = (old_g - new_g) / pred[try_g]
                    shrink = np.maximum(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                accept = new_g < old_g
                lam[g_t] = np.where(accept, lam[g_t] * shrink, lam[g_t] * nu[g_t])
                nu[g_t] = np.where(accept, 2.0, nu[g_t] * 2.0)
                acc = accept[sub_t.label]
                upd = rows_t[acc]
                self.theta[upd] = trial[pick][acc]
                self.cost[upd] = cost_new[acc]
                r[upd], jf[upd], js[upd] = r_new[acc], jf_new[acc], js_new[acc]
            # Damping beyond any use: the group sits at a minimum to numerical precision.
            stalled = live & (lam > 1e16)
            live &= ~stalled
            self.converged[stalled[self.group]] = True
        self._final = self.evaluate(np.arange(self.m), self.theta)

    def _normal(self, r, jf, js):
        a = np.matmul(jf, jf.transpose(0, 2, 1))
        b = np.matmul(jf, js.transpose(0, 2, 1))
        c = np.matmul(js, js.transpose(0, 2, 1))
        g = np.einsum("mpn,mn->mp", jf, r)
        h = np.einsum("msn,mn->ms", js, r)
        return a, b, c, g, h

    def _step(self, theta, r, jf, js, sub, lam_g):
        """Damped, scaled block-arrow solve with the active bounds (and undetermined
        parameters) held; returns the step (m, 4K)."""
        lay = self.lay
        a, b, c, g, h = self._normal(r, jf, js)
        s = lay.shared.size
        lam_rows = lam_g[sub.label]
        # Active bounds: on a bound with the descent direction (+gradient) pointing out.
        act_u = _active(theta[:, lay.free], g, lay.lo_flat[lay.free], lay.hi_flat[lay.free])
        act_u |= np.einsum("mii->mi", a) <= 0
        h_g = _group_sum(h, sub) if s else np.zeros((sub.count, 0))
        c_g = _group_sum(c, sub) if s else np.zeros((sub.count, 0, 0))
        v_rows = theta[sub.starts][:, lay.shared]
        act_v = _active(v_rows, h_g, lay.lo_flat[lay.shared], lay.hi_flat[lay.shared])
        act_v |= np.einsum("gii->gi", c_g) <= 0
        du = _diag_scale(a)
        dv = _diag_scale(c_g)
        keep_u = (~act_u).astype(float)
        keep_v = (~act_v).astype(float)
        a_s = a / (du[:, :, None] * du[:, None, :]) * keep_u[:, :, None] * keep_u[:, None, :]
        a_s += _eye_batch(np.where(act_u, 1.0, lam_rows[:, None]))
        g_s = g / du * keep_u
        dv_rows = dv[sub.label]
        keep_v_rows = keep_v[sub.label]
        b_s = b / (du[:, :, None] * dv_rows[:, None, :]) * keep_u[:, :, None] \
            * keep_v_rows[:, None, :]
        c_s = c_g / (dv[:, :, None] * dv[:, None, :]) * keep_v[:, :, None] * keep_v[:, None, :]
        c_s += _eye_batch(np.where(act_v, 1.0, lam_g[:, None]))
        h_s = h_g / dv * keep_v
        du_step, dv_step = _block_arrow_solve(a_s, b_s, c_s, g_s, h_s, sub)
        step = np.zeros_like(theta)
        step[:, lay.free] = du_step / du
        if s:
            step[:, lay.shared] = (dv_step / dv)[sub.label]
        return step

    def _predicted(self, step, r, jf, js, sub):
        """χ²/2 reduction the linear model predicts for `step`, per group."""
        lay = self.lay
        su = step[:, lay.free]
        sv = step[:, lay.shared]
        # J·step in residual space: (m, N)
        lin = np.einsum("mpn,mp->mn", jf, su) + np.einsum("msn,ms->mn", js, sv)
        # The shared step is counted once per spectrum in `lin`, as it should be.
        per_row = np.einsum("mn,mn->m", lin, r) - 0.5 * np.einsum("mn,mn->m", lin, lin)
        return _group_sum(per_row, sub)

    # -- result --------------------------------------------------------------------------
    def result(self, unsort):
        lay = self.lay
        r, jf, js = self._final
        sub = _local_groups(self.group)
        chi2 = np.einsum("mn,mn->m", r, r)
        p, s = lay.free.size, lay.shared.size
        dof_rows = self.points - p
        with np.errstate(divide="ignore", invalid="ignore"):
            redchi = chi2 / dof_rows
            group_dof = _group_sum(dof_rows.astype(float), sub) - s
            group_red = _group_sum(chi2, sub) / group_dof
        group_red = np.where(group_dof > 0, group_red, np.nan)
        scale_rows = group_red[sub.label]
        parts = _covariance(self._normal(r, jf, js), sub)
        nf = lay.n_flat
        cov = np.zeros((self.m, nf, nf))  # per spectrum, over all its parameters, scaled
        fr, sh = lay.free, lay.shared
        cov[:, fr[:, None], fr[None, :]] = parts["cov_uu"]
        if s:
            s_rows = parts["s_inv"][sub.label]
            cross = -np.matmul(parts["g_u"], s_rows)
            cov[:, fr[:, None], sh[None, :]] = cross
            cov[:, sh[:, None], fr[None, :]] = cross.transpose(0, 2, 1)
            cov[:, sh[:, None], sh[None, :]] = s_rows
        cov *= scale_rows[:, None, None]
        var = np.einsum("mff->mf", cov).copy()
        dead = np.zeros((self.m, nf), dtype=bool)
        dead[:, fr] = parts["dead_u"]
        if s:
            dead[:, sh] = parts["dead_v"][sub.label]
        theta = self.theta.copy()
        ratio, ratio_var = {}, {}
        for k in np.flatnonzero(lay.tie >= 0):  # delta method for A = ρ·A_ref
            fk, fa = 4 * k, 4 * lay.tie[k]
            rho, a_ref = theta[:, fk].copy(), theta[:, fa]
            ratio[lay.names[k]], ratio_var[lay.names[k]] = rho, var[:, fk].copy()
            var[:, fk] = (a_ref**2 * var[:, fk] + rho**2 * var[:, fa]
                          + 2 * rho * a_ref * cov[:, fk, fa])
            theta[:, fk] = rho * a_ref
            dead[:, fk] |= dead[:, fa]
        with np.errstate(invalid="ignore"):
            stderr = np.sqrt(np.maximum(var, 0.0))
        stderr[dead] = np.nan
        with np.errstate(invalid="ignore"):
            box = lay.hi_flat - lay.lo_flat
        width = np.where(np.isfinite(box), box, 0.0)
        tol_lo = _BOUND_TOL * np.where(width > 0, width, 1.0 + np.abs(lay.lo_flat))
        tol_hi = _BOUND_TOL * np.where(width > 0, width, 1.0 + np.abs(lay.hi_flat))
        with np.errstate(invalid="ignore"):
            at_bound = (np.isfinite(lay.lo_flat) & (self.theta <= lay.lo_flat + tol_lo)) | (
                np.isfinite(lay.hi_flat) & (self.theta >= lay.hi_flat - tol_hi))
        fixed = np.ones(nf, dtype=bool)
        fixed[lay.free] = False
        fixed[lay.shared] = False
        at_bound &= ~fixed
        free_position = {int(f): c for c, f in enumerate(lay.free)}
        shared_position = {int(f): c for c, f in enumerate(lay.shared)}
        cov_parts = {
            "per_spectrum": cov[unsort],
            "a_inv": parts["a_inv"][unsort], "g_u": parts["g_u"][unsort],
            "s_inv": parts["s_inv"], "group_of": self.group[unsort],
            "scale": scale_rows[unsort], "free_position": free_position,
            "shared_position": shared_position,
        }
        shape = (self.m, lay.k, 4)
        theta, stderr, at_bound = theta[unsort], stderr[unsort], at_bound[unsort]
        kk = 4 * lay.k
        bg = {}
        if lay.background is not None:
            bg = dict(background=theta[:, kk:], background_stderr=stderr[:, kk:],
                      background_at_bound=at_bound[:, kk:],
                      background_reference_energy_mev=lay.background.reference_energy_mev)
        return VoigtFit(
            peak_names=lay.names, modes=lay.modes,
            values=theta[:, :kk].reshape(shape), stderr=stderr[:, :kk].reshape(shape),
            at_bound=at_bound[:, :kk].reshape(shape), chi_square=chi2[unsort],
            points=self.points[unsort], reduced_chi_square=redchi[unsort],
            group_reduced_chi_square=scale_rows[unsort], groups=self.group[unsort],
            converged=self.converged[unsort], iterations=self.iterations[unsort],
            warnings=lay.warnings, _covariance_parts=cov_parts,
            amplitude_ratio={k: v[unsort] for k, v in ratio.items()},
            amplitude_ratio_stderr={k: np.sqrt(v[unsort]) for k, v in ratio_var.items()}, **bg,
        )


@dataclass(frozen=True)
class _Groups:
    """Contiguous groups of a sorted label array: start offsets and a local label per row."""

    starts: np.ndarray
    label: np.ndarray
    count: int


def _local_groups(group_sorted) -> _Groups:
    change = np.r_[True, group_sorted[1:] != group_sorted[:-1]]
    starts = np.flatnonzero(change)
    return _Groups(starts, np.cumsum(change) - 1, starts.size)


def _group_sum(x, sub: _Groups):
    return np.add.reduceat(x, sub.starts, axis=0) if x.shape[0] else x


def _active(theta, grad, lo, hi):
    """Parameters on a bound whose descent direction (+grad) leaves the box."""
    return ((theta <= lo) & (grad <= 0)) | ((theta >= hi) & (grad >= 0))


def _diag_scale(mat):
    """Jacobi scales √diag, 1 where the diagonal vanishes (an undetermined parameter)."""
    if mat.shape[-1] == 0:
        return np.ones(mat.shape[:-1])
    d = np.sqrt(np.maximum(np.einsum("...ii->...i", mat), 0.0))
    return np.where(d > 0, d, 1.0)


def _eye_batch(diag):
    out = np.zeros(diag.shape + diag.shape[-1:])
    idx = np.arange(diag.shape[-1])
    out[..., idx, idx] = diag
    return out


def _block_arrow_solve(a, b, c, g, h, sub):
    """Solve [[A_i, B_i], [B_iᵀ, C_g]] [u_i; v_g] = [g_i; h_g] for all spectra and groups."""
    p, s = a.shape[-1], c.shape[-1]
    if s == 0:
        return (_solve(a, g[..., None])[..., 0] if p else g), h
    if p == 0:
        return g, _solve(c, h[..., None])[..., 0]
    rhs = np.concatenate([g[..., None], b], axis=-1)
    sol = _solve(a, rhs)  # A⁻¹[g, B]
    a_inv_g, a_inv_b = sol[..., 0], sol[..., 1:]
    schur = c - _group_sum(np.matmul(b.transpose(0, 2, 1), a_inv_b), sub)
    rhs_v = h - _group_sum(np.einsum("mps,mp->ms", b, a_inv_g), sub)
    dv = _solve(schur, rhs_v[..., None])[..., 0]
    du = a_inv_g - np.einsum("mps,ms->mp", a_inv_b, dv[sub.label])
    return du, dv


def _solve(a, b):
    """Batched solve; a (numerically) singular system falls back to the pseudo-inverse."""
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.matmul(np.linalg.pinv(a, rtol=_RCOND, hermitian=True), b)


def _covariance(normal, sub):
    """Pieces of the inverse of the undamped block-arrow normal matrix (unscaled units).

    With A_i, B_i, C_g and G_i = A_i⁻¹B_i, S_g = C_g − Σ B_iᵀG_i:
    cov(u_i, u_j) = δ_ij A_i⁻¹ + G_i S⁻¹ G_jᵀ, cov(u_i, v) = −G_i S⁻¹, cov(v, v) = S⁻¹.
    """
    a, b, c, _, _ = normal
    p, s = a.shape[-1], c.shape[-1]
    m = a.shape[0]
    c_g = _group_sum(c, sub) if s else np.zeros((sub.count, 0, 0))
    du = _diag_scale(a)
    dead_u = np.einsum("mii->mi", a) <= 0 if p else np.zeros((m, 0), dtype=bool)
    a_s = a / (du[:, :, None] * du[:, None, :])
    a_inv_s = np.linalg.pinv(a_s, rtol=_RCOND, hermitian=True) if p else a_s
    a_inv = a_inv_s / (du[:, :, None] * du[:, None, :])
    if s:
        g_u = np.matmul(a_inv, b)  # (m, p, s)
        schur = c_g - _group_sum(np.matmul(b.transpose(0, 2, 1), g_u), sub)
        sc = _diag_scale(schur)
        dead_v = np.einsum("gii->gi", c_g) <= 0
        s_inv = np.linalg.pinv(schur / (sc[:, :, None] * sc[:, None, :]), rtol=_RCOND,
                               hermitian=True) / (sc[:, :, None] * sc[:, None, :])
        cov_uu = a_inv + np.matmul(np.matmul(g_u, s_inv[sub.label]), g_u.transpose(0, 2, 1))
    else:
        g_u = np.zeros((m, p, 0))
        s_inv = np.zeros((sub.count, 0, 0))
        dead_v = np.zeros((sub.count, 0), dtype=bool)
        cov_uu = a_inv
    return {"a_inv": a_inv, "g_u": g_u, "s_inv": s_inv, "cov_uu": cov_uu,
            "dead_u": dead_u, "dead_v": dead_v}
