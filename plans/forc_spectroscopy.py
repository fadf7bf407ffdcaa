"""FORC spectroscopy on a grid: at each point a first-order-reversal-curve sweep, one event
per point.

At each cell centre (row 0 at the lowest y) the tip runs symmetric triangular cycles
0 → +V_p → 0 → −V_p → 0 in DC-modulation mode, the peak V_p stepped evenly from the first
to the last over the FORC cycles and each cycle repeated, every DC write step followed by
an out-of-field read step; a band-excitation spectrum is taken at every step. The largest
peak is checked against the profile's tip limit before the run opens, and the tip is left
unbiased and parked on every exit (`make_tip_safe`, confirmed by the controller).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from vegard.analysis.forc_relaxation_metadata import ForcMetadata
from vegard.instruments.band_excitation_afm_device import BandExcitationAfm
from vegard.instruments.forc_relaxation_settings import ForcSweepSettings
from vegard.instruments.forc_sweep_device import ForcAcquisition

from .band_excitation import make_tip_safe
from .retakes import trigger_with_retakes
from .spectroscopy_grid import BeReadoutGrid
from .spectroscopy_waveforms import ForcWaveform, forc_waveform


@dataclass(frozen=True)
class ForcSpectroscopySettings:
    """The grid and BE read-out, and the FORC sweep of every point."""

    readout: BeReadoutGrid
    forc: ForcSweepSettings

    def waveform(self) -> ForcWaveform:
        """The write biases as the controller sweeps them (checks every argument)."""
        f = self.forc
        return forc_waveform(f.peak_start_v, f.peak_end_v, f.forc_cycles,
                             steps_per_cycle=f.steps_per_cycle,
                             cycles_per_forc=f.cycles_per_forc)

    def forc_at(self, x_nm: float, y_nm: float) -> ForcAcquisition:
        return ForcAcquisition(x_nm, y_nm, self.forc, self.readout.drive_amplitude_v)


def forc_metadata(afm: BandExcitationAfm, settings: ForcSpectroscopySettings) -> ForcMetadata:
    """The `forc_spectroscopy` start-document key the FORC analysis reads."""
    area, forc, waveform = settings.readout.area, settings.forc, settings.waveform()
    return ForcMetadata(
        device=afm.forc_sweep.name, points_x=area.pixels_x, points_y=area.pixels_y,
        width_nm=area.width_nm, height_nm=area.height_nm,
        center_x_nm=area.center_x_nm, center_y_nm=area.center_y_nm,
        u_ac_v=settings.readout.drive_amplitude_v,
        step_duration_s=settings.readout.step_duration_s,
        peak_v=[float(v) for v in waveform.peak_v], steps_per_cycle=forc.steps_per_cycle,
        cycles_per_forc=forc.cycles_per_forc, read_bias_v=forc.read_bias_v,
        dc_bias_v=[float(v) for v in waveform.bias_v],
    )


def forc_spectroscopy(
    afm: BandExcitationAfm,
    settings: ForcSpectroscopySettings,
    *,
    md: dict[str, Any] | None = None,
):
    """One run: per grid point, tip moved, FORC sweep taken (spectra to HDF5), one event."""
    points = settings.readout.points_nm()
    settings.waveform()  # a malformed sweep fails here, before any command
    afm.check_settings(settings.readout.point_acquisition())
    afm.forc_sweep.check_settings(settings.forc_at(*points[0]))
    metadata = {
        "plan_name": "forc_spectroscopy",
        "num_points": len(points),
        "progress": {"stream": "primary", "total": len(points), "unit": "point"},
        **forc_metadata(afm, settings).document(),
        **(md or {}),
    }
    sweep = afm.forc_sweep

    @bpp.stage_decorator([afm])  # stages its FORC path too
    @bpp.run_decorator(md=metadata)
    def grid():
        yield from bps.prepare(afm, settings.readout.point_acquisition(), wait=True)
        for index, (x_nm, y_nm) in enumerate(points):
            yield from bps.checkpoint()
            yield from bps.mv(sweep.point_index, index)
            yield from bps.prepare(sweep, settings.forc_at(x_nm, y_nm), wait=True)
            yield from trigger_with_retakes(sweep, f"{sweep.name} point {index}")
            yield from bps.create("primary")
            yield from bps.read(sweep)
            yield from bps.save()

    return (yield from bpp.finalize_wrapper(grid(), make_tip_safe(afm)))
