"""Driver for a monochromated STEM with a vibrational EELS spectrometer (Nion HERMES-like),
over the SCPI-shaped command set of `vegard.simulators.nion_stem_emulator`.

Units: fractions of the field of view for probe and line positions ((0.5, 0.5) the
centre), nm for the field of view and defocus, ms for camera and scan settings, s for
durations, meV for energies (meV/channel for the dispersion), pA for the probe current.
Each spectrum is the sum of `frames` exposures of `exposure_ms` (the camera saturates per
exposure, so frames give a spectrum more counts than one exposure can).

Settings are sent as one line, `*CLS;<setting>;SYST:ERR?`: the queue is emptied first, so
the entry read back is this setting's own, and the whole line can be sent again after a
lost reply (an absolute setting and a fresh queue), which a lone write or a lone
`SYST:ERR?` could not. A refused value raises `StemSettingRefusedError` naming the
setting and the range the microscope allows; it is never retried.

Acquisitions (`SCAN:ACQ?`, `CAM:ACQ?`) are never retried (a second one doses the
specimen again) and wait the instrument's own reported duration on top of the channel's
timeout. By default the beam is unblanked in the acquisition's own line and blanked
again by the microscope the moment it ends, so the specimen is dosed only while the
camera exposes, not during round trips. Reads of settings are idempotent and retried.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InstrumentCommunicationError, InstrumentReplyError
from .replies import parse_floats
from .text_driver import TextDriver
from .visa_connection import VisaConnection

SPECTRUM_DTYPE = np.dtype("<f4")
"""Counts per channel, as the camera sends them (float32 carries counts < 2²⁴ exactly)."""
HAADF_DTYPE = np.dtype("<f4")
ENERGY_DTYPE = np.dtype("<f8")

REFUSAL_CODES = frozenset({-222, -224, -104, -109, -113})
"""Error-queue codes that mean "this value (or command) is not accepted": out of range,
illegal value, not a number, missing argument, unknown header. Other codes (device
errors) count as communication failures, which a confirmed sequence tries again."""

FRAMES_LIMITS = (1, 1000)
"""Frames the microscope sums into one spectrum (`CAM:FRAMES`)."""

Fraction2 = tuple[float, float]


class StemSettingRefusedError(ValueError):
    """The microscope refused a setting; the message names it and the range allowed."""

    def __init__(self, instrument: str, command: str, code: int, reason: str) -> None:
        self.instrument = instrument
        self.command = command
        self.code = code
        self.reason = reason
        super().__init__(f"{instrument}: {command!r} refused ({code}): {reason}")


@dataclass(frozen=True)
class LineScanGeometry:
    """A scan one pixel high: start and end (fractions, both inclusive) and pixels."""

    start_fraction: Fraction2
    end_fraction: Fraction2
    pixels: int

    def spacing_nm(self, field_of_view_nm: float) -> float:
        """Distance between neighbouring pixels (0 for a one-pixel line)."""
        if self.pixels < 2:
            return 0.0
        length = math.dist(self.start_fraction, self.end_fraction) * field_of_view_nm
        return length / (self.pixels - 1)


@dataclass(frozen=True)
class AcquisitionConditions:
    """What the next acquisition will be, as the microscope reports it (one exchange)."""

    line: LineScanGeometry
    flyback_ms: float
    field_of_view_nm: float
    probe_position_fraction: Fraction2
    probe_current_pa: float
    exposure_ms: float
    readout_ms: float
    channels: int
    saturation_counts: float
    line_duration_s: float
    point_duration_s: float
    frames: int = 1
    """Exposures summed per spectrum; `exposure_ms` and `saturation_counts` are per frame."""


@dataclass(frozen=True)
class EelsAcquisition:
    """Sum-projected spectra (pixels × channels, counts), the HAADF signal of each pixel
    and the instrument seconds the acquisition took (a point spectrum is one pixel)."""

    spectra_counts: np.ndarray
    haadf_counts: np.ndarray
    duration_s: float


_CONDITION_QUERIES: tuple[tuple[str, int], ...] = (
    ("SCAN:LINE?", 5), ("SCAN:FLYBACK_MS?", 1), ("SCAN:FOV?", 1), ("PROBE:POS?", 2),
    ("PROBE:CURRENT?", 1), ("CAM:EXPOSURE_MS?", 1), ("CAM:READOUT_MS?", 1),
    ("CAM:CHANNELS?", 1), ("CAM:SATURATION?", 1), ("SCAN:TIME?", 1), ("CAM:TIME?", 1),
    ("CAM:FRAMES?", 1),
)
_CONDITIONS_COMMAND = ";".join(query for query, _ in _CONDITION_QUERIES)


class NionStemDriver(TextDriver):
    """Coroutines for every command of the microscope, with units in their names."""

    connection: VisaConnection

    def __init__(self, connection: VisaConnection) -> None:
        super().__init__(connection)
        self._line_lock = asyncio.Lock()

    async def connect(self) -> str:
        """Open the channel, check a HERMES STEM answers, and empty its error queue."""
        identity = await self.connection.identify("HERMES-STEM", "a monochromated Nion STEM")
        await self.connection.write("*CLS")
        return identity

    async def reset(self) -> None:
        """Power-on settings, beam blanked (`*RST`)."""
        await self._set("*RST")

    # ------------------------------------------------------------------ settings, checked

    async def _set(self, command: str) -> None:
        """Send one setting and read its own error-queue entry; a refusal raises."""
        line = f"*CLS;{command};SYST:ERR?"
        code, reason = await self.connection.query(
            line, lambda reply: self._error_entry(reply, command))
        if code == 0:
            return
        if code in REFUSAL_CODES:
            raise StemSettingRefusedError(self.name, command, code, reason)
        raise InstrumentCommunicationError(self.name, command, f"error {code}: {reason}")

    def _error_entry(self, reply: str, command: str) -> tuple[int, str]:
        code_text, _, message = reply.partition(",")
        try:
            code = int(code_text)
        except ValueError:
            raise InstrumentReplyError(
                self.name, f"SYST:ERR? (after {command})", reply, "an error-queue entry"
            ) from None
        return code, message.strip().strip('"').replace(";", ": ")

    # ------------------------------------------------------------------ probe

    async def probe_position_fraction(self) -> Fraction2:
        x, y = await self._floats("PROBE:POS?", 2)
        return x, y

    async def set_probe_position_fraction(self, x: float, y: float) -> None:
        await self._set(f"PROBE:POS {x:.9g},{y:.9g}")

    async def beam_blanked(self) -> bool:
        return await self._flag("PROBE:BLANK?")

    async def set_beam_blanked(self, blanked: bool) -> None:
        await self._set(f"PROBE:BLANK {'ON' if blanked else 'OFF'}")

    async def probe_current_pa(self) -> float:
        return await self._float("PROBE:CURRENT?")

    async def make_safe(self) -> bool:
        """Beam blanked, repeated until the microscope confirms it (True)."""

        async def blank() -> bool:
            await self.set_beam_blanked(True)
            if not await self.beam_blanked():
                raise InstrumentCommunicationError(self.name, "PROBE:BLANK ON", "beam unblanked")
            return True

        return await self.connection.until_confirmed("beam blank", blank)

    # ------------------------------------------------------------------ scan

    async def field_of_view_nm(self) -> float:
        return await self._float("SCAN:FOV?")

    async def set_field_of_view_nm(self, field_of_view_nm: float) -> None:
        await self._set(f"SCAN:FOV {field_of_view_nm:.9g}")

    async def line_scan(self) -> LineScanGeometry:
        x0, y0, x1, y1, pixels = await self._floats("SCAN:LINE?", 5)
        return LineScanGeometry((x0, y0), (x1, y1), self._count(pixels, "SCAN:LINE?"))

    async def set_line_scan(self, line: LineScanGeometry) -> None:
        (x0, y0), (x1, y1) = line.start_fraction, line.end_fraction
        await self._set(f"SCAN:LINE {x0:.9g},{y0:.9g},{x1:.9g},{y1:.9g},{int(line.pixels)}")

    async def update_line_scan(
        self, *, start_fraction: Sequence[float] | None = None,
        end_fraction: Sequence[float] | None = None, pixels: int | None = None,
    ) -> LineScanGeometry:
        """Change part of the line and keep the rest; one change at a time, so two signals
        set at once (start and end in one `mv`) do not undo each other."""
        async with self._line_lock:
            line = await self.line_scan()
            changed = LineScanGeometry(
                _pair(start_fraction) if start_fraction is not None else line.start_fraction,
                _pair(end_fraction) if end_fraction is not None else line.end_fraction,
                int(pixels) if pixels is not None else line.pixels,
            )
            await self.set_line_scan(changed)
            return changed

    async def max_line_pixels(self) -> int:
        (pixels,) = await self._ints("SCAN:MAXPIX?", 1)
        return pixels

    async def flyback_ms(self) -> float:
        return await self._float("SCAN:FLYBACK_MS?")

    async def set_flyback_ms(self, flyback_ms: float) -> None:
        await self._set(f"SCAN:FLYBACK_MS {flyback_ms:.9g}")

    async def line_duration_s(self) -> float:
        return await self._float("SCAN:TIME?")

    # ------------------------------------------------------------------ camera

    async def exposure_ms(self) -> float:
        return await self._float("CAM:EXPOSURE_MS?")

    async def set_exposure_ms(self, exposure_ms: float) -> None:
        await self._set(f"CAM:EXPOSURE_MS {exposure_ms:.9g}")

    async def frames(self) -> int:
        """Exposures summed into each spectrum."""
        (frames,) = await self._ints("CAM:FRAMES?", 1)
        return frames

    async def set_frames(self, frames: int) -> None:
        await self._set(f"CAM:FRAMES {frames}")

    async def readout_ms(self) -> float:
        return await self._float("CAM:READOUT_MS?")

    async def channels(self) -> int:
        (channels,) = await self._ints("CAM:CHANNELS?", 1)
        return channels

    async def saturation_counts(self) -> float:
        return await self._float("CAM:SATURATION?")

    async def point_duration_s(self) -> float:
        return await self._float("CAM:TIME?")

    # ------------------------------------------------------------------ spectrometer

    async def dispersion_mev_per_channel(self) -> float:
        return await self._float("SPEC:DISPERSION?")

    async def set_dispersion_mev_per_channel(self, mev_per_channel: float) -> None:
        await self._set(f"SPEC:DISPERSION {mev_per_channel:.9g}")

    async def energy_offset_mev(self) -> float:
        return await self._float("SPEC:OFFSET?")

    async def set_energy_offset_mev(self, offset_mev: float) -> None:
        await self._set(f"SPEC:OFFSET {offset_mev:.9g}")

    async def energy_axis_mev(self) -> np.ndarray:
        """Channel-centre energy losses (meV); only read, so safe to ask again."""
        axis = await self.connection.query_block("SPEC:AXIS?", ENERGY_DTYPE, idempotent=True)
        return self._finite(axis.astype(np.float64), "SPEC:AXIS?")

    async def mono_slit_mev(self) -> float:
        return await self._float("MONO:SLIT?")

    async def set_mono_slit_mev(self, slit_mev: float) -> None:
        await self._set(f"MONO:SLIT {slit_mev:.9g}")

    async def zlp_fwhm_mev(self) -> float:
        return await self._float("MONO:FWHM?")

    # ------------------------------------------------------------------ named controls

    async def control_names(self) -> tuple[str, ...]:
        reply = await self.connection.query("CTRL:LIST?")
        return tuple(name.strip() for name in reply.split(",") if name.strip())

    async def control(self, name: str) -> float:
        return await self._float(f"GETVAL? {name}")

    async def set_control(self, name: str, value: float) -> None:
        """A Swift-style named control (`SetVal`), in the units the command set gives it."""
        await self._set(f"SETVAL {name},{value:.9g}")

    async def defocus_c10_nm(self) -> float:
        return await self.control("C10")

    async def set_defocus_c10_nm(self, c10_nm: float) -> None:
        await self.set_control("C10", c10_nm)

    # ------------------------------------------------------------------ acquisition

    async def acquisition_conditions(self) -> AcquisitionConditions:
        """Line, camera and probe as they stand, and the durations they give, in one line."""
        return await self.connection.query(_CONDITIONS_COMMAND, self._conditions)

    def _conditions(self, reply: str) -> AcquisitionConditions:
        parts = reply.split(";")
        if len(parts) != len(_CONDITION_QUERIES):
            raise InstrumentReplyError(self.name, _CONDITIONS_COMMAND, reply,
                                       f"{len(_CONDITION_QUERIES)} ';'-separated replies")
        (line, (flyback,), (fov,), position, (current,), (exposure,), (readout,), (channels,),
         (saturation,), (line_s,), (point_s,), (frames,)) = (
            parse_floats(part, count, instrument=self.name, command=_CONDITIONS_COMMAND)
            for part, (_, count) in zip(parts, _CONDITION_QUERIES, strict=True))
        return AcquisitionConditions(
            line=LineScanGeometry((line[0], line[1]), (line[2], line[3]),
                                  self._count(line[4], _CONDITIONS_COMMAND)),
            flyback_ms=flyback, field_of_view_nm=fov,
            probe_position_fraction=(position[0], position[1]), probe_current_pa=current,
            exposure_ms=exposure, readout_ms=readout,
            channels=self._count(channels, _CONDITIONS_COMMAND),
            saturation_counts=saturation, line_duration_s=line_s, point_duration_s=point_s,
            frames=self._count(frames, _CONDITIONS_COMMAND),
        )

    async def configure_line(
        self, line: LineScanGeometry, exposure_ms: float, flyback_ms: float | None = None,
        frames: int = 1,
    ) -> AcquisitionConditions:
        """Line, exposure, frames per pixel (and flyback) for line scans, read back until
        the microscope confirms them; the conditions it then reports."""

        async def send() -> AcquisitionConditions:
            await self.set_line_scan(line)
            await self.set_exposure_ms(exposure_ms)
            if flyback_ms is not None:
                await self.set_flyback_ms(flyback_ms)
            conditions = await self._with_frames(frames)
            taken = (_close(_numbers(conditions.line), _numbers(line))
                     and _close((conditions.exposure_ms,), (exposure_ms,))
                     and conditions.frames == frames
                     and (flyback_ms is None or _close((conditions.flyback_ms,), (flyback_ms,))))
            if not taken:
                raise InstrumentCommunicationError(
                    self.name, "line-scan settings", f"not taken: microscope reports "
                    f"{conditions.line}, exposure {conditions.exposure_ms:g} ms × "
                    f"{conditions.frames} frames, flyback {conditions.flyback_ms:g} ms")
            return conditions

        return await self.connection.until_confirmed("line-scan settings", send)

    async def configure_point(
        self, exposure_ms: float, position_fraction: Sequence[float] | None = None,
        frames: int = 1,
    ) -> AcquisitionConditions:
        """Exposure, frames (and the parked probe position) for point spectra, confirmed."""

        async def send() -> AcquisitionConditions:
            if position_fraction is not None:
                await self.set_probe_position_fraction(*_pair(position_fraction))
            await self.set_exposure_ms(exposure_ms)
            conditions = await self._with_frames(frames)
            taken = (_close((conditions.exposure_ms,), (exposure_ms,))
                     and conditions.frames == frames
                     and (position_fraction is None
                          or _close(conditions.probe_position_fraction,
                                    _pair(position_fraction))))
            if not taken:
                raise InstrumentCommunicationError(
                    self.name, "point-spectrum settings", f"not taken: microscope reports "
                    f"probe at {conditions.probe_position_fraction}, exposure "
                    f"{conditions.exposure_ms:g} ms × {conditions.frames} frames")
            return conditions

        return await self.connection.until_confirmed("point-spectrum settings", send)

    async def _with_frames(self, frames: int) -> AcquisitionConditions:
        """The conditions, with `frames` set first if the microscope has others: the
        conditions carry its frames, so a microscope already right costs no extra line."""
        conditions = await self.acquisition_conditions()
        if conditions.frames == frames:
            return conditions
        await self.set_frames(frames)
        return await self.acquisition_conditions()

    async def acquire_line(
        self, conditions: AcquisitionConditions | None = None, *, unblank: bool = True
    ) -> EelsAcquisition:
        """One camera-synchronised line scan (`SCAN:ACQ?`), never retried.

        `conditions`: what the microscope reported just before (read here if not given);
        its line duration lengthens the reply timeout. `unblank`: the beam is on for this
        acquisition only (False: as it is; blanked, a dark reference).
        """
        conditions = conditions or await self.acquisition_conditions()
        pixels, channels = conditions.line.pixels, conditions.channels
        spectra = await self._acquire("SCAN:ACQ?", conditions.line_duration_s, unblank,
                                      (pixels, channels))
        return EelsAcquisition(spectra, await self.haadf_last(pixels),
                               conditions.line_duration_s)

    async def acquire_point(
        self, conditions: AcquisitionConditions | None = None, *, unblank: bool = True
    ) -> EelsAcquisition:
        """One spectrum at the parked probe (`CAM:ACQ?`), as a line of one pixel."""
        conditions = conditions or await self.acquisition_conditions()
        spectra = await self._acquire("CAM:ACQ?", conditions.point_duration_s, unblank,
                                      (1, conditions.channels))
        return EelsAcquisition(spectra, await self.haadf_last(1), conditions.point_duration_s)

    async def _acquire(self, command: str, duration_s: float, unblank: bool,
                       shape: tuple[int, int]) -> np.ndarray:
        line = f"PROBE:BLANK OFF;{command};PROBE:BLANK ON" if unblank else command
        values = await self.connection.query_block(
            line, SPECTRUM_DTYPE, acquisition_s=duration_s, idempotent=False)
        return self._shaped(values, shape, command)

    async def haadf_last(self, pixels: int) -> np.ndarray:
        """HAADF of the last acquisition, one value per pixel; only read, so asked again."""
        values = await self.connection.query_block("HAADF:LAST?", HAADF_DTYPE, idempotent=True)
        return self._shaped(values, (pixels,), "HAADF:LAST?")

    # ------------------------------------------------------------------ parsing

    def _count(self, value: float, command: str) -> int:
        if value != int(value) or value < 0:
            raise InstrumentReplyError(self.name, command, f"{value:g}", "a whole number")
        return int(value)


def _pair(values: Sequence[float]) -> Fraction2:
    x, y = (float(value) for value in values)
    return x, y


def _numbers(line: LineScanGeometry) -> tuple[float, ...]:
    return (*line.start_fraction, *line.end_fraction, float(line.pixels))


def _close(read: Sequence[float], sent: Sequence[float]) -> bool:
    """Read back equals sent, to the 9 significant digits the commands carry."""
    return len(read) == len(sent) and all(
        math.isclose(float(a), float(b), rel_tol=1e-8, abs_tol=1e-12)
        for a, b in zip(read, sent, strict=True))
