"""Building ophyd-async devices from a profile's device settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vegard.clock import InstrumentClock
from vegard.config.profiles import (
    AfmSettings,
    AreaDetectorSettings,
    DiffractometerSettings,
    PotentiostatSettings,
    TemperatureStageSettings,
)
from vegard.instruments.afm_controller import BandExcitationAfmController
from vegard.instruments.band_excitation_afm import BandExcitationAfm
from vegard.instruments.lakeshore336 import LakeShore336
from vegard.instruments.potentiostat import Potentiostat
from vegard.instruments.potentiostat_driver import PotentiostatDriver
from vegard.instruments.serial_connection import SerialConnection
from vegard.instruments.temperature_stage import TemperatureStage
from vegard.instruments.visa_connection import VisaConnection

if TYPE_CHECKING:  # imported where built: Channel Access costs a fifth of a second to load
    from vegard.instruments.area_detector import AreaDetector
    from vegard.instruments.diffractometer import Diffractometer


@dataclass(frozen=True)
class BuildContext:
    """What a device may need from the session besides its own settings."""

    clock: InstrumentClock
    arrays_directory: Callable[[], Path]
    """The current run's folder for HDF5 files (valid once the run has started)."""


def build_temperature_stage(
    settings: TemperatureStageSettings, address: str, context: BuildContext
) -> TemperatureStage:
    connection = VisaConnection(
        address, name="temperature_stage", timeout_s=settings.timeout_s, clock=context.clock)
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
    connection = VisaConnection(
        address, name="afm", timeout_s=settings.timeout_s, clock=context.clock)
    controller = BandExcitationAfmController(connection)
    return BandExcitationAfm(
        controller,
        context.arrays_directory,
        clock=context.clock,
        maximum_bias_v=settings.maximum_bias_v,
        name="afm",
    )


def build_potentiostat(
    settings: PotentiostatSettings, address: str, context: BuildContext
) -> Potentiostat:
    connection = SerialConnection(
        address, name="potentiostat", timeout_s=settings.timeout_s, clock=context.clock)
    return Potentiostat(PotentiostatDriver(connection), clock=context.clock,
                        poll_period_s=settings.poll_period_s, name="potentiostat")


def build_diffractometer(
    settings: DiffractometerSettings, address: str, context: BuildContext
) -> Diffractometer:
    from vegard.instruments.diffractometer import Diffractometer, pv_prefix_of

    return Diffractometer(pv_prefix_of(address), name="diffractometer")


def build_area_detector(
    settings: AreaDetectorSettings, address: str, context: BuildContext
) -> AreaDetector:
    from vegard.instruments.area_detector import AreaDetector
    from vegard.instruments.area_detector_driver import AreaDetectorDriver

    connection = VisaConnection(
        address, name="area_detector", timeout_s=settings.timeout_s, clock=context.clock)
    return AreaDetector(
        AreaDetectorDriver(connection),
        context.arrays_directory,
        clock=context.clock,
        maximum_exposure_s=settings.maximum_exposure_s,
        name="area_detector",
    )


DEVICE_BUILDERS: dict[str, Callable[[Any, str, BuildContext], Any]] = {
    "temperature_stage": build_temperature_stage,
    "afm": build_afm,
    "potentiostat": build_potentiostat,
    "diffractometer": build_diffractometer,
    "area_detector": build_area_detector,
}


def close_device(device: object) -> None:
    """Close the wire connection(s) behind a device built here."""
    for owner in ("controller", "driver"):
        connection = getattr(getattr(device, owner, None), "connection", None)
        if connection is not None:
            connection.close()
