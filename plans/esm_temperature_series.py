"""The ESM temperature series: settle, re-find the area, map; one run for the whole series.

Heating or cooling the stage moves the sample under the tip (thermal drift of
the holder, nanometres per kelvin). Before each map a fast topography image
around the current map centre is correlated with the one taken at the first
temperature, and the map centre is moved by the measured shift, so every map
shows the same area of the sample. The offsets applied are recorded in the
`drift_tracking` stream, one event per temperature.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from ophyd_async.core import StandardReadable, soft_signal_rw

from vegard.analysis.image_registration import image_shift_px
from vegard.analysis.run_metadata import DriftTrackingMetadata
from vegard.instruments.afm_driver import ScanArea
from vegard.instruments.band_excitation_afm_device import (
    AcquisitionSettings,
    BandExcitationAfm,
    TrackingImageSettings,
)
from vegard.instruments.temperature_stage_device import TemperatureStage

from .band_excitation import make_tip_safe, map_lines, map_metadata
from .temperature_guard import TemperatureGuard
from .temperature_steps import temperature_steps

TRACKING_STREAM = "drift_tracking"
MINIMUM_TRACKING_QUALITY = 0.5
"""Correlation of the overlapping images below which a shift is not trusted (unrelated
images give ≤ 0.13, the same area ≈ 0.9)."""
MAXIMUM_TRACKING_SHIFT = 1 / 3
"""Largest trusted shift per temperature step, as a fraction of the tracking image side."""

logger = logging.getLogger(__name__)


def trusted_shift_px(
    dy_px: float, dx_px: float, quality: float, pixels: int
) -> tuple[float, float] | None:
    """The measured shift if it can be believed, else None (keep the previous centre).

    A wrong correlation peak would move the next map far from the area; a missed
    correction only costs one step's drift, which the next temperature catches up.
    """
    if not quality >= MINIMUM_TRACKING_QUALITY:
        return None
    if max(abs(dy_px), abs(dx_px)) > MAXIMUM_TRACKING_SHIFT * pixels:
        return None
    return dy_px, dx_px


@dataclass(frozen=True)
class DriftTrackingSettings:
    """The tracking image: `size_factor` × the map's size, `pixels` square, at `line_rate_hz`."""

    size_factor: float = 1.5
    pixels: int = 64
    line_rate_hz: float = 4.0

    def area(self, map_area: ScanArea, center_x_nm: float, center_y_nm: float) -> ScanArea:
        return ScanArea(
            center_x_nm, center_y_nm,
            map_area.width_nm * self.size_factor, map_area.height_nm * self.size_factor,
            self.pixels, self.pixels,
        )


class DriftTracker(StandardReadable):
    """The scan-centre offset applied at each temperature (a soft device, read into events)."""

    def __init__(self, name: str = "tracking") -> None:
        with self.add_children_as_readables():
            self.map_index = soft_signal_rw(int, 0)
            self.offset_x_nm = soft_signal_rw(float, 0.0, units="nm")
            self.offset_y_nm = soft_signal_rw(float, 0.0, units="nm")
            self.peak_quality = soft_signal_rw(float, 1.0)
        super().__init__(name=name)


def esm_temperature_series(
    afm: BandExcitationAfm,
    stage: TemperatureStage,
    temperatures_k: Sequence[float],
    settings: AcquisitionSettings,
    *,
    settle_tolerance_k: float,
    settle_time_s: float,
    tracking: DriftTrackingSettings | None = DriftTrackingSettings(),
    ramp_rate_k_per_min: float | None = None,
    final_temperature_k: float | None = None,
    safe_temperature_k: float = 295.0,
    md: dict[str, Any] | None = None,
):
    """Three-excitation maps of one area at each temperature, drift-tracked, in one run.

    `tracking=None` maps at the protocol's fixed scan centre (to see what drift does).
    """
    afm.check_settings(settings)
    tracker = DriftTracker()
    reference: list[np.ndarray] = []
    offset_nm = np.zeros(2)  # (x, y) applied to the map centre, vs the first temperature
    base = settings.area

    def track(index: int):
        assert tracking is not None
        area = tracking.area(base, base.center_x_nm + offset_nm[0],
                             base.center_y_nm + offset_nm[1])
        imager = afm.tracking_image
        yield from bps.prepare(imager, TrackingImageSettings(area, tracking.line_rate_hz),
                               wait=True)
        yield from bps.trigger(imager, wait=True)
        flat = yield from bps.rd(imager.image_nm)
        image = np.asarray(flat).reshape(area.pixels_y, area.pixels_x)
        quality = 1.0
        if not reference:
            reference.append(image)
        else:
            dy_px, dx_px, quality = image_shift_px(reference[0], image)
            shift = trusted_shift_px(dy_px, dx_px, quality, tracking.pixels)
            if shift is None:
                logger.warning(
                    "drift tracking at map %d: shift (%.1f, %.1f) px with quality %.2f not "
                    "trusted; keeping the previous scan centre", index, dx_px, dy_px, quality)
            else:
                offset_nm[0] += shift[1] * area.width_nm / area.pixels_x
                offset_nm[1] += shift[0] * area.height_nm / area.pixels_y
        yield from bps.mv(
            tracker.map_index, index,
            tracker.offset_x_nm, float(offset_nm[0]),
            tracker.offset_y_nm, float(offset_nm[1]),
            tracker.peak_quality, float(quality),
        )
        yield from bps.trigger_and_read([tracker], name=TRACKING_STREAM)

    def at_temperature(stage: TemperatureStage, temperature_k: float, index: int):
        if tracking is not None:
            yield from track(index)
        area = replace(base, center_x_nm=base.center_x_nm + float(offset_nm[0]),
                       center_y_nm=base.center_y_nm + float(offset_nm[1]))
        guard = TemperatureGuard.for_map(stage, temperature_k, settle_tolerance_k, settle_time_s)
        yield from map_lines(afm, replace(settings, area=area), map_index=index,
                             readables=[stage], guard=guard)

    metadata = {
        "plan_name": "esm_temperature_series",
        "num_points": base.pixels_y * len(temperatures_k),
        **map_metadata(afm, settings).document(),
        "drift_tracking": None if tracking is None else DriftTrackingMetadata(
            size_factor=tracking.size_factor, pixels=tracking.pixels,
            line_rate_hz=tracking.line_rate_hz, stream=TRACKING_STREAM,
        ).model_dump(mode="json"),
        **(md or {}),
    }
    plan = temperature_steps(
        stage, temperatures_k, settle_tolerance_k, settle_time_s, at_temperature,
        ramp_rate_k_per_min=ramp_rate_k_per_min, final_temperature_k=final_temperature_k,
        safe_temperature_k=safe_temperature_k, md=metadata,
    )
    return (yield from bpp.finalize_wrapper(bpp.stage_wrapper(plan, [afm]), make_tip_safe(afm)))
