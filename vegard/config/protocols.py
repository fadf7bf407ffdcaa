"""Protocol files: what to measure, in the scientist's units, validated up front.

The `protocol` field names the kind; each kind is one pydantic model. Limits
here are the instruments' rated ranges; the session checks them again against
the profile before connecting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from .errors import ConfigError, describe_validation_error
from .profiles import StrictModel
from .yaml_file import read_yaml_mapping

StageTemperatureK = Annotated[float, Field(ge=200.0, le=400.0)]
ScanLengthNm = Annotated[float, Field(gt=0, le=20_000)]
PixelCount = Annotated[int, Field(ge=1, le=1024)]


class TemperatureStepsSettings(StrictModel):
    temperatures_k: list[StageTemperatureK] = Field(min_length=1, max_length=500)
    ramp_rate_k_per_min: float = Field(gt=0, le=50)
    settle_tolerance_k: float = Field(gt=0, le=10)
    settle_time_s: float = Field(ge=0, le=3600)
    heater_range: Literal["low", "medium", "high"] = "high"
    final_temperature_k: StageTemperatureK | None = None


class TemperatureStepsProtocol(StrictModel):
    protocol: Literal["temperature_steps"]
    sample: str = Field(min_length=1)
    description: str = ""
    temperature_stage: TemperatureStepsSettings


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


class EsmMapProtocol(StrictModel):
    protocol: Literal["esm_map"]
    sample: str = Field(min_length=1)
    description: str = ""
    temperature_stage: TemperatureHold | None = None
    map: MapArea
    excitation: ExcitationSettings


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


class EsmTemperatureSeriesProtocol(StrictModel):
    protocol: Literal["esm_temperature_series"]
    sample: str = Field(min_length=1)
    description: str = ""
    temperature_stage: SeriesTemperatures
    map: MapArea
    excitation: ExcitationSettings
    drift_tracking: DriftTracking = DriftTracking()
    region: Literal["largest_grain"] | DiskRegion = "largest_grain"
    material: Material = Material()
    drive_frequency_hz: float = Field(250e3, ge=10e3, le=2e6)
    """Frequency at which the strain is read (the contact resonance), for L_D and Eq. 4."""


class OperandoCell(StrictModel):
    """The galvanostatic charge: C-rate of the electrode's capacity, up to a voltage limit."""

    active_mass_mg: float = Field(gt=0, le=1000)
    capacity_mah_per_g: float = Field(147.0, gt=0, le=1000)
    c_rate: float = Field(gt=0, le=10)
    """Charge current in units of capacity per hour: C/15 is 0.0667 (or write "C/15")."""
    voltage_limit_v: float = Field(gt=0, le=6)

    @model_validator(mode="before")
    @classmethod
    def _c_rate_as_fraction(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("c_rate"), str):
            text = data["c_rate"].replace(" ", "").upper()
            if text.startswith("C/"):
                try:
                    data = {**data, "c_rate": 1.0 / float(text[2:])}
                except (ValueError, ZeroDivisionError):
                    pass
        return data


class SxdmRaster(StrictModel):
    """The piezo raster in µm (sample frame); pixels are x (flown) × y (stepped)."""

    center_um: tuple[float, float] = (0.0, 0.0)
    size_um: tuple[Annotated[float, Field(gt=0, le=100)], Annotated[float, Field(gt=0, le=100)]]
    pixels: tuple[Annotated[int, Field(ge=2, le=1000)], Annotated[int, Field(ge=1, le=1000)]]


class RockingScan(StrictModel):
    points: int = Field(30, ge=1, le=500)
    step_deg: float = Field(0.016, gt=0, le=1)


class SxdmDetectorUse(StrictModel):
    """Exposure per frame (the dose budget caps it) and the ROI, rows (2θ) × columns."""

    exposure_s: float = Field(gt=0, le=10)
    roi_pixels: tuple[Annotated[int, Field(ge=1, le=512)], Annotated[int, Field(ge=1, le=512)]]


class PeakSearch(StrictModel):
    """The eta scan with a tall ROI that re-centres the peak before each map."""

    half_range_deg: float = Field(0.3, gt=0, le=5)
    step_deg: float = Field(0.025, gt=0, le=1)
    exposure_s: float = Field(0.01, gt=0, le=10)
    roi_pixels: tuple[Annotated[int, Field(ge=1, le=512)], Annotated[int, Field(ge=1, le=512)]] = (
        400, 96)


class SxdmMaps(StrictModel):
    count: int = Field(ge=1, le=10_000)
    """Most maps to take; the charge's voltage limit may end the series first."""
    interval_s: float = Field(0.0, ge=0, le=86_400)
    """Shortest time from one map's start to the next (0: back to back)."""


class DoseMaterial(StrictModel):
    """What the absorbed-dose estimate needs of the crystal."""

    mass_attenuation_cm2_per_g: float = Field(100.0, gt=0, le=1e5)
    """μ/ρ at the beam energy (LiMn1.5Ni0.5O4 at 10 keV ≈ 100 cm²/g from elemental tables)."""


class OperandoSxdmProtocol(StrictModel):
    protocol: Literal["operando_sxdm"]
    sample: str = Field(min_length=1)
    description: str = ""
    cell: OperandoCell
    start_d400_angstrom: float = Field(gt=0.5, le=10)
    """d of the reflection before the charge: where the first peak search looks."""
    map: SxdmRaster
    rocking: RockingScan = RockingScan()
    detector: SxdmDetectorUse
    peak_search: PeakSearch = PeakSearch()
    maps: SxdmMaps
    material: DoseMaterial = DoseMaterial()
    dry_run: Literal["acquire", "estimate"] = "acquire"
    """`estimate`: a dry run reports duration, data volume and dose without taking frames."""


PROTOCOL_MODELS: dict[str, type[StrictModel]] = {
    "temperature_steps": TemperatureStepsProtocol,
    "esm_map": EsmMapProtocol,
    "esm_temperature_series": EsmTemperatureSeriesProtocol,
    "operando_sxdm": OperandoSxdmProtocol,
}

Protocol = (
    TemperatureStepsProtocol | EsmMapProtocol | EsmTemperatureSeriesProtocol
    | OperandoSxdmProtocol
)


def load_protocol(path: Path | str) -> Protocol:
    path = Path(path)
    data = read_yaml_mapping(path)
    kind = data.get("protocol")
    if not isinstance(kind, str) or kind not in PROTOCOL_MODELS:  # a list/dict is unhashable
        known = ", ".join(sorted(PROTOCOL_MODELS))
        if kind is None:
            raise ConfigError(f"{path}: protocol is missing (required field; one of: {known})")
        raise ConfigError(f"{path}: protocol = {kind!r} is not valid: allowed: one of {known}")
    try:
        return PROTOCOL_MODELS[kind].model_validate(data)  # type: ignore[return-value]
    except ValidationError as error:
        raise ConfigError(describe_validation_error(path, error)) from None
