"""What the ESM protocols share: the raster, the three-excitation drive, the stage hold
and series, drift tracking, the strain analysis's material, and their limits on the AFM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from vegard.config.errors import ConfigError
from vegard.config.models import StrictModel
from vegard.registry import Bench

from .stage_limits import StageTemperatureK

AFM_DRIVER = "be_afm"
ScanLengthNm = Annotated[float, Field(gt=0, le=20_000)]
PixelCount = Annotated[int, Field(ge=1, le=1024)]


class TemperatureHold(StrictModel):
    """Settle the stage at one temperature before imaging, and keep it there."""

    temperature_k: StageTemperatureK
    ramp_rate_k_per_min: float = Field(10.0, gt=0, le=50)
    settle_tolerance_k: float = Field(0.1, gt=0, le=10)
    settle_time_s: float = Field(60.0, ge=0, le=3600)


class MapArea(StrictModel):
    """The raster, in scanner coordinates (nm)."""

    center_nm: tuple[float, float] = (0.0, 0.0)
    size_nm: tuple[ScanLengthNm, ScanLengthNm]
    pixels: tuple[PixelCount, PixelCount]


class ExcitationSettings(StrictModel):
    """The three-excitation drive: U_ac, ±U_dc and the band-excitation chirp."""

    drive_amplitude_v: float = Field(gt=0, le=10)
    dc_offset_v: float = Field(ge=0, le=10)
    band_hz: tuple[
        Annotated[float, Field(ge=10e3, le=2e6)], Annotated[float, Field(ge=10e3, le=2e6)]
    ] = (80e3, 320e3)
    bins: int = Field(64, ge=8, le=1024)
    chirp_duration_s: float = Field(4e-3, ge=1e-4, le=0.1)
    averages: int = Field(20, ge=1, le=1000)

    @model_validator(mode="after")
    def _band_is_ordered(self) -> ExcitationSettings:
        low, high = self.band_hz
        if not low < high:
            raise ValueError(f"band_hz: low edge {low:g} Hz must be below high edge {high:g} Hz")
        return self


class DriftTracking(StrictModel):
    """Re-find the reference area at each temperature from a fast topography image."""

    enabled: bool = True
    size_factor: float = Field(1.5, ge=1.0, le=4.0)
    """Tracking image side / map side: room for the drift of one temperature step."""
    pixels: int = Field(64, ge=16, le=512)
    line_rate_hz: float = Field(4.0, gt=0, le=100)


class DiskRegion(StrictModel):
    """A circular region in scan coordinates of the first map."""

    center_nm: tuple[float, float]
    radius_nm: float = Field(gt=0, le=20_000)


class Material(StrictModel):
    """Constants of the sample the strain analysis needs (BRIEF Eqs. 3-4)."""

    poisson_ratio: float = Field(0.25, gt=-1, le=0.5)
    vegard_coefficient: float = Field(0.03, gt=0, le=1)
    diffusion_coefficient_300k_cm2_per_s: float = Field(3e-6, gt=0, le=1)
    mobile_ion_concentration_mol_per_m3: float = Field(11_700.0, gt=0, le=1e6)
    ion_charge_number: int = Field(1, ge=1, le=4)


class SeriesTemperatures(StrictModel):
    temperatures_k: list[StageTemperatureK] = Field(min_length=2, max_length=100)
    ramp_rate_k_per_min: float = Field(10.0, gt=0, le=50)
    settle_tolerance_k: float = Field(0.1, gt=0, le=10)
    settle_time_s: float = Field(60.0, ge=0, le=3600)
    final_temperature_k: StageTemperatureK | None = None


def check_afm(protocol, bench: Bench, path: Path, scan_size_factor: float = 1.0) -> None:
    """Tip voltages and the raster (and any larger tracking raster) within the profile."""
    afm = bench.settings["afm"]
    drive = protocol.excitation
    peak_v = drive.drive_amplitude_v + drive.dc_offset_v
    if peak_v > afm.maximum_bias_v:
        raise ConfigError(
            f"{path}: excitation.drive_amplitude_v + excitation.dc_offset_v = {peak_v:g} V "
            f"is not valid: allowed: ≤ {afm.maximum_bias_v:g} V "
            f"({bench.where('afm', 'maximum_bias_v')})"
        )
    half_range_nm = afm.scan_range_nm / 2
    for axis, center, size in zip("xy", protocol.map.center_nm, protocol.map.size_nm, strict=True):
        reach_nm = abs(center) + size * scan_size_factor / 2
        if reach_nm > half_range_nm:
            raise ConfigError(
                f"{path}: map {axis}: |center| + size × {scan_size_factor:g}/2 = {reach_nm:g} nm "
                f"is not valid: allowed: ≤ {half_range_nm:g} nm "
                f"(scanner range of profile {bench.profile!r})"
            )


def map_settings_of(protocol):
    """The plan's acquisition settings from a protocol's `map` and `excitation`."""
    from vegard.instruments.afm_driver import ScanArea
    from vegard.plans.band_excitation import map_settings

    area = protocol.map
    drive = protocol.excitation
    return map_settings(
        ScanArea(*area.center_nm, *area.size_nm, *area.pixels),
        drive_amplitude_v=drive.drive_amplitude_v,
        dc_offset_v=drive.dc_offset_v,
        band_hz=drive.band_hz,
        bins=drive.bins,
        chirp_duration_s=drive.chirp_duration_s,
        averages=drive.averages,
    )
