"""Trapezoidal motion: how long a motor-record move takes.

The motor record ramps up to VELO in ACCL seconds, cruises, and ramps down; a move too
short to reach VELO is a triangle with the same acceleration. Shared by the simulated
IOC (which moves its axes so) and the SXDM estimate (which predicts a map from it).
"""

from __future__ import annotations

import math


def ramp(distance: float, velocity: float, acceleration_time_s: float) -> tuple[float, float]:
    """(ramp time, peak velocity) of a move over `distance` (absolute value)."""
    if acceleration_time_s <= 0.0:
        return 0.0, velocity
    acceleration = velocity / acceleration_time_s
    ramp_s = min(acceleration_time_s, math.sqrt(abs(distance) / acceleration))
    return ramp_s, acceleration * ramp_s


def move_duration_s(distance: float, velocity: float, acceleration_time_s: float) -> float:
    """Seconds from the start of a move over `distance` until it stops at the target."""
    distance = abs(distance)
    if distance == 0.0:
        return 0.0
    ramp_s, peak_velocity = ramp(distance, velocity, acceleration_time_s)
    return 2.0 * ramp_s + (distance - peak_velocity * ramp_s) / peak_velocity
