"""Instrument profiles: where each device lives and how fast instrument time runs.

A "sim" profile and a "real" profile differ only in addresses (and clock
speed-up): `address: sim` means "the simulator vegard starts for this device".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError, describe_validation_error
from .yaml_file import read_yaml_mapping

SIM_ADDRESS = "sim"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClockSettings(StrictModel):
    speedup: float = Field(1.0, gt=0, le=1_000_000)
    follow: str | None = None
    """VISA address of a served simulator lab's control port whose clock to follow."""


class SimulationSettings(StrictModel):
    seed: int = Field(0, ge=0)
    control_port: int = Field(0, ge=0, le=65535)
    ports: dict[str, int] = Field(default_factory=dict)
    parameters: dict[str, dict[str, float]] = Field(default_factory=dict)


class TemperatureStageSettings(StrictModel):
    driver: Literal["lakeshore336"] = "lakeshore336"
    address: str = Field(min_length=1)
    timeout_s: float = Field(2.0, gt=0, le=60)
    minimum_temperature_k: float = Field(200.0, gt=0, le=1500)
    maximum_temperature_k: float = Field(400.0, gt=0, le=1500)
    safe_temperature_k: float = Field(295.0, gt=0, le=1500)
    poll_period_s: float = Field(2.0, gt=0, le=600)
    settle_timeout_s: float = Field(3600.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _range_is_ordered(self) -> TemperatureStageSettings:
        low, high = self.minimum_temperature_k, self.maximum_temperature_k
        if not low < high:
            raise ValueError(f"minimum_temperature_k ({low}) must be below maximum ({high})")
        if not low <= self.safe_temperature_k <= high:
            raise ValueError(
                f"safe_temperature_k = {self.safe_temperature_k} must lie in {low}–{high} K"
            )
        return self


class AfmSettings(StrictModel):
    """A band-excitation AFM controller and what this sample/tip may take."""

    driver: Literal["be_afm"] = "be_afm"
    address: str = Field(min_length=1)
    timeout_s: float = Field(2.0, gt=0, le=60)
    maximum_bias_v: float = Field(10.0, gt=0, le=10)
    """Largest |U_dc| + U_ac allowed on the tip for this sample."""
    scan_range_nm: float = Field(20_000.0, gt=0, le=20_000)
    """Full closed-loop scanner range (the raster must fit in ±range/2)."""
    normal_force_nn: float = Field(10.0, gt=0, le=1000)


class PotentiostatSettings(StrictModel):
    """A potentiostat channel on a serial line (or `socket://host:port`)."""

    driver: Literal["scpi_potentiostat"] = "scpi_potentiostat"
    address: str = Field(min_length=1)
    timeout_s: float = Field(2.0, gt=0, le=60)
    poll_period_s: float = Field(60.0, gt=0, le=3600)
    """How often the potential and current are logged during a charge (instrument time)."""
    maximum_current_a: float = Field(0.001, gt=0, le=1)
    """Largest charge current this cell may take."""
    maximum_voltage_v: float = Field(5.0, gt=0, le=10)
    """Highest voltage limit this cell may be charged to."""


class DiffractometerSettings(StrictModel):
    """EPICS motor records of the diffractometer: `ca://<PV prefix>`, or `sim`."""

    driver: Literal["epics_motors"] = "epics_motors"
    address: str = Field(min_length=1)
    timeout_s: float = Field(5.0, gt=0, le=120)
    sample_range_um: float = Field(100.0, gt=0, le=10_000)
    """Full travel of the sample piezo (the raster must fit in ±range/2)."""


class AreaDetectorSettings(StrictModel):
    """The area detector and its calibrated geometry (as the beamline's calibration gives it)."""

    driver: Literal["maxipix"] = "maxipix"
    address: str = Field(min_length=1)
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


class DeviceSettings(StrictModel):
    temperature_stage: TemperatureStageSettings | None = None
    afm: AfmSettings | None = None
    potentiostat: PotentiostatSettings | None = None
    diffractometer: DiffractometerSettings | None = None
    area_detector: AreaDetectorSettings | None = None


class Profile(StrictModel):
    profile: str = Field(min_length=1)
    description: str = ""
    clock: ClockSettings = ClockSettings()
    simulation: SimulationSettings = SimulationSettings()
    devices: DeviceSettings

    def device_names(self) -> list[str]:
        """The devices this profile describes, in declaration order."""
        return [name for name, settings in self.devices if settings is not None]

    def simulated_devices(self) -> list[str]:
        return [
            name for name, settings in self.devices
            if settings is not None and settings.address == SIM_ADDRESS
        ]


def load_profile(path: Path | str) -> Profile:
    path = Path(path)
    data = read_yaml_mapping(path)
    try:
        return Profile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(path, error)) from None
