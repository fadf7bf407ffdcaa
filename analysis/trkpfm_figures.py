"""The tr-KPFM figure (PNG, no screen needed): the bias step, every CPD record with its
fit, and maps of τ and D, so a fitted map is always seen beside the curves it came from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .esm_figures import _map_panel, _save
from .figures import _pyplot


def trkpfm_figure(path: Path, time_since_step_s: np.ndarray, records: np.ndarray,
                  fits: Mapping[str, np.ndarray], maps: Mapping[str, np.ndarray],
                  extent_nm: Sequence[float], baseline_v: float, step_bias_v: float,
                  fit_start_s: float) -> Path:
    plt = _pyplot()
    figure = plt.figure(figsize=(12.0, 8.5))
    grid = figure.add_gridspec(2, 3)
    t = np.asarray(time_since_step_s, dtype=float)
    waveform = figure.add_subplot(grid[0, 0])
    waveform.step(t, np.where(t < 0, baseline_v, step_bias_v), where="post", lw=1.2)
    waveform.set_title("waveform: lateral bias step")
    waveform.set_xlabel("time since the step (s)")
    waveform.set_ylabel("bias (V)")
    curves = figure.add_subplot(grid[0, 1:])
    for index, record in enumerate(np.asarray(records)):
        if not np.isfinite(record).any():
            continue
        colour = f"C{index % 10}"
        curves.plot(t, record, lw=0.6, color=colour, alpha=0.6)
        tau = fits["relaxation_time_s"][index]
        if np.isfinite(tau):
            after = t >= fit_start_s
            model = fits["cpd_offset_v"][index] + fits["cpd_amplitude_v"][index] * np.exp(
                -t[after] / tau)
            curves.plot(t[after], model, lw=1.0, ls="--", color=colour,
                        label=f"τ = {tau:.3g} s" if index < 8 else None)
    curves.axvline(fit_start_s, color="0.6", lw=0.6, ls=":")
    curves.set_title("CPD(t) and fits A + B·exp(−t/τ)")
    curves.set_xlabel("time since the step (s)")
    curves.set_ylabel("CPD (V)")
    curves.legend(fontsize="small", loc="best")
    for column, (name, title, unit, colormap) in enumerate((
        ("relaxation_time_s", "relaxation time τ", "s", "viridis"),
        ("diffusion_coefficient_m2_per_s", "D = d²/τ", "m²/s", "magma"),
        ("cpd_amplitude_v", "relaxing CPD B", "V", "cividis"),
    )):
        _map_panel(figure, figure.add_subplot(grid[1, column]), maps[name], extent_nm, title,
                   unit, colormap)
    return _save(figure, plt, path)
