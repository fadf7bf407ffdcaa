"""`esm_temperature_series`: ESM maps of one area at each stage temperature, drift tracked,
for the Arrhenius activation energy of ionic transport."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from vegard.config.models import ProtocolSettings
from vegard.registry import Bench, ProtocolKind

from .esm_headlines import headline_lines
from .esm_settings import (
    AFM_DRIVER,
    DiskRegion,
    DriftTracking,
    ExcitationSettings,
    MapArea,
    Material,
    SeriesTemperatures,
    check_afm,
    map_settings_of,
)
from .stage_limits import STAGE_DRIVER, check_stage_temperatures


class EsmTemperatureSeriesProtocol(ProtocolSettings):
    protocol: Literal["esm_temperature_series"]
    temperature_stage: SeriesTemperatures
    map: MapArea
    excitation: ExcitationSettings
    drift_tracking: DriftTracking = DriftTracking()
    region: Literal["largest_grain"] | DiskRegion = "largest_grain"
    material: Material = Material()
    drive_frequency_hz: float = Field(250e3, ge=10e3, le=2e6)
    """Frequency at which the strain is read (the contact resonance), for L_D and Eq. 4."""


def check(protocol: EsmTemperatureSeriesProtocol, bench: Bench, path: Path) -> None:
    tracking = protocol.drift_tracking
    check_afm(protocol, bench, path, tracking.size_factor if tracking.enabled else 1.0)
    settings = protocol.temperature_stage
    temperatures = {
        f"temperature_stage.temperatures_k[{index}]": value
        for index, value in enumerate(settings.temperatures_k)
    }
    if settings.final_temperature_k is not None:
        temperatures["temperature_stage.final_temperature_k"] = settings.final_temperature_k
    check_stage_temperatures(temperatures, bench, path)


def plan(protocol: EsmTemperatureSeriesProtocol, devices, bench: Bench, md: dict[str, Any]):
    from vegard.analysis.run_metadata import Disk, EsmSeriesMetadata, LargestGrain
    from vegard.plans.esm_temperature_series import (
        TRACKING_STREAM,
        DriftTrackingSettings,
        esm_temperature_series,
    )

    settings = protocol.temperature_stage
    tracking = protocol.drift_tracking
    region = (
        LargestGrain() if protocol.region == "largest_grain"
        else Disk(center_nm=protocol.region.center_nm, radius_nm=protocol.region.radius_nm)
    )
    series = EsmSeriesMetadata(
        temperatures_k=list(settings.temperatures_k),
        region=region,
        material=protocol.material.model_dump(mode="json"),
        drive_frequency_hz=protocol.drive_frequency_hz,
        tracking_stream=TRACKING_STREAM,
    )
    return esm_temperature_series(
        devices["afm"],
        devices["temperature_stage"],
        settings.temperatures_k,
        map_settings_of(protocol),
        settle_tolerance_k=settings.settle_tolerance_k,
        settle_time_s=settings.settle_time_s,
        tracking=DriftTrackingSettings(
            size_factor=tracking.size_factor, pixels=tracking.pixels,
            line_rate_hz=tracking.line_rate_hz,
        ) if tracking.enabled else None,
        ramp_rate_k_per_min=settings.ramp_rate_k_per_min,
        final_temperature_k=settings.final_temperature_k,
        safe_temperature_k=bench.settings["temperature_stage"].safe_temperature_k,
        md={**md, **series.document()},
    )


def analyses(figures_for):
    from vegard.analysis.esm_temperature_series import EsmTemperatureSeriesAnalysis

    return [EsmTemperatureSeriesAnalysis(figures_for)]


def canned_readings(protocol: EsmTemperatureSeriesProtocol, bench: Bench):
    """`vegard check`: the stage settles where it is sent; no drift between temperatures."""
    from vegard.canned_readings import stage_readings, tracking_image_nm
    from vegard.plan_check import CannedReadings

    image = tracking_image_nm(protocol.drift_tracking.pixels)
    return stage_readings(bench) | CannedReadings(reads={"afm.tracking_image.image_nm": image})


KIND = ProtocolKind(
    name="esm_temperature_series",
    model=EsmTemperatureSeriesProtocol,
    roles=lambda protocol: {"afm": AFM_DRIVER, "temperature_stage": STAGE_DRIVER},
    check=check,
    plan=plan,
    analyses=analyses,
    summary_lines=headline_lines,
    canned_readings=canned_readings,
)
