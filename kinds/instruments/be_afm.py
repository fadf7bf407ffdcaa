"""A band-excitation AFM controller (SCPI over TCP) and what the sample and tip may take."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vegard.config.models import DeviceSettings
from vegard.registry import InstrumentKind


class AfmSettings(DeviceSettings):
    driver: Literal["be_afm"] = "be_afm"
    timeout_s: float = Field(2.0, gt=0, le=60)
    maximum_bias_v: float = Field(10.0, gt=0, le=10)
    """Largest |U_dc| + U_ac allowed on the tip for this sample."""
    scan_range_nm: float = Field(20_000.0, gt=0, le=20_000)
    """Full closed-loop scanner range (the raster must fit in ±range/2)."""
    normal_force_nn: float = Field(10.0, gt=0, le=1000)


def build(settings: AfmSettings, name: str, address: str, context):
    from vegard.instruments.afm_driver import BandExcitationAfmController
    from vegard.instruments.band_excitation_afm_device import BandExcitationAfm
    from vegard.instruments.visa_connection import VisaConnection

    connection = VisaConnection(
        address, name=name, timeout_s=settings.timeout_s, clock=context.clock)
    return BandExcitationAfm(
        BandExcitationAfmController(connection),
        context.arrays_directory,
        clock=context.clock,
        maximum_bias_v=settings.maximum_bias_v,
        name=name,
    )


def simulator():
    from vegard.simulators.afm_controller_emulator import AfmControllerEmulator
    from vegard.simulators.afm_model import AtomicForceMicroscope
    from vegard.simulators.lab import SimulatorKind

    # the tip sits on the stage: sample temperature and thermal drift come from there
    return SimulatorKind(model=AtomicForceMicroscope, emulator=AfmControllerEmulator,
                         peers={"temperature_stage": "lakeshore336"})


KIND = InstrumentKind(
    driver="be_afm", settings=AfmSettings, build=build, default_name="afm",
    simulator=simulator,
)
