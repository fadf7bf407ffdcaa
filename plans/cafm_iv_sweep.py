"""c-AFM I–V sweeps on a grid: at each point a bipolar triangle at a constant sweep rate with
the current amplifier at a fixed range, one event per point.

The sweep is checked against the waveform rules and the profile's bias limit before the run
opens; the tip is left unbiased and parked on every exit (`make_tip_safe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bluesky.preprocessors as bpp

from vegard.analysis.afm_readout_metadata import CafmIvMetadata
from vegard.instruments.afm_driver import ScanArea
from vegard.instruments.afm_readout_driver import IvSweepSettings
from vegard.instruments.band_excitation_afm_device import BandExcitationAfm
from vegard.instruments.cafm_device import IvMeasurement
from vegard.instruments.point_readout import PointRecord

from .band_excitation import make_tip_safe
from .point_grid import grid_points_nm, record_points
from .spectroscopy_waveforms import TimedWaveform, iv_triangle


@dataclass(frozen=True)
class CafmIvSettings:
    area: ScanArea
    sweep: IvSweepSettings
    current_range_a: float

    def waveform(self) -> TimedWaveform:
        s = self.sweep
        return iv_triangle(s.amplitude_v, s.points_per_cycle, s.cycles, s.sweep_rate_v_per_s,
                           s.offset_v)

    def measurement(self) -> IvMeasurement:
        return IvMeasurement(self.sweep, self.current_range_a)


def cafm_metadata(detector_name: str, settings: CafmIvSettings) -> CafmIvMetadata:
    area, sweep = settings.area, settings.sweep
    waveform = settings.waveform()
    return CafmIvMetadata(
        device=detector_name, points_x=area.pixels_x, points_y=area.pixels_y,
        width_nm=area.width_nm, height_nm=area.height_nm, center_x_nm=area.center_x_nm,
        center_y_nm=area.center_y_nm,
        bias_v=[float(v) for v in waveform.bias_v[:sweep.points_per_cycle]],
        cycles=sweep.cycles, step_duration_s=float(waveform.duration_s[0]),
        sweep_rate_v_per_s=sweep.sweep_rate_v_per_s, current_range_a=settings.current_range_a)


def cafm_iv_sweep(afm: BandExcitationAfm, settings: CafmIvSettings, *,
                  md: dict[str, Any] | None = None):
    """One run: per grid point, tip moved, I–V sweep taken, one event."""
    detector = afm.iv_curve
    points = grid_points_nm(settings.area)
    settings.waveform()  # a malformed sweep fails here, before any command
    detector.check_settings(PointRecord(*points[0], settings.measurement()))
    metadata = {
        "plan_name": "cafm_iv_sweep",
        "num_points": len(points),
        "progress": {"stream": "primary", "total": len(points), "unit": "point"},
        **cafm_metadata(detector.name, settings).document(),
        **(md or {}),
    }

    @bpp.run_decorator(md=metadata)
    def grid():
        yield from record_points(detector, settings.area, settings.measurement())

    return (yield from bpp.finalize_wrapper(grid(), make_tip_safe(afm)))
