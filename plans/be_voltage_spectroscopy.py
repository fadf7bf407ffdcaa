"""BE voltage spectroscopy on a grid: at each point a DC-modulation sweep, one event per point.

The tip is parked at each cell centre of an nx × ny grid (row 0 at the lowest y, as a
map's lines) and swept 0 → +A → 0 → −A → 0 (+ offset), each DC write step followed by a read
step; a band-excitation spectrum is taken at every step. The tip's peak bias is checked
against the profile before the run opens, and the tip is left unbiased and parked on every
exit (`make_tip_safe`, confirmed by the controller).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np

from vegard.analysis.run_metadata import BeSpectroscopyMetadata
from vegard.instruments.afm_driver import BandExcitationSettings, DcSweepSettings, ScanArea
from vegard.instruments.band_excitation_afm_device import AcquisitionSettings, BandExcitationAfm
from vegard.instruments.be_spectroscopy_device import SweepAcquisition

from .band_excitation import make_tip_safe
from .retakes import trigger_with_retakes
from .spectroscopy_waveforms import bipolar_triangle_v

SPECTROSCOPY_EXCITATION = "lf_dc_plus"
"""The BE drive of each step: the LF chirp at U_ac (its ±U_dc is not used: the sweep sets DC)."""


@dataclass(frozen=True)
class VoltageSpectroscopySettings:
    """The grid, the sweep and the band excitation of each step."""

    area: ScanArea
    """Grid centre and size (nm); pixels_x × pixels_y are the points."""
    sweep: DcSweepSettings
    band_hz: tuple[float, float]
    bins: int
    chirp_duration_s: float
    averages: int
    drive_amplitude_v: float

    def points_nm(self) -> list[tuple[float, float]]:
        """Cell centres, row by row from the lowest y."""
        a = self.area
        xs = a.center_x_nm + (np.arange(a.pixels_x) + 0.5 - a.pixels_x / 2) * (
            a.width_nm / a.pixels_x)
        ys = a.center_y_nm + (np.arange(a.pixels_y) + 0.5 - a.pixels_y / 2) * (
            a.height_nm / a.pixels_y)
        return [(float(x), float(y)) for y in ys for x in xs]

    def dc_bias_v(self) -> np.ndarray:
        """The write biases of one cycle, as the controller sweeps them."""
        s = self.sweep
        return bipolar_triangle_v(s.amplitude_v, s.offset_v, s.steps_per_cycle, 1)

    def point_acquisition(self) -> AcquisitionSettings:
        """The AFM's band and drive: a one-pixel acquisition at the first point."""
        x_nm, y_nm = self.points_nm()[0]
        return AcquisitionSettings(
            area=ScanArea(x_nm, y_nm, 1.0, 1.0, 1, 1),
            excitation=BandExcitationSettings(
                band_low_hz=float(self.band_hz[0]), band_high_hz=float(self.band_hz[1]),
                bins=int(self.bins), chirp_duration_s=float(self.chirp_duration_s),
                averages=int(self.averages), dc_offset_v=0.0,
                excitations=(SPECTROSCOPY_EXCITATION,)),
            drive_amplitude_v=self.drive_amplitude_v,
            point=True,
        )

    def sweep_at(self, x_nm: float, y_nm: float) -> SweepAcquisition:
        return SweepAcquisition(x_nm, y_nm, self.sweep, self.drive_amplitude_v)


def spectroscopy_metadata(afm: BandExcitationAfm, settings: VoltageSpectroscopySettings
                          ) -> BeSpectroscopyMetadata:
    """The `be_spectroscopy` start-document key the loop analysis reads."""
    area = settings.area
    return BeSpectroscopyMetadata(
        device=afm.voltage_sweep.name, points_x=area.pixels_x, points_y=area.pixels_y,
        width_nm=area.width_nm, height_nm=area.height_nm,
        center_x_nm=area.center_x_nm, center_y_nm=area.center_y_nm,
        dc_bias_v=[float(v) for v in settings.dc_bias_v()], cycles=settings.sweep.cycles,
        read_bias_v=settings.sweep.read_bias_v, u_ac_v=settings.drive_amplitude_v,
    )


def be_voltage_spectroscopy(
    afm: BandExcitationAfm,
    settings: VoltageSpectroscopySettings,
    *,
    md: dict[str, Any] | None = None,
):
    """One run: per grid point, tip moved, sweep taken (spectra to HDF5), one event."""
    points = settings.points_nm()
    settings.dc_bias_v()  # a malformed sweep fails here, before any command
    afm.check_settings(settings.point_acquisition())
    afm.voltage_sweep.check_settings(settings.sweep_at(*points[0]))
    metadata = {
        "plan_name": "be_voltage_spectroscopy",
        "num_points": len(points),
        "progress": {"stream": "primary", "total": len(points), "unit": "point"},
        **spectroscopy_metadata(afm, settings).document(),
        **(md or {}),
    }
    sweep = afm.voltage_sweep

    @bpp.stage_decorator([afm])  # stages its sweep path too
    @bpp.run_decorator(md=metadata)
    def grid():
        yield from bps.prepare(afm, settings.point_acquisition(), wait=True)
        for index, (x_nm, y_nm) in enumerate(points):
            yield from bps.checkpoint()
            yield from bps.mv(sweep.point_index, index)
            yield from bps.prepare(sweep, settings.sweep_at(x_nm, y_nm), wait=True)
            yield from trigger_with_retakes(sweep, f"{sweep.name} point {index}")
            yield from bps.create("primary")
            yield from bps.read(sweep)
            yield from bps.save()

    return (yield from bpp.finalize_wrapper(grid(), make_tip_safe(afm)))
