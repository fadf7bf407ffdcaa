"""A Maxipix area detector and its calibrated geometry (as the beamline's calibration gives it)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vegard.config.models import DeviceSettings
from vegard.registry import InstrumentKind


class AreaDetectorSettings(DeviceSettings):
    driver: Literal["maxipix"] = "maxipix"
    timeout_s: float = Field(2.0, gt=0, le=60)
    distance_m: float = Field(1.5, gt=0.1, le=10)
    pixel_size_m: float = Field(55e-6, gt=0, le=1e-3)
    pixels: tuple[Annotated[int, Field(ge=1, le=8192)], Annotated[int, Field(ge=1, le=8192)]] = (
        512, 512)
    direct_beam_pixel: tuple[float, float] = (255.5, 255.5)
    """(row, column) where the direct beam lands at zero detector angles."""
    maximum_exposure_s: float = Field(0.01, gt=0, le=10)
    """Radiation-dose budget of the sample: longest exposure per frame (per map pixel)."""
    flux_ph_per_s: float = Field(1e9, gt=0, le=1e15)
    beam_size_um: float = Field(0.08, gt=0, le=100)
    """Flux and focus, for the dose estimate."""


def build(settings: AreaDetectorSettings, name: str, address: str, context):
    from vegard.instruments.area_detector_device import AreaDetector
    from vegard.instruments.area_detector_driver import AreaDetectorDriver
    from vegard.instruments.visa_connection import VisaConnection

    connection = VisaConnection(
        address, name=name, timeout_s=settings.timeout_s, clock=context.clock)
    return AreaDetector(
        AreaDetectorDriver(connection),
        context.arrays_directory,
        clock=context.clock,
        maximum_exposure_s=settings.maximum_exposure_s,
        name=name,
    )


def simulator():
    from vegard.simulators.lab import SimulatorKind
    from vegard.simulators.maxipix_emulator import MaxipixEmulator
    from vegard.simulators.sxdm_endstation_model import SxdmEndStation

    # the frames come from the crystal in the charging cell at the diffractometer's angles
    return SimulatorKind(model=SxdmEndStation, emulator=MaxipixEmulator,
                         peers={"potentiostat": "scpi_potentiostat",
                                "diffractometer": "epics_motors"})


KIND = InstrumentKind(
    driver="maxipix", settings=AreaDetectorSettings, build=build,
    default_name="area_detector", simulator=simulator,
)
