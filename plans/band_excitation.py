"""Band-excitation ESM plans: one spectrum at a point, and the three-excitation map.

Every plan leaves the tip unbiased (output off, DC and AC 0 V) on every exit:
success, failure, abort or a fault on the wire. The bias is checked before the
run opens (`BandExcitationAfm.check_settings`), so a voltage beyond the
profile's limit never reaches the tip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Readable

from vegard.analysis.run_metadata import EsmMapMetadata
from vegard.instruments.afm_driver import BandExcitationSettings, ScanArea
from vegard.instruments.band_excitation_afm_device import (
    EXCITATIONS,
    AcquisitionSettings,
    BandExcitationAfm,
)

from .retakes import trigger_with_retakes
from .temperature_guard import TemperatureGuard

logger = logging.getLogger(__name__)


def band_excitation_settings(
    *,
    band_hz: tuple[float, float],
    bins: int,
    chirp_duration_s: float,
    averages: int,
    dc_offset_v: float,
    excitations: Sequence[str] = EXCITATIONS,
) -> BandExcitationSettings:
    return BandExcitationSettings(
        band_low_hz=float(band_hz[0]),
        band_high_hz=float(band_hz[1]),
        bins=int(bins),
        chirp_duration_s=float(chirp_duration_s),
        averages=int(averages),
        dc_offset_v=float(dc_offset_v),
        excitations=tuple(excitations),
    )


def map_metadata(afm: BandExcitationAfm, settings: AcquisitionSettings) -> EsmMapMetadata:
    """What the analysis needs to place each line (the `esm_map` start-document key)."""
    area, excitation = settings.area, settings.excitation
    return EsmMapMetadata(
        device=afm.name,
        pixels_x=area.pixels_x,
        pixels_y=area.pixels_y,
        width_nm=area.width_nm,
        height_nm=area.height_nm,
        center_x_nm=area.center_x_nm,
        center_y_nm=area.center_y_nm,
        u_ac_v=settings.drive_amplitude_v,
        u_dc_v=excitation.dc_offset_v,
        excitations=list(excitation.excitations),
        band_hz=(excitation.band_low_hz, excitation.band_high_hz),
        bins=excitation.bins,
        chirp_duration_s=excitation.chirp_duration_s,
        averages=excitation.averages,
    )


def make_tip_safe(afm: BandExcitationAfm):
    """Bias output off and 0 V, then the tip parked off the surface (`afm.stop`). The driver
    repeats each until the controller's read-back confirms it, and raises if it never does."""
    yield from bps.stop(afm)


def map_lines(
    afm: BandExcitationAfm,
    settings: AcquisitionSettings,
    *,
    map_index: int = 0,
    readables: Sequence[Readable] = (),
    guard: TemperatureGuard | None = None,
):
    """The lines of one map inside an open run: one event per line (plus `readables`)."""
    yield from bps.prepare(afm, settings, wait=True)
    yield from bps.mv(afm.map_index, map_index)
    for row in range(settings.area.pixels_y):
        yield from bps.checkpoint()
        yield from bps.mv(afm.row, row)
        yield from take_line(afm, row, readables, guard)


def take_line(
    afm: BandExcitationAfm,
    row: int,
    readables: Sequence[Readable] = (),
    guard: TemperatureGuard | None = None,
):
    """One event for scan line `row`: taken again if the wire lost it, and (with a `guard`)
    after a pause if the stage left its temperature band during it."""
    while True:
        if guard is not None:
            yield from guard.wait_in_band()
        yield from trigger_with_retakes(afm, f"{afm.name} line {row}")
        for readable in readables:
            if hasattr(readable, "trigger"):
                yield from bps.trigger(readable, wait=True)
        yield from bps.create("primary")
        yield from bps.read(afm)
        readings: dict[str, Any] = {}
        for readable in readables:
            readings.update((yield from bps.read(readable)) or {})
        yield from bps.save()
        if guard is None:
            return
        stage_key = guard.stage.temperature_k.name
        sample_key = guard.stage.sample_temperature_k.name
        if stage_key in readings and sample_key in readings:
            temperature_k = readings[stage_key]["value"]
            sample_k = readings[sample_key]["value"]
        else:
            temperature_k, sample_k = yield from guard.read()
        guard.check_limit(temperature_k)
        if guard.in_band(temperature_k, sample_k):
            return
        logger.warning("%s line %d ended at %.3f K (sample %.3f K), out of band: taking it "
                       "again", afm.name, row, temperature_k, sample_k)


def map_settings(
    area: ScanArea,
    *,
    drive_amplitude_v: float,
    dc_offset_v: float,
    band_hz: tuple[float, float] = (80e3, 320e3),
    bins: int = 64,
    chirp_duration_s: float = 4e-3,
    averages: int = 20,
) -> AcquisitionSettings:
    """The acquisition of a three-excitation map over `area` (U_ac = `drive_amplitude_v`)."""
    return AcquisitionSettings(
        area=area,
        excitation=band_excitation_settings(
            band_hz=band_hz, bins=bins, chirp_duration_s=chirp_duration_s,
            averages=averages, dc_offset_v=dc_offset_v,
        ),
        drive_amplitude_v=drive_amplitude_v,
    )


def three_excitation_map(
    afm: BandExcitationAfm,
    settings: AcquisitionSettings,
    *,
    readables: Sequence[Readable] = (),
    md: dict[str, Any] | None = None,
):
    """Map A_LF+, A_LF−, A_HF and topography line by line, in one run.

    Per pixel the controller drives LF ⊕ +U_dc, LF ⊕ −U_dc and HF ⊗ LF and returns
    each response spectrum; the device fits them. `readables` are read with every
    line (e.g. the temperature stage).
    """
    afm.check_settings(settings)
    metadata = {
        "plan_name": "three_excitation_map",
        "num_points": settings.area.pixels_y,
        **map_metadata(afm, settings).document(),
        **(md or {}),
    }

    @bpp.stage_decorator([afm])
    @bpp.run_decorator(md=metadata)
    def lines():
        yield from map_lines(afm, settings, readables=readables)

    return (yield from bpp.finalize_wrapper(lines(), make_tip_safe(afm)))


def band_excitation_spectrum(
    afm: BandExcitationAfm,
    x_nm: float,
    y_nm: float,
    *,
    drive_amplitude_v: float,
    dc_offset_v: float,
    band_hz: tuple[float, float] = (80e3, 320e3),
    bins: int = 64,
    chirp_duration_s: float = 4e-3,
    averages: int = 20,
    excitations: Sequence[str] = EXCITATIONS,
    md: dict[str, Any] | None = None,
):
    """The BE response spectra at one point (one event, spectra in HDF5, fits in the event)."""
    settings = AcquisitionSettings(
        area=ScanArea(x_nm, y_nm, 1.0, 1.0, 1, 1),
        excitation=band_excitation_settings(
            band_hz=band_hz, bins=bins, chirp_duration_s=chirp_duration_s,
            averages=averages, dc_offset_v=dc_offset_v, excitations=excitations,
        ),
        drive_amplitude_v=drive_amplitude_v,
        point=True,
    )
    afm.check_settings(settings)
    metadata = {
        "plan_name": "band_excitation_spectrum",
        "num_points": 1,
        "position_nm": [x_nm, y_nm],
        **(md or {}),
    }

    @bpp.stage_decorator([afm])
    @bpp.run_decorator(md=metadata)
    def point():
        yield from bps.prepare(afm, settings, wait=True)  # moves the tip to the point
        yield from bps.trigger_and_read([afm])

    return (yield from bpp.finalize_wrapper(point(), make_tip_safe(afm)))
