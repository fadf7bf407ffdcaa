"""A potentiostat channel on a serial line (or `socket://host:port`) charging a cell."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vegard.config.models import DeviceSettings
from vegard.registry import InstrumentKind


class PotentiostatSettings(DeviceSettings):
    driver: Literal["scpi_potentiostat"] = "scpi_potentiostat"
    timeout_s: float = Field(2.0, gt=0, le=60)
    poll_period_s: float = Field(60.0, gt=0, le=3600)
    """How often the potential and current are logged during a charge (instrument time)."""
    maximum_current_a: float = Field(0.001, gt=0, le=1)
    """Largest charge current this cell may take."""
    maximum_voltage_v: float = Field(5.0, gt=0, le=10)
    """Highest voltage limit this cell may be charged to."""


def build(settings: PotentiostatSettings, name: str, address: str, context):
    from vegard.instruments.potentiostat_device import Potentiostat
    from vegard.instruments.potentiostat_driver import PotentiostatDriver
    from vegard.instruments.serial_connection import SerialConnection

    connection = SerialConnection(
        address, name=name, timeout_s=settings.timeout_s, clock=context.clock)
    return Potentiostat(PotentiostatDriver(connection), clock=context.clock,
                        poll_period_s=settings.poll_period_s, name=name)


def simulator():
    from vegard.simulators.lab import SimulatorKind
    from vegard.simulators.lmno_cell_model import LmnoCell
    from vegard.simulators.potentiostat_emulator import PotentiostatEmulator

    return SimulatorKind(model=LmnoCell, emulator=PotentiostatEmulator, transport="serial")


KIND = InstrumentKind(
    driver="scpi_potentiostat", settings=PotentiostatSettings, build=build,
    default_name="potentiostat", simulator=simulator,
    placeholder_address="socket://127.0.0.1:9",
)
