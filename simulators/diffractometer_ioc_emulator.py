"""A simulated EPICS IOC serving the SXDM diffractometer's motors as motor records.

Beamlines drive their motors through EPICS motor records over Channel Access, so
the simulator does the same: a caproto server on 127.0.0.1 serves one motor
record per axis (sample piezo x/y, eta, phi, nu, delta, X-ray energy), and the
ophyd-async `Motor` talks to it through libca exactly as it would at the beamline.

Motion runs on the `InstrumentClock`: a move of distance d takes d/VELO (plus
the acceleration ramps) of *instrument* time, so with a sped-up clock a dry run's
moves are quick while their recorded durations and timestamps stay realistic.
Readback fields are stamped with instrument time, which is what CA hands the
client as the reading's timestamp.

Motor-record behaviour kept (what ophyd-async can observe): a put to VAL
completes (put-callback) only when the move is done; DMOV goes 0→1 and MOVN
1→0 at the end; RBV follows a trapezoidal velocity profile at 10 Hz of
instrument time; a target outside the soft limits is refused the way the record
refuses it (LVIO=1, VAL kept, no motion, the put still completes); STOP
halts the axis where it is and sets VAL to that position; VELO is clamped to VMAX;
user and dial limits stay equal (OFF=0, DIR=Pos). Not simulated: offsets and
Set mode (puts to OFF/FOFF/SET other than the defaults fail), SPMG, backlash,
retries, limit switches, homing, encoders.

Trajectories: every move (and every halt) of an axis is recorded, so other simulators can
ask where the axis *was* at a past instrument time (`position_at`) and when it passed a
position in a given direction (`crossing_time_s`): the area detector's frames of a
hardware-triggered fly scan are computed after the fact, at their own times. The last
`HISTORY_LENGTH` moves per axis are kept (appended by the IOC thread, read from others
under a lock). `SimulatedDiffractometer` is the lab's model: it owns the IOC and serves
itself (`address` = `ca://<prefix>`).

Finding the server without broadcast: a CA client searches by UDP datagrams to
each address of EPICS_CA_ADDR_LIST (`host:port` entries allowed); the search
reply carries the server's TCP port. So the IOC binds its UDP search socket to
127.0.0.1 on one port (free, checked exclusive so no other server shares it) and
`ca_address_env()` gives the client that one address with the automatic
(broadcast) list switched off. libca reads these variables once per CA context,
when the first channel is created; caproto's clients read them at every search.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from caproto import SkipWrite
from caproto.asyncio.server import Context
from caproto.server import PVGroup, pvproperty
from caproto.server import common as caproto_server

from vegard.clock import InstrumentClock
from vegard.motion import move_duration_s, ramp

from .parameters import Parameter, model_values
from .scpi_server import LOOPBACK_HOST, is_loopback

LOG = logging.getLogger(__name__)

READBACK_PERIOD_S = 0.1
"""Instrument seconds between readback updates while moving (a motor record's 10 Hz poll)."""
MIN_WALL_TICK_S = 0.02
"""Shortest wall-clock period of readback updates. Every moving axis publishes on the
same wall-clock tick, so the server sees bursts with quiet gaps: caproto batches
monitor updates that keep arriving within 10 ms of each other with a latency that
doubles up to 1 s, which would make a fast clock's 2 kHz updates arrive late."""
START_TIMEOUT_S = 5.0
MONITOR_MAX_LATENCY_S = 0.02
"""Longest caproto may hold monitor updates to batch them. Its default lets the hold
double up to 1 s while updates keep coming within 10 ms of each other (moves in
quick succession do that), so DMOV/RBV monitors would arrive up to a second late;
a real IOC sends them at once. Tunable in caproto by CAPROTO_SERVER_MAX_LATENCY_SEC,
which, when set, is left alone."""


@dataclass(frozen=True)
class MotorSpec:
    """One axis: its PV name, units, soft limits and motion parameters (motor-record fields)."""

    name: str
    """Physical name with units, the same as the ophyd-async device's child."""
    pv_suffix: str
    description: str
    egu: str
    low_limit: float
    high_limit: float
    velocity: float
    max_velocity: float
    acceleration_time_s: float
    precision: int
    resolution: float
    """MRES: one motor step in EGU."""
    deadband: float
    """RDBD: how close counts as arrived."""
    start: float


# The Bragg angle of LMNO (400) (d = 2.0409 Å) at 10 keV is 17.68°, so eta and delta
# start on the reflection.
DIFFRACTOMETER_MOTORS: tuple[MotorSpec, ...] = (
    # name, PV, DESC, EGU, LLM, HLM, VELO, VMAX, ACCL (s), PREC, MRES, RDBD, start position
    MotorSpec("sample_x_um", "SAMX", "sample piezo x", "um", -50.0, 50.0,
              1000.0, 2000.0, 0.002, 4, 1e-4, 1e-3, 0.0),
    MotorSpec("sample_y_um", "SAMY", "sample piezo y", "um", -50.0, 50.0,
              1000.0, 2000.0, 0.002, 4, 1e-4, 1e-3, 0.0),
    MotorSpec("eta_deg", "ETA", "rocking angle eta", "deg", -5.0, 90.0,
              1.0, 5.0, 0.2, 4, 1e-4, 5e-4, 17.68),
    MotorSpec("phi_deg", "PHI", "sample azimuth phi", "deg", -180.0, 180.0,
              5.0, 20.0, 0.2, 4, 1e-4, 5e-4, 0.0),
    MotorSpec("nu_deg", "NU", "detector arm nu (in plane)", "deg", -5.0, 90.0,
              2.0, 4.0, 0.5, 4, 1e-4, 5e-4, 0.0),
    MotorSpec("delta_deg", "DELTA", "detector arm delta (out of plane)", "deg", -5.0, 120.0,
              2.0, 4.0, 0.5, 4, 1e-4, 5e-4, 35.37),
    MotorSpec("energy_ev", "ENERGY", "X-ray energy (monochromator)", "eV", 5000.0, 15000.0,
              100.0, 500.0, 0.5, 2, 0.01, 0.1, 10000.0),
)  # fmt: skip


@dataclass(frozen=True)
class Move:
    """A trapezoidal move: ramp up in `acceleration_time_s`, cruise at `velocity`, ramp down.

    A move too short to reach `velocity` is a triangle with the same acceleration.
    """

    start_position: float
    target: float
    start_time_s: float
    velocity: float
    acceleration_time_s: float

    @classmethod
    def at_rest(cls, position: float, time_s: float) -> Move:
        return cls(position, position, time_s, 1.0, 0.0)

    @property
    def distance(self) -> float:
        return abs(self.target - self.start_position)

    def _ramp(self) -> tuple[float, float]:
        """(ramp time, peak velocity) of this move."""
        return ramp(self.distance, self.velocity, self.acceleration_time_s)

    @property
    def duration_s(self) -> float:
        return move_duration_s(self.distance, self.velocity, self.acceleration_time_s)

    @property
    def end_time_s(self) -> float:
        return self.start_time_s + self.duration_s

    def time_at(self, position: float) -> float:
        """When this move reaches `position` (clipped to the stretch between start and target)."""
        distance = self.distance
        if distance == 0.0:
            return self.start_time_s
        travelled = min(abs(position - self.start_position), distance)
        ramp_s, peak_velocity = self._ramp()
        if ramp_s <= 0.0:
            return self.start_time_s + travelled / peak_velocity
        half_accel = 0.5 * peak_velocity / ramp_s
        ramp_distance = half_accel * ramp_s**2
        if travelled <= ramp_distance:
            elapsed_s = math.sqrt(travelled / half_accel)
        elif travelled >= distance - ramp_distance:
            elapsed_s = self.duration_s - math.sqrt(max(0.0, distance - travelled) / half_accel)
        else:
            elapsed_s = ramp_s + (travelled - ramp_distance) / peak_velocity
        return self.start_time_s + elapsed_s

    def position_at(self, time_s: float) -> float:
        elapsed_s = time_s - self.start_time_s
        duration_s = self.duration_s
        if elapsed_s <= 0.0:
            return self.start_position
        if elapsed_s >= duration_s:
            return self.target
        ramp_s, peak_velocity = self._ramp()
        half_accel = 0.5 * peak_velocity / ramp_s if ramp_s > 0.0 else 0.0
        if elapsed_s < ramp_s:
            travelled = half_accel * elapsed_s**2
        elif elapsed_s <= duration_s - ramp_s:
            travelled = 0.5 * peak_velocity * ramp_s + peak_velocity * (elapsed_s - ramp_s)
        else:
            travelled = self.distance - half_accel * (duration_s - elapsed_s) ** 2
        direction = 1.0 if self.target >= self.start_position else -1.0
        return self.start_position + direction * travelled


HISTORY_LENGTH = 256
"""Moves kept per axis: enough for a map's fly lines to be looked up after the fact."""


class MoveHistory:
    """The recent moves of one axis, oldest first: its trajectory in instrument time.

    Appended by the IOC's thread whenever a move starts or the axis is halted; read by
    other threads (the area detector asks where the sample *was* during each frame).
    Each move governs from its start time until the next one starts.
    """

    def __init__(self, initial: Move, length: int = HISTORY_LENGTH) -> None:
        self._lock = threading.Lock()
        self._moves: deque[Move] = deque([initial], maxlen=length)
        self._truncated = False

    def record(self, move: Move) -> None:
        with self._lock:
            if len(self._moves) == self._moves.maxlen:
                self._truncated = True
            self._moves.append(move)

    def moves(self) -> list[Move]:
        with self._lock:
            return list(self._moves)

    def latest(self) -> Move:
        with self._lock:
            return self._moves[-1]

    def _snapshot(self, time_s: float) -> tuple[list[Move], int]:
        """The moves and the index of the one governing `time_s` (-1: before all of them)."""
        with self._lock:
            moves, truncated = list(self._moves), self._truncated
        index = bisect.bisect_right([move.start_time_s for move in moves], time_s) - 1
        if index < 0 and truncated:
            raise ValueError(
                f"instrument time {time_s!r} is before the oldest move still recorded "
                f"({moves[0].start_time_s!r}; {len(moves)} moves kept)"
            )
        return moves, index

    def position_at(self, time_s: float) -> float:
        moves, index = self._snapshot(time_s)
        if index < 0:
            return moves[0].start_position
        return moves[index].position_at(time_s)

    def positions_at(self, times_s: Iterable[float]) -> list[float]:
        """`position_at` for many times, from one snapshot of the moves."""
        times = [float(t) for t in times_s]
        if not times:
            return []
        moves, _ = self._snapshot(min(times))
        starts = [move.start_time_s for move in moves]
        positions = []
        for time_s in times:
            index = bisect.bisect_right(starts, time_s) - 1
            positions.append(moves[max(index, 0)].position_at(time_s))
        return positions

    def crossing_time_s(
        self, position: float, after_s: float, direction: int, now_s: float
    ) -> float | None:
        """First time in [after_s, now_s] at which the axis reaches `position` moving in
        `direction` (+1: increasing, -1: decreasing); None if it has not (yet)."""
        if direction not in (1, -1):
            raise ValueError(f"direction must be +1 or -1, got {direction!r}")
        moves, index = self._snapshot(after_s)
        for number in range(max(index, 0), len(moves)):
            move = moves[number]
            if move.start_time_s > now_s:
                break
            if move.distance == 0.0:
                continue
            if (1 if move.target > move.start_position else -1) != direction:
                continue
            low, high = sorted((move.start_position, move.target))
            if not low <= position <= high:
                continue
            end_s = moves[number + 1].start_time_s if number + 1 < len(moves) else math.inf
            crossing_s = move.time_at(position)
            if max(move.start_time_s, after_s) <= crossing_s <= min(end_s, now_s):
                return crossing_s
        return None


class MotionFaults:
    """Physics faults of the motors (0 = off), scheduled in instrument time since `started_s`.

    A stall: the first move at or after `stall_at_s` that is long enough to tell (more than
    twice its axis's retry deadband) ends halfway; DMOV still goes to 1, RBV stays short of
    VAL, as when a motor loses steps against friction or a cable.
    """

    def __init__(self, started_s: float, stall_at_s: float = 0.0) -> None:
        self.started_s = started_s
        self._lock = threading.Lock()
        self._stall_due_s: float | None = started_s + stall_at_s if stall_at_s > 0 else None
        self._fired: list[dict[str, Any]] = []

    def move_end(self, axis: str, start: float, target: float, now_s: float,
                 deadband: float) -> float:
        """Where a move from `start` to `target` begun at `now_s` really ends."""
        with self._lock:
            due_s = self._stall_due_s
            if due_s is None or now_s < due_s or abs(target - start) <= 2.0 * deadband:
                return target
            self._stall_due_s = None
            end = start + 0.5 * (target - start)
            self._fired.append({
                "kind": "stall", "instrument_time_s": now_s - self.started_s, "axis": axis,
                "start": start, "target": target, "stopped_at": end,
            })
            return end

    def fired(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(fault) for fault in self._fired]


@dataclass(frozen=True)
class MotorTruth:
    """Where an axis physically is at an instant of instrument time."""

    position: float
    target: float
    moving: bool


class SimulatedMotor(PVGroup):
    """One motor record (`<prefix>` and `<prefix>.FIELD`) moving on the instrument clock."""

    record = pvproperty(value=0.0, name="", record="motor", precision=4)

    def __init__(
        self,
        prefix: str,
        *,
        spec: MotorSpec,
        clock: InstrumentClock,
        history: MoveHistory | None = None,
        faults: MotionFaults | None = None,
        put_latency_s: float = 0.0,
    ) -> None:
        super().__init__(prefix)
        self.spec = spec
        self.clock = clock
        self.faults = faults
        self.put_latency_s = put_latency_s
        self.history = history or MoveHistory(Move.at_rest(spec.start, clock.now()))
        self._move = Move.at_rest(spec.start, clock.now())
        self.history.record(self._move)
        self._motion: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None

    @property
    def fields(self) -> Any:
        """caproto's MotorFields of this record (generated class, hence `Any`)."""
        return self.record.field_inst

    async def stamped(self, channel: Any, value: Any) -> None:
        """Write a field as the IOC (no putter) with an instrument-time timestamp."""
        await channel.write(value, verify_value=False, timestamp=self.clock.now())

    async def initialize(self) -> None:
        """Fill the fields before the server accepts clients (they must never see defaults)."""
        self._idle = asyncio.Event()
        self._idle.set()
        spec, fields, now = self.spec, self.fields, self.clock.now()
        for channel in fields.pvdb.values():  # fields left at their defaults: stamp them too
            await channel.write_metadata(timestamp=now, publish=False)
        display = {"units": spec.egu, "precision": spec.precision, "timestamp": now}
        await self.record.write(spec.start, verify_value=False, **display)
        await fields.user_readback_value.write(spec.start, verify_value=False, **display)
        await fields.dial_readback_value.write(spec.start, verify_value=False, **display)
        for channel, value in (
            (fields.dial_desired_value, spec.start),
            (fields.engineering_units, spec.egu),
            (fields.description, spec.description),
            (fields.display_precision, spec.precision),
            (fields.velocity, spec.velocity),
            (fields.max_velocity, spec.max_velocity),
            (fields.base_velocity, 0.0),
            (fields.seconds_to_velocity, spec.acceleration_time_s),
            (fields.motor_step_size, spec.resolution),
            (fields.encoder_step_size, spec.resolution),
            (fields.egu_s_per_revolution, spec.resolution * fields.steps_per_revolution.value),
            (fields.retry_deadband, spec.deadband),
            (fields.user_low_limit, spec.low_limit),
            (fields.user_high_limit, spec.high_limit),
            (fields.dial_low_limit, spec.low_limit),
            (fields.dial_high_limit, spec.high_limit),
            (fields.output_specification, f"@sim {spec.pv_suffix}"),
            (fields.limit_violation, 0),
            (fields.done_moving_to_value, 1),
            (fields.motor_is_moving, 0),
        ):
            await self.stamped(channel, value)

    def truth(self) -> MotorTruth:
        move, now = self._move, self.clock.now()
        return MotorTruth(move.position_at(now), move.target, now < move.end_time_s)

    # --- VAL: the move ------------------------------------------------------------------

    @record.putter
    async def record(self, instance: Any, value: float) -> None:
        await self.move_to(float(value))
        raise SkipWrite  # VAL was already written (stamped) when the move started

    async def move_to(self, target: float) -> None:
        """Start a move (replacing any in progress) and return when the axis is done.

        The move starts `put_latency_s` after the put was read: the link's and the motor
        controller's share of a put's cost at a beamline (see `ca_put_latency_s`)."""
        if self.put_latency_s > 0.0:
            await self.clock.sleep(self.put_latency_s)
        fields = self.fields
        if not self.within_limits(target):
            LOG.info("%s: %s refused, outside soft limits", self.prefix, target)
            await self.stamped(fields.limit_violation, 1)
            return
        now = self.clock.now()
        self._cancel_motion()
        start = self._move.position_at(now)
        end = target if self.faults is None else self.faults.move_end(
            self.spec.name, start, target, now, fields.retry_deadband.value)
        self._move = Move(
            start, end, now, fields.velocity.value, fields.seconds_to_velocity.value,
        )  # fmt: skip
        self.history.record(self._move)
        assert self._idle is not None
        self._idle.clear()
        await self.stamped(fields.limit_violation, 0)
        await self.stamped(self.record, target)
        await self.stamped(fields.dial_desired_value, target)
        await self.stamped(fields.direction_of_travel, int(target >= self._move.start_position))
        await self.stamped(fields.done_moving_to_value, 0)
        await self.stamped(fields.motor_is_moving, 1)
        self._motion = asyncio.create_task(self._follow(self._move))
        await self._idle.wait()

    def within_limits(self, target: float) -> bool:
        """The motor record's soft-limit check; dial limits both 0 mean "no limits"."""
        fields = self.fields
        if not math.isfinite(target):
            return False
        if fields.dial_low_limit.value == 0.0 and fields.dial_high_limit.value == 0.0:
            return True
        return fields.user_low_limit.value <= target <= fields.user_high_limit.value

    async def _follow(self, move: Move) -> None:
        if self.clock.virtual:  # the record's 10 Hz readback, in instrument time
            while (now := self.clock.now()) < move.end_time_s:
                await self._publish_readback(move.position_at(now))
                await self.clock.sleep(min(READBACK_PERIOD_S, move.end_time_s - now))
        else:
            tick_s = max(self.clock.wall_duration_s(READBACK_PERIOD_S), MIN_WALL_TICK_S)
            while (now := self.clock.now()) < move.end_time_s:
                await self._publish_readback(move.position_at(now))
                wall_left_s = self.clock.wall_duration_s(move.end_time_s - now)
                await asyncio.sleep(min(tick_s - time.monotonic() % tick_s, wall_left_s))
        await self._publish_readback(move.target)
        await self._settle()

    async def _publish_readback(self, position: float) -> None:
        await self.stamped(self.fields.user_readback_value, position)
        await self.stamped(self.fields.dial_readback_value, position)

    async def _settle(self) -> None:
        await self.stamped(self.fields.motor_is_moving, 0)
        await self.stamped(self.fields.done_moving_to_value, 1)
        assert self._idle is not None
        self._idle.set()

    def _cancel_motion(self) -> None:
        if self._motion is not None:
            self._motion.cancel()
            self._motion = None

    # --- STOP ----------------------------------------------------------------------------

    @record.fields.stop.putter
    async def _stop_put(fields: Any, instance: Any, value: int) -> None:
        motor: SimulatedMotor = fields.parent.group
        if value:
            await motor.halt()
        await motor.stamped(instance, 0)  # the record resets STOP once processed
        raise SkipWrite

    async def halt(self) -> None:
        """Stop where the axis is now; VAL becomes that position (as the record does)."""
        assert self._idle is not None
        if self._idle.is_set():
            return
        now = self.clock.now()
        position = self._move.position_at(now)
        self._cancel_motion()
        self._move = Move.at_rest(position, now)
        self.history.record(self._move)
        await self._publish_readback(position)
        await self.stamped(self.record, position)
        await self.stamped(self.fields.dial_desired_value, position)
        await self._settle()

    # --- configuration fields ------------------------------------------------------------

    @record.fields.velocity.putter
    async def _velocity_put(fields: Any, instance: Any, value: float) -> None:
        motor: SimulatedMotor = fields.parent.group
        if not value > 0.0:
            raise ValueError(f"{motor.prefix}.VELO: velocity must be > 0, got {value}")
        max_velocity = fields.max_velocity.value
        await motor.stamped(instance, min(value, max_velocity) if max_velocity > 0 else value)
        raise SkipWrite

    @record.fields.seconds_to_velocity.putter
    async def _acceleration_put(fields: Any, instance: Any, value: float) -> None:
        if value < 0.0:
            raise ValueError(
                f"{fields.parent.group.prefix}.ACCL: acceleration time must be >= 0, got {value}"
            )
        await fields.parent.group.stamped(instance, value)
        raise SkipWrite

    @record.fields.user_high_limit.putter
    async def _high_limit_put(fields: Any, instance: Any, value: float) -> None:
        await fields.parent.group.set_limit(instance, fields.dial_high_limit, value)

    @record.fields.user_low_limit.putter
    async def _low_limit_put(fields: Any, instance: Any, value: float) -> None:
        await fields.parent.group.set_limit(instance, fields.dial_low_limit, value)

    @record.fields.dial_high_limit.putter
    async def _dial_high_limit_put(fields: Any, instance: Any, value: float) -> None:
        await fields.parent.group.set_limit(instance, fields.user_high_limit, value)

    @record.fields.dial_low_limit.putter
    async def _dial_low_limit_put(fields: Any, instance: Any, value: float) -> None:
        await fields.parent.group.set_limit(instance, fields.user_low_limit, value)

    async def set_limit(self, written: Any, twin: Any, value: float) -> None:
        """User and dial limits are the same number here (OFF=0, DIR=Pos): keep them so."""
        await self.stamped(written, value)
        await self.stamped(twin, value)
        raise SkipWrite

    @record.fields.user_offset.putter
    async def _offset_put(fields: Any, instance: Any, value: float) -> float:
        if value != 0.0:
            raise ValueError(f"{fields.parent.group.prefix}.OFF: user offsets are not simulated")
        return value

    @record.fields.offset_freeze_switch.putter
    async def _freeze_put(fields: Any, instance: Any, value: str) -> str:
        if value != "Variable":
            raise ValueError(f"{fields.parent.group.prefix}.FOFF: only FOFF=Variable is simulated")
        return value

    @record.fields.set_use_switch.putter
    async def _set_use_put(fields: Any, instance: Any, value: str) -> str:
        if value != "Use":
            raise ValueError(
                f"{fields.parent.group.prefix}.SET: Set mode (redefining position) is not simulated"
            )
        return value


class _LoopbackContext(Context):
    """caproto's asyncio server, with beacons kept on loopback and Nagle off.

    caproto makes its listening socket with protocol number 0, so asyncio does not
    recognise the accepted sockets as TCP and leaves Nagle's algorithm on: several
    replies in a row then wait for the client's delayed ACK (40 ms on Linux), which
    made five parallel reads take 44 ms instead of 1.
    """

    async def tcp_handler(self, client: Any, addr: tuple[str, int]) -> None:
        connection = client.writer.get_extra_info("socket")
        if connection is not None:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await super().tcp_handler(client, addr)

    virtual_time = False
    """On a virtual clock beacons are not sent: they only help clients find a restarted
    server, and each would be one more deadline to jump to."""

    async def broadcast_beacon_loop(self) -> None:
        for address in [a for a in self.beacon_socks if not is_loopback(a[0])]:
            _, transport = self.beacon_socks.pop(address)
            transport.close()
        if self.virtual_time:
            return
        await super().broadcast_beacon_loop()


class ClockSync(PVGroup):
    """`<prefix>CLOCK:SYNC`: read by the virtual clock's barrier before each jump.

    The read is answered only once the IOC's loop has nothing else to run, so the reply is
    the last thing the IOC sends before it waits: when it reaches the client, everything
    the IOC sent earlier has reached it too (CA keeps order on a circuit). A real IOC has
    no such record; only a dry run on a virtual clock reads it.
    """

    sync = pvproperty(value=0, name="CLOCK:SYNC", read_only=True)

    @sync.getter
    async def sync(self, instance: Any) -> int:
        loop = asyncio.get_running_loop()
        until_idle = getattr(loop, "until_idle", None)
        if until_idle is not None:
            await until_idle()
        return 0


class DiffractometerIoc:
    """Serves the diffractometer motor records with caproto from a background thread.

    Binds TCP and UDP to `host`, 127.0.0.1 unless another host is explicitly allowed
    (`allow_remote`, logged as a warning). Port 0 picks a number free for both
    (the UDP one, where clients search, is what `ca_address_env()` names).
    """

    faults: MotionFaults | None = None
    """Physics faults of the motors (set by the lab model before `start`)."""
    put_latency_s: float = 0.0
    """Instrument time from a move's put to the start of the motion (set by the model)."""

    def __init__(
        self,
        clock: InstrumentClock,
        prefix: str = "SIM:DIFF:",
        port: int = 0,
        host: str = LOOPBACK_HOST,
        motors: Iterable[MotorSpec] = DIFFRACTOMETER_MOTORS,
        allow_remote: bool = False,
    ) -> None:
        if not is_loopback(host):
            if not allow_remote:
                raise ValueError(
                    f"simulated IOC host {host!r} is not loopback; pass allow_remote=True"
                )
            LOG.warning("simulated IOC %s serving on non-loopback host %s", prefix, host)
        self.clock = clock
        self.prefix = prefix
        self.host = host
        self.specs = tuple(motors)
        self._requested_port = port
        self._port: int | None = None
        self._tcp_port: int | None = None
        self._motors: dict[str, SimulatedMotor] = {}
        now = clock.now()
        self._histories = {
            spec.name: MoveHistory(Move.at_rest(spec.start, now)) for spec in self.specs
        }
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        """The UDP port clients search on."""
        if self._port is None:
            raise RuntimeError("IOC not started")
        return self._port

    @property
    def tcp_port(self) -> int:
        """The TCP port of the circuits (search replies tell clients; usually == `port`)."""
        if self._tcp_port is None:
            raise RuntimeError("IOC not started")
        return self._tcp_port

    @property
    def running(self) -> bool:
        return self._thread is not None

    def pv_prefix(self, motor: str) -> str:
        """The record name of one axis, e.g. `SIM:DIFF:ETA` for `eta_deg`."""
        for spec in self.specs:
            if spec.name == motor:
                return self.prefix + spec.pv_suffix
        raise KeyError(f"no motor {motor!r}; have {[s.name for s in self.specs]}")

    def ca_address_env(self) -> dict[str, str]:
        """What a CA client (libca/aioca or caproto) needs in its environment to find this IOC."""
        return {
            "EPICS_CA_ADDR_LIST": f"{self.host}:{self.port}",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": str(self.port),
        }

    def ground_truth(self) -> dict[str, MotorTruth]:
        """Position, target and moving flag of every axis, now (instrument time)."""
        now = self.clock.now()
        truth = {}
        for name, history in self._histories.items():
            move = history.latest()
            truth[name] = MotorTruth(move.position_at(now), move.target, now < move.end_time_s)
        return truth

    def history(self, axis: str) -> MoveHistory:
        """The recorded trajectory of one axis (kept across restarts of the server)."""
        try:
            return self._histories[axis]
        except KeyError:
            raise KeyError(f"no motor {axis!r}; have {list(self._histories)}") from None

    def position_at(self, axis: str, time_s: float) -> float:
        """Where `axis` was (or is) at instrument time `time_s`, from its recorded moves."""
        return self.history(axis).position_at(time_s)

    def positions_at(self, axis: str, times_s: Iterable[float]) -> list[float]:
        """`position_at` for many instrument times at once."""
        return self.history(axis).positions_at(times_s)

    def crossing_time_s(
        self, axis: str, position: float, after_s: float, direction: int
    ) -> float | None:
        """First instrument time ≥ `after_s` at which `axis` passed `position` moving in
        `direction` (+1/-1); None if it has not, judged on the trajectory up to now."""
        return self.history(axis).crossing_time_s(position, after_s, direction, self.clock.now())

    def is_moving(self, axis: str) -> bool:
        return self.clock.now() < self.history(axis).latest().end_time_s

    def move_end_s(self, axis: str) -> float:
        """When the axis's latest move ends (or ended)."""
        return self.history(axis).latest().end_time_s

    def start(self) -> DiffractometerIoc:
        if self._thread is not None:
            return self
        limit_monitor_batching()
        if self.clock.virtual:
            no_wall_time_batching()
        port = self._requested_port or free_port(self.host)
        ensure_port_free(self.host, port)
        ready = threading.Event()
        self._error = None
        self._thread = threading.Thread(
            target=self._run_in_thread, args=(port, ready), name=f"ca-ioc-{port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            self.stop()
            raise TimeoutError(f"simulated IOC on {self.host}:{port} did not start")
        if self._error is not None:
            error = self._error
            self.stop()
            raise RuntimeError(f"simulated IOC on {self.host}:{port} failed: {error}") from error
        self._port = port
        return self

    def stop(self) -> None:
        """Cancel the server (closing its sockets and circuits) and join its thread."""
        thread, loop, task = self._thread, self._loop, self._task
        if thread is None:
            return
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop already closed: the server is gone
                pass
        thread.join(timeout=START_TIMEOUT_S)
        if thread.is_alive():
            LOG.warning("simulated IOC thread %s did not stop", thread.name)
        self._thread = self._loop = self._task = None
        self._port = self._tcp_port = None

    @property
    def sync_pv(self) -> str:
        """The PV a virtual clock's barrier reads (see `ClockSync`)."""
        return self.prefix + "CLOCK:SYNC"

    def _run_in_thread(self, port: int, ready: threading.Event) -> None:
        loop = self.clock.new_event_loop()
        try:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve(port, ready))
        except BaseException as error:  # reported to start(); a thread cannot raise
            self._error = error
            LOG.debug("simulated IOC stopped with %r", error)
        finally:
            ready.set()
            asyncio.set_event_loop(None)
            loop.close()

    async def _serve(self, port: int, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        motors = {
            spec.name: SimulatedMotor(
                self.prefix + spec.pv_suffix, spec=spec, clock=self.clock,
                history=self._histories[spec.name], faults=self.faults,
                put_latency_s=self.put_latency_s,
            )
            for spec in self.specs
        }
        pvdb: dict[str, Any] = {}
        for motor in motors.values():
            await motor.initialize()
            pvdb.update(motor.pvdb)
        pvdb.update(ClockSync(self.prefix).pvdb)
        self._motors = motors
        context = _LoopbackContext(pvdb, [self.host])
        context.virtual_time = self.clock.virtual
        context.ca_server_port = port  # the UDP search port; TCP tries it first too

        async def announce_ready(async_lib: Any) -> None:
            self._tcp_port = context.port
            ready.set()

        await context.run(startup_hook=announce_ready)

    def __enter__(self) -> DiffractometerIoc:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


DIFFRACTOMETER_PREFIX = "SIM:DIFF:"


class SimulatedDiffractometer:
    """The diffractometer as a lab model: it owns its IOC and serves itself over CA.

    Built like every lab model (`model(clock, parameters, seed)`; no physical
    parameters yet); the lab starts and stops it and passes `port`, the UDP port CA
    clients search on (0: a free one), and `host` / `allow_remote` as for the IOC. Other
    models (the area detector) read the axes' past trajectories through `position_at` /
    `crossing_time_s`, which work before the server starts too (every axis then rests at
    its start position).
    """

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("fault_stall_at_s", 0.0, "s", 0.0, 1e8,
                  "fault injection, motor stall: the first move at or after this instrument "
                  "time since the lab started stops halfway, DMOV 1 with RBV short of VAL "
                  "(0 = off)"),
        Parameter("ca_put_latency_s", 0.002, "s", 0.0, 1.0,
                  "link cost: instrument time from a motor put to the start of the motion "
                  "(CA round trip on a beamline LAN, under 1 ms, plus the motor controller's "
                  "command cycle; 2 ms assumed)"),
    )

    def __init__(
        self,
        clock: InstrumentClock,
        parameters: Mapping[str, float] | None = None,
        seed: int | Iterable[int] = 0,
        *,
        port: int = 0,
        prefix: str = DIFFRACTOMETER_PREFIX,
        host: str = LOOPBACK_HOST,
        allow_remote: bool = False,
    ) -> None:
        self.parameters = model_values(self.PARAMETERS, parameters, "diffractometer")
        self.clock = clock
        self.ioc = DiffractometerIoc(
            clock, prefix=prefix, port=port, host=host, allow_remote=allow_remote
        )
        self.faults = MotionFaults(clock.now(), self.parameters["fault_stall_at_s"])
        self.ioc.faults = self.faults
        self.ioc.put_latency_s = self.parameters["ca_put_latency_s"]

    @property
    def address(self) -> str:
        """`ca://<PV prefix>`: what a profile names as the device's address."""
        return f"ca://{self.ioc.prefix}"

    @property
    def axes(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.ioc.specs)

    @property
    def running(self) -> bool:
        return self.ioc.running

    def start(self) -> SimulatedDiffractometer:
        self.ioc.start()
        return self

    def stop(self) -> None:
        self.ioc.stop()

    def client_environment(self) -> dict[str, str]:
        """The EPICS_CA_* variables a client needs to find the IOC (once started)."""
        return self.ioc.ca_address_env()

    @property
    def clock_sync_pv(self) -> str:
        """What a virtual clock's barrier reads on this IOC."""
        return self.ioc.sync_pv

    def position_at(self, axis: str, time_s: float) -> float:
        return self.ioc.position_at(axis, time_s)

    def positions_at(self, axis: str, times_s: Iterable[float]) -> list[float]:
        """Where `axis` was at each of these instrument times."""
        return self.ioc.positions_at(axis, times_s)

    def crossing_time_s(
        self, axis: str, position: float, after_s: float, direction: int
    ) -> float | None:
        return self.ioc.crossing_time_s(axis, position, after_s, direction)

    def is_moving(self, axis: str) -> bool:
        return self.ioc.is_moving(axis)

    def move_end_s(self, axis: str) -> float:
        return self.ioc.move_end_s(axis)

    def safe_state(self) -> dict[str, Any]:
        """Safe = no axis moving (judged on the trajectories, not on what a client saw)."""
        moving = sorted(name for name, axis in self.ioc.ground_truth().items() if axis.moving)
        return {"safe": not moving, "moving_axes": moving}

    def fired_faults(self) -> list[dict[str, Any]]:
        """The motion faults that happened (instrument time since the lab started)."""
        return self.faults.fired()

    def ground_truth(self) -> dict[str, Any]:
        truth = self.ioc.ground_truth()
        return {
            "parameters": dict(self.parameters),
            "prefix": self.ioc.prefix,
            "positions": {name: axis.position for name, axis in truth.items()},
            "targets": {name: axis.target for name, axis in truth.items()},
            "moving": sorted(name for name, axis in truth.items() if axis.moving),
        }


def ca_address_env_for_all(iocs: Iterable[DiffractometerIoc]) -> dict[str, str]:
    """One client environment that finds several IOCs (each search goes to every address)."""
    addresses = [ioc.ca_address_env()["EPICS_CA_ADDR_LIST"] for ioc in iocs]
    return {"EPICS_CA_ADDR_LIST": " ".join(addresses), "EPICS_CA_AUTO_ADDR_LIST": "NO"}


def limit_monitor_batching() -> None:
    """Cap caproto's monitor batching (a module setting, shared by every server in the process)."""
    if "CAPROTO_SERVER_MAX_LATENCY_SEC" not in os.environ:
        caproto_server.MAX_LATENCY = min(caproto_server.MAX_LATENCY, MONITOR_MAX_LATENCY_S)


def no_wall_time_batching() -> None:
    """caproto's server waits briefly (on its loop's timers) to batch monitor updates and
    to let a write finish before a read; it also decides on the wall clock when a batch
    is due. On a virtual clock those waits would be instrument time and the decision would
    depend on the machine's speed, so both are switched off: every update goes out at once
    and a read never waits (a put with completion is answered only when done anyway)."""
    caproto_server.HIGH_LOAD_TIMEOUT = 0.0
    caproto_server.WRITE_LOCK_TIMEOUT = 0.0


def free_port(host: str = LOOPBACK_HOST, attempts: int = 50) -> int:
    """A port number free for both UDP and TCP on `host`."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
        return port
    raise OSError(f"no port free for both UDP and TCP on {host}")


def ensure_port_free(host: str, port: int) -> None:
    """Refuse a UDP port another server holds.

    caproto binds its search socket with SO_REUSEADDR/SO_REUSEPORT, so a second
    server on the same port would start silently and the kernel would hand each
    client's searches to only one of them. An exclusive bind here detects that.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(f"UDP port {host}:{port} is in use (another CA server?)") from error
