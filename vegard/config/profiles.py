"""Instrument profiles: where each device lives and how fast instrument time runs.

A "sim" profile and a "real" profile differ only in addresses (and clock
speed-up): `address: sim` means "the simulator vegard starts for this device".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError, describe_validation_error
from .yaml_file import read_yaml_mapping

SIM_ADDRESS = "sim"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClockSettings(StrictModel):
    speedup: float = Field(1.0, gt=0, le=1_000_000)
    follow: str | None = None
    """VISA address of a served simulator lab's control port whose clock to follow."""


class SimulationSettings(StrictModel):
    seed: int = Field(0, ge=0)
    control_port: int = Field(0, ge=0, le=65535)
    ports: dict[str, int] = Field(default_factory=dict)
    parameters: dict[str, dict[str, float]] = Field(default_factory=dict)


class TemperatureStageSettings(StrictModel):
    driver: Literal["lakeshore336"] = "lakeshore336"
    address: str = Field(min_length=1)
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


class AfmSettings(StrictModel):
    """A band-excitation AFM controller and what this sample/tip may take."""

    driver: Literal["be_afm"] = "be_afm"
    address: str = Field(min_length=1)
    timeout_s: float = Field(2.0, gt=0, le=60)
    maximum_bias_v: float = Field(10.0, gt=0, le=10)
    """Largest |U_dc| + U_ac allowed on the tip for this sample."""
    scan_range_nm: float = Field(20_000.0, gt=0, le=20_000)
    """Full closed-loop scanner range (the raster must fit in ±range/2)."""
    normal_force_nn: float = Field(10.0, gt=0, le=1000)


class DeviceSettings(StrictModel):
    temperature_stage: TemperatureStageSettings | None = None
    afm: AfmSettings | None = None


class Profile(StrictModel):
    profile: str = Field(min_length=1)
    description: str = ""
    clock: ClockSettings = ClockSettings()
    simulation: SimulationSettings = SimulationSettings()
    devices: DeviceSettings

    def simulated_devices(self) -> list[str]:
        return [
            name for name, settings in self.devices
            if settings is not None and settings.address == SIM_ADDRESS
        ]


def load_profile(path: Path | str) -> Profile:
    path = Path(path)
    data = read_yaml_mapping(path)
    try:
        return Profile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(path, error)) from None
