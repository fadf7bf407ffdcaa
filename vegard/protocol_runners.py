"""From a validated protocol to a plan and its analysis, one entry per protocol kind.

The same analysis factory serves the live run and `vegard replay`, so the two
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bluesky.utils import Msg

from vegard.analysis.temperature_steps import TemperatureStepsAnalysis
from vegard.config.errors import ConfigError
from vegard.config.profiles import Profile
from vegard.config.protocols import Protocol, TemperatureStepsProtocol
from vegard.instruments.lakeshore336 import HeaterRange
from vegard.plans.temperature_steps import temperature_steps

FiguresFor = Callable[[str], Path]


class Analysis:
    """What protocol analyses share: a document callback with a `result` dict."""

    result: dict[str, Any] | None

    def __call__(self, name: str, doc: dict) -> Any: ...


@dataclass(frozen=True)
class ProtocolRunner:
    devices: tuple[str, ...]
    check: Callable[[Any, Profile, Path], None]
    plan: Callable[[Any, dict[str, Any], Profile, dict[str, Any]], Generator[Msg, Any, Any]]
    analyses: Callable[[FiguresFor | None], list[Analysis]]


def _check_temperature_steps(protocol: TemperatureStepsProtocol, profile: Profile, path: Path):
    stage = profile.devices.temperature_stage
    if stage is None:
        raise ConfigError(f"profile {profile.profile!r}: devices.temperature_stage is missing")
    low, high = stage.minimum_temperature_k, stage.maximum_temperature_k
    settings = protocol.temperature_stage
    for index, value in enumerate(settings.temperatures_k):
        if not low <= value <= high:
            raise ConfigError(
                f"{path}: temperature_stage.temperatures_k[{index}] = {value:g} is not valid: "
                f"allowed: {low:g} ≤ value ≤ {high:g} K (profile {profile.profile!r})"
            )


def _plan_temperature_steps(protocol: TemperatureStepsProtocol, devices, profile, md):
    settings = protocol.temperature_stage
    return temperature_steps(
        devices["temperature_stage"],
        settings.temperatures_k,
        settings.settle_tolerance_k,
        settings.settle_time_s,
        ramp_rate_k_per_min=settings.ramp_rate_k_per_min,
        heater_range=HeaterRange(settings.heater_range),
        final_temperature_k=settings.final_temperature_k,
        safe_temperature_k=profile.devices.temperature_stage.safe_temperature_k,
        md=md,
    )


RUNNERS: dict[str, ProtocolRunner] = {
    "temperature_steps": ProtocolRunner(
        devices=("temperature_stage",),
        check=_check_temperature_steps,
        plan=_plan_temperature_steps,
        analyses=lambda figures_for: [TemperatureStepsAnalysis(figures_for)],
    ),
}


def runner_for(protocol: Protocol) -> ProtocolRunner:
    return RUNNERS[protocol.protocol]


def run_metadata(protocol: Protocol, path: Path) -> dict[str, Any]:
    """What every run's start document says about the protocol that made it."""
    return {
        "protocol": str(path),
        "protocol_kind": protocol.protocol,
        "sample": protocol.sample,
        "protocol_settings": protocol.model_dump(mode="json"),
    }


def merged_analysis(analyses: list[Analysis]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for analysis in analyses:
        merged.update(analysis.result or {})
    return merged
