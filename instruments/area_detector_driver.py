"""Driver of a photon-counting area detector (Maxipix-like) over a SCPI-shaped text channel.

A fly scan needs the detector to take a frame each time the sample piezo passes a
position, not when software says so: the round trip to the motion controller is
milliseconds, a frame 10 ms. So the detector is armed with a *position-compare*
trigger (axis, first position, spacing, count), the piezo is then flown through the
positions, and the frames are fetched afterwards. `INT` triggering (frames back to
back from `ARM`) serves counts at a standing position.

Command set (the simulator in `vegard.simulators.maxipix_emulator` serves the same):
``ROI r0,c0,rows,cols``, ``EXPO s``, ``DEAD?``, ``TRIG:SOUR INT|POS``, ``TRIG:AXIS name``,
``TRIG:STAR x``, ``TRIG:STEP dx``, ``FRAM n``, ``ARM``, ``STAT?``, ``FRAM:DATA?`` (one
definite-length block of n·rows·cols little-endian uint16; an empty block means the
acquisition failed and the reason is in ``SYST:ERR?``), ``FRAM:TIME?``, ``ABOR``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vegard.diffraction_geometry import DetectorRoi

from .errors import InstrumentCommunicationError, InstrumentReplyError
from .text_driver import TextDriver
from .visa_connection import VisaConnection

FRAME_DTYPE = np.dtype("<u2")
"""Counts per pixel as the detector sends them (16-bit counters)."""
COUNTER_MAXIMUM = int(np.iinfo(FRAME_DTYPE).max)
"""A pixel at this count saturated: its true count is unknown."""
ARM_STATES = ("ARMED", "IDLE")


class FrameCountError(InstrumentReplyError):
    """The detector delivered another number of frames than it was armed for (a missed
    or extra trigger): the frames cannot be matched to their positions."""

    def __init__(self, instrument: str, command: str, frames_received: float,
                 frames_expected: int, frame_shape: tuple[int, int]) -> None:
        self.frames_received = frames_received
        self.frames_expected = frames_expected
        super().__init__(instrument, command, f"<{frames_received:g} frames>",
                         f"{frames_expected} frames of {frame_shape[0]} × {frame_shape[1]}")


@dataclass(frozen=True)
class PositionTrigger:
    """Frames at `first_position + i · step` (i < frames) as `axis` passes them."""

    axis: str
    first_position: float
    step: float
    frames: int


@dataclass(frozen=True)
class FrameSet:
    """Frames of one acquisition and the detector-clock start time of each."""

    counts: np.ndarray  # (n, rows, cols) uint16
    start_times_s: np.ndarray  # (n,)


class AreaDetectorDriver(TextDriver):
    """Coroutines for the detector settings and acquisitions vegard uses."""

    connection: VisaConnection

    async def connect(self) -> str:
        return await self.connection.identify("MAXIPIX", "a Maxipix area detector")

    async def size_pixels(self) -> tuple[int, int]:
        rows, cols = await self._ints("DET:SIZE?", 2)
        return rows, cols

    async def pixel_size_m(self) -> float:
        return await self._float("DET:PIXS?")

    async def dead_time_s(self) -> float:
        return await self._float("DEAD?")

    async def set_roi(self, roi: DetectorRoi) -> None:
        await self.connection.write(
            f"ROI {roi.row_start},{roi.col_start},{roi.n_rows},{roi.n_cols}")

    async def roi(self) -> DetectorRoi:
        return DetectorRoi(*await self._ints("ROI?", 4))

    async def set_exposure_s(self, exposure_s: float) -> None:
        await self.connection.write(f"EXPO {exposure_s:.9g}")

    async def exposure_s(self) -> float:
        return await self._float("EXPO?")

    async def arm_internal(self, frames: int) -> None:
        """Frames back to back from now (exposure + dead time apart)."""
        await self._arm(f"TRIG:SOUR INT;FRAM {frames};ARM;STAT?")

    async def arm_position(self, trigger: PositionTrigger) -> None:
        """Armed when this returns: only then may the plan start the motion."""
        await self._arm(
            f"TRIG:SOUR POS;TRIG:AXIS {trigger.axis};TRIG:STAR {trigger.first_position:.9g};"
            f"TRIG:STEP {trigger.step:.9g};FRAM {trigger.frames};ARM;STAT?")

    async def _arm(self, command: str) -> None:
        # The reply confirms ARM was handled: a trigger position passed before that would
        # be missed, so the caller must not move until then. ABOR first makes the line
        # idempotent (a retry after a lost reply arms afresh instead of "already ARMED"),
        # and a garbled state is retried like a lost one.
        command = f"ABOR;{command}"

        def state_of(reply: str) -> str:
            state = reply.strip().upper()
            if state not in ARM_STATES:
                raise InstrumentReplyError(self.name, command, reply, " or ".join(ARM_STATES))
            return state

        state = await self.connection.query(command, state_of)
        if state != "ARMED":
            reason = await self.connection.query("SYST:ERR?", idempotent=False)
            raise InstrumentReplyError(self.name, command, f"{state}; {reason}", "ARMED")

    async def state(self) -> str:
        return (await self.connection.query("STAT?")).strip().upper()

    async def abort(self) -> str:
        """Disarm; returns the state the detector then reports (IDLE). The safe state, so
        retried as a whole if the exchange fails."""

        async def disarm() -> str:
            await self.connection.write("ABOR")
            state = await self.state()
            if state != "IDLE":  # the ABOR was refused or lost on the wire: send it again
                raise InstrumentCommunicationError(self.name, "ABOR", f"detector still {state}")
            return state

        return await self.connection.until_confirmed("disarm (ABOR)", disarm)

    async def fetch(self, roi: DetectorRoi, frames: int, *, duration_s: float) -> FrameSet:
        """The frames of the armed acquisition, once taken; `duration_s` of instrument time
        (from arming to the last frame) sizes the reply timeout."""
        command = "FRAM:DATA?"
        counts = await self.connection.query_block(
            command, FRAME_DTYPE, acquisition_s=1.5 * duration_s + 1.0)
        if counts.size == 0:
            reason = await self.connection.query("SYST:ERR?", idempotent=False)
            raise InstrumentReplyError(self.name, command, f"<no frames; {reason}>",
                                       f"{frames} frames")
        expected = frames * roi.n_rows * roi.n_cols
        if counts.size != expected:
            raise FrameCountError(self.name, command, counts.size / (roi.n_rows * roi.n_cols),
                                  frames, roi.shape)
        times = await self._floats("FRAM:TIME?", frames)
        return FrameSet(counts.reshape(frames, *roi.shape), np.asarray(times))
