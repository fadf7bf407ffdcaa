"""The heater output stage and PID loop of a LakeShore-336-style temperature controller.

Units follow the 336 front panel so a driver's PID values mean the same here:

    output % = P * (e + D/100 * t_i/4 * de/dt) + (integral term)
    d(integral term)/dt = P * I/1000 * e          (integral time t_i = 1000/I s)

with e = setpoint - control sensor temperature in K, P in % per K, I in
"repeats per 1000 s", D in % of a quarter of the integral time. The integral
is kept as its share of the output (%), so changing P or I does not bump the
output, and it is frozen while the output is saturated and the error would
push it further (anti-windup). The derivative acts on a first-order filtered
de/dt (time constant t_d/5), as every practical PID does, so D > 0 does not
turn the 10 Hz loop into a noise amplifier. The output is a percentage of the
selected range's full-scale *power* (the 336 can display current instead; we
fix power).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

import numpy as np

CONTROL_PERIOD_S = 0.1
"""The controller's update period, instrument seconds (the 336 runs its loop at 10 Hz)."""

DERIVATIVE_FILTER_RATIO = 5.0
"""Derivative filter time constant = derivative time / this."""

PID_LIMITS = {"proportional": (0.1, 1000.0), "integral": (0.1, 1000.0), "derivative": (0.0, 200.0)}
"""Allowed P, I, D settings (those of the 336)."""


class HeaterRange(IntEnum):
    OFF = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3


HEATER_RANGE_FRACTION = {
    HeaterRange.OFF: 0.0,
    HeaterRange.LOW: 0.01,
    HeaterRange.MEDIUM: 0.1,
    HeaterRange.HIGH: 1.0,
}
"""Full-scale power of each range as a fraction of the heater's maximum (a decade each)."""


@dataclass(frozen=True)
class PidSettings:
    """P in %/K, I in repeats per 1000 s, D in % of t_i/4 (LakeShore's settings)."""

    proportional: float = 50.0
    integral: float = 20.0
    derivative: float = 0.0

    def check(self) -> PidSettings:
        """Self, if every setting is within the 336's limits; ValueError otherwise."""
        for name, (low, high) in PID_LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"PID {name} = {value:g} outside {low:g} ... {high:g}")
        return self

    @property
    def integral_rate_percent_per_k_s(self) -> float:
        """How fast the integral term grows, % of output per second per kelvin of error."""
        return self.proportional * self.integral / 1000.0

    @property
    def derivative_time_s(self) -> float:
        if self.integral <= 0:
            return 0.0
        return self.derivative / 100.0 * (1000.0 / self.integral) / 4.0

    @property
    def slope_memory(self) -> float:
        """Share of the previous filtered de/dt kept each period (0 without derivative)."""
        filter_time_s = self.derivative_time_s / DERIVATIVE_FILTER_RATIO
        if filter_time_s <= 0:
            return 0.0
        return math.exp(-CONTROL_PERIOD_S / filter_time_s)


POWER_ON_PID = PidSettings()
"""The 336's power-on PID: P 50, I 20, D 0."""

Value = TypeVar("Value", float, np.ndarray)


def loop_terms(
    pid: PidSettings,
    error_k: Value,
    integral_percent: Value,
    previous_error_k: Value,
    slope_k_per_s: Value,
) -> tuple[Value, Value, Value]:
    """The linear part of one controller update: (P and D output, integral if it runs, slope).

    Works on numbers, and on rows of an affine map over the loop's state, so the
    exact tick and the many-tick shortcut of a model share one formula.
    """
    memory = pid.slope_memory
    slope = memory * slope_k_per_s + (1.0 - memory) * (error_k - previous_error_k) / (
        CONTROL_PERIOD_S)
    direct = pid.proportional * (error_k + pid.derivative_time_s * slope)
    trial_integral = integral_percent + pid.integral_rate_percent_per_k_s * CONTROL_PERIOD_S * (
        error_k)
    return direct, trial_integral, slope


def integral_frozen(output_percent: float, error_k: float) -> bool:
    """Anti-windup: stop integrating while saturated and the error pushes further."""
    return (output_percent > 100.0 and error_k > 0) or (output_percent < 0.0 and error_k < 0)


def clamp_output(output_percent: float) -> float:
    return min(max(output_percent, 0.0), 100.0)
