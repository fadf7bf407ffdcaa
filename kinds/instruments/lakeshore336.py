"""A variable-temperature stage on a LakeShore 336 controller (SCPI over Ethernet)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vegard.config.models import DeviceSettings
from vegard.registry import InstrumentKind


class TemperatureStageSettings(DeviceSettings):
    driver: Literal["lakeshore336"] = "lakeshore336"
    timeout_s: float = Field(2.0, gt=0, le=60)
    minimum_temperature_k: float = Field(200.0, gt=0, le=1500)
    maximum_temperature_k: float = Field(400.0, gt=0, le=1500)
    safe_temperature_k: float = Field(295.0, gt=0, le=1500)
    poll_period_s: float = Field(2.0, gt=0, le=600)
    settle_timeout_s: float = Field(3600.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _range_is_ordered(self) -> TemperatureStageSettings:
        low, high = self.minimum_temperature_k, self.maximum_temperature_k
        if not low < high:
            raise ValueError(f"minimum_temperature_k ({low}) must be below maximum ({high})")
        if not low <= self.safe_temperature_k <= high:
            raise ValueError(
                f"safe_temperature_k = {self.safe_temperature_k} must lie in {low}–{high} K"
            )
        return self


def build(settings: TemperatureStageSettings, name: str, address: str, context):
    from vegard.instruments.lakeshore336_driver import LakeShore336Driver
    from vegard.instruments.temperature_stage_device import TemperatureStage
    from vegard.instruments.visa_connection import VisaConnection

    connection = VisaConnection(
        address, name=name, timeout_s=settings.timeout_s, clock=context.clock)
    return TemperatureStage(
        LakeShore336Driver(connection),
        clock=context.clock,
        minimum_temperature_k=settings.minimum_temperature_k,
        maximum_temperature_k=settings.maximum_temperature_k,
        poll_period_s=settings.poll_period_s,
        settle_timeout_s=settings.settle_timeout_s,
        name=name,
    )


def simulator():
    from vegard.simulators.lab import SimulatorKind
    from vegard.simulators.lakeshore336_emulator import LakeShore336Emulator
    from vegard.simulators.temperature_stage_model import TemperatureStageModel

    return SimulatorKind(model=TemperatureStageModel, emulator=LakeShore336Emulator)


KIND = InstrumentKind(
    driver="lakeshore336", settings=TemperatureStageSettings, build=build,
    default_name="temperature_stage", simulator=simulator,
)
