"""Instrument profiles: where each device lives and how fast instrument time runs.

A "sim" profile and a "real" profile differ only in addresses (and clock
speed-up): `address: sim` means "the simulator vegard starts for this device".
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, ValidationError, create_model

from .errors import ConfigError, describe_validation_error
from .models import SIM_ADDRESS, DeviceSettings, StrictModel
from .yaml_file import read_yaml_mapping

__all__ = ["SIM_ADDRESS", "DeviceSettings", "Profile", "StrictModel", "load_profile"]


class ClockSettings(StrictModel):
    speedup: float = Field(1.0, gt=0, le=1_000_000)
    follow: str | None = None
    """VISA address of a served simulator lab's control port whose clock to follow."""


class SimulationSettings(StrictModel):
    seed: int = Field(0, ge=0)
    control_port: int = Field(0, ge=0, le=65535)
    ports: dict[str, int] = Field(default_factory=dict)
    parameters: dict[str, dict[str, float]] = Field(default_factory=dict)


class Profile(StrictModel):
    profile: str = Field(min_length=1)
    description: str = ""
    clock: ClockSettings = ClockSettings()
    simulation: SimulationSettings = SimulationSettings()
    devices: dict[str, DeviceSettings] = Field(min_length=1)
    """name → settings of one of the installed instrument kinds (`driver:`)."""

    def device_names(self) -> list[str]:
        """The devices this profile describes, in declaration order."""
        return list(self.devices)

    def simulated_devices(self) -> list[str]:
        return [name for name, settings in self.devices.items()
                if settings.address == SIM_ADDRESS]

    def runs_dry(self) -> bool:
        """Simulated devices, or a clock that follows a served simulator lab: a profile for
        dry runs; any other profile runs at its instruments."""
        return bool(self.simulated_devices()) or self.clock.follow is not None

    def drivers(self) -> dict[str, str]:
        """name → driver of every device."""
        return {name: settings.driver for name, settings in self.devices.items()}


@cache
def _validating_model() -> type[Profile]:
    """A `Profile` whose devices are the discriminated union of the installed kinds."""
    from vegard.registry import instrument_kinds

    settings = tuple(kind.settings for kind in instrument_kinds().values())
    union = Annotated[Union[settings], Field(discriminator="driver")]  # noqa: UP007
    return create_model("Profile", __base__=Profile, devices=(dict[str, union], ...))


def _check_drivers(path: Path, data: dict[str, Any]) -> None:
    """A missing or unknown `driver:` said plainly (pydantic's tag error names no choices)."""
    from vegard.registry import instrument_kinds

    devices = data.get("devices")
    if not isinstance(devices, dict):
        return
    known = ", ".join(sorted(instrument_kinds()))
    for name, entry in devices.items():
        if not isinstance(entry, dict):
            continue
        driver = entry.get("driver")
        if driver is None:
            raise ConfigError(
                f"{path}: devices.{name}.driver is missing (required field; one of: {known})")
        if not isinstance(driver, str) or driver not in instrument_kinds():
            raise ConfigError(
                f"{path}: devices.{name}.driver = {driver!r} is not valid: allowed: one of "
                f"{known}")


def load_profile(path: Path | str) -> Profile:
    path = Path(path)
    data = read_yaml_mapping(path)
    _check_drivers(path, data)
    try:
        return _validating_model().model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(path, error)) from None
