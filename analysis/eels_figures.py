"""Figures of a STEM-EELS grain-boundary line scan, after the paper's Figs. 2–4 (PNG).

* spectra: the aloof spectrum and the pooled grain and boundary spectra, per meV per ZLP
  count, with the fitted ZLP tail and Voigt components, polaritonic (aloof) peaks shaded
  blue, phononic (impact) peaks orange, the LDO peak red;
* profiles across the line: LDO centre per pixel with its error and the pooled region means,
  polaritonic and phononic intensities, t/λ and Li:Co, the boundary marked;
* the paper's pipeline: its per-pixel LDO centres, those ending on its bounds marked.

`spectra_panel_data` runs in the analysis's process (it needs the fits); the `*_figure`
functions are sent to the figure child (`figure_process`) with plain arrays, drawn with
matplotlib's object-oriented API.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DISPLAY_MEV = (15.0, 130.0)
TAIL_WINDOW_MEV = (22.0, 120.0)
INTENSITY_SCALE = 1e6
"""Spectra are drawn in 10⁻⁶ per meV per ZLP count."""
REGION_LABELS = ("grain A", "boundary", "grain B")
_POLARITON_COLOUR = "tab:blue"
_PHONON_COLOUR = "tab:orange"
_LDO_COLOUR = "tab:red"


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(figure, path: Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path


def _array(values: Sequence[float | None] | None) -> np.ndarray:
    return np.asarray([] if values is None else values, dtype=float)


# ----------------------------------------------------------------------------- spectra data


def _tail_under(energy_mev: np.ndarray, residual: np.ndarray, core_mev: float) -> np.ndarray:
    """A soft-core power law B·((E² + w²)/(50² + w²))^s through what the peaks leave of a
    spectrum (its ZLP tail), for display: the pipeline does not keep the aloof background."""
    u = (energy_mev**2 + core_mev**2) / (50.0**2 + core_mev**2)
    use = ((energy_mev >= TAIL_WINDOW_MEV[0]) & (energy_mev <= TAIL_WINDOW_MEV[1])
           & np.isfinite(residual) & (residual > 0))
    if np.count_nonzero(use) < 3:
        return np.zeros_like(energy_mev)
    slope, intercept = np.polyfit(np.log(u[use]), np.log(residual[use]), 1,
                                  w=np.sqrt(residual[use]))
    return np.where(energy_mev > 0, np.exp(intercept) * u**slope, np.nan)


def _panel(label: str, energy, data, background, peaks: Mapping[str, np.ndarray]) -> dict:
    energy = np.asarray(energy, float)
    show = (energy >= DISPLAY_MEV[0]) & (energy <= DISPLAY_MEV[1]) & np.isfinite(data)
    return {"label": label, "energy_mev": energy[show], "data": np.asarray(data)[show],
            "background": np.asarray(background)[show],
            "peaks": {name: np.asarray(curve)[show] for name, curve in peaks.items()}}


def spectra_panel_data(robust, energy_mev, counts, aloof_counts) -> dict[str, Any]:
    """Aloof, grain and boundary spectra with their fitted components, as plain arrays
    (per meV per ZLP count on ZLP-calibrated axes, as the robust pipeline fits them)."""
    from . import eels_preprocessing as pre
    from .eels_voigt_fit import voigt_profile_and_derivatives

    e = np.asarray(energy_mev, float)
    counts = np.atleast_2d(np.asarray(counts, float))
    aloof = np.atleast_2d(np.asarray(aloof_counts, float))
    dispersion = abs(pre.channel_width(e))
    fit = robust.pooled_fit

    e_aloof = pre.calibrated_energies(e, pre.zlp_zero_subchannel(e, aloof))
    y_aloof = aloof[0] / (dispersion * pre.zlp_integral(e_aloof, aloof)[0])
    e_aloof = e_aloof[0]
    peaks = {name: area * voigt_profile_and_derivatives(e_aloof - centre, sigma, gamma)[0]
             for name, (area, centre, sigma, gamma) in robust.aloof_peaks.items()}
    core = float(fit.background[0, 2]) if fit is not None and fit.background is not None else 0
    tail = _tail_under(e_aloof, y_aloof - sum(peaks.values()), core)
    panels = [_panel("aloof, in vacuum (ZLP tail refitted under the peaks)", e_aloof, y_aloof,
                     tail, peaks)]

    present = [r for r in range(3) if np.any(robust.region == r)]
    member = pre.region_membership(robust.region, 3)[present]
    zlp = pre.zlp_integral(pre.calibrated_energies(e, robust.zlp_zero_mev), counts)
    axes, pooled = pre.pool_aligned(e, counts, robust.zlp_zero_mev, member, weights=zlp)
    spectra = pooled / (dispersion * (member @ zlp))[:, None]
    profiles, background = fit.peak_profiles(axes), fit.background_model(axes)
    grain = 0 if 0 in present else 2
    for region in (grain, 1):
        row = present.index(region)
        pixels = int(member[row].sum())
        panels.append(_panel(f"{REGION_LABELS[region]}, {pixels} pixels pooled", axes[row],
                             spectra[row], background[row],
                             {n: profiles[row, k] for k, n in enumerate(fit.peak_names)}))
    return {"panels": panels, "polaritonic": list(robust.aloof_peaks), "ldo": "ldo"}


# ----------------------------------------------------------------------------- figures


def eels_spectra_figure(path: Path, panels: Mapping[str, Any]) -> Path:
    """Aloof, grain and boundary spectra: data, ZLP tail, shaded components, total fit."""
    rows = panels["panels"]
    polaritonic = set(panels["polaritonic"])
    figure = _figure(figsize=(8.0, 3.0 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    s = INTENSITY_SCALE
    for ax, row in zip(axes, rows, strict=True):
        e, background = row["energy_mev"], np.nan_to_num(row["background"])
        ax.plot(e, row["data"] * s, ".", ms=2.0, color="0.25", label="data")
        ax.plot(e, background * s, "--", color="0.5", lw=1.0, label="ZLP tail")
        for name, curve in row["peaks"].items():
            colour = (_POLARITON_COLOUR if name in polaritonic else
                      _LDO_COLOUR if name == panels["ldo"] else _PHONON_COLOUR)
            ax.fill_between(e, background * s, (background + curve) * s, color=colour,
                            alpha=0.55 if name == panels["ldo"] else 0.3, lw=0)
        total = background + sum(row["peaks"].values())
        ax.plot(e, total * s, color="k", lw=1.0, label="fit")
        ax.set_title(row["label"], fontsize=10)
        ax.set_ylabel("intensity (10⁻⁶ meV⁻¹ per ZLP count)", fontsize=8)
        top = np.nanmax(total * s) if total.size else 1.0
        ax.set_ylim(0.0, 1.15 * top if math.isfinite(top) and top > 0 else 1.0)
    from matplotlib.patches import Patch

    handles = [*axes[0].get_legend_handles_labels()[0],
               Patch(color=_POLARITON_COLOUR, alpha=0.3, label="polaritonic (aloof)"),
               Patch(color=_PHONON_COLOUR, alpha=0.3, label="phononic (impact)"),
               Patch(color=_LDO_COLOUR, alpha=0.55, label="LDO phonon")]
    axes[0].legend(handles=handles, fontsize=7, loc="upper right")
    axes[-1].set_xlabel("energy loss (meV)")
    return _save(figure, path)


def _mark_boundary(ax, position_nm: float | None, width_nm: float | None) -> None:
    if position_nm is None:
        return
    if width_nm is not None:
        ax.axvspan(position_nm - width_nm / 2, position_nm + width_nm / 2, color="0.9", lw=0)
    ax.axvline(position_nm, color="0.4", lw=0.8, ls=":")


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: not measured", transform=ax.transAxes, ha="center",
            va="center", color="0.5")


def eels_profiles_figure(
    path: Path,
    profiles: Mapping[str, Sequence[float | None]],
    region_means: Sequence[tuple[float | None, float | None]],
    *,
    boundary_position_nm: float | None,
    boundary_width_nm: float | None,
    shift_mev: float | None,
    shift_stderr_mev: float | None,
) -> Path:
    """LDO centre, polaritonic/phononic intensities, t/λ and Li:Co across the line."""
    x = _array(profiles["position_nm"])
    region = _array(profiles["region"])
    figure = _figure(figsize=(8.0, 10.0), layout="constrained")
    ldo_ax, intensity_ax, tau_ax, li_ax = figure.subplots(4, 1, sharex=True)
    for ax in (ldo_ax, intensity_ax, tau_ax, li_ax):
        _mark_boundary(ax, boundary_position_nm, boundary_width_nm)

    centre = _array(profiles["ldo_centre_mev"])
    if np.isfinite(centre).any():
        ldo_ax.errorbar(x, centre, yerr=_array(profiles["ldo_centre_stderr_mev"]), fmt="o",
                        ms=3, color=_LDO_COLOUR, ecolor="0.6", lw=0.8, label="per pixel")
        for r, (mean, error) in enumerate(region_means):
            inside = x[region == r]
            if mean is None or inside.size == 0:
                continue
            low, high = float(inside.min()), float(inside.max())
            ldo_ax.hlines(mean, low, high, color="k", lw=1.5)
            if error is not None:
                ldo_ax.fill_between([low, high], mean - error, mean + error, color="k",
                                    alpha=0.15, lw=0)
            ldo_ax.annotate(f"{REGION_LABELS[r]} {mean:.2f} meV", (0.5 * (low + high), mean),
                            textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
        shift = ("" if shift_mev is None else f": boundary shift {shift_mev:+.2f}"
                 + ("" if shift_stderr_mev is None else f" ± {shift_stderr_mev:.2f}") + " meV")
        ldo_ax.set_title(f"LDO phonon centre (pooled regions in black){shift}", fontsize=10)
        ldo_ax.legend(fontsize=7, loc="lower right")
    else:
        _empty(ldo_ax, "LDO centre")
    ldo_ax.set_ylabel("LDO centre (meV)")

    polaritonic, phononic = _array(profiles["polaritonic"]), _array(profiles["phononic"])
    if np.isfinite(phononic).any():
        intensity_ax.plot(x, polaritonic * 1e3, "o-", ms=3, color=_POLARITON_COLOUR,
                          label="polaritonic")
        intensity_ax.plot(x, phononic * 1e3, "s-", ms=3, color=_PHONON_COLOUR, label="phononic")
        intensity_ax.legend(fontsize=7)
    else:
        _empty(intensity_ax, "vibrational intensities")
    intensity_ax.set_ylabel("intensity (10⁻³ per ZLP count)")

    tau = _array(profiles["t_over_lambda"])
    if np.isfinite(tau).any():
        tau_ax.plot(x, tau, "o-", ms=3, color="tab:green")
    else:
        _empty(tau_ax, "t/λ")
    tau_ax.set_ylabel("t/λ (1)")

    li = _array(profiles["li_to_co"])
    if np.isfinite(li).any():
        li_ax.plot(x, li, "o-", ms=3, color="tab:purple")
        li_ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
    else:
        _empty(li_ax, "Li:Co")
    li_ax.set_ylabel("Li:Co / grains' (1)")
    li_ax.set_xlabel("position along the line (nm, scan frame)")
    return _save(figure, path)


def eels_paper_ldo_figure(
    path: Path,
    profiles: Mapping[str, Sequence[Any]],
    bounds_mev: tuple[float, float],
    *,
    boundary_index: int | None,
    shift_mev: float | None,
    at_bound_fraction: float | None,
) -> Path:
    """The paper's per-pixel LDO centres; fits that ended on the LDO bounds marked."""
    x = _array(profiles["position_nm"])
    centre = _array(profiles["ldo_centre_mev"])
    error = _array(profiles["ldo_centre_stderr_mev"])
    at_bound = np.asarray(profiles["ldo_centre_at_bound"], dtype=bool)
    figure = _figure(figsize=(8.0, 4.0), layout="constrained")
    ax = figure.subplots()
    free = ~at_bound
    ax.errorbar(x[free], centre[free], yerr=error[free], fmt="o", ms=4, color=_LDO_COLOUR,
                ecolor="0.6", lw=0.8, label="fit inside its bounds")
    ax.plot(x[at_bound], centre[at_bound], "x", ms=7, color="k", label="fit on a bound")
    for bound in bounds_mev:
        ax.axhline(bound, color="0.5", lw=0.8, ls="--")
    if boundary_index is not None and 0 <= boundary_index < x.size:
        ax.axvline(x[boundary_index], color="0.4", lw=0.8, ls=":", label="boundary pixel")
    shift = "n/a" if shift_mev is None else f"{shift_mev:+.2f} meV"
    fraction = "n/a" if at_bound_fraction is None else f"{100 * at_bound_fraction:.0f} %"
    ax.set_title(f"paper pipeline: LDO centre (box {bounds_mev[0]:g}–{bounds_mev[1]:g} meV); "
                 f"shift {shift}, {fraction} of fits on a bound", fontsize=10)
    ax.set_xlabel("position along the line (nm, scan frame)")
    ax.set_ylabel("LDO centre (meV)")
    ax.set_ylim(bounds_mev[0] - 1.5, bounds_mev[1] + 1.5)  # per-pixel errors reach tens of meV
    ax.legend(fontsize=7)
    return _save(figure, path)
