"""The c-AFM figure (PNG, no screen needed): the sweep waveform, the I–V curves, the
switching signature s(|V|) with the thresholds found, and maps of threshold and lobe area."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .esm_figures import _map_panel, _save
from .figures import _pyplot


def cafm_figure(path: Path, bias_v: np.ndarray, cycles: int, step_duration_s: float,
                cycle_current_a: np.ndarray, signals: list, set_threshold_v: np.ndarray,
                reset_threshold_v: np.ndarray, maps: Mapping[str, np.ndarray],
                extent_nm: Sequence[float]) -> Path:
    plt = _pyplot()
    figure = plt.figure(figsize=(13.0, 8.5))
    grid = figure.add_gridspec(2, 3)
    v = np.asarray(bias_v, dtype=float)
    whole = np.tile(v, cycles)
    waveform = figure.add_subplot(grid[0, 0])
    waveform.step(np.arange(whole.size) * step_duration_s, whole, where="post", lw=1.0)
    waveform.set_title("waveform: I-V triangle")
    waveform.set_xlabel("time (s)")
    waveform.set_ylabel("tip bias (V)")
    curves = figure.add_subplot(grid[0, 1])
    closed = np.append(np.arange(v.size), 0)
    for index, current in enumerate(np.asarray(cycle_current_a)):
        if np.all(np.isfinite(current)):
            curves.plot(v[closed], current[closed] * 1e9, lw=0.8, color=f"C{index % 10}",
                        alpha=0.7)
    curves.set_title("I-V curves (cycle mean)")
    curves.set_xlabel("tip bias (V)")
    curves.set_ylabel("current (nA)")
    curves.axhline(0.0, color="0.8", lw=0.6, zorder=0)
    signature = figure.add_subplot(grid[0, 2])
    for index, pair in enumerate(signals):
        if pair is None:
            continue
        colour = f"C{index % 10}"
        for (levels, signal), style, threshold in zip(
                pair, ("-", "--"), (set_threshold_v[index], -reset_threshold_v[index]),
                strict=True):
            signature.plot(levels, signal * 1e9, ls=style, lw=0.8, color=colour)
            if np.isfinite(threshold):
                signature.axvline(threshold, color=colour, lw=0.5, ls=":")
    signature.set_title("±(I_desc − I_asc): set (—), reset (--)")
    signature.set_xlabel("|bias| (V)")
    signature.set_ylabel("branch difference (nA)")
    for column, (name, title, unit, colormap) in enumerate((
        ("set_threshold_v", "set threshold", "V", "viridis"),
        ("reset_threshold_v", "reset threshold", "V", "viridis"),
        ("lobe_area_na_v", "I-V lobe area", "nA·V", "magma"),
    )):
        _map_panel(figure, figure.add_subplot(grid[1, column]), maps[name], extent_nm, title,
                   unit, colormap)
    return _save(figure, plt, path)
