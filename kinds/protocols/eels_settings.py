"""What a vibrational STEM-EELS line-scan protocol describes: the line across the boundary,
the aloof spectrum in vacuum, the three spectrometer passes, the HAADF re-registration, and
the checks against the microscope's limits made before the beam is unblanked."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from vegard.config.errors import ConfigError
from vegard.config.models import StrictModel
from vegard.registry import Bench

STEM_DRIVER = "nion_stem"

ExposureMs = Annotated[float, Field(ge=0.1, le=60_000)]
PositionNm = tuple[float, float]
"""Scan-frame position, nm from the centre of the field of view (x along the line)."""


class SpectrometerPass(StrictModel):
    """One pass of the spectrometer along the line: its energy axis and exposure."""

    dispersion_mev_per_channel: float = Field(gt=0, le=2000)
    energy_offset_mev: float = Field(ge=-10_000, le=2_000_000)
    """Energy loss at the centre of channel 0."""
    exposure_ms: ExposureMs
    """Of one camera frame: what must not saturate the zero-loss peak."""
    frames: int = Field(1, ge=1, le=1000)
    """Frames summed per spectrum: more counts than one unsaturated exposure holds (the
    camera's dose is frames × exposure)."""
    must_cover_mev: tuple[float, float]
    """The energy-loss window the pass exists for (the ZLP and the phonons, the plasmon
    region, the Li K and Co M2,3 edges): the axis must span it."""

    def span_mev(self, channels: int) -> tuple[float, float]:
        return (self.energy_offset_mev,
                self.energy_offset_mev + (channels - 1) * self.dispersion_mev_per_channel)


class LineScan(StrictModel):
    """The line across the grain boundary, in the scan frame."""

    field_of_view_nm: float = Field(gt=0, le=20_000)
    start_nm: PositionNm
    end_nm: PositionNm
    pixels: int = Field(ge=2, le=1024)
    flyback_ms: float = Field(5.0, ge=0, le=10_000)

    @property
    def length_nm(self) -> float:
        return math.dist(self.start_nm, self.end_nm)

    @property
    def pixel_spacing_nm(self) -> float:
        return self.length_nm / (self.pixels - 1)

    @model_validator(mode="after")
    def _not_a_point(self) -> LineScan:
        if self.length_nm <= 0:
            raise ValueError("start_nm and end_nm are the same point")
        return self


class AloofSpectrum(StrictModel):
    """The reference spectrum in vacuum beside the specimen: polaritons, no phonon impact."""

    position_nm: PositionNm
    exposure_ms: ExposureMs
    spectra: int = Field(1, ge=1, le=100)
    """Spectra summed (one after another at the same position)."""


class Registration(StrictModel):
    """A short HAADF line before each pass, correlated with the first, to follow drift."""

    enabled: bool = True
    exposure_ms: ExposureMs = 1.0


class SaturationGuard(StrictModel):
    """What to do when a test exposure says the ZLP would saturate the camera."""

    action: str = Field("shorten", pattern="^(shorten|refuse)$")
    headroom: float = Field(0.8, gt=0, le=1)
    """Largest peak count allowed, as a fraction of the camera's saturation level."""


class LineAnalysisSettings(StrictModel):
    """Choices of the live analysis (read back from the start document, so replay agrees)."""

    paper_pipeline: bool = True
    """Also fit every pixel the way the paper did, for comparison (seconds per line)."""


def within_field_of_view(name: str, position_nm: PositionNm, line: LineScan, path: Path) -> None:
    half_nm = line.field_of_view_nm / 2
    for axis, value in zip("xy", position_nm, strict=True):
        if abs(value) > half_nm:
            raise ConfigError(
                f"{path}: {name} {axis} = {value:g} nm is not valid: allowed: within "
                f"±{half_nm:g} nm (line.field_of_view_nm = {line.field_of_view_nm:g})")


def check_passes(passes: dict[str, SpectrometerPass], channels: int, path: Path) -> None:
    """Each pass's energy axis spans the window it is taken for."""
    for name, spectrometer in passes.items():
        low_mev, high_mev = spectrometer.span_mev(channels)
        want_low, want_high = spectrometer.must_cover_mev
        if not (low_mev <= want_low and high_mev >= want_high):
            raise ConfigError(
                f"{path}: {name}: energy axis {low_mev:g} … {high_mev:g} meV "
                f"({channels} channels × {spectrometer.dispersion_mev_per_channel:g} meV from "
                f"{spectrometer.energy_offset_mev:g} meV) is not valid: allowed: an axis "
                f"spanning must_cover_mev {want_low:g} … {want_high:g} meV")


def line_dose_e_per_nm2(current_pa: float, dwell_ms: float, spacing_nm: float,
                        footprint_nm: float) -> float:
    """Peak dose of one line pass, as the camera device estimates it before unblanking."""
    from vegard.instruments.electron_dose import electrons_per_pixel, peak_dose_e_per_nm2

    return peak_dose_e_per_nm2(electrons_per_pixel(current_pa, dwell_ms), spacing_nm,
                               footprint_nm)


def check_dose(protocol, bench: Bench, role: str, path: Path) -> float:
    """The dose the passes leave on the line, against the profile's budget; the total."""
    stem = bench.settings[role]
    line = protocol.line
    doses = {name: line_dose_e_per_nm2(stem.probe_current_pa, p.frames * p.exposure_ms,
                                       line.pixel_spacing_nm, stem.probe_footprint_nm)
             for name, p in protocol.passes().items()}
    if protocol.registration.enabled:
        doses["registration"] = len(doses) * line_dose_e_per_nm2(
            stem.probe_current_pa, protocol.registration.exposure_ms, line.pixel_spacing_nm,
            stem.probe_footprint_nm)
    total = sum(doses.values())
    if total > stem.dose_budget_e_per_nm2:
        parts = ", ".join(f"{name} {dose:.3g}" for name, dose in doses.items())
        raise ConfigError(
            f"{path}: the passes would leave {total:.3g} e/nm² on the line ({parts}) at "
            f"{stem.probe_current_pa:g} pA over {line.pixel_spacing_nm:.3g} nm pixels: "
            f"allowed: ≤ {stem.dose_budget_e_per_nm2:.3g} e/nm² "
            f"({bench.where(role, 'dose_budget_e_per_nm2')}); shorten the exposures or "
            "space the pixels further apart")
    return total


def check_stem(protocol, bench: Bench, role: str, channels: int, path: Path) -> None:
    """Everything a dry run or a real one refuses before the beam is unblanked."""
    stem = bench.settings[role]
    line = protocol.line
    if line.field_of_view_nm > stem.maximum_field_of_view_nm:
        raise ConfigError(
            f"{path}: line.field_of_view_nm = {line.field_of_view_nm:g} is not valid: allowed: "
            f"≤ {stem.maximum_field_of_view_nm:g} nm "
            f"({bench.where(role, 'maximum_field_of_view_nm')})")
    within_field_of_view("line.start_nm", line.start_nm, line, path)
    within_field_of_view("line.end_nm", line.end_nm, line, path)
    within_field_of_view("aloof.position_nm", protocol.aloof.position_nm, line, path)
    exposures = {"aloof.exposure_ms": protocol.aloof.exposure_ms,
                 **{f"{name}.exposure_ms": p.exposure_ms for name, p in protocol.passes().items()}}
    if protocol.registration.enabled:
        exposures["registration.exposure_ms"] = protocol.registration.exposure_ms
    for name, exposure_ms in exposures.items():
        if exposure_ms > stem.maximum_exposure_ms:
            raise ConfigError(
                f"{path}: {name} = {exposure_ms:g} is not valid: allowed: ≤ "
                f"{stem.maximum_exposure_ms:g} ms ({bench.where(role, 'maximum_exposure_ms')})")
    check_passes(protocol.passes(), channels, path)
    check_dose(protocol, bench, role, path)
