"""The grid and the band-excitation read-out the point spectroscopies share (FORC, time
relaxation): where the tip is parked and what the AFM drives at every step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vegard.instruments.afm_driver import BandExcitationSettings, ScanArea
from vegard.instruments.band_excitation_afm_device import AcquisitionSettings

SPECTROSCOPY_EXCITATION = "lf_dc_plus"
"""The BE drive of each step: the LF chirp at U_ac (the waveform sets the DC)."""


@dataclass(frozen=True)
class BeReadoutGrid:
    """The grid (cell centres of an nx × ny area, nm) and the BE read-out of each step."""

    area: ScanArea
    band_hz: tuple[float, float]
    bins: int
    chirp_duration_s: float
    averages: int
    drive_amplitude_v: float

    def points_nm(self) -> list[tuple[float, float]]:
        """Cell centres, row by row from the lowest y (as a map's lines)."""
        a = self.area
        xs = a.center_x_nm + (np.arange(a.pixels_x) + 0.5 - a.pixels_x / 2) * (
            a.width_nm / a.pixels_x)
        ys = a.center_y_nm + (np.arange(a.pixels_y) + 0.5 - a.pixels_y / 2) * (
            a.height_nm / a.pixels_y)
        return [(float(x), float(y)) for y in ys for x in xs]

    @property
    def step_duration_s(self) -> float:
        """One spectrum: the chirp, every average."""
        return self.chirp_duration_s * self.averages

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
