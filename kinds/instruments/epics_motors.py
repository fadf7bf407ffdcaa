"""The diffractometer's EPICS motor records over Channel Access: `ca://<PV prefix>`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vegard.config.models import DeviceSettings
from vegard.registry import InstrumentKind


class DiffractometerSettings(DeviceSettings):
    driver: Literal["epics_motors"] = "epics_motors"
    timeout_s: float = Field(5.0, gt=0, le=120)
    sample_range_um: float = Field(100.0, gt=0, le=10_000)
    """Full travel of the sample piezo (the raster must fit in ±range/2)."""


def build(settings: DiffractometerSettings, name: str, address: str, context):
    # Channel Access costs a fifth of a second to load: only where a diffractometer is built
    from vegard.instruments.diffractometer_device import Diffractometer, pv_prefix_of

    return Diffractometer(pv_prefix_of(address), name=name)


def simulator():
    from vegard.simulators.diffractometer_ioc_emulator import SimulatedDiffractometer
    from vegard.simulators.lab import SimulatorKind

    return SimulatorKind(model=SimulatedDiffractometer, transport="self")


KIND = InstrumentKind(
    driver="epics_motors", settings=DiffractometerSettings, build=build,
    default_name="diffractometer", simulator=simulator,
    placeholder_address="ca://CHECK:",  # a PV prefix no IOC serves
)
