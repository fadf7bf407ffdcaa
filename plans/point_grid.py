"""Where the tip is parked on a spectroscopy grid: cell centres, row by row from the lowest y
(as a map's lines), and one event per point of a readout detector, taken again if lost."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import numpy as np

from vegard.instruments.afm_driver import ScanArea
from vegard.instruments.errors import InstrumentCommunicationError
from vegard.instruments.point_readout import PointReadout, PointRecord

from .retakes import with_retakes


def grid_points_nm(area: ScanArea) -> list[tuple[float, float]]:
    xs = area.center_x_nm + (np.arange(area.pixels_x) + 0.5 - area.pixels_x / 2) * (
        area.width_nm / area.pixels_x)
    ys = area.center_y_nm + (np.arange(area.pixels_y) + 0.5 - area.pixels_y / 2) * (
        area.height_nm / area.pixels_y)
    return [(float(x), float(y)) for y in ys for x in xs]


def record_points(detector: PointReadout, area: ScanArea, waveform):
    """Inside an open run: at each point, tip moved and waveform sent, record taken (sent
    again and retaken if the wire lost it, since the last try may have left the waveform's
    bias on), one `primary` event."""
    for index, (x_nm, y_nm) in enumerate(grid_points_nm(area)):
        record = PointRecord(x_nm, y_nm, waveform)
        yield from bps.checkpoint()
        yield from bps.mv(detector.point_index, index)
        yield from bps.prepare(detector, record, wait=True)
        yield from with_retakes(
            lambda: bps.trigger(detector, wait=True), f"{detector.name} point {index}",
            (InstrumentCommunicationError,),
            before_retake=lambda record=record: bps.prepare(detector, record, wait=True))
        yield from bps.create("primary")
        yield from bps.read(detector)
        yield from bps.save()
