"""The operando SXDM protocol file: the cell's charge, the raster, the rocking scan, the
detector's use, the peak search, the maps and the crystal's dose constants."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from vegard.config.models import ProtocolSettings, StrictModel


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


class OperandoSxdmProtocol(ProtocolSettings):
    protocol: Literal["operando_sxdm"]
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
    full_map: int | None = None
    """With `dry_run: estimate`: map number n (1-based) is taken at full size on the
    simulators (charge started n−1 map periods before it), the rest estimated; `vegard
    dry-run --full-map n` sets it. Checked against `maps.count` and the maps the charge
    lasts for (`check_operando_sxdm`)."""
