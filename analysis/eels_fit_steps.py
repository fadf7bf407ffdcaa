"""The steps both EELS pipelines share (`eels_paper_pipeline`, `eels_robust_pipeline`):
preparing spectra (ZLP zero, two-window background, ZLP-integral normalisation), the
paper's peak set and its boxes, start amplitudes, peak-count candidates, and the profiles
that do not need the vibrational fit (t/λ, Li:Co).

Units: energies in meV (vibrational) or eV (valence, core), positions in nm. Intensities are
per ZLP count: a peak's amplitude is its counts over the counts in the ZLP window.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from . import eels_preprocessing as pre
from .eels_voigt_fit import (
    FREE,
    VoigtFit,
    VoigtPeak,
    fit_voigt_peaks,
    voigt_fwhm_mev,
    voigt_profile_and_derivatives,
)

INF = math.inf
Window = tuple[float, float]

PAPER_ALOOF_PEAKS = (
    # name, initial (amplitude, centre, σ, γ), lower, upper — the paper's Methods
    ("polariton_34", (1.5e5, 34.0, 4.0, 1.0), (0.0, 32.0, 3.1, 0.1), (INF, 35.0, 6.0, 2.0)),
    ("polariton_54", (2.2e4, 54.0, 5.0, 1.0), (0.0, 50.0, 3.1, 0.1), (INF, 58.0, 6.0, 2.0)),
    ("polariton_74", (1.8e5, 74.0, 5.5, 1.0), (0.0, 68.0, 3.1, 0.1), (INF, 78.0, 6.0, 2.0)),
)
PAPER_PHONON_PEAKS = (
    ("phonon_41", (6.1e4, 41.0, 5.5, 0.75), (0.0, 39.0, 3.1, 0.1), (INF, 42.0, 6.0, 2.0)),
    ("ldo", (3.2e4, 49.0, 6.0, 0.75), (0.0, 49.0, 3.1, 0.1), (INF, 52.0, 6.0, 2.0)),
    ("phonon_65", (1.45e5, 65.0, 4.5, 0.75), (0.0, 65.0, 3.1, 0.1), (INF, 68.0, 6.0, 2.0)),
    ("phonon_81", (6.9e4, 81.0, 7.0, 0.75), (0.0, 79.0, 3.1, 0.1), (INF, 82.0, 6.0, 2.0)),
)
PAPER_FWHM_BOUNDS_MEV = (8.0, 20.0)
LDO = "ldo"
START_MARGIN = 0.01
"""Initial values outside or on their box are moved this fraction of the box inside."""

REGION_NAMES = ("grain_a", "boundary", "grain_b")


def _plain(value):
    """A JSON-safe scalar: floats as floats, NaN and infinities as None."""
    if isinstance(value, (str, bool, int, type(None))) and not isinstance(value, np.generic):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


# -- shared helpers --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Prepared:
    """Spectra per meV per ZLP count on calibrated axes, their variance, and the start of
    the ZLP-tail background (B at 50 meV per meV per ZLP count, exponent r)."""

    energies: np.ndarray  # (M, N) calibrated
    spectra: np.ndarray
    variance: np.ndarray
    zero_mev: np.ndarray
    zlp_counts: np.ndarray
    background_level: np.ndarray
    background_exponent: np.ndarray


def _prepare(energies, counts, zero, windows, fractional, subtract, zlp=None) -> _Prepared:
    """Two-window power law fitted on the raw counts (and subtracted if `subtract`), then
    division by the ZLP counts in ±2.5 meV (or by `zlp` if given)."""
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    energies = np.asarray(energies, dtype=float)
    if zlp is None:
        zlp = pre.zlp_integral(energies, counts, fractional=fractional)
    norm = (abs(pre.channel_width(energies[0])) * np.asarray(zlp, float))[:, None]
    background = pre.fit_power_law(energies, counts, windows)
    signal = counts - background.evaluate(energies) if subtract else counts
    level = background.amplitude * 50.0 ** (-background.exponent) / norm[:, 0]
    return _Prepared(energies, signal / norm, np.maximum(counts, 1.0) / norm**2,
                     np.asarray(zero, dtype=float), np.asarray(zlp, float), level,
                     background.exponent)


def _prepare_pixels(energy, counts, zero, windows, fractional, subtract) -> _Prepared:
    return _prepare(pre.calibrated_energies(energy, zero), counts, zero, windows, fractional,
                    subtract)


def _prepare_pools(energy, counts, zero, membership, windows, fractional, subtract,
                   zlp_counts) -> _Prepared:
    """Pixels summed per pool (aligned on their ZLPs), prepared like single spectra; the
    ZLP counts of a pool are the sum of its pixels'."""
    axes, pooled = pre.pool_aligned(energy, counts, zero, membership, weights=zlp_counts)
    zlp = np.asarray(membership, float) @ np.asarray(zlp_counts, float)
    return _prepare(axes, pooled, np.zeros(axes.shape[0]), windows, fractional, subtract, zlp)


def _window_mask(energies, window) -> np.ndarray:
    return (energies >= window[0]) & (energies <= window[1])


def _start_box(initial, lower, upper, margin=START_MARGIN):
    """Move an initial value that is outside or on its (finite) box inside by `margin` of
    the box; returns the value and a note, or None if nothing was moved."""
    width = upper - lower
    if not (math.isfinite(lower) and math.isfinite(upper)) or width <= 0:
        return float(np.clip(initial, lower, upper)), None
    low, high = lower + margin * width, upper - margin * width
    if low <= initial <= high:
        return float(initial), None
    where = ("above its upper bound" if initial > upper else
             "below its lower bound" if initial < lower else "on its bound")
    moved = float(np.clip(initial, low, high))
    return moved, (where, moved)


def _paper_peak(name, initial, lower, upper, modes=(FREE,) * 4, warnings=None) -> VoigtPeak:
    """A `VoigtPeak` from the paper's numbers, starts moved into the box with a warning."""
    values = list(initial)
    for j, par in enumerate(("amplitude", "centre", "sigma", "gamma")):
        if j == 0:
            continue
        values[j], note = _start_box(initial[j], lower[j], upper[j])
        if note is not None and warnings is not None:
            warnings.append(
                f"paper model: {name} initial {par} {initial[j]:g} is {note[0]} "
                f"[{lower[j]:g}, {upper[j]:g}]; started at {note[1]:.4g}")
    return VoigtPeak(name, *values, lower=tuple(lower), upper=tuple(upper), modes=modes)


def _fwhm_box_warning() -> str:
    """The σ, γ box the paper gives does not span the FWHM range it states."""
    lo_s, hi_s = PAPER_PHONON_PEAKS[0][2][2], PAPER_PHONON_PEAKS[0][3][2]
    lo_g, hi_g = PAPER_PHONON_PEAKS[0][2][3], PAPER_PHONON_PEAKS[0][3][3]
    low, high = float(voigt_fwhm_mev(lo_s, lo_g)), float(voigt_fwhm_mev(hi_s, hi_g))
    return (f"paper model: its σ ∈ [{lo_s:g}, {hi_s:g}], γ ∈ [{lo_g:g}, {hi_g:g}] box allows "
            f"FWHM {low:.1f}–{high:.1f} meV, not the stated {PAPER_FWHM_BOUNDS_MEV[0]:g}–"
            f"{PAPER_FWHM_BOUNDS_MEV[1]:g} meV; the box is used, fitted FWHMs outside the "
            "stated range are counted")


def _linear_amplitudes(energies, spectra, variance, mask, shapes) -> np.ndarray:
    """(M, K) least-squares areas of fixed profiles (M, K, N), clipped to ≥ 1e-6 of the
    largest: a start for the fit, computed for all spectra at once."""
    w = np.where(mask, 1.0 / variance, 0.0)
    y = np.where(mask, np.nan_to_num(spectra), 0.0)
    a = np.einsum("mkn,mn,mjn->mkj", shapes, w, shapes)
    b = np.einsum("mkn,mn,mn->mk", shapes, w, y)
    a += 1e-12 * np.einsum("mkk->mk", a)[:, :, None] * np.eye(shapes.shape[1])
    amp = np.linalg.solve(a, b[..., None])[..., 0]
    top = np.max(np.abs(amp), axis=1, keepdims=True)
    return np.maximum(amp, 1e-6 * np.where(top > 0, top, 1.0))


def _profiles(energies, peaks: Sequence[VoigtPeak]) -> np.ndarray:
    """(M, K, N) unit-area profiles of peaks at their initial centre, σ, γ."""
    m = energies.shape[0]
    c, s, g = (np.stack([np.broadcast_to(np.asarray(getattr(p, a), float), (m,)) for p in peaks],
                        -1)[:, :, None] for a in ("centre_mev", "sigma_mev", "gamma_mev"))
    return voigt_profile_and_derivatives(energies[:, None, :] - c, s, g)[0]


def _intensities(fit: VoigtFit, names: Sequence[str]) -> np.ndarray:
    """(M,) summed areas (per ZLP count) of the named peaks that are in the fit."""
    idx = [fit.index(n) for n in names if n in fit.peak_names]
    return fit.values[:, idx, 0].sum(axis=1) if idx else np.zeros(fit.values.shape[0])


def _bound_notes(fit: VoigtFit, label: str) -> list[str]:
    notes = []
    for k, name in enumerate(fit.peak_names):
        for j, par in enumerate(("amplitude", "centre_mev", "sigma_mev", "gamma_mev")):
            hits = int(np.count_nonzero(fit.at_bound[:, k, j]))
            if hits:
                notes.append(f"{label}: {name} {par} at a bound in {hits} of "
                             f"{fit.values.shape[0]} spectra")
    if fit.background_at_bound is not None:
        for j, par in enumerate(("amplitude", "exponent", "core_mev")):
            hits = int(np.count_nonzero(fit.background_at_bound[:, j]))
            if hits:
                notes.append(f"{label}: background {par} at a bound in {hits} spectra")
    if not np.all(fit.converged):
        notes.append(f"{label}: {int(np.count_nonzero(~fit.converged))} fits did not converge")
    return notes


def thickness_profile(valence: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray | None:
    """t/λ per pixel from a valence-loss pass (energy_ev, spectra), or None."""
    if valence is None:
        return None
    return pre.thickness_log_ratio(*valence)


def li_to_co_profile(
    core: tuple[np.ndarray, np.ndarray] | None,
    grains: np.ndarray | None = None,
    li_tail_in_co_window: float = 0.0,
) -> tuple[np.ndarray, pre.EdgeIntensities] | None:
    """Relative Li:Co per pixel (1 = the grains' mean composition) and the edge counts."""
    if core is None:
        return None
    edges = pre.core_loss_edge_intensities(*core, li_tail_in_co_window=li_tail_in_co_window)
    reference = None if grains is None or not np.any(grains) else grains
    return pre.li_to_co_relative(edges, reference), edges


def _residual_peak(fit: VoigtFit, prep: _Prepared, mask, name) -> VoigtPeak:
    """An extra peak where the (smoothed) residual of `fit` is largest, with the paper's
    generic box (centre ±3 meV, σ 3.1–6, γ 0.1–2): the n+1 candidate of a peak count."""
    resid = np.where(mask, np.nan_to_num(prep.spectra - fit.model(prep.energies)), 0.0)
    smooth = np.convolve(resid.mean(axis=0), np.ones(9) / 9.0, mode="same")
    j = int(np.argmax(np.where(mask.any(axis=0), smooth, -np.inf)))
    centre = float(np.mean(prep.energies[:, j]))
    sigma = 4.5
    area = max(float(smooth[j]) * sigma * math.sqrt(2 * math.pi), 1e-12)
    return VoigtPeak(name, area, centre, sigma, 1.0, lower=(0.0, centre - 3.0, 3.1, 0.1),
                     upper=(INF, centre + 3.0, 6.0, 2.0))


def _choose_count(candidates: dict[int, VoigtFit]) -> int:
    """The peak count with the lowest reduced χ², except that a smaller count within the
    χ² noise (2·√(2/ν)) of it is preferred (fewer peaks for an equally good fit)."""
    red = {n: float(np.nanmean(f.reduced_chi_square)) for n, f in candidates.items()}
    best = min(red, key=red.get)
    dof = float(np.nanmean(candidates[best].points)) - 4 * len(candidates[best].peak_names)
    slack = 2.0 * math.sqrt(2.0 / max(dof, 1.0))
    return min(n for n, r in red.items() if r <= red[best] + slack)


def _scaled_paper_amplitudes(prep: _Prepared, mask, peaks) -> list[VoigtPeak]:
    """The paper's relative initial areas, scaled per spectrum by one least-squares factor
    (its guesses were "chosen by surveying the spectral intensity" of its own counts)."""
    m = prep.energies.shape[0]
    shapes = _profiles(prep.energies, peaks)
    paper = np.stack([np.broadcast_to(np.asarray(p.amplitude, float), (m,)) for p in peaks], -1)
    model = np.einsum("mk,mkn->mn", paper, shapes)
    w = np.where(mask, 1.0 / prep.variance, 0.0)
    y = np.where(mask, np.nan_to_num(prep.spectra), 0.0)
    scale = np.sum(w * y * model, axis=1) / np.sum(w * model * model, axis=1)
    scale = np.where(scale > 0, scale, 1e-12)
    return [replace(p, amplitude=paper[:, k] * scale) for k, p in enumerate(peaks)]


def _restart(fit: VoigtFit, peaks: Sequence[VoigtPeak]) -> list[VoigtPeak]:
    """`peaks` started from the values `fit` found for them (as per-spectrum arrays)."""
    return [replace(p, amplitude=fit.value(p.name, "amplitude"),
                    centre_mev=fit.value(p.name, "centre_mev"),
                    sigma_mev=fit.value(p.name, "sigma_mev"),
                    gamma_mev=fit.value(p.name, "gamma_mev")) for p in peaks]


def _fit(prep: _Prepared, mask, peaks, scale=True, **kw) -> VoigtFit:
    if scale:
        peaks = _scaled_paper_amplitudes(prep, mask, peaks)
    return fit_voigt_peaks(prep.energies, prep.spectra, peaks, variance=prep.variance,
                           mask=mask, **kw)


