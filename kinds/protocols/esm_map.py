"""`esm_map`: one three-excitation ESM map, at room temperature or a held stage temperature."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from vegard.config.models import ProtocolSettings
from vegard.registry import Bench, ProtocolKind

from .esm_headlines import headline_lines
from .esm_settings import (
    AFM_DRIVER,
    ExcitationSettings,
    MapArea,
    TemperatureHold,
    check_afm,
    map_settings_of,
)
from .stage_limits import STAGE_DRIVER, check_stage_temperatures


class EsmMapProtocol(ProtocolSettings):
    protocol: Literal["esm_map"]
    temperature_stage: TemperatureHold | None = None
    map: MapArea
    excitation: ExcitationSettings


def roles(protocol: EsmMapProtocol) -> dict[str, str]:
    if protocol.temperature_stage is None:
        return {"afm": AFM_DRIVER}
    return {"afm": AFM_DRIVER, "temperature_stage": STAGE_DRIVER}


def check(protocol: EsmMapProtocol, bench: Bench, path: Path) -> None:
    check_afm(protocol, bench, path)
    if protocol.temperature_stage is not None:
        check_stage_temperatures(
            {"temperature_stage.temperature_k": protocol.temperature_stage.temperature_k},
            bench, path,
        )


def plan(protocol: EsmMapProtocol, devices, bench: Bench, md: dict[str, Any]):
    from vegard.plans.band_excitation import three_excitation_map
    from vegard.plans.esm_temperature_series import esm_temperature_series

    settings = map_settings_of(protocol)
    hold = protocol.temperature_stage
    if hold is None:
        return three_excitation_map(devices["afm"], settings, md=md)
    # a series of one temperature, without drift tracking: settle, then map
    return esm_temperature_series(
        devices["afm"],
        devices["temperature_stage"],
        [hold.temperature_k],
        settings,
        settle_tolerance_k=hold.settle_tolerance_k,
        settle_time_s=hold.settle_time_s,
        tracking=None,
        ramp_rate_k_per_min=hold.ramp_rate_k_per_min,
        safe_temperature_k=bench.settings["temperature_stage"].safe_temperature_k,
        md={**md, "plan_name": "three_excitation_map"},
    )


def analyses(figures_for):
    from vegard.analysis.esm_map import EsmMapAnalysis

    return [EsmMapAnalysis(figures_for)]


def canned_readings(protocol: EsmMapProtocol, bench: Bench):
    """`vegard check`: the stage (if held) settles where it is sent."""
    from vegard.canned_readings import stage_readings
    from vegard.plan_check import CannedReadings

    return stage_readings(bench) if protocol.temperature_stage is not None else CannedReadings()


KIND = ProtocolKind(
    name="esm_map", model=EsmMapProtocol, roles=roles, check=check, plan=plan,
    analyses=analyses, summary_lines=headline_lines,
    canned_readings=canned_readings,
)
