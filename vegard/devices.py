"""Building ophyd-async devices from a profile's device settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vegard.clock import InstrumentClock
from vegard.config.profiles import AfmSettings, TemperatureStageSettings
from vegard.instruments.afm_controller import BandExcitationAfmController
from vegard.instruments.band_excitation_afm import BandExcitationAfm
from vegard.instruments.lakeshore336 import LakeShore336
from vegard.instruments.temperature_stage import TemperatureStage
from vegard.instruments.visa_connection import VisaConnection


@dataclass(frozen=True)
class BuildContext:
    """What a device may need from the session besides its own settings."""

    clock: InstrumentClock
    arrays_directory: Callable[[], Path]
    """The current run's folder for HDF5 files (valid once the run has started)."""


def build_temperature_stage(
    settings: TemperatureStageSettings, address: str, context: BuildContext
) -> TemperatureStage:
    connection = VisaConnection(address, name="temperature_stage", timeout_s=settings.timeout_s)
    return TemperatureStage(
        LakeShore336(connection),
        clock=context.clock,
        minimum_temperature_k=settings.minimum_temperature_k,
        maximum_temperature_k=settings.maximum_temperature_k,
        poll_period_s=settings.poll_period_s,
        settle_timeout_s=settings.settle_timeout_s,
        name="temperature_stage",
    )


def build_afm(settings: AfmSettings, address: str, context: BuildContext) -> BandExcitationAfm:
    connection = VisaConnection(address, name="afm", timeout_s=settings.timeout_s)
    controller = BandExcitationAfmController(connection, speedup=context.clock.speedup)
    return BandExcitationAfm(
        controller,
        context.arrays_directory,
        clock=context.clock,
        maximum_bias_v=settings.maximum_bias_v,
        name="afm",
    )


DEVICE_BUILDERS: dict[str, Callable[[Any, str, BuildContext], Any]] = {
    "temperature_stage": build_temperature_stage,
    "afm": build_afm,
}


def close_device(device: object) -> None:
    """Close the wire connection(s) behind a device built here."""
    controller = getattr(device, "controller", None)
    connection = getattr(controller, "connection", None)
    if connection is not None:
        connection.close()
