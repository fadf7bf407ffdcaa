"""What `vegard check` answers where a plan decides on what it reads, per protocol kind.

Each answer is the one under which the plan goes its normal way to the end: the stage has
settled where it was sent (the temperature guard never pauses), the detector sees one
Bragg peak in the middle of the search volume, the drift-tracking image is the same at
every temperature (zero drift), the cell never reaches its voltage limit (every map is
taken). The pieces the protocol kinds share; each kind's `canned_readings` (in
`vegard.kinds.protocols`) puts its own together from them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from vegard.plan_check import CannedReadings
from vegard.registry import Bench

PEAK_COUNTS = 1000.0
"""Height of the canned Bragg peak (counts in its brightest voxel)."""


class StageSetpoint:
    """The temperature last sent to the stage (a move, its setpoint or its safe state),
    read back as if the stage had settled there: the temperature guard is satisfied."""

    def __init__(self, initial_k: float) -> None:
        self.value_k = float(initial_k)

    def remember(self, value: Any) -> None:
        self.value_k = float(value)

    def readings(self) -> CannedReadings:
        def temperature() -> float:
            return self.value_k

        return CannedReadings(
            reads={
                "temperature_stage.temperature_k": temperature,
                "temperature_stage.sample_temperature_k": temperature,
                "temperature_stage": lambda: {"temperature_k": self.value_k,
                                              "sample_temperature_k": self.value_k},
                "temperature_stage.safe_state.action":
                    lambda: f"setpoint {self.value_k:g} K (plan check)",
            },
            sets={path: self.remember for path in (
                "temperature_stage", "temperature_stage.setpoint_k",
                "temperature_stage.safe_state")},
        )


def stage_readings(bench: Bench) -> CannedReadings:
    """The stage read back where it was last sent (from its safe temperature)."""
    return StageSetpoint(bench.settings["temperature_stage"].safe_temperature_k).readings()


@cache
def tracking_image_nm(pixels: int) -> np.ndarray:
    """A square topography (flattened, nm) of a few grains: not flat, so it correlates
    with itself, and the same at every call, so the measured drift is zero."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:pixels, 0:pixels] / pixels
    image = np.zeros((pixels, pixels))
    for cy, cx, height, width in zip(rng.random(12), rng.random(12), rng.uniform(2, 8, 12),
                                     rng.uniform(0.05, 0.15, 12), strict=True):
        image += height * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
    image.setflags(write=False)
    return image.ravel()


@cache
def search_volume_counts(points: int, rows: int, cols: int) -> np.ndarray:
    """Peak-search frames (points × rows × cols, flattened uint16) with one Gaussian peak
    at the centre: the Bragg condition met at the middle of the sweep, on the ROI centre."""
    eta, row, col = np.ogrid[0:points, 0:rows, 0:cols]
    volume = PEAK_COUNTS * np.exp(
        -0.5 * (((eta - (points - 1) / 2) / max(points / 10, 1.0)) ** 2
                + ((row - (rows - 1) / 2) / max(rows / 40, 1.0)) ** 2
                + ((col - (cols - 1) / 2) / max(cols / 20, 1.0)) ** 2))
    counts = np.round(volume).astype(np.uint16).ravel()
    counts.setflags(write=False)
    return counts
