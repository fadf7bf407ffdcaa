"""What `vegard check` answers where a plan decides on what it reads, per protocol kind.

Each answer is the one under which the plan goes its normal way to the end: the stage has
settled where it was sent (the temperature guard never pauses), the detector sees one
Bragg peak in the middle of the search volume, the drift-tracking image is the same at
every temperature (zero drift), the cell never reaches its voltage limit (every map is
taken). One function per kind, collected in `CANNED_READINGS`; each may move into its
kind's own module.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from vegard.config.profiles import Profile
from vegard.config.protocols import (
    EsmMapProtocol,
    EsmTemperatureSeriesProtocol,
    OperandoSxdmProtocol,
    TemperatureStepsProtocol,
)
from vegard.operando_sxdm_runner import ENERGY_EV
from vegard.plan_check import CannedReadings

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


def _stage(profile: Profile) -> CannedReadings:
    stage = profile.devices.temperature_stage
    return StageSetpoint(stage.safe_temperature_k if stage else 295.0).readings()


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


def canned_readings_temperature_steps(
    protocol: TemperatureStepsProtocol, profile: Profile
) -> CannedReadings:
    return _stage(profile)


def canned_readings_esm_map(protocol: EsmMapProtocol, profile: Profile) -> CannedReadings:
    return _stage(profile) if protocol.temperature_stage is not None else CannedReadings()


def canned_readings_esm_temperature_series(
    protocol: EsmTemperatureSeriesProtocol, profile: Profile
) -> CannedReadings:
    image = tracking_image_nm(protocol.drift_tracking.pixels)
    return _stage(profile) | CannedReadings(reads={"afm.tracking_image.image_nm": image})


def canned_readings_operando_sxdm(
    protocol: OperandoSxdmProtocol, profile: Profile
) -> CannedReadings:
    search = protocol.peak_search
    points = round(2 * search.half_range_deg / search.step_deg) + 1  # as find_bragg_peak
    cell = protocol.cell
    return CannedReadings(reads={
        "area_detector.search.counts": search_volume_counts(points, *search.roi_pixels),
        "diffractometer.energy_ev": ENERGY_EV,
        "potentiostat.limit_reached": False,
        "potentiostat.charge_mah": cell.active_mass_mg * cell.capacity_mah_per_g / 1000.0,
    })


CANNED_READINGS: dict[str, Callable[[Any, Profile], CannedReadings]] = {
    "temperature_steps": canned_readings_temperature_steps,
    "esm_map": canned_readings_esm_map,
    "esm_temperature_series": canned_readings_esm_temperature_series,
    "operando_sxdm": canned_readings_operando_sxdm,
}
