"""How well a temperature stage settled at each step of a series.

Pure numpy: inputs are the per-step readings and the monitored temperature
trace on the instrument clock, outputs are plain numbers in kelvin and seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class SettledStep:
    setpoint_k: float
    settled_temperature_k: float
    settled_sample_temperature_k: float
    settling_time_s: float
    heater_output_percent: float
    hold_mean_temperature_k: float | None
    hold_peak_deviation_k: float | None
    hold_samples: int
    within_tolerance: bool

    def as_dict(self) -> dict[str, float | bool | int | None]:
        return asdict(self)


def hold_window_statistics(
    times_s: np.ndarray,
    temperatures_k: np.ndarray,
    setpoint_k: float,
    window_end_s: float,
    hold_time_s: float,
) -> tuple[float | None, float | None, int]:
    """Mean and worst deviation from the setpoint during the hold before `window_end_s`."""
    times_s = np.asarray(times_s, dtype=float)
    temperatures_k = np.asarray(temperatures_k, dtype=float)
    in_window = (times_s >= window_end_s - hold_time_s) & (times_s <= window_end_s)
    samples = temperatures_k[in_window]
    if samples.size == 0:
        return None, None, 0
    return (
        float(samples.mean()),
        float(np.max(np.abs(samples - setpoint_k))),
        int(samples.size),
    )


def summarise_step(
    *,
    setpoint_k: float,
    temperature_k: float,
    sample_temperature_k: float,
    settling_time_s: float,
    heater_output_percent: float,
    settle_tolerance_k: float,
    step_time_s: float,
    hold_time_s: float,
    monitor_times_s: np.ndarray,
    monitor_temperatures_k: np.ndarray,
) -> SettledStep:
    mean_k, peak_k, count = hold_window_statistics(
        monitor_times_s, monitor_temperatures_k, setpoint_k, step_time_s, hold_time_s
    )
    worst = max(abs(temperature_k - setpoint_k), peak_k if peak_k is not None else 0.0)
    return SettledStep(
        setpoint_k=setpoint_k,
        settled_temperature_k=temperature_k,
        settled_sample_temperature_k=sample_temperature_k,
        settling_time_s=settling_time_s,
        heater_output_percent=heater_output_percent,
        hold_mean_temperature_k=mean_k,
        hold_peak_deviation_k=peak_k,
        hold_samples=count,
        within_tolerance=bool(worst <= settle_tolerance_k),
    )
