"""Time relaxation spectroscopy on a grid: at each point a write pulse and the BE reads
that follow it, one event per point.

At each cell centre (row 0 at the lowest y) the controller takes a few baseline reads,
applies one write pulse, then reads the response at the read bias at evenly spaced steps
over the relaxation, all on the instrument clock (it answers after the sequence's time);
the relaxation curve is the response of those reads against their times from the end of
the pulse. The pulse is checked against the profile's tip limit before the run opens, and
the tip is left unbiased and parked on every exit (`make_tip_safe`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from vegard.analysis.forc_relaxation_metadata import RelaxationMetadata
from vegard.instruments.band_excitation_afm_device import BandExcitationAfm
from vegard.instruments.forc_relaxation_settings import RelaxationSettings
from vegard.instruments.relaxation_device import RelaxationAcquisition

from .band_excitation import make_tip_safe
from .retakes import trigger_with_retakes
from .spectroscopy_grid import BeReadoutGrid
from .spectroscopy_waveforms import TimedWaveform, time_relaxation_waveform


@dataclass(frozen=True)
class TimeRelaxationSettings:
    """The grid and BE read-out, and the write/read sequence of every point."""

    readout: BeReadoutGrid
    relaxation: RelaxationSettings

    def waveform(self) -> TimedWaveform:
        """The sequence as the controller runs it (checks every argument)."""
        r = self.relaxation
        return time_relaxation_waveform(
            r.write_bias_v, r.write_duration_s, r.read_duration_s, r.read_points,
            read_bias_v=r.read_bias_v, baseline_points=r.baseline_points)

    def check_read_steps(self) -> None:
        """Each read step must hold one spectrum (chirp × averages)."""
        r = self.relaxation
        step_s = r.read_duration_s / r.read_points
        if self.readout.step_duration_s > step_s:
            raise ValueError(
                f"read step {step_s:g} s (read_duration_s / read_points) is shorter than one "
                f"spectrum, {self.readout.step_duration_s:g} s (chirp × averages)")

    def relaxation_at(self, x_nm: float, y_nm: float) -> RelaxationAcquisition:
        return RelaxationAcquisition(x_nm, y_nm, self.relaxation,
                                     self.readout.drive_amplitude_v)


def relaxation_metadata(afm: BandExcitationAfm, settings: TimeRelaxationSettings
                        ) -> RelaxationMetadata:
    """The `time_relaxation` start-document key the relaxation analysis reads."""
    area, r = settings.readout.area, settings.relaxation
    return RelaxationMetadata(
        device=afm.relaxation.name, points_x=area.pixels_x, points_y=area.pixels_y,
        width_nm=area.width_nm, height_nm=area.height_nm,
        center_x_nm=area.center_x_nm, center_y_nm=area.center_y_nm,
        u_ac_v=settings.readout.drive_amplitude_v,
        step_duration_s=settings.readout.step_duration_s,
        write_bias_v=r.write_bias_v, write_duration_s=r.write_duration_s,
        read_duration_s=r.read_duration_s, read_points=r.read_points,
        baseline_points=r.baseline_points, read_bias_v=r.read_bias_v,
    )


def time_relaxation_spectroscopy(
    afm: BandExcitationAfm,
    settings: TimeRelaxationSettings,
    *,
    md: dict[str, Any] | None = None,
):
    """One run: per grid point, tip moved, pulse written and read (spectra to HDF5), one
    event."""
    points = settings.readout.points_nm()
    settings.waveform()  # a malformed sequence fails here, before any command
    settings.check_read_steps()
    afm.check_settings(settings.readout.point_acquisition())
    afm.relaxation.check_settings(settings.relaxation_at(*points[0]))
    metadata = {
        "plan_name": "time_relaxation_spectroscopy",
        "num_points": len(points),
        "progress": {"stream": "primary", "total": len(points), "unit": "point"},
        **relaxation_metadata(afm, settings).document(),
        **(md or {}),
    }
    reads = afm.relaxation

    @bpp.stage_decorator([afm])  # stages its relaxation path too
    @bpp.run_decorator(md=metadata)
    def grid():
        yield from bps.prepare(afm, settings.readout.point_acquisition(), wait=True)
        for index, (x_nm, y_nm) in enumerate(points):
            yield from bps.checkpoint()
            yield from bps.mv(reads.point_index, index)
            yield from bps.prepare(reads, settings.relaxation_at(x_nm, y_nm), wait=True)
            yield from trigger_with_retakes(reads, f"{reads.name} point {index}")
            yield from bps.create("primary")
            yield from bps.read(reads)
            yield from bps.save()

    return (yield from bpp.finalize_wrapper(grid(), make_tip_safe(afm)))
