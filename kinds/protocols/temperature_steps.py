"""`temperature_steps`: step the stage through setpoints, settle at each, log the settling."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from vegard.config.models import ProtocolSettings, StrictModel
from vegard.registry import Bench, ProtocolKind

from .stage_limits import STAGE_DRIVER, StageTemperatureK, check_stage_temperatures


class TemperatureStepsSettings(StrictModel):
    temperatures_k: list[StageTemperatureK] = Field(min_length=1, max_length=500)
    ramp_rate_k_per_min: float = Field(gt=0, le=50)
    settle_tolerance_k: float = Field(gt=0, le=10)
    settle_time_s: float = Field(ge=0, le=3600)
    heater_range: Literal["low", "medium", "high"] = "high"
    final_temperature_k: StageTemperatureK | None = None


class TemperatureStepsProtocol(ProtocolSettings):
    protocol: Literal["temperature_steps"]
    temperature_stage: TemperatureStepsSettings


def check(protocol: TemperatureStepsProtocol, bench: Bench, path: Path) -> None:
    check_stage_temperatures(
        {
            f"temperature_stage.temperatures_k[{index}]": value
            for index, value in enumerate(protocol.temperature_stage.temperatures_k)
        },
        bench,
        path,
    )


def plan(protocol: TemperatureStepsProtocol, devices, bench: Bench, md: dict[str, Any]):
    from vegard.instruments.lakeshore336_driver import HeaterRange
    from vegard.plans.temperature_steps import temperature_steps

    settings = protocol.temperature_stage
    return temperature_steps(
        devices["temperature_stage"],
        settings.temperatures_k,
        settings.settle_tolerance_k,
        settings.settle_time_s,
        ramp_rate_k_per_min=settings.ramp_rate_k_per_min,
        heater_range=HeaterRange(settings.heater_range),
        final_temperature_k=settings.final_temperature_k,
        safe_temperature_k=bench.settings["temperature_stage"].safe_temperature_k,
        md=md,
    )


def analyses(figures_for):
    from vegard.analysis.temperature_steps import TemperatureStepsAnalysis

    return [TemperatureStepsAnalysis(figures_for)]


def summary_lines(analysis: dict[str, Any]) -> list[str]:
    lines = []
    for step in analysis.get("steps", []):
        verdict = "ok" if step["within_tolerance"] else "OUT OF TOLERANCE"
        lines.append(
            f"  setpoint {step['setpoint_k']:7.2f} K"
            f"  settled {step['settled_temperature_k']:8.3f} K"
            f"  sample {step['settled_sample_temperature_k']:8.3f} K"
            f"  settling {step['settling_time_s']:6.0f} s  {verdict}"
        )
    return lines


def canned_readings(protocol: TemperatureStepsProtocol, bench: Bench):
    """`vegard check`: the stage settles where it is sent."""
    from vegard.canned_readings import stage_readings

    return stage_readings(bench)


KIND = ProtocolKind(
    name="temperature_steps",
    model=TemperatureStepsProtocol,
    roles=lambda protocol: {"temperature_stage": STAGE_DRIVER},
    check=check,
    plan=plan,
    analyses=analyses,
    summary_lines=summary_lines,
    canned_readings=canned_readings,
)
