"""The base models every instrument and protocol kind builds its settings on."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SIM_ADDRESS = "sim"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSettings(StrictModel):
    """What every device entry of a profile has; each instrument kind adds its own limits.

    `driver` names the kind (the discriminator of a profile's `devices` entries).
    """

    driver: str
    address: str = Field(min_length=1)
    """VISA / `socket://` / `ca://` address, or `sim`: the simulator vegard starts."""
    timeout_s: float = Field(2.0, gt=0, le=120)


class ProtocolSettings(StrictModel):
    """What every protocol file has; each protocol kind adds what it measures."""

    protocol: str
    sample: str = Field(min_length=1)
    description: str = ""
    devices: dict[str, str] = Field(default_factory=dict)
    """Which profile device plays each of the protocol's roles (`{role: device}`) where it
    is not the device named like the role (a profile with two detectors, say)."""
