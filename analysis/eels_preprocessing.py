"""Preparing EELS line-scan spectra for peak fitting: energy zero, background, normalisation,
and the two scalar profiles read from other passes, t/λ (valence loss) and Li:Co (core loss).

Every function takes spectra as (pixels × channels) arrays and works on all pixels at once.
Energies are either one axis (N,) shared by all pixels or per-pixel axes (M, N) — which is
what a sub-channel calibration gives, since it moves each pixel's axis by a fraction of a
channel instead of resampling its counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Window = tuple[float, float]

LI_K_WINDOW_EV: Window = (55.0, 59.0)
"""Li K from its onset to just below the Co M2,3 onset (≈59.5 eV)."""
CO_M23_WINDOW_EV: Window = (62.0, 68.0)
"""Co M2,3 around its delayed maximum (≈64 eV), where the Li K edge is already weak."""
CORE_BACKGROUND_WINDOW_EV: Window = (43.0, 45.0)
"""The paper's pre-edge window: the nearest to the Li K onset that kept the signal ≥ 0."""
ZLP_HALF_WIDTH_MEV = 2.5


def _energies(energy, m: int) -> np.ndarray:
    e = np.asarray(energy, dtype=float)
    return np.broadcast_to(e, (m, e.shape[-1])) if e.ndim == 1 else e


def _spectra(spectra) -> np.ndarray:
    return np.atleast_2d(np.asarray(spectra, dtype=float))


def channel_width(energy: np.ndarray) -> float:
    """The dispersion (energy per channel) of a uniform axis."""
    e = np.asarray(energy, dtype=float)
    return float(np.median(np.diff(e, axis=-1)))


# -- energy zero -----------------------------------------------------------------------------

def zlp_zero_at_maximum(energy: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """(M,) energy of the channel of the ZLP maximum: the paper's calibration, good to about
    ±half a channel (±0.2 meV at 0.4 meV/channel)."""
    y = _spectra(spectra)
    e = _energies(energy, y.shape[0])
    return np.take_along_axis(e, np.argmax(y, axis=1)[:, None], axis=1)[:, 0]


def zlp_zero_subchannel(
    energy: np.ndarray, spectra: np.ndarray, half_width_channels: int = 2
) -> np.ndarray:
    """(M,) ZLP centre to a small fraction of a channel: the vertex of a least-squares
    parabola through ln(counts) of the channels within `half_width_channels` of the maximum.

    A Gaussian core is a parabola in ln(counts) (also after integration over channels, to
    second order), so the vertex is unbiased for it; the symmetric Lorentzian wing adds a
    small curvature error but no shift. Assumes an unsaturated ZLP.
    """
    y = _spectra(spectra)
    m, n = y.shape
    e = _energies(energy, m)
    h = int(half_width_channels)
    if h < 1 or 2 * h + 1 > n:
        raise ValueError("half_width_channels must be ≥ 1 and fit in the spectrum")
    peak = np.clip(np.argmax(y, axis=1), h, n - 1 - h)
    k = np.arange(-h, h + 1)
    idx = peak[:, None] + k
    logs = np.log(np.maximum(np.take_along_axis(y, idx, axis=1), 1e-12))
    k2 = k * k - np.mean(k * k)
    slope = logs @ k / np.sum(k * k)
    curvature = logs @ k2 / np.sum(k2 * k2)
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature < 0, -slope / (2.0 * curvature), 0.0)
    offset = np.clip(offset, -1.0, 1.0)
    dispersion = np.take_along_axis(e, peak[:, None] + 1, 1)[:, 0] - np.take_along_axis(
        e, peak[:, None], 1)[:, 0]
    centre = np.take_along_axis(e, peak[:, None], axis=1)[:, 0]
    return centre + offset * dispersion


def calibrated_energies(energy: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """(M, N) each pixel's axis with its ZLP centre moved to 0."""
    zero = np.asarray(zero, dtype=float).reshape(-1)
    return _energies(energy, zero.size) - zero[:, None]


def resample_to_axis(
    energies: np.ndarray, spectra: np.ndarray, variance: np.ndarray, axis: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Spectra and variances on per-pixel uniform axes (M, N) moved onto one `axis` (N′,) by
    linear interpolation (NaN outside a pixel's range) — needed before pixels are summed.

    The variance is interpolated with the same (linear) weights, not their squares: the
    neighbouring output channels then share noise, and this keeps the information a smooth
    model can draw from them equal to that of the original channels (it does not pretend that
    interpolation averaged the noise away).
    """
    y = _spectra(spectra)
    v = np.broadcast_to(np.asarray(variance, dtype=float), y.shape)
    e = _energies(energies, y.shape[0])
    start, step = e[:, :1], e[:, 1:2] - e[:, :1]
    position = (np.asarray(axis, dtype=float)[None, :] - start) / step
    lower = np.floor(position).astype(int)
    frac = position - lower
    inside = (lower >= 0) & (lower < y.shape[1] - 1)
    lo = np.clip(lower, 0, y.shape[1] - 2)
    y0, y1 = np.take_along_axis(y, lo, 1), np.take_along_axis(y, lo + 1, 1)
    v0, v1 = np.take_along_axis(v, lo, 1), np.take_along_axis(v, lo + 1, 1)
    out_y = np.where(inside, (1 - frac) * y0 + frac * y1, np.nan)
    out_v = np.where(inside, (1 - frac) * v0 + frac * v1, np.nan)
    return out_y, out_v


def region_membership(labels: np.ndarray, regions: int) -> np.ndarray:
    """(R, M) one-hot membership of pixels labelled 0 … R−1 (labels < 0 belong nowhere)."""
    labels = np.asarray(labels).reshape(-1)
    return (labels[None, :] == np.arange(regions)[:, None]).astype(float)


def pool_aligned(
    energy: np.ndarray,
    spectra: np.ndarray,
    zero: np.ndarray,
    membership: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sum the counts of the pixels of each pool after aligning their ZLPs.

    `membership` (R, M) says how often each pixel enters each pool (one-hot for regions,
    multiplicities for a bootstrap). Each pixel is moved by the whole number of channels
    nearest to its zero — no interpolation, so the sums stay Poisson counts; what is left, a
    fraction of a channel per pixel, is averaged (weighted by `weights`, default the pixels'
    total counts) into the pool's own axis. Returns (axes (R, N), counts (R, N)); channels
    that some pixel of the pool does not reach are NaN.
    """
    y = _spectra(spectra)
    e = np.asarray(energy, dtype=float)
    zero = np.asarray(zero, dtype=float).reshape(-1)
    member = np.asarray(membership, dtype=float)
    step = channel_width(e)
    shift = np.round(zero / step).astype(int)
    remainder = zero - shift * step
    n = y.shape[1]
    idx = np.arange(n)[None, :] + shift[:, None]
    aligned = np.where((idx >= 0) & (idx < n),
                       np.take_along_axis(y, np.clip(idx, 0, n - 1), 1), np.nan)
    w = y.sum(axis=1) if weights is None else np.asarray(weights, dtype=float)
    valid = np.isfinite(aligned)
    counts = member @ np.where(valid, aligned, 0.0)
    counts[(member @ (~valid).astype(float)) > 0] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_remainder = (member @ (w * remainder)) / (member @ w)
    return e[None, :] - mean_remainder[:, None], counts


def zlp_fwhm(energy: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """(M,) ZLP full width at half maximum, counted in channels above half the maximum."""
    y = _spectra(spectra)
    above = y >= 0.5 * y.max(axis=1, keepdims=True)
    return np.count_nonzero(above, axis=1) * abs(channel_width(energy))


# -- normalisation ---------------------------------------------------------------------------

def zlp_integral(
    energies: np.ndarray,
    spectra: np.ndarray,
    half_width_mev: float = ZLP_HALF_WIDTH_MEV,
    fractional: bool = True,
) -> np.ndarray:
    """(M,) counts of the ZLP in [−w, w] of calibrated `energies` (the paper: w = 2.5 meV).

    `fractional` weights the two edge channels by the part of them inside the window, so the
    integral does not jump when the zero moves by a fraction of a channel; otherwise whole
    channels whose centre lies inside count (the paper's procedure).
    """
    y = _spectra(spectra)
    e = _energies(energies, y.shape[0])
    if not fractional:
        return np.sum(np.where(np.abs(e) <= half_width_mev + 1e-9, y, 0.0), axis=1)
    d = np.abs(np.diff(e, axis=1)).mean(axis=1, keepdims=True)
    overlap = np.clip(
        np.minimum(e + d / 2, half_width_mev) - np.maximum(e - d / 2, -half_width_mev), 0.0, None
    ) / d
    return np.sum(overlap * y, axis=1)


# -- power-law background --------------------------------------------------------------------

@dataclass(frozen=True)
class PowerLawBackground:
    """A·E^(−r) per pixel: the tail of the ZLP (or of the plasmon, before a core edge)."""

    amplitude: np.ndarray
    exponent: np.ndarray

    def evaluate(self, energies: np.ndarray) -> np.ndarray:
        e = _energies(energies, self.amplitude.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.amplitude[:, None] * np.power(np.where(e > 0, e, np.nan),
                                                      -self.exponent[:, None])


def fit_power_law(
    energies: np.ndarray,
    spectra: np.ndarray,
    windows: Sequence[Window],
    variance: np.ndarray | None = None,
) -> PowerLawBackground:
    """A·E^(−r) fitted to the channels in any of `windows`, all pixels at once.

    Weighted straight line through (ln E, ln y): the variance of ln y is var/y², so the
    weights are y²/var (y for Poisson counts). Two windows, one on each side of the features
    (the paper's "two-window" fit), pin both A and r on the tail itself; one window before a
    core edge is the usual edge background. Non-positive counts are left out.
    """
    y = _spectra(spectra)
    e = _energies(energies, y.shape[0])
    var = np.maximum(y, 1.0) if variance is None else np.broadcast_to(variance, y.shape)
    inside = np.zeros(y.shape, dtype=bool)
    for low, high in windows:
        inside |= (e >= low) & (e <= high)
    use = inside & (y > 0) & (e > 0) & np.isfinite(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(use, y * y / var, 0.0)
        x = np.where(use, np.log(np.where(e > 0, e, 1.0)), 0.0)
        ly = np.where(use, np.log(np.where(y > 0, y, 1.0)), 0.0)
    sw = w.sum(1)
    mx = (w * x).sum(1) / sw
    my = (w * ly).sum(1) / sw
    sxx = (w * (x - mx[:, None]) ** 2).sum(1)
    sxy = (w * (x - mx[:, None]) * (ly - my[:, None])).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = sxy / sxx
    return PowerLawBackground(np.exp(my - slope * mx), -slope)


def subtract_power_law(
    energies: np.ndarray,
    spectra: np.ndarray,
    windows: Sequence[Window],
    variance: np.ndarray | None = None,
) -> tuple[np.ndarray, PowerLawBackground]:
    """(signal, background fit): the spectra minus the fitted power law (NaN at E ≤ 0)."""
    y = _spectra(spectra)
    fit = fit_power_law(energies, y, windows, variance)
    return y - fit.evaluate(energies), fit


# -- thickness -------------------------------------------------------------------------------

def thickness_log_ratio(
    energy_ev: np.ndarray,
    spectra: np.ndarray,
    zlp_upper_ev: float | None = None,
    search_ev: float = 3.0,
) -> np.ndarray:
    """(M,) t/λ = ln(I_total / I_zlp) from valence-loss spectra (Poisson plural scattering).

    I_zlp runs from the start of the axis to `zlp_upper_ev` above the ZLP maximum, by default
    the first minimum of the (5-channel smoothed) spectrum within `search_ev` of it — in a
    gapped material like LiCoO2 that lies in the gap. The vibrational losses are inside the
    zero-loss integral, as they are not part of λ. The axis must reach several plasmon
    energies: counts beyond it are missed and t/λ comes out low.
    """
    y = _spectra(spectra)
    e = calibrated_energies(energy_ev, zlp_zero_at_maximum(energy_ev, y))
    if zlp_upper_ev is None:
        kernel = np.ones(5) / 5.0
        smooth = np.apply_along_axis(np.convolve, 1, y, kernel, mode="same")
        window = (e > 0) & (e <= search_ev)
        masked = np.where(window, smooth, np.inf)
        cut = np.take_along_axis(e, np.argmin(masked, axis=1)[:, None], 1)
    else:
        cut = np.full((y.shape[0], 1), float(zlp_upper_ev))
    zero_loss = np.sum(np.where(e <= cut, y, 0.0), axis=1)
    total = np.sum(y, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(total / zero_loss)


# -- Li:Co -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EdgeIntensities:
    """Background-subtracted counts in the Li K and Co M2,3 windows, per pixel, with their
    Poisson variances (signal + background counts; the background fit's own error is not
    included)."""

    li_k: np.ndarray
    co_m23: np.ndarray
    li_k_variance: np.ndarray
    co_m23_variance: np.ndarray

    @property
    def li_to_co_intensity_ratio(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.li_k / self.co_m23


def core_loss_edge_intensities(
    energy_ev: np.ndarray,
    spectra: np.ndarray,
    li_window_ev: Window = LI_K_WINDOW_EV,
    co_window_ev: Window = CO_M23_WINDOW_EV,
    background_windows_ev: Sequence[Window] = (CORE_BACKGROUND_WINDOW_EV,),
    li_tail_in_co_window: float = 0.0,
) -> EdgeIntensities:
    """Li K and Co M2,3 edge counts over fixed windows after a power-law background.

    The Li K edge (onset ≈55 eV) lies below the Co M2,3 onset (≈59.5 eV), so the Li window
    holds Li only; the Co window also holds the Li edge's tail. `li_tail_in_co_window` = κ,
    the Li counts in the Co window per Li count in the Li window (from an edge model, e.g.
    hydrogenic cross-sections, or a Co-free reference), removes it: I_Co = W_Co − κ·W_Li.
    With κ = 0 (no edge model) the ratio is still monotonic in Li:Co but not proportional.
    """
    y = _spectra(spectra)
    e = _energies(energy_ev, y.shape[0])
    signal, _ = subtract_power_law(e, y, background_windows_ev)
    counts = np.maximum(y, 0.0)

    def window_sum(window, values):
        inside = (e >= window[0]) & (e <= window[1])
        return np.sum(np.where(inside, values, 0.0), axis=1)

    li = window_sum(li_window_ev, signal)
    co_window = window_sum(co_window_ev, signal)
    li_var = window_sum(li_window_ev, counts)
    co_var = window_sum(co_window_ev, counts) + li_tail_in_co_window**2 * li_var
    return EdgeIntensities(li, co_window - li_tail_in_co_window * li, li_var, co_var)


def li_to_co_relative(
    edges: EdgeIntensities, reference: np.ndarray | None = None
) -> np.ndarray:
    """(M,) Li:Co relative to the reference pixels (a boolean mask; default: all pixels).

    Li:Co = (I_Li / I_Co) · (σ_Co / σ_Li), with σ the partial cross-sections of the two
    windows at this beam energy and collection angle. They are not computed here; they are
    assumed the same at every pixel — fixed windows, beam and angles, edge shapes that do not
    change with bonding or valence, and no thickness-dependent plural scattering (thin, or
    even, specimen) — so their ratio cancels against the reference and only relative Li:Co
    is returned: 1 where the composition equals the reference's.
    """
    ratio = edges.li_to_co_intensity_ratio
    ref = np.ones(ratio.shape, dtype=bool) if reference is None else np.asarray(reference)
    return ratio / (np.sum(edges.li_k[ref]) / np.sum(edges.co_m23[ref]))


def li_to_co_change(edges: EdgeIntensities, labels: np.ndarray) -> tuple[float, float]:
    """(Li:Co of the boundary pixels (label 1) / that of the grain pixels (0, 2) − 1, its
    Poisson stderr): counts summed per region before the ratio, so a noisy pixel's ratio
    cannot dominate."""
    boundary, grains = labels == 1, (labels == 0) | (labels == 2)
    if not (np.any(boundary) and np.any(grains)):
        return math.nan, math.nan
    ratios, variances = [], []
    for sel in (boundary, grains):
        li, co = edges.li_k[sel].sum(), edges.co_m23[sel].sum()
        ratios.append(li / co)
        variances.append(edges.li_k_variance[sel].sum() / li**2
                         + edges.co_m23_variance[sel].sum() / co**2)
    ratio = ratios[0] / ratios[1]
    return float(ratio - 1.0), float(abs(ratio) * math.sqrt(sum(variances)))
