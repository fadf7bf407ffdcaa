"""SXDM rocking map: a piezo raster × rocking angles, each raster line flown.

For every raster row the rocking angle eta steps through its values, and at each
angle the sample piezo flies the row once while the detector takes a frame each time
the piezo passes a pixel (position-compare trigger, `AreaDetector.arm_line`). The
rocking curve of one pixel is therefore acquired within one row's time, seconds at
the instrument, so the battery's state of charge hardly changes inside any one
rocking curve even though the whole map takes many minutes.

Pixels are centred in their exposure: the trigger of pixel k fires half an exposure's
travel before `x_um[k]`. The piezo flies at one pixel per frame period (exposure +
detector dead time) and starts half a pixel before the first trigger, so it is at
speed when the first frame opens.

One event per flown line: frames (HDF5 StreamDatum), map/row/eta indices and frame
times from the detector, positions and angles from the diffractometer.

A line that goes wrong is taken again (at most `RETAKES_PER_LINE` times) when taking it again
can help: the detector refused its frames (`BadLineError`: a missed trigger, a saturated
burst, frames lost on the wire) or an axis stalled (`MotorStalledError`). The detector is
disarmed first; nothing of the bad line was recorded, so each line is recorded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np

from vegard.analysis.run_metadata import (
    DetectorGeometryMetadata,
    RasterMetadata,
    RockingMetadata,
    SxdmMetadata,
)
from vegard.diffraction_geometry import DetectorRoi, DiffractometerGeometry, rocking_angles_deg
from vegard.instruments.area_detector_device import AreaDetector, BadLineError, FlyLineSettings
from vegard.instruments.area_detector_driver import PositionTrigger
from vegard.instruments.errors import MotorStalledError

from .retakes import mv_retrying, with_retakes

if TYPE_CHECKING:  # Channel Access is loaded only by a session that uses it
    from vegard.instruments.diffractometer_device import Diffractometer

FAST_PIEZO_UM_PER_S = 1000.0
"""Piezo speed of every move that is not a fly (the return between lines, moves between
maps): no trigger timing to keep."""
RETAKABLE = (BadLineError, MotorStalledError)


@dataclass(frozen=True)
class RockingMapSettings:
    """Raster pixel centres, rocking angles around the map's centre, exposure and ROI."""

    x_um: tuple[float, ...]
    y_um: tuple[float, ...]
    rocking_points: int
    rocking_step_deg: float
    exposure_s: float
    roi: DetectorRoi

    def __post_init__(self) -> None:
        steps = np.diff(self.x_um)
        if len(self.x_um) < 2 or not np.all(steps > 0) or not np.allclose(steps, steps[0]):
            raise ValueError("x_um must be at least two evenly spaced, increasing positions")

    @property
    def pixel_step_um(self) -> float:
        return float(self.x_um[1] - self.x_um[0])

    def eta_deg(self, eta_center_deg: float) -> np.ndarray:
        return rocking_angles_deg(eta_center_deg, self.rocking_points, self.rocking_step_deg)

    @property
    def lines(self) -> int:
        return len(self.y_um) * self.rocking_points

    @property
    def fly_settings(self) -> FlyLineSettings:
        return FlyLineSettings(self.roi, self.exposure_s, len(self.x_um))


def raster_axis_um(center_um: float, size_um: float, pixels: int) -> tuple[float, ...]:
    """Pixel centres of `pixels` equal pixels covering `size_um` around `center_um`."""
    step = size_um / pixels
    return tuple(float(center_um + step * (i - (pixels - 1) / 2.0)) for i in range(pixels))


def sxdm_metadata(settings: RockingMapSettings, geometry: DiffractometerGeometry,
                  detector: AreaDetector, diffractometer: Diffractometer,
                  cell_stream: str | None, threshold_counts: float = 1.0,
                  **operando: Any) -> SxdmMetadata:
    """What the analysis needs to place every frame (the `sxdm` start-document key)."""
    roi = settings.roi
    return SxdmMetadata(
        geometry=DetectorGeometryMetadata(
            distance_m=geometry.distance_m, pixel_size_m=geometry.pixel_size_m,
            pixels=tuple(geometry.pixels), center_row=geometry.center_row,
            center_col=geometry.center_col,
        ),
        roi=(roi.row_start, roi.col_start, roi.n_rows, roi.n_cols),
        map=RasterMetadata(x_um=list(settings.x_um), y_um=list(settings.y_um)),
        rocking=RockingMetadata(points=settings.rocking_points,
                                step_deg=settings.rocking_step_deg),
        exposure_s=settings.exposure_s,
        detector=detector.name,
        diffractometer=diffractometer.name,
        cell_stream=cell_stream,
        threshold_counts=threshold_counts,
        **operando,
    )


def rocking_map_lines(
    diffractometer: Diffractometer,
    detector: AreaDetector,
    settings: RockingMapSettings,
    *,
    eta_center_deg: float,
    map_index: int = 0,
    readables: Sequence[Any] = (),
):
    """Fly every line of one map inside an open run (detector prepared for `settings`)."""
    x_axis, y_axis, eta_axis = (diffractometer.sample_x_um, diffractometer.sample_y_um,
                                diffractometer.eta_deg)
    period_s = settings.exposure_s + detector.dead_time_s
    step = settings.pixel_step_um
    velocity = step / period_s
    half_exposure_um = velocity * settings.exposure_s / 2.0
    first_trigger = settings.x_um[0] - half_exposure_um
    run_up_start = first_trigger - step / 2.0
    fly_end = settings.x_um[-1] + step / 2.0
    etas = settings.eta_deg(eta_center_deg)
    trigger = PositionTrigger("sample_x_um", first_trigger, step, len(settings.x_um))
    yield from mv_retrying(x_axis, run_up_start)

    def fly_line(row: int, y: float, eta_index: int, eta: float):
        # back to the run-up start at full speed (at the fly speed the return would cost as
        # long as the line itself), then fly at one pixel per frame period
        yield from bps.mv(x_axis.velocity, FAST_PIEZO_UM_PER_S)
        yield from bps.mv(x_axis, run_up_start, y_axis, y, eta_axis, eta)
        yield from bps.mv(x_axis.velocity, velocity)
        yield from bps.mv(detector.line_arm, trigger)
        yield from bps.mv(x_axis, fly_end)
        yield from bps.mv(detector.row, row, detector.eta_index, eta_index)
        yield from bps.trigger_and_read([detector, diffractometer, *readables])

    try:
        yield from bps.mv(detector.map_index, map_index)
        for row, y in enumerate(settings.y_um):
            for eta_index, eta in enumerate(etas):
                yield from with_retakes(
                    lambda row=row, y=y, i=eta_index, eta=float(eta): fly_line(row, y, i, eta),
                    f"map {map_index} row {row} eta {eta_index}", RETAKABLE,
                    before_retake=lambda: bps.stop(detector),
                    message="{what}: re-taking the line ({attempt} of {retakes}): {cause}")
    finally:
        yield from bps.mv(x_axis.velocity, FAST_PIEZO_UM_PER_S)


def rocking_map(
    diffractometer: Diffractometer,
    detector: AreaDetector,
    settings: RockingMapSettings,
    *,
    eta_center_deg: float,
    geometry: DiffractometerGeometry,
    md: dict[str, Any] | None = None,
):
    """One rocking map as its own run; the detector is disarmed on every exit."""
    detector.check_exposure(settings.exposure_s)
    metadata = {
        "plan_name": "rocking_map",
        **sxdm_metadata(settings, geometry, detector, diffractometer, None).document(),
        **(md or {}),
    }

    @bpp.stage_decorator([detector, diffractometer])
    @bpp.run_decorator(md=metadata)
    def inner():
        yield from bps.prepare(detector, settings.fly_settings, wait=True)
        yield from rocking_map_lines(diffractometer, detector, settings,
                                     eta_center_deg=eta_center_deg)

    def disarm():
        yield from bps.stop(detector)

    return (yield from bpp.finalize_wrapper(inner(), disarm()))
