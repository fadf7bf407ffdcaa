"""The parts of a `be_voltage_spectroscopy` protocol file and their limits on the AFM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from vegard.config.models import StrictModel
from vegard.registry import Bench

from .esm_settings import ExcitationSettings, ScanLengthNm

PointCount = Annotated[int, Field(ge=1, le=256)]


class SpectroscopyGrid(StrictModel):
    """Where the tip is parked: cell centres of an nx × ny grid over an area (nm)."""

    center_nm: tuple[float, float] = (0.0, 0.0)
    size_nm: tuple[ScanLengthNm, ScanLengthNm]
    points: tuple[PointCount, PointCount]


class DcSweep(StrictModel):
    """The bipolar triangular DC sweep in DC-modulation mode (BGlib's defaults: 8 V, 64
    steps per cycle, 3 cycles); every write step is followed by a read step."""

    amplitude_v: float = Field(gt=0, le=10)
    offset_v: float = Field(0.0, ge=-10, le=10)
    steps_per_cycle: int = Field(64, ge=8, le=4096)
    cycles: int = Field(3, ge=1, le=64)
    read_bias_v: float = Field(0.0, ge=-10, le=10)

    @field_validator("steps_per_cycle")
    @classmethod
    def _quarters(cls, steps: int) -> int:
        if steps % 4:
            raise ValueError(f"{steps} is not a multiple of 4 (four equal ramps per cycle)")
        return steps


class SpectroscopyExcitation(ExcitationSettings):
    """The band excitation of each step: U_ac and the chirp (the sweep sets the DC)."""

    dc_offset_v: float = Field(0.0, ge=0, le=0)


def check_spectroscopy(protocol, bench: Bench, path: Path) -> None:
    """Peak tip bias (sweep + AC) and the grid within the profile's AFM limits."""
    from .point_spectroscopy_checks import check_grid, check_tip_bias

    sweep, drive_v = protocol.sweep, protocol.excitation.drive_amplitude_v
    check_tip_bias(bench, path, [
        ("|sweep.offset_v| + sweep.amplitude_v + excitation.drive_amplitude_v",
         abs(sweep.offset_v) + sweep.amplitude_v + drive_v),
        ("|sweep.read_bias_v| + excitation.drive_amplitude_v", abs(sweep.read_bias_v) + drive_v),
    ])
    check_grid(protocol.grid, bench, path)


def settings_of(protocol):
    """The plan's settings from the protocol's grid, sweep and excitation."""
    from vegard.instruments.afm_driver import DcSweepSettings, ScanArea
    from vegard.plans.be_voltage_spectroscopy import VoltageSpectroscopySettings

    grid, sweep, drive = protocol.grid, protocol.sweep, protocol.excitation
    return VoltageSpectroscopySettings(
        area=ScanArea(*grid.center_nm, *grid.size_nm, *grid.points),
        sweep=DcSweepSettings(sweep.amplitude_v, sweep.offset_v, sweep.steps_per_cycle,
                              sweep.cycles, sweep.read_bias_v),
        band_hz=drive.band_hz, bins=drive.bins, chirp_duration_s=drive.chirp_duration_s,
        averages=drive.averages, drive_amplitude_v=drive.drive_amplitude_v,
    )
