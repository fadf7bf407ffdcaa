"""A monochromated STEM with a vibrational EELS spectrometer (Nion HERMES-like, SCPI-shaped
text over TCP) and what the specimen may take: dose, exposure, field of view."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vegard.config.models import DeviceSettings
from vegard.registry import InstrumentKind


class StemEelsSettings(DeviceSettings):
    driver: Literal["nion_stem"] = "nion_stem"
    timeout_s: float = Field(2.0, gt=0, le=60)
    """Reply timeout beyond an acquisition's own duration (which the driver adds)."""
    dose_budget_e_per_nm2: float = Field(3.0e8, gt=0, le=1e16)
    """Dose the specimen may take (Li-bearing oxides lose Li beyond ~3e8): a protocol's
    checks keep its passes' total under it; the device refuses any one acquisition whose
    estimate (probe current, dwell, pixel spacing) exceeds it, before unblanking."""
    maximum_exposure_ms: float = Field(2000.0, ge=0.1, le=60_000)
    """Longest camera exposure per spectrum (the aloof ZLP saturates beyond ~1 s)."""
    maximum_field_of_view_nm: float = Field(20_000.0, ge=1, le=20_000)
    probe_footprint_nm: float = Field(2.5, gt=0, le=100)
    """Width of the probe's damage footprint (delocalised damage; √(2π)σ of a Gaussian
    spread σ): each pixel's electrons count over this square in the dose estimates."""
    camera_channels: int = Field(2048, ge=16, le=16384)
    """Channels per spectrum of the spectrometer camera (a protocol's energy axes are
    checked against it before a run; the device reads the camera's own)."""
    probe_current_pa: float = Field(20.0, gt=0, le=2000)
    """Probe current the checks before a run assume (the device reads the microscope's
    own before each acquisition)."""


def build(settings: StemEelsSettings, name: str, address: str, context):
    from vegard.instruments.nion_stem_driver import NionStemDriver
    from vegard.instruments.stem_eels_device import MonochromatedStemEels
    from vegard.instruments.visa_connection import VisaConnection

    connection = VisaConnection(
        address, name=name, timeout_s=settings.timeout_s, clock=context.clock)
    return MonochromatedStemEels(
        NionStemDriver(connection),
        context.arrays_directory,
        clock=context.clock,
        dose_budget_e_per_nm2=settings.dose_budget_e_per_nm2,
        maximum_exposure_ms=settings.maximum_exposure_ms,
        maximum_field_of_view_nm=settings.maximum_field_of_view_nm,
        probe_footprint_nm=settings.probe_footprint_nm,
        name=name,
    )


def simulator():
    from vegard.simulators.lab import SimulatorKind
    from vegard.simulators.nion_stem_emulator import NionStemEmulator
    from vegard.simulators.stem_eels_model import MonochromatedStem

    return SimulatorKind(model=MonochromatedStem, emulator=NionStemEmulator)


KIND = InstrumentKind(
    driver="nion_stem", settings=StemEelsSettings, build=build, default_name="stem",
    simulator=simulator,
)
