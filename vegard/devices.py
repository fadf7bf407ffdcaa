"""Building ophyd-async devices from a profile's device settings."""

from __future__ import annotations

from vegard.clock import InstrumentClock
from vegard.config.profiles import TemperatureStageSettings
from vegard.instruments.lakeshore336 import LakeShore336
from vegard.instruments.temperature_stage import TemperatureStage
from vegard.instruments.visa_connection import VisaConnection


def build_temperature_stage(
    settings: TemperatureStageSettings, address: str, clock: InstrumentClock
) -> TemperatureStage:
    connection = VisaConnection(address, name="temperature_stage", timeout_s=settings.timeout_s)
    return TemperatureStage(
        LakeShore336(connection),
        clock=clock,
        minimum_temperature_k=settings.minimum_temperature_k,
        maximum_temperature_k=settings.maximum_temperature_k,
        poll_period_s=settings.poll_period_s,
        settle_timeout_s=settings.settle_timeout_s,
        name="temperature_stage",
    )


def close_device(device: object) -> None:
    """Close the wire connection(s) behind a device built here."""
    controller = getattr(device, "controller", None)
    connection = getattr(controller, "connection", None)
    if connection is not None:
        connection.close()
