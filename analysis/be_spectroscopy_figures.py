"""The voltage-spectroscopy figure (PNG, no screen needed): loops over the grid and the
parameter maps, so a switching map is always seen beside the loops it came from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .esm_figures import _map_panel, _save
from .figures import _pyplot

MAP_PANELS = (
    ("coercive_voltage_negative_v", "V− (coercive, descending)", "V", "viridis", False),
    ("coercive_voltage_positive_v", "V+ (coercive, ascending)", "V", "viridis", False),
    ("imprint_v", "imprint (V− + V+)/2", "V", "RdBu_r", True),
    ("switchable_response_pm", "switchable response R+ − R−", "pm", "magma", False),
    ("loop_area_pm_v", "loop area −∮R dV", "pm·V", "cividis", False),
    ("r_squared", "loop fit r²", "", "Greys_r", False),
)


def _loops_panel(axes, dc_v, loops, title, models=None) -> None:
    closed = np.append(np.arange(dc_v.size), 0)  # draw each loop closed
    for index, loop in enumerate(np.asarray(loops)):
        if not np.all(np.isfinite(loop)):
            continue
        colour = f"C{index % 10}"
        axes.plot(dc_v[closed], loop[closed], lw=0.8, color=colour, alpha=0.7)
        if models is not None and np.all(np.isfinite(models[index])):
            axes.plot(dc_v[closed], models[index][closed], lw=0.6, ls="--", color=colour)
    axes.set_title(title)
    axes.set_xlabel("DC bias (V)")
    axes.set_ylabel("response (pm)")
    axes.axhline(0.0, color="0.8", lw=0.6, zorder=0)


def spectroscopy_figure(
    path: Path,
    dc_bias_v: np.ndarray,
    out_of_field_loops: np.ndarray,
    fitted_loops: np.ndarray,
    in_field_loops: np.ndarray,
    maps: Mapping[str, np.ndarray],
    extent_nm: Sequence[float],
) -> Path:
    """Out-of-field loops (measured, fit dashed), in-field loops, and six maps."""
    plt = _pyplot()
    figure = plt.figure(figsize=(13.0, 11.0))
    grid = figure.add_gridspec(3, 3)
    dc_v = np.asarray(dc_bias_v, dtype=float)
    _loops_panel(figure.add_subplot(grid[0, :2]), dc_v, out_of_field_loops,
                 "out-of-field loops (projected; fit dashed)", np.asarray(fitted_loops))
    _loops_panel(figure.add_subplot(grid[0, 2]), dc_v, in_field_loops,
                 "in-field loops (electrostatic slope)")
    for k, (name, title, unit, colormap, symmetric) in enumerate(MAP_PANELS):
        axes = figure.add_subplot(grid[1 + k // 3, k % 3])
        _map_panel(figure, axes, maps[name], extent_nm, title, unit, colormap,
                   symmetric=symmetric)
    return _save(figure, plt, path)
