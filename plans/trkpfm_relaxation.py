"""tr-KPFM relaxation on a grid: at each point CPD(t) through a lateral bias step, one event.

The bias step (baseline for `before_s`, then the step for `after_s`) is checked against the
waveform rules and the profile's bias limit before the run opens; the tip is left unbiased
and parked on every exit (`make_tip_safe`; the controller holds the step bias after a record,
so this matters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bluesky.preprocessors as bpp

from vegard.analysis.afm_readout_metadata import TrKpfmMetadata
from vegard.instruments.afm_driver import ScanArea
from vegard.instruments.afm_readout_driver import KpfmStepSettings
from vegard.instruments.band_excitation_afm_device import BandExcitationAfm
from vegard.instruments.point_readout import PointRecord

from .band_excitation import make_tip_safe
from .point_grid import grid_points_nm, record_points
from .spectroscopy_waveforms import TimedWaveform, kpfm_bias_step


@dataclass(frozen=True)
class TrKpfmSettings:
    area: ScanArea
    step: KpfmStepSettings
    interelectrode_distance_um: float
    fit_start_s: float

    def waveform(self) -> TimedWaveform:
        s = self.step
        return kpfm_bias_step(s.step_bias_v, s.before_s, s.after_s, s.sample_interval_s,
                              s.baseline_v)


def trkpfm_metadata(detector_name: str, settings: TrKpfmSettings) -> TrKpfmMetadata:
    area, step = settings.area, settings.step
    return TrKpfmMetadata(
        device=detector_name, points_x=area.pixels_x, points_y=area.pixels_y,
        width_nm=area.width_nm, height_nm=area.height_nm, center_x_nm=area.center_x_nm,
        center_y_nm=area.center_y_nm, step_bias_v=step.step_bias_v, baseline_v=step.baseline_v,
        sample_interval_s=step.sample_interval_s, samples_before=step.samples_before,
        samples=step.samples, interelectrode_distance_um=settings.interelectrode_distance_um,
        fit_start_s=settings.fit_start_s)


def trkpfm_relaxation(afm: BandExcitationAfm, settings: TrKpfmSettings, *,
                      md: dict[str, Any] | None = None):
    """One run: per grid point, tip moved, bias step recorded, one event."""
    detector = afm.cpd_transient
    points = grid_points_nm(settings.area)
    waveform = settings.waveform()  # a malformed step fails here, before any command
    if waveform.bias_v.size != settings.step.samples:
        raise ValueError(f"bias step of {waveform.bias_v.size} samples, the controller "
                         f"records {settings.step.samples}")
    detector.check_settings(PointRecord(*points[0], settings.step))
    metadata = {
        "plan_name": "trkpfm_relaxation",
        "num_points": len(points),
        "progress": {"stream": "primary", "total": len(points), "unit": "point"},
        **trkpfm_metadata(detector.name, settings).document(),
        **(md or {}),
    }

    @bpp.run_decorator(md=metadata)
    def grid():
        yield from record_points(detector, settings.area, settings.step)

    return (yield from bpp.finalize_wrapper(grid(), make_tip_safe(afm)))
