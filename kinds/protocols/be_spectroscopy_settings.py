"""The parts of a `be_voltage_spectroscopy` protocol file and their limits on the AFM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator

from vegard.config.errors import ConfigError
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
    afm = bench.settings["afm"]
    sweep, drive_v = protocol.sweep, protocol.excitation.drive_amplitude_v
    write_v = abs(sweep.offset_v) + sweep.amplitude_v
    for fields, peak_v in (
        ("|sweep.offset_v| + sweep.amplitude_v + excitation.drive_amplitude_v",
         write_v + drive_v),
        ("|sweep.read_bias_v| + excitation.drive_amplitude_v", abs(sweep.read_bias_v) + drive_v),
    ):
        if peak_v > afm.maximum_bias_v:
            raise ConfigError(
                f"{path}: {fields} = {peak_v:g} V is not valid: allowed: ≤ "
                f"{afm.maximum_bias_v:g} V ({bench.where('afm', 'maximum_bias_v')})")
    half_range_nm = afm.scan_range_nm / 2
    grid = protocol.grid
    for axis, center, size in zip("xy", grid.center_nm, grid.size_nm, strict=True):
        reach_nm = abs(center) + size / 2
        if reach_nm > half_range_nm:
            raise ConfigError(
                f"{path}: grid {axis}: |center| + size/2 = {reach_nm:g} nm is not valid: "
                f"allowed: ≤ {half_range_nm:g} nm (scanner range of profile {bench.profile!r})")


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
