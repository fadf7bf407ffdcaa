"""Figures of an ESM temperature series (PNG, no screen needed), after the paper's Figs. 3-4.

* amplitudes: the first map's a_f with the averaging region outlined, and the region means of
  A_HF, Ā_LF and a_f against temperature (A_HF flat, a_f rising: the compensation at work);
* Arrhenius: ln a_f and ln Ā_LF against 1000/T with their fitted lines, E_A in the legend
  (E_A = −2R·slope, both curves, so the two numbers can be compared directly);
* maps: one column per temperature, rows topography, Ā_LF, A_HF, a_f, each row on one colour
  scale so changes with temperature show, the region outlined.
Maps follow the `esm_map` convention: (pixels_y, pixels_x), row 0 at the lowest y.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .arrhenius import ActivationEnergy
from .esm_figures import _save, robust_limits
from .figures import _pyplot

_MISSING_COLOUR = "0.85"
_REGION_COLOUR = "black"


def _energy_label(name: str, energy: ActivationEnergy | None) -> str:
    if energy is None or not np.isfinite(energy.kj_mol):
        return name
    if np.isfinite(energy.stderr_kj_mol):
        return f"{name}: E_A = {energy.kj_mol:.1f} ± {energy.stderr_kj_mol:.1f} kJ/mol"
    return f"{name}: E_A = {energy.kj_mol:.1f} kJ/mol"


def _image(axes, values, extent_nm, colormap, limits):
    import matplotlib

    colours = matplotlib.colormaps[colormap].with_extremes(bad=_MISSING_COLOUR)
    low, high = limits if limits is not None else (None, None)
    return axes.imshow(
        np.ma.masked_invalid(np.asarray(values, dtype=float)), origin="lower",
        extent=tuple(extent_nm), cmap=colours, vmin=low, vmax=high, interpolation="nearest",
    )


def _outline(axes, mask, extent_nm):
    mask = np.asarray(mask, dtype=float)
    if mask.any() and not mask.all():
        axes.contour(mask, levels=[0.5], colors=_REGION_COLOUR, linewidths=1.0,
                     origin="lower", extent=tuple(extent_nm))


def arrhenius_figure(
    path: Path,
    temperatures_k: Sequence[float],
    a_f_pm: Sequence[float],
    a_lf_pm: Sequence[float],
    a_f_energy: ActivationEnergy | None,
    a_lf_energy: ActivationEnergy | None,
) -> Path:
    """ln a_f and ln Ā_LF (amplitudes in pm) against 1000/T, fitted lines, E_A in the legend.
    Non-positive or missing amplitudes have no logarithm and are left out."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.6))
    temperatures = np.asarray(temperatures_k, dtype=float)
    for values, energy, name, colour in (
        (a_f_pm, a_f_energy, "a_f", "tab:red"),
        (a_lf_pm, a_lf_energy, "Ā_LF", "tab:blue"),
    ):
        y = np.asarray([np.nan if v is None else v for v in values], dtype=float)
        with np.errstate(invalid="ignore"):
            shown = np.isfinite(y) & (y > 0) & np.isfinite(temperatures) & (temperatures > 0)
        if not shown.any():
            continue
        inverse_kk = 1000.0 / temperatures[shown]
        axes.plot(inverse_kk, np.log(y[shown]), "o", color=colour,
                  label=_energy_label(f"ln {name}", energy))
        if energy is not None and energy.fit.usable:
            line_kk = np.linspace(inverse_kk.min(), inverse_kk.max(), 50)
            axes.plot(line_kk, energy.fit.intercept + energy.fit.slope_k * line_kk / 1000.0,
                      "-", color=colour, lw=1.2)
    axes.set_xlabel("1000 / T (1/K)")
    axes.set_ylabel("ln (amplitude / pm)")
    axes.set_title("Arrhenius plot (E_A = −2R · slope)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize=9)
    return _save(figure, plt, path)


def amplitudes_figure(
    path: Path,
    temperatures_k: Sequence[float],
    a_hf_pm: Sequence[float],
    a_lf_pm: Sequence[float],
    a_f_pm: Sequence[float],
    a_f_map_pm: np.ndarray,
    region_mask: np.ndarray,
    extent_nm: Sequence[float],
    map_temperature_k: float,
) -> Path:
    """Left: a_f map (at `map_temperature_k`) with the region outlined; right: the region
    means of A_HF, Ā_LF and a_f (pm) against temperature."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.6))
    image = _image(left, a_f_map_pm, extent_nm, "viridis", robust_limits(a_f_map_pm))
    _outline(left, region_mask, extent_nm)
    left.set_title(f"a_f at {map_temperature_k:.0f} K, region outlined")
    left.set_xlabel("x (nm)")
    left.set_ylabel("y (nm)")
    figure.colorbar(image, ax=left, label="pm", shrink=0.85)
    temperatures = np.asarray(temperatures_k, dtype=float)
    for values, name, style in ((a_hf_pm, "A_HF", "s-"), (a_lf_pm, "Ā_LF", "o-"),
                                (a_f_pm, "a_f = Ā_LF − A_HF", "^-")):
        y = np.asarray([np.nan if v is None else v for v in values], dtype=float)
        right.plot(temperatures, y, style, label=name)
    right.set_xlabel("sample temperature (K)")
    right.set_ylabel("region mean amplitude (pm)")
    right.legend(loc="best")
    right.grid(alpha=0.3)
    return _save(figure, plt, path)


def series_maps_figure(
    path: Path,
    temperatures_k: Sequence[float],
    maps_by_quantity: dict[str, Sequence[np.ndarray]],
    region_masks: Sequence[np.ndarray],
    extent_nm: Sequence[float],
) -> Path:
    """Montage: one column per temperature, one row per quantity (title → list of maps, one
    per temperature), a shared colour scale per row, the region outlined in every panel."""
    plt = _pyplot()
    columns, rows = len(temperatures_k), len(maps_by_quantity)
    figure, axes = plt.subplots(rows, columns, figsize=(2.3 * columns + 1.0, 2.4 * rows),
                                squeeze=False, layout="constrained")
    for row, (title, maps) in enumerate(maps_by_quantity.items()):
        stacked = np.stack([np.asarray(m, dtype=float) for m in maps])
        colormap = "copper" if row == 0 else "viridis"
        limits = robust_limits(stacked)
        for column, (values, mask) in enumerate(zip(maps, region_masks, strict=True)):
            panel = axes[row, column]
            image = _image(panel, values, extent_nm, colormap, limits)
            _outline(panel, mask, extent_nm)
            panel.set_title(f"{title}, {temperatures_k[column]:.0f} K", fontsize=9)
            panel.set_xticks([])
            panel.set_yticks([])
        figure.colorbar(image, ax=list(axes[row]), shrink=0.9, aspect=12)
    path = Path(path)  # no tight_layout: the constrained layout places the row colour bars
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
