"""The FORC and time-relaxation figures (PNG, no screen needed): the waveform the tip saw,
the curves with their fits, and the parameter maps, side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .esm_figures import _map_panel, _save
from .figures import _pyplot


def _closed(values: np.ndarray) -> np.ndarray:
    return np.append(values, values[:1])


def forc_figure(
    path: Path,
    dc_bias_v: np.ndarray,
    step_duration_s: float,
    peak_v: np.ndarray,
    cycle_dc_v: np.ndarray,
    out_of_field_loops: np.ndarray,
    in_field_loops: np.ndarray,
    areas_pm_v: np.ndarray,
    threshold_v: np.ndarray,
    slope_pm: np.ndarray,
    maps: Mapping[str, np.ndarray],
    extent_nm: Sequence[float],
) -> Path:
    """Waveform; loops of the most switching point per peak (out of and in field); loop area
    against peak bias for every point with its hinge fit; maps of V_c, κ and the last area."""
    plt = _pyplot()
    figure = plt.figure(figsize=(14.0, 11.0))
    grid = figure.add_gridspec(3, 3)
    bias = np.asarray(dc_bias_v, dtype=float)
    wave = figure.add_subplot(grid[0, :])
    time_s = np.arange(2 * bias.size + 1) * step_duration_s
    steps = np.empty(2 * bias.size + 1)
    steps[0:-1:2], steps[1:-1:2], steps[-1] = bias, 0.0, 0.0
    wave.step(time_s, steps, where="post", lw=0.7, color="C0", label="write / read (0 V)")
    wave.set_title("FORC waveform at every point (DC modulation: each write step then a read "
                   "step)")
    wave.set_xlabel("time (s)")
    wave.set_ylabel("tip DC bias (V)")
    wave.legend(loc="upper left", fontsize="small")
    areas = np.asarray(areas_pm_v, dtype=float)
    strongest = int(np.nanargmax(np.nan_to_num(areas[:, -1], nan=-np.inf)))
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, len(peak_v)))
    for column, loops, title in ((0, out_of_field_loops, "out-of-field loops"),
                                 (1, in_field_loops, "in-field loops")):
        axes = figure.add_subplot(grid[1, column])
        for k, colour in enumerate(colours):
            axes.plot(_closed(cycle_dc_v[k]), _closed(loops[strongest, k]), color=colour,
                      lw=0.9, label=f"{peak_v[k]:.2g} V")
        axes.set_title(f"{title}, point {strongest}")
        axes.set_xlabel("DC bias (V)")
        axes.set_ylabel("response (pm)")
        if column == 0:
            axes.legend(title="V_p", fontsize="x-small", ncol=2)
    axes = figure.add_subplot(grid[1, 2])
    fine = np.linspace(float(np.min(peak_v)), float(np.max(peak_v)), 200)
    for index, row in enumerate(areas):
        if not np.all(np.isfinite(row)):
            continue
        colour = f"C{index % 10}"
        axes.plot(peak_v, row, "o", ms=3, color=colour)
        if np.isfinite(threshold_v[index]):
            axes.plot(fine, slope_pm[index] * np.maximum(0, fine - threshold_v[index]),
                      lw=0.7, color=colour)
    axes.axhline(0.0, color="0.8", lw=0.6, zorder=0)
    axes.set_title("loop area vs peak bias (hinge fits)")
    axes.set_xlabel("peak bias V_p (V)")
    axes.set_ylabel("loop area (pm·V)")
    panels = (("threshold_v", "threshold V_c", "V", "viridis"),
              ("area_slope_pm", "κ = d(area)/dV_p", "pm·V/V", "magma"),
              ("loop_area_last_peak_pm_v", f"loop area at {peak_v[-1]:.2g} V", "pm·V",
               "cividis"))
    for k, (name, title, unit, colormap) in enumerate(panels):
        _map_panel(figure, figure.add_subplot(grid[2, k]), maps[name], extent_nm, title, unit,
                   colormap)
    return _save(figure, plt, path)


def relaxation_figure(
    path: Path,
    time_s: np.ndarray,
    curves_pm: np.ndarray,
    fitted_pm: np.ndarray,
    maps: Mapping[str, np.ndarray],
    extent_nm: Sequence[float],
    write_bias_v: float,
    write_duration_s: float,
    read_bias_v: float,
) -> Path:
    """Waveform; relaxation curves with their stretched-exponential fits (linear and log
    time); maps of τ, β, ΔR and the irreversible part."""
    plt = _pyplot()
    figure = plt.figure(figsize=(14.0, 10.0))
    grid = figure.add_gridspec(3, 4)
    t = np.asarray(time_s, dtype=float)
    wave = figure.add_subplot(grid[0, :2])
    first = float(t.min()) if t.size else 0.0
    edges = [first, -write_duration_s, 0.0, float(t.max()) if t.size else 1.0]
    wave.step(edges, [read_bias_v, write_bias_v, read_bias_v, read_bias_v], where="post",
              lw=1.2)
    wave.plot(t, np.full(t.size, read_bias_v), "|", ms=8, color="0.3", label="BE reads")
    wave.set_title("write/read waveform at every point")
    wave.set_xlabel("time from the end of the pulse (s)")
    wave.set_ylabel("tip DC bias (V)")
    wave.legend(fontsize="small")
    after = t > 0
    for column, log in ((2, False), (3, True)):
        axes = figure.add_subplot(grid[0, column] if column == 2 else grid[0, 3])
        for index, curve in enumerate(np.asarray(curves_pm)):
            if not np.all(np.isfinite(curve)):
                continue
            colour = f"C{index % 10}"
            shown = after if log else np.ones_like(after)
            axes.plot(t[shown], curve[shown], ".", ms=2, color=colour)
            if np.all(np.isfinite(fitted_pm[index])):
                axes.plot(t[after], fitted_pm[index][after], lw=0.8, color=colour)
        if log:
            axes.set_xscale("log")
        axes.set_title("relaxation (fit: R∞ + ΔR·exp(−(t/τ)^β))" if not log else "log time")
        axes.set_xlabel("time from the end of the pulse (s)")
        axes.set_ylabel("response (pm)")
    panels = (("relaxation_time_s", "τ (relaxation time)", "s", "viridis"),
              ("stretch_exponent", "β (stretch exponent)", "", "cividis"),
              ("relaxing_response_pm", "ΔR (relaxing)", "pm", "magma"),
              ("irreversible_response_pm", "irreversible step", "pm", "RdBu_r"),
              ("r_squared", "fit r²", "", "Greys_r"))
    for k, (name, title, unit, colormap) in enumerate(panels):
        axes = figure.add_subplot(grid[1 + k // 4, k % 4])
        _map_panel(figure, axes, maps[name], extent_nm, title, unit, colormap,
                   symmetric=name == "irreversible_response_pm")
    return _save(figure, plt, path)
