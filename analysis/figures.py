"""Figures written at the end of a run (PNG, no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def temperature_trace_figure(
    path: Path,
    *,
    times_s: np.ndarray,
    temperatures_k: np.ndarray,
    heater_output_percent: np.ndarray,
    setpoints_k: Sequence[float],
    step_times_s: Sequence[float],
) -> Path:
    """Temperature and heater output against instrument time, settled steps marked."""
    plt = _pyplot()
    start = float(times_s[0])
    minutes = (np.asarray(times_s) - start) / 60.0
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 5.5))
    top.plot(minutes, temperatures_k, lw=1.2, label="control sensor")
    for setpoint, when in zip(setpoints_k, step_times_s, strict=False):
        top.axhline(setpoint, color="0.7", lw=0.8, ls="--")
        top.plot((when - start) / 60.0, setpoint, "o", color="tab:red")
    top.set_ylabel("temperature (K)")
    top.legend(["control sensor", "setpoint", "settled"], loc="best")
    bottom.plot(minutes, heater_output_percent, color="tab:orange", lw=1.0)
    bottom.set_ylabel("heater output (%)")
    bottom.set_xlabel("instrument time (min)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
