"""A Maxipix-like photon-counting area detector, emulated over the `SxdmEndStation` model.

The command set is ours (SCPI-shaped, like the other emulators): one armed acquisition
of n frames at a time, timed internally or by a position-compare unit watching a sample
axis of the diffractometer (hardware-triggered fly scans). Lengths in the axis's units
(µm), times in s.

    *IDN?                  vegard,MAXIPIX-SIM,0,1.0
    *RST                   idle; ROI full detector, EXPO 0.01, TRIG:SOUR INT, FRAM 1
    DET:SIZE?              rows,cols (512,512)
    DET:PIXS?              pixel size, m
    ROI r0,c0,rows,cols    region read out (on the detector)       ROI?
    EXPO s                 exposure per frame, 1e-5 … 10 s          EXPO?
    DEAD?                  readout dead time between frames, s
    TRIG:SOUR INT|POS      internal timing or position compare      TRIG:SOUR?
    TRIG:AXIS name         sample_x_um | sample_y_um | eta_deg     TRIG:AXIS?
    TRIG:STAR x            first trigger position                   TRIG:STAR?
    TRIG:STEP dx           trigger spacing (nonzero; its sign is the direction of travel)
    FRAM n                 frames per acquisition, 1 … 100000       FRAM?
    ARM                    start: INT → frame i starts at t_arm + i·(EXPO+DEAD); POS → frame
                           i starts when the axis passes STAR + i·STEP moving in the
                           direction of STEP, after t_arm (and after trigger i−1)
    STAT?                  IDLE | ARMED
    FRAM:DATA?             waits (instrument time) until the acquisition is complete, then
                           one definite-length block of n·rows·cols little-endian uint16,
                           frame-major; back to IDLE
    FRAM:TIME?             start times (instrument s) of the last completed acquisition's
                           frames, comma-separated (empty line if none yet)
    ABOR                   disarm, IDLE

FRAM:DATA? in POS mode does not wait for a trigger that cannot come: if the axis is at
rest and has not passed every trigger position, it replies an empty block `#10` at once
and puts -230 on the error queue naming "k of n triggers"; the acquisition stays ARMED
(move through the remaining positions and ask again, or ABOR). Not armed: the same empty
block and a -230 error. Settings cannot change while ARMED (-200). A completed acquisition
whose triggers came faster than EXPO+DEAD apart is still delivered, with a -200 "trigger
overrun" error on the queue: the real detector would have missed those triggers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vegard.clock import InstrumentClock
from vegard.diffraction_geometry import DetectorRoi

from .link_costs import LinkCost
from .scpi_server import (
    DATA_OUT_OF_RANGE,
    EXECUTION_ERROR,
    ILLEGAL_PARAMETER_VALUE,
    Instrument,
    ScpiError,
    binary_block,
    parse_float,
    parse_int,
    require_arguments,
)
from .sxdm_endstation_model import SATURATION_COUNTS, TRIGGER_AXES, SxdmEndStation

DATA_STALE = -230
EMPTY_BLOCK = binary_block(b"")
MIN_EXPOSURE_S = 1e-5
MAX_EXPOSURE_S = 10.0
MAX_FRAMES = 100_000
MAX_BLOCK_BYTES = 999_999_999
"""The largest definite-length block (9 length digits)."""
POLL_WALL_S = 0.005
"""Longest wall time between looks at a moving trigger axis while waiting for triggers."""
DEFAULT_EXPOSURE_S = 0.01
DEFAULT_STEP = 0.1


class DataStaleError(ScpiError):
    """-230 "Data corrupt or stale" (not in the base server's message table)."""

    def queue_entry(self) -> str:
        message = "Data corrupt or stale"
        if self.detail:
            message = f"{message};{self.detail}"
        return f'{self.code},"{message.replace(chr(34), chr(39))}"'


@dataclass
class Acquisition:
    """One armed acquisition: the settings it was armed with, and its triggers so far."""

    source: str
    axis: str
    first: float
    step: float
    count: int
    exposure_s: float
    dead_time_s: float
    roi: DetectorRoi
    armed_s: float
    starts_s: list[float] = field(default_factory=list)


class MaxipixEmulator(Instrument):
    """Wire-level emulator of the area detector over an `SxdmEndStation`."""

    LINK = LinkCost(
        0.001, 1.0e8,
        "Maxipix readout PC on gigabit Ethernet (about "
        "100 MB/s of payload); 1 ms turnaround assumed",
    )
    """What the real link costs (see `link_costs`)."""

    identity = "vegard,MAXIPIX-SIM,0,1.0"

    def __init__(self, model: SxdmEndStation, clock: InstrumentClock | None = None) -> None:
        super().__init__(clock or model.clock)
        self.model = model
        self._set_defaults()
        self._last_times_s: list[float] = []
        settings: dict[str, tuple[Callable[[list[str]], None], Callable[[], str]]] = {
            "ROI": (self._set_roi, lambda: ",".join(str(v) for v in self._roi_tuple())),
            "EXPO": (self._set_exposure, lambda: _number(self.exposure_s)),
            "TRIG:SOUR": (self._set_source, lambda: self.source),
            "TRIG:AXIS": (self._set_axis, lambda: self.axis),
            "TRIG:STAR": (self._set_first, lambda: _number(self.first)),
            "TRIG:STEP": (self._set_step, lambda: _number(self.step)),
            "FRAM": (self._set_frames, lambda: str(self.frames)),
        }
        for header, (setter, getter) in settings.items():
            self.register(header, self._idle_only(setter))
            self.register(header + "?", lambda _, getter=getter: getter())
        self.register("DET:SIZE?", lambda _: "{},{}".format(*model.pixels))
        self.register("DET:PIXS?", lambda _: f"{model.pixel_size_m:g}")
        self.register("DEAD?", lambda _: _number(model.readout_dead_time_s))
        self.register("ARM", self._arm)
        self.register("STAT?", lambda _: "ARMED" if self._armed is not None else "IDLE")
        self.register("FRAM:DATA?", self._read_data)
        self.register("FRAM:TIME?", lambda _: ",".join(repr(t) for t in self._last_times_s))
        self.register("ABOR", lambda _: self._abort())

    def _set_defaults(self) -> None:
        rows, cols = self.model.pixels
        self.roi = DetectorRoi(0, 0, rows, cols)
        self.exposure_s = DEFAULT_EXPOSURE_S
        self.source = "INT"
        self.axis = TRIGGER_AXES[0]
        self.first = 0.0
        self.step = DEFAULT_STEP
        self.frames = 1
        self._armed: Acquisition | None = None

    def reset(self) -> None:
        self._set_defaults()

    @property
    def armed(self) -> Acquisition | None:
        return self._armed

    @property
    def _armed(self) -> Acquisition | None:
        return self._acquisition

    @_armed.setter
    def _armed(self, acquisition: Acquisition | None) -> None:
        # every arm/disarm goes through here, so the model's safe state is always current
        self._acquisition = acquisition
        self.model.set_armed(acquisition is not None)

    # ------------------------------------------------------------------ settings

    def _idle_only(self, setter: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
        def handler(arguments: list[str]) -> None:
            if self._armed is not None:
                raise ScpiError(EXECUTION_ERROR, "settings cannot change while ARMED (ABOR first)")
            setter(arguments)

        return handler

    def _roi_tuple(self) -> tuple[int, int, int, int]:
        r = self.roi
        return r.row_start, r.col_start, r.n_rows, r.n_cols

    def _set_roi(self, arguments: list[str]) -> None:
        require_arguments(arguments, 4)
        row0, col0, rows, cols = (parse_int(text) for text in arguments[:4])
        size_rows, size_cols = self.model.pixels
        if not (0 <= row0 and 0 <= col0 and rows >= 1 and cols >= 1
                and row0 + rows <= size_rows and col0 + cols <= size_cols):
            raise ScpiError(DATA_OUT_OF_RANGE,
                            f"ROI {row0},{col0},{rows},{cols} not on the {size_rows}x{size_cols}"
                            " detector")
        self.roi = DetectorRoi(row0, col0, rows, cols)

    def _set_exposure(self, arguments: list[str]) -> None:
        require_arguments(arguments, 1)
        value = parse_float(arguments[0])
        if not MIN_EXPOSURE_S <= value <= MAX_EXPOSURE_S:
            raise ScpiError(DATA_OUT_OF_RANGE, f"EXPO {value:g} s: allowed {MIN_EXPOSURE_S:g} … "
                                               f"{MAX_EXPOSURE_S:g} s")
        self.exposure_s = value

    def _set_source(self, arguments: list[str]) -> None:
        require_arguments(arguments, 1)
        value = arguments[0].upper()
        if value not in ("INT", "POS"):
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"TRIG:SOUR {arguments[0]!r}: INT or POS")
        self.source = value

    def _set_axis(self, arguments: list[str]) -> None:
        require_arguments(arguments, 1)
        value = arguments[0].strip('"').lower()
        if value not in TRIGGER_AXES:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE,
                            f"TRIG:AXIS {arguments[0]!r}: one of {', '.join(TRIGGER_AXES)}")
        self.axis = value

    def _set_first(self, arguments: list[str]) -> None:
        require_arguments(arguments, 1)
        self.first = parse_float(arguments[0])

    def _set_step(self, arguments: list[str]) -> None:
        require_arguments(arguments, 1)
        value = parse_float(arguments[0])
        if value == 0.0:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, "TRIG:STEP must be nonzero")
        self.step = value

    def _set_frames(self, arguments: list[str]) -> None:
        require_arguments(arguments, 1)
        value = parse_int(arguments[0])
        if not 1 <= value <= MAX_FRAMES:
            raise ScpiError(DATA_OUT_OF_RANGE, f"FRAM {value}: allowed 1 … {MAX_FRAMES}")
        self.frames = value

    # ------------------------------------------------------------------ acquisition

    def _arm(self, arguments: list[str]) -> None:
        if self._armed is not None:
            raise ScpiError(EXECUTION_ERROR, "already ARMED (read FRAM:DATA? or ABOR first)")
        size = 2 * self.frames * self.roi.n_rows * self.roi.n_cols
        if size > MAX_BLOCK_BYTES:
            raise ScpiError(DATA_OUT_OF_RANGE,
                            f"{self.frames} frames of {self.roi.n_rows}x{self.roi.n_cols} are "
                            f"{size} bytes, more than one block holds ({MAX_BLOCK_BYTES})")
        self._armed = Acquisition(
            self.source, self.axis, self.first, self.step, self.frames, self.exposure_s,
            self.model.readout_dead_time_s, self.roi, self.clock.now(),
        )  # fmt: skip

    def _abort(self) -> None:
        self._armed = None

    def _read_data(self, arguments: list[str]) -> bytes:
        acquisition = self._armed
        if acquisition is None:
            self.push_error(DataStaleError(DATA_STALE, "not armed: no acquisition to read"))
            return EMPTY_BLOCK
        if acquisition.source == "INT":
            period_s = acquisition.exposure_s + acquisition.dead_time_s
            acquisition.starts_s = [acquisition.armed_s + i * period_s
                                    for i in range(acquisition.count)]
        elif not self._wait_for_triggers(acquisition):
            where = self.model.diffractometer.positions_at(  # type: ignore[union-attr]
                acquisition.axis, [self.clock.now()])[0]
            self.push_error(DataStaleError(
                DATA_STALE,
                f"{len(acquisition.starts_s)} of {acquisition.count} triggers: "
                f"{acquisition.axis} at rest at {where:.4f} has not passed "
                f"{acquisition.first + len(acquisition.starts_s) * acquisition.step:.4f}; "
                "still ARMED",
            ))
            return EMPTY_BLOCK
        starts = np.asarray(acquisition.starts_s)
        complete_s = starts[-1] + acquisition.exposure_s + acquisition.dead_time_s
        self.clock.sleep_blocking(complete_s - self.clock.now())
        counts, starts = self.model.acquire_line(
            starts, acquisition.exposure_s, acquisition.roi,
            armed_s=acquisition.armed_s, axis=acquisition.axis)
        self._armed = None
        self._last_times_s = [float(t) for t in starts]
        overrun = int(np.count_nonzero(
            np.diff(starts) < acquisition.exposure_s + acquisition.dead_time_s - 1e-9))
        if overrun:
            self.push_error(ScpiError(
                EXECUTION_ERROR,
                f"trigger overrun: {overrun} of {acquisition.count} triggers came less than "
                "EXPO+DEAD after the previous one (the detector would have missed them)",
            ))
        little = np.ascontiguousarray(np.minimum(counts, SATURATION_COUNTS), dtype="<u2")
        return binary_block(little.tobytes())

    def _wait_for_triggers(self, acquisition: Acquisition) -> bool:
        """Follow the trigger axis until every trigger came (True) or it stopped short."""
        model = self.model
        while True:
            acquisition.starts_s = model.find_triggers(
                acquisition.axis, acquisition.first, acquisition.step, acquisition.count,
                acquisition.armed_s, acquisition.starts_s,
            )  # fmt: skip
            if len(acquisition.starts_s) == acquisition.count:
                return True
            if not model.axis_moving(acquisition.axis):
                # The move may have ended since the search: one more look up to now.
                acquisition.starts_s = model.find_triggers(
                    acquisition.axis, acquisition.first, acquisition.step, acquisition.count,
                    acquisition.armed_s, acquisition.starts_s,
                )  # fmt: skip
                return len(acquisition.starts_s) == acquisition.count
            left_s = model.move_end_s(acquisition.axis) - self.clock.now()
            if self.clock.virtual:  # the move's end is a deadline; a new move is seen after
                self.clock.sleep_blocking(max(left_s, 1e-6))
            else:
                time.sleep(min(POLL_WALL_S, max(self.clock.wall_duration_s(left_s), 1e-4)))


def _number(value: float) -> str:
    return repr(float(value))
