"""The SXDM area detector as an ophyd-async device: one trigger collects one armed fly line.

A fly line is three steps a plan orders: `arm_line()` arms the position-compare
trigger, the plan flies the sample piezo through the trigger positions, then
`trigger()` fetches the frames (``(pixels, rows, cols)`` uint16), writes them to HDF5
(lzf-compressed: the frames are mostly zeros) and hands bluesky StreamResource /
StreamDatum documents. The event of the line carries the map, row and rocking-angle
indices the plan set, and the detector-clock start time of every frame.

`arm_search()` / `fetch_search()` take frames that are returned, not recorded: for
finding the Bragg peak before a map (a rocking scan flown in eta), as a beamline
scientist would with a live view.

The exposure per frame is the radiation-dose budget of the sample: `prepare()` refuses
more than the profile's `maximum_exposure_s` before anything is sent. `stop()` disarms
(the detector's safe state: not acquiring).

A line that cannot be recorded as taken raises a `BadLineError` naming the line (map, row,
rocking index) before anything is written, so a plan can re-take it without recording
anything twice: frames missing or extra (`IncompleteLineError`), a frame with more than
`saturated_pixels_allowed` pixels at the counter maximum (`SaturatedLineError`, a burst),
or frames lost on the wire (`LineTransferError`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bluesky.protocols import Movable, Stoppable, Triggerable
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    Device,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
    soft_signal_rw,
)

from vegard.clock import WALL_CLOCK, InstrumentClock
from vegard.diffraction_geometry import DetectorRoi

from .area_detector_driver import (
    COUNTER_MAXIMUM,
    FRAME_DTYPE,
    AreaDetectorDriver,
    FrameCountError,
    FrameSet,
    PositionTrigger,
)
from .array_detector import ArrayStreamingDetector
from .driver_signal import ConnectOnce
from .errors import InstrumentCommunicationError
from .hdf5_stream import ArraySpec
from .readables import readables_in_order


class DoseBudgetError(ValueError):
    """An exposure per frame beyond the sample's radiation-dose budget; refused before sending."""


@dataclass(frozen=True)
class LineIndex:
    """Which fly line: the indices the plan set on the detector before triggering it."""

    map_index: int
    row: int
    eta_index: int

    def __str__(self) -> str:
        return f"map {self.map_index} row {self.row} eta {self.eta_index}"


class BadLineError(RuntimeError):
    """A fly line whose frames cannot be recorded as they are; nothing of it was written,
    and taking it again may give a good one."""

    def __init__(self, detector: str, line: LineIndex, reason: str) -> None:
        self.detector = detector
        self.line = line
        self.reason = reason
        super().__init__(f"{detector}: line {line}: {reason}")


class IncompleteLineError(BadLineError):
    """Fewer (or more) frames than triggers: the frames cannot be placed."""


class SaturatedLineError(BadLineError):
    """A frame with pixels at the counter maximum (a burst): their counts are unknown."""


class LineTransferError(BadLineError):
    """The frames did not arrive intact (timeout, dropped connection, garbled block)."""


@dataclass(frozen=True)
class FlyLineSettings:
    """ROI, exposure and frames per line of a map's fly lines."""

    roi: DetectorRoi
    exposure_s: float
    pixels_per_line: int


@dataclass(frozen=True)
class SearchSettings:
    """Frames for a peak search: returned to the plan, not recorded."""

    roi: DetectorRoi
    exposure_s: float
    trigger: PositionTrigger


class LineArm(Device, Movable):
    """`bps.mv(detector.line_arm, trigger)`: arm the position-compare trigger of the next
    fly line (the frames are then taken by the detector's `trigger()`)."""

    def __init__(self, arm: Callable[[PositionTrigger], Awaitable[None]], name: str = "") -> None:
        self._arm = arm
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def set(self, value: PositionTrigger) -> None:
        await self._arm(value)


class SearchFrames(StandardReadable, Movable, Triggerable):
    """Peak-search frames as messages: `bps.mv(detector.search, SearchSettings(...))` arms
    them, `bps.trigger(detector.search, wait=True)` fetches them into `counts` (frames ×
    rows × columns, flattened; `frames`, `rows`, `columns` give the shape)."""

    def __init__(self, arm: Callable[[DetectorRoi, float, PositionTrigger], Awaitable[None]],
                 fetch: Callable[[], Awaitable[FrameSet]], name: str = "") -> None:
        self._arm, self._fetch = arm, fetch
        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.counts, self._set_counts = soft_signal_r_and_setter(Array1D[np.uint16])
        self.frames, self._set_frames = soft_signal_r_and_setter(int, 0)
        self.rows, self._set_rows = soft_signal_r_and_setter(int, 0)
        self.columns, self._set_columns = soft_signal_r_and_setter(int, 0)
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def set(self, value: SearchSettings) -> None:
        await self._arm(value.roi, value.exposure_s, value.trigger)

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        counts = (await self._fetch()).counts
        frames, rows, columns = counts.shape
        self._set_frames(int(frames))
        self._set_rows(int(rows))
        self._set_columns(int(columns))
        self._set_counts(np.ascontiguousarray(counts.ravel(), dtype=np.uint16))


class AreaDetector(ArrayStreamingDetector, Stoppable):
    """Photon-counting area detector triggered by the sample piezo's position."""

    def __init__(
        self,
        driver: AreaDetectorDriver,
        directory_provider: Callable[[], Path],
        *,
        clock: InstrumentClock = WALL_CLOCK,
        maximum_exposure_s: float = 0.01,
        saturated_pixels_allowed: int = 0,
        name: str = "",
    ) -> None:
        """`saturated_pixels_allowed`: pixels at the counter maximum a recorded frame may have
        (0: any saturated pixel makes the line bad)."""
        self.driver = driver
        self.clock = clock
        self.maximum_exposure_s = maximum_exposure_s
        self.saturated_pixels_allowed = saturated_pixels_allowed
        self._connect_driver = ConnectOnce(self._open_driver)
        self._settings: FlyLineSettings | None = None
        self._armed: PositionTrigger | None = None
        self._search: tuple[DetectorRoi, float, PositionTrigger] | None = None
        self._dead_time_s = 0.0
        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.map_index = soft_signal_rw(int, 0)
            self.row = soft_signal_rw(int, 0)
            self.eta_index = soft_signal_rw(int, 0)
            self.frame_time_s, self._set_frame_time_s = soft_signal_r_and_setter(
                Array1D[np.float64], units="s")
        with readables_in_order(self, StandardReadableFormat.CONFIG_SIGNAL):
            self.exposure_s, self._set_exposure = soft_signal_r_and_setter(float, units="s")
        self.line_arm = LineArm(self.arm_line)
        self.search = SearchFrames(self.arm_search, self.fetch_search)
        super().__init__(directory_provider, arrays={}, name=name)

    async def connect(self, mock=False, timeout: float = 10.0, force_reconnect: bool = False):
        await super().connect(mock=mock, timeout=timeout, force_reconnect=force_reconnect)
        if not mock:
            await self._connect_driver(timeout)

    async def _open_driver(self) -> None:
        await self.driver.connect()
        self._dead_time_s = await self.driver.dead_time_s()

    @property
    def dead_time_s(self) -> float:
        """Readout time between frames (frames can follow each other every exposure + this)."""
        return self._dead_time_s

    def check_exposure(self, exposure_s: float) -> None:
        if not 0 < exposure_s <= self.maximum_exposure_s:
            raise DoseBudgetError(
                f"{self.name}: exposure {exposure_s:g} s per frame is outside the dose budget "
                f"0 < exposure ≤ {self.maximum_exposure_s:g} s (profile maximum_exposure_s)")

    @AsyncStatus.wrap
    async def prepare(self, value: FlyLineSettings) -> None:
        """Send ROI and exposure; size the HDF5 frames dataset (a new file per prepare)."""
        self.check_exposure(value.exposure_s)
        self._close_writer()
        await self.driver.abort()
        await self.driver.set_roi(value.roi)
        await self.driver.set_exposure_s(value.exposure_s)
        roi = await self.driver.roi()
        if roi != value.roi:
            raise RuntimeError(f"{self.name}: detector reports ROI {roi}, asked for {value.roi}")
        self._set_exposure(await self.driver.exposure_s())
        self._settings = value
        self._array_specs = {
            "frames": ArraySpec((value.pixels_per_line, *value.roi.shape), FRAME_DTYPE,
                                compression="lzf")
        }

    async def arm_line(self, trigger: PositionTrigger) -> None:
        """Arm the position-compare trigger of the next fly line."""
        settings = self._require_settings()
        if trigger.frames != settings.pixels_per_line:
            raise ValueError(f"{self.name}: a line has {settings.pixels_per_line} frames, "
                             f"trigger asks for {trigger.frames}")
        await self.driver.arm_position(trigger)
        self._armed = trigger

    async def acquire(self) -> dict[str, np.ndarray]:
        settings = self._require_settings()
        trigger, self._armed = self._armed, None
        if trigger is None:
            raise RuntimeError(f"{self.name}: arm_line() before each trigger()")
        line = LineIndex(*await asyncio.gather(
            self.map_index.get_value(), self.row.get_value(), self.eta_index.get_value()))
        try:
            frames = await self.driver.fetch(
                settings.roi, trigger.frames,
                duration_s=trigger.frames * (settings.exposure_s + self._dead_time_s))
        except FrameCountError as error:
            raise IncompleteLineError(
                self.name, line, f"{error.frames_received:g} frames for "
                f"{error.frames_expected} triggers") from error
        except InstrumentCommunicationError as error:
            raise LineTransferError(self.name, line, str(error)) from error
        self.check_saturation(frames.counts, line)
        self._set_frame_time_s(frames.start_times_s.astype(np.float64))
        return {"frames": frames.counts}

    def check_saturation(self, counts: np.ndarray, line: LineIndex) -> None:
        """Refuse a line with a frame whose counters saturated beyond the allowance."""
        saturated = np.count_nonzero(counts == COUNTER_MAXIMUM, axis=(1, 2))
        bad = np.flatnonzero(saturated > self.saturated_pixels_allowed)
        if bad.size:
            raise SaturatedLineError(
                self.name, line, f"frame {int(bad[0])} has {int(saturated[bad[0]])} pixels at "
                f"the counter maximum {COUNTER_MAXIMUM} ({bad.size} such frames; "
                f"{self.saturated_pixels_allowed} allowed)")

    async def arm_search(self, roi: DetectorRoi, exposure_s: float,
                         trigger: PositionTrigger) -> None:
        """Arm frames that are returned by `fetch_search()`, not recorded (peak search)."""
        self.check_exposure(exposure_s)
        await self.driver.set_roi(roi)
        await self.driver.set_exposure_s(exposure_s)
        await self.driver.arm_position(trigger)
        self._search = (roi, exposure_s, trigger)

    async def fetch_search(self) -> FrameSet:
        """The frames armed by `arm_search()`; the fly-line ROI and exposure are sent back."""
        if self._search is None:
            raise RuntimeError(f"{self.name}: arm_search() before fetch_search()")
        (roi, exposure_s, trigger), self._search = self._search, None
        try:
            return await self.driver.fetch(
                roi, trigger.frames,
                duration_s=trigger.frames * (exposure_s + self._dead_time_s))
        finally:
            settings = self._settings
            if settings is not None:
                await self.driver.set_roi(settings.roi)
                await self.driver.set_exposure_s(settings.exposure_s)

    async def stop(self, success: bool = False) -> None:
        """Disarm: whatever was armed or running, the detector stops acquiring."""
        self._armed = self._search = None
        await self.driver.abort()

    def _require_settings(self) -> FlyLineSettings:
        if self._settings is None:
            raise RuntimeError(f"{self.name}: prepare() the fly lines first")
        return self._settings
