"""Vibrational STEM-EELS across a grain boundary, as one run.

An aloof spectrum in vacuum first (the polaritonic reference), then the line across the
boundary once per spectrometer pass (vibrational, valence loss, core loss). Before each pass
a short HAADF line is taken and correlated with the first, and the line is moved with the
specimen's drift, so the three passes see the same pixels. Before each exposure a test
spectrum at a tenth of the dwell, where the zero-loss peak is brightest, predicts the peak
count; an exposure that would saturate the camera is shortened (or refused). The beam is
blanked by the camera after every acquisition and by `stop` on every exit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np

from vegard.analysis.image_registration import line_shift_px
from vegard.analysis.run_metadata import EelsLineMetadata, EelsPassMetadata
from vegard.instruments.stem_eels_device import (
    LineScanSpectra,
    MonochromatedStemEels,
    PointSpectrum,
)

logger = logging.getLogger(__name__)

TEST_EXPOSURE_FRACTION = 0.1
"""Dwell of the saturation test spectrum, as a fraction of the pass's exposure."""
SMALLEST_EXPOSURE_MS = 0.1


class SaturationError(RuntimeError):
    """An exposure would saturate the camera and the protocol says refuse."""


@dataclass(frozen=True)
class EelsPass:
    name: str
    dispersion_mev_per_channel: float
    energy_offset_mev: float
    exposure_ms: float
    """Of one frame (what the saturation guard tests)."""
    frames: int = 1


@dataclass(frozen=True)
class EelsLineScanSettings:
    """The whole acquisition, in the scan frame (nm from the field of view's centre)."""

    field_of_view_nm: float
    start_nm: tuple[float, float]
    end_nm: tuple[float, float]
    pixels: int
    flyback_ms: float
    aloof_position_nm: tuple[float, float]
    aloof_exposure_ms: float
    aloof_spectra: int
    passes: Sequence[EelsPass]
    registration_exposure_ms: float | None = 1.0
    saturation_action: Literal["shorten", "refuse"] = "shorten"
    saturation_headroom: float = 0.8
    metadata: dict[str, Any] = field(default_factory=dict)

    def fraction(self, position_nm: Sequence[float]) -> tuple[float, float]:
        x_nm, y_nm = position_nm
        return (x_nm / self.field_of_view_nm + 0.5, y_nm / self.field_of_view_nm + 0.5)

    @property
    def pixel_spacing_nm(self) -> float:
        return float(np.hypot(*np.subtract(self.end_nm, self.start_nm))) / (self.pixels - 1)

    @property
    def direction(self) -> np.ndarray:
        along = np.subtract(self.end_nm, self.start_nm)
        return along / np.hypot(*along)


def set_pass(stem: MonochromatedStemEels, eels_pass: EelsPass):
    yield from bps.mv(stem.spectrometer.dispersion_mev_per_channel,
                      eels_pass.dispersion_mev_per_channel,
                      stem.spectrometer.energy_offset_mev, eels_pass.energy_offset_mev)


def unsaturated_exposure_ms(stem: MonochromatedStemEels, exposure_ms: float,
                            position_fraction: tuple[float, float],
                            settings: EelsLineScanSettings, what: str):
    """The exposure to use: `exposure_ms`, or shorter if a test spectrum at
    `position_fraction` says the zero-loss peak would saturate the camera."""
    camera = stem.camera
    test_ms = max(SMALLEST_EXPOSURE_MS, exposure_ms * TEST_EXPOSURE_FRACTION)
    yield from bps.prepare(camera, PointSpectrum(test_ms, position_fraction), wait=True)
    yield from bps.trigger(camera, wait=True)
    peak_counts = yield from bps.rd(camera.peak_counts)
    saturation_counts = yield from bps.rd(camera.saturation_counts)
    allowed = settings.saturation_headroom * saturation_counts
    predicted = peak_counts * exposure_ms / test_ms
    if predicted <= allowed:
        return exposure_ms
    if settings.saturation_action == "refuse":
        raise SaturationError(
            f"{stem.name}: {what} at {exposure_ms:g} ms would reach {predicted:.3g} counts "
            f"in one channel, beyond {settings.saturation_headroom:g} × saturation "
            f"({saturation_counts:.3g}); shorten exposure_ms")
    shortened = max(SMALLEST_EXPOSURE_MS, exposure_ms * allowed / predicted)
    logger.warning("%s: %s exposure shortened from %g to %.3g ms (the zero-loss peak would "
                   "reach %.3g counts of %.3g)", stem.name, what, exposure_ms, shortened,
                   predicted, saturation_counts)
    return shortened


def eels_metadata(stem: MonochromatedStemEels, settings: EelsLineScanSettings
                  ) -> EelsLineMetadata:
    return EelsLineMetadata(
        detector=stem.name, field_of_view_nm=settings.field_of_view_nm,
        start_nm=settings.start_nm, end_nm=settings.end_nm, pixels=settings.pixels,
        aloof_position_nm=settings.aloof_position_nm,
        passes={p.name: EelsPassMetadata(
            dispersion_mev_per_channel=p.dispersion_mev_per_channel,
            energy_offset_mev=p.energy_offset_mev, exposure_ms=p.exposure_ms,
            frames=p.frames)
            for p in settings.passes},
    )


def eels_grain_boundary(stem: MonochromatedStemEels, settings: EelsLineScanSettings,
                        md: dict[str, Any] | None = None):
    """Aloof spectrum, then each pass along the re-registered line; the beam blanked on
    every exit."""
    camera, probe, spectrometer = stem.camera, stem.probe, stem.spectrometer
    metadata = {"plan_name": "eels_grain_boundary",
                **eels_metadata(stem, settings).document(), **(md or {})}
    spacing_nm = settings.pixel_spacing_nm

    def line_at(offset_nm: np.ndarray, exposure_ms: float, frames: int = 1) -> LineScanSpectra:
        start = settings.fraction(np.add(settings.start_nm, offset_nm))
        end = settings.fraction(np.add(settings.end_nm, offset_nm))
        return LineScanSpectra(start, end, settings.pixels, exposure_ms, settings.flyback_ms,
                               frames=frames)

    @bpp.run_decorator(md=metadata)
    def inner():
        yield from bps.mv(probe.field_of_view_nm, settings.field_of_view_nm)
        first = settings.passes[0]
        yield from set_pass(stem, first)
        aloof = settings.fraction(settings.aloof_position_nm)
        exposure_ms = yield from unsaturated_exposure_ms(
            stem, settings.aloof_exposure_ms, aloof, settings, "the aloof spectrum")
        yield from bps.prepare(camera, PointSpectrum(exposure_ms, aloof), wait=True)
        for _ in range(settings.aloof_spectra):
            yield from bps.trigger_and_read([camera, probe, spectrometer], name="aloof")
        reference: np.ndarray | None = None
        offset_nm = np.zeros(2)
        for eels_pass in settings.passes:
            if settings.registration_exposure_ms is not None:
                yield from bps.prepare(
                    camera, line_at(offset_nm, settings.registration_exposure_ms), wait=True)
                yield from bps.trigger_and_read([camera, probe], name="registration")
                haadf = np.asarray((yield from bps.rd(camera.haadf_line_counts)))
                if reference is None:
                    reference = haadf
                else:
                    shift_nm = line_shift_px(reference, haadf) * spacing_nm
                    offset_nm = offset_nm + shift_nm * settings.direction
                    logger.info("%s: line moved %.2f nm with the drift before the %s pass",
                                stem.name, shift_nm, eels_pass.name)
            yield from set_pass(stem, eels_pass)
            exposure_ms = yield from unsaturated_exposure_ms(
                stem, eels_pass.exposure_ms, settings.fraction(
                    np.add(settings.start_nm, offset_nm)), settings,
                f"the {eels_pass.name} pass")
            yield from bps.prepare(camera, line_at(offset_nm, exposure_ms, eels_pass.frames),
                                   wait=True)
            yield from bps.trigger_and_read([camera, probe, spectrometer], name=eels_pass.name)

    def blank():
        yield from bps.stop(stem)

    return (yield from bpp.finalize_wrapper(inner(), blank()))
