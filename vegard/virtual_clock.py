"""Virtual instrument time for in-process dry runs: time moves only when nothing else can.

A dry run must give the same answer on an idle laptop and on a loaded 2-core runner, and
report the real instrument's durations, so instrument time here is not wall time scaled:
it advances only through modelled durations (an acquisition, a motion, a settling hold, a
reply timeout, the cost a simulator gives its link) and jumps to the earliest pending
deadline once no participant of the dry run can make progress.

Participants are everything that can act in the dry run:

- event loops made by `new_event_loop()` (the RunEngine's, the simulated IOC's): busy
  while they have work, waiting (with their earliest timer as deadline) when their
  selector would block. A call from another thread (`call_soon_threadsafe`, which is
  how worker threads, Channel Access callbacks and status callbacks reach a loop) makes
  the loop busy in the same critical section that queues the callback;
- worker threads started through `run_in_thread` (the drivers' blocking exchanges):
  busy from the moment the loop submits them until the loop has their result, except
  while they wait on the clock (for a reply, with the reply timeout as deadline);
- the simulators' connection threads: busy from reading a request until they block on
  the socket again, except while they sleep on the clock (an acquisition's duration).

Quiescence is known, not guessed: every hand-over between participants is counted in
one critical section with the state change it causes.

- A text wire (`Wire`, one ledger per simulated server port) counts requests the client
  has sent and the server has not yet read, and replies the server has announced and
  the client has not yet taken. A request in flight blocks every jump; an announced
  reply makes the waiting client busy at once. The ledger carries no data: the bytes
  still travel over TCP through pyvisa and pyserial.
- Channel Access goes through libca's own threads, which the clock cannot see into. So
  before each jump a *barrier* runs (`add_barrier`): a Channel Access read that the
  simulated IOC answers only once its own loop has nothing else to do. CA keeps order
  on a circuit in both directions, so when that reply arrives every earlier request has
  reached the IOC and every earlier update has been handed to the RunEngine's loop. If
  anything but the barrier's own reply woke a participant meanwhile, the barrier runs
  again; only a clean one allows the jump.

So the clock cannot jump past a pending reply (the request is counted until the server
reads it; the server then sleeps on the clock or answers), and it cannot deadlock on a
reply that never comes (the client waits with its timeout as deadline, so a lost reply
times out in instrument time). The one wall-clock bound is a watchdog on holds and
barriers (`WALL_WATCHDOG_S`) for a peer that has died, which ends the run either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import re
import selectors
import socket
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from vegard.clock import InstrumentClock, Wire

LOG = logging.getLogger(__name__)

T = TypeVar("T")

WALL_WATCHDOG_S = 60.0
"""Wall seconds a hold or a barrier may take before the clock gives up on it (a dead
peer): far beyond any loaded machine's scheduling delay, and only ever reached when a
simulator has died, which fails the run anyway."""
WORKER_THREADS = 64
"""Worker threads of a virtual loop: far more than the exchanges a dry run has in flight."""
THREADS_WALL_LIMIT_S = 10.0
"""Longest wall time a loop waits for the threads woken with it (only a bug makes it wait)."""
STUCK_REPORT_S = 30.0
"""Wall seconds without a jump or any activity after which the clock logs its state."""
REPLY_WALL_SAFETY_S = 60.0
"""Wall-clock timeout of a blocking read once the clock knows the reply is on its way."""

_ADDRESS_PORT = re.compile(
    r"^(?:TCPIP\d*::(?P<visa_host>[^:]+)::(?P<visa_port>\d+)::SOCKET"
    r"|socket://(?P<host>[^:/]+):(?P<port>\d+))$", re.IGNORECASE)
_LOOPBACK_NAMES = {"127.0.0.1", "localhost"}


class Participant:
    """One actor of the dry run: busy, or waiting for a condition or a deadline."""

    __slots__ = ("busy", "condition", "deadline_s", "detached", "fired", "holds", "name",
                 "thread_done", "wake", "wake_pending", "woken")

    def __init__(self, name: str, wake: Callable[[], None] | None,
                 lock: threading.RLock) -> None:
        self.name = name
        self.woken = threading.Condition(lock)
        """Its own condition, for a thread blocked on the clock (or a loop's thread in a
        blocking call on the loop): a change wakes only the thread it concerns, not every
        waiting thread to take the GIL and sleep again."""
        self.busy = True
        self.condition: Callable[[], bool] | None = None
        self.deadline_s: float | None = None
        """Elapsed instrument seconds (since the clock's origin) to wake at."""
        self.fired = ""
        self.wake = wake
        """How to wake a loop blocked in its selector (its wake socket); None: a thread."""
        self.wake_pending = False
        self.thread_done = False
        self.detached = False
        self.holds = False
        """Keeps time still on purpose (`hold`): busy, but no thread is working for it."""

    def __repr__(self) -> str:
        state = "busy" if self.busy else f"waiting(deadline={self.deadline_s})"
        return f"<Participant {self.name} {state}>"


class VirtualClock(InstrumentClock):
    """Instrument time that jumps to the next deadline when every participant waits."""

    virtual = True

    def __init__(self, origin_s: float | None = None) -> None:
        self.speedup = float("inf")
        # A whole second: every epoch time is then origin + elapsed rounded on the same
        # grid whatever the origin, so arithmetic on `now()` gives the same bits each run.
        self._origin_s = float(int(time.time() if origin_s is None else origin_s))
        self._elapsed_s = 0.0
        self._lock = threading.RLock()
        self._threads_idle = threading.Condition(self._lock)
        self._participants: list[Participant] = []
        self._wires: dict[int, _WireLedger] = {}
        self._local = threading.local()
        self._activity = 0
        """Counts every wake of a participant that the clock did not cause itself."""
        self._barriers: list[tuple[asyncio.AbstractEventLoop, Callable[[], Awaitable[object]]]]
        self._barriers = []
        self._barrier_running = False
        self._clean_activity: int | None = None
        self.jumps = 0
        """Deadlines jumped to (for benchmarks)."""
        self.barriers_run = 0
        self._warned_stuck = False
        threading.Thread(target=_report_if_stuck, args=(weakref.ref(self),),
                         name="clock-stuck-report", daemon=True).start()

    # --- time -------------------------------------------------------------------------

    def now(self) -> float:
        return self._origin_s + self._elapsed_s

    def elapsed_s(self) -> float:
        return self._elapsed_s

    def state(self):  # type: ignore[override]
        raise RuntimeError("a virtual clock cannot be followed by another process")

    def wall_duration_s(self, instrument_duration_s: float) -> float:
        return 0.0

    def describe(self) -> str:
        return "virtual"

    def reply_timeout_wall_s(self, instrument_timeout_s: float) -> float:
        return REPLY_WALL_SAFETY_S

    def __repr__(self) -> str:
        return f"VirtualClock(elapsed={self._elapsed_s:.6g} s, jumps={self.jumps})"

    async def sleep(self, instrument_duration_s: float) -> None:
        loop = asyncio.get_running_loop()
        if not isinstance(loop, VirtualEventLoop) or loop.clock is not self:
            raise RuntimeError("VirtualClock.sleep needs a loop from this clock's new_event_loop()")
        await asyncio.sleep(max(0.0, instrument_duration_s))

    def sleep_blocking(self, instrument_duration_s: float) -> None:
        with self._thread_participant("sleep") as participant:
            self.wait(participant, None, self._elapsed_s + max(0.0, instrument_duration_s))

    # --- participants -----------------------------------------------------------------

    def participant(self, name: str, wake: Callable[[], None] | None = None) -> Participant:
        """A new participant, busy."""
        participant = Participant(name, wake, self._lock)
        with self._lock:
            self._participants.append(participant)
        return participant

    def close(self, participant: Participant) -> None:
        with self._lock:
            if participant in self._participants:
                self._participants.remove(participant)
                self._threads_idle.notify_all()
                self._maybe_advance()

    def current(self) -> Participant | None:
        """The participant the calling thread acts for, if any."""
        return getattr(self._local, "participant", None)

    @contextlib.contextmanager
    def acting_as(self, participant: Participant) -> Iterator[Participant]:
        """The calling thread acts for `participant` (its clock waits are that one's)."""
        previous = self.current()
        self._local.participant = participant
        try:
            yield participant
        finally:
            self._local.participant = previous

    @contextlib.contextmanager
    def _thread_participant(self, name: str) -> Iterator[Participant]:
        participant = self.current()
        if participant is not None:
            yield participant
            return
        participant = self.participant(f"{name}:{threading.current_thread().name}")
        try:
            with self.acting_as(participant):
                yield participant
        finally:
            self.close(participant)

    def wait(
        self, participant: Participant, condition: Callable[[], bool] | None,
        deadline_s: float | None,
    ) -> bool:
        """Block the calling thread until `condition()` holds (True) or instrument time
        reaches `deadline_s` elapsed (False). `condition` is evaluated under the clock's
        lock whenever a wire changes, so it must only read ledger state."""
        with self._lock:
            if condition is not None and condition():
                return True
            self._set_waiting(participant, condition, deadline_s)
            while not participant.busy:
                participant.woken.wait()
            return participant.fired == "condition"

    def set_waiting(self, participant: Participant) -> None:
        """`participant` blocks on something a ledger accounts for (a socket read)."""
        with self._lock:
            if participant.busy:
                self._set_waiting(participant, None, None)

    def set_busy(self, participant: Participant) -> None:
        with self._lock:
            if not participant.busy:
                self._activity += 1
                self._make_busy(participant, "io")

    def _set_waiting(
        self, participant: Participant, condition: Callable[[], bool] | None,
        deadline_s: float | None,
    ) -> None:
        participant.busy = False
        participant.condition = condition
        participant.deadline_s = deadline_s
        participant.fired = ""
        if participant.wake is None:
            self._threads_idle.notify_all()  # a loop may wait for threads to be done
        self._maybe_advance()

    def _make_busy(self, participant: Participant, why: str) -> None:
        participant.busy = True
        participant.fired = why
        participant.condition = None
        participant.deadline_s = None
        if participant.wake is not None:  # an event loop, blocked in its selector
            participant.wake_pending = True
            participant.wake()
        participant.woken.notify()  # or a thread blocked on the clock

    def _make_busy_quietly(self, participant: Participant) -> None:
        """A loop woken by one of its own sockets: busy, no activity counted (the IOC's
        circuits: whatever a request causes is either a reply, which the barrier sees
        arrive, or a timer, which is a deadline)."""
        participant.busy = True
        participant.fired = "io"
        participant.condition = None
        participant.deadline_s = None

    def changed(self) -> None:
        """Ledger state changed: wake every waiting participant whose condition now holds."""
        with self._lock:
            for participant in self._participants:
                if (not participant.busy and participant.condition is not None
                        and participant.condition()):
                    self._activity += 1
                    self._make_busy(participant, "condition")
            self._maybe_advance()

    def foreign_wake(self, participant: Participant) -> None:
        """Another thread queued work for an event loop (lock held by the caller)."""
        self._activity += 1
        participant.wake_pending = True
        if not participant.busy:
            participant.busy = True
            participant.fired = "call"
            participant.condition = None
            participant.deadline_s = None

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # --- the jump ---------------------------------------------------------------------

    def _maybe_advance(self) -> None:
        """If nothing can make progress, run the barriers or jump (lock held)."""
        if any(participant.busy for participant in self._participants):
            return
        if any(wire.in_flight() for wire in self._wires.values()):
            return
        if self._barrier_running:
            return
        if self._barriers and self._clean_activity != self._activity:
            self._start_barriers()
            return
        deadlines = [p.deadline_s for p in self._participants if p.deadline_s is not None]
        if not deadlines:
            if self._participants and not self._warned_stuck:
                # normal between plans (the loop waits for the next call from outside)
                self._warned_stuck = True
                LOG.debug("instrument clock: every participant waits and none has a "
                            "deadline: %s", self._participants)
            return
        self._warned_stuck = False
        self._elapsed_s = max(self._elapsed_s, min(deadlines))
        self.jumps += 1
        self._activity += 1  # a barrier taken before this jump says nothing about after it
        for participant in list(self._participants):
            if participant.deadline_s is not None and participant.deadline_s <= self._elapsed_s:
                self._make_busy(participant, "deadline")

    def quiesce(self, wall_limit_s: float = WALL_WATCHDOG_S) -> None:
        """Block until no participant is busy and every request sent has been read by its
        server. A write has no reply to wait for: the run can end with the last command
        (the final setpoint) still on the wire, and simulator truth read then would miss it.
        """
        limit_s = time.monotonic() + wall_limit_s
        with self._lock:
            while (any(participant.busy for participant in self._participants)
                   or any(wire.unclaimed > 0 for wire in self._wires.values())):
                remaining_s = limit_s - time.monotonic()
                if remaining_s <= 0:
                    LOG.warning("instrument clock: not quiet after %.0f wall s: %s; %s",
                                wall_limit_s, self._participants, list(self._wires.values()))
                    return
                self._threads_idle.wait(min(remaining_s, 0.05))

    def add_barrier(
        self, loop: asyncio.AbstractEventLoop, barrier: Callable[[], Awaitable[object]]
    ) -> None:
        """Run `barrier()` on `loop` before each jump. It must wake `loop` from another
        thread exactly once (one Channel Access reply) and nothing else."""
        if not isinstance(loop, VirtualEventLoop):
            raise TypeError("a barrier runs on a loop made by VirtualClock.new_event_loop()")
        with self._lock:
            self._barriers.append((loop, barrier))
            self._clean_activity = None

    def remove_barriers(self) -> None:
        with self._lock:
            self._barriers.clear()
            self._maybe_advance()

    def _start_barriers(self) -> None:
        self._barrier_running = True
        self.barriers_run += 1
        started_activity = self._activity
        barriers = list(self._barriers)
        loop = barriers[0][0]
        assert isinstance(loop, VirtualEventLoop)

        def finished(ok: bool) -> None:
            with self._lock:
                if not self._barrier_running:
                    return
                self._barrier_running = False
                if ok and self._activity == started_activity + len(barriers):
                    self._clean_activity = self._activity
                self._maybe_advance()

        async def run() -> None:
            ok = False
            try:
                for _, barrier in barriers:
                    await barrier()
                ok = True
            except Exception as error:  # a dead peer: no barrier can be trusted any more
                LOG.warning("instrument clock: barrier failed (%s); jumping without", error)
                with self._lock:
                    self._barriers.clear()
            finally:
                watchdog.cancel()
                finished(ok)

        def give_up() -> None:
            LOG.warning("instrument clock: barrier took %s wall seconds; jumping without",
                        WALL_WATCHDOG_S)
            with self._lock:
                self._barriers.clear()
            finished(False)

        watchdog = threading.Timer(WALL_WATCHDOG_S, give_up)
        watchdog.daemon = True
        watchdog.start()
        loop.call_from_clock(lambda: loop.create_task(run()))

    # --- hooks used by drivers, servers and loops ---------------------------------------

    def new_event_loop(self) -> VirtualEventLoop:
        return VirtualEventLoop(self)

    def new_lock(self) -> ClockLock:  # type: ignore[override]
        return ClockLock(self)

    async def run_in_thread(self, function: Callable[..., T], *args: Any) -> T:
        participant = self.participant(f"worker:{getattr(function, '__name__', function)}")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        started = False

        def deliver(outcome: Callable[[], None]) -> None:
            if not done.cancelled():
                outcome()

        def run() -> None:
            nonlocal started
            with self._lock:
                if participant.detached:  # abandoned before a thread took it
                    return
                started = True
            try:
                with self.acting_as(participant):
                    value = function(*args)
                outcome = functools.partial(done.set_result, value)
            except BaseException as error:  # handed to the awaiting task, as to_thread does
                outcome = functools.partial(done.set_exception, error)
            # the result is queued on the loop while this worker still counts as running,
            # so a loop that waits for running workers (see `_VirtualSelector.select`)
            # finds it queued, never on its way
            with self._lock:
                loop.call_soon_threadsafe(deliver, outcome)
                participant.thread_done = True
                if participant.detached:
                    self.close(participant)
                self._threads_idle.notify_all()

        loop.run_in_executor(None, run)
        try:
            return await done
        finally:
            with self._lock:
                if participant.thread_done or not started:
                    # done, or cancelled before a worker took it (then `run` refuses it);
                    # left busy it would stop the clock for good
                    participant.detached = True
                    self.close(participant)
                else:  # cancelled while the thread runs: it closes itself when done
                    participant.detached = True

    def _running_threads(self) -> list[Participant]:
        """Thread participants (workers, simulators' connections) working now."""
        return [participant for participant in self._participants
                if participant.busy and participant.wake is None
                and not participant.thread_done and not participant.holds]

    def wait_for_threads(self) -> None:
        """Called by a woken loop before it runs anything: simultaneous events then run in
        one order. Whatever the threads woken at this instant send the loop (replies,
        results) is queued before the loop runs its own timers for the instant, not mixed
        in as the threads happen to be scheduled. The loop stays busy meanwhile (no jump
        can pass what it has queued); threads never wait for a loop while counted running.
        """
        limit_s = time.monotonic() + THREADS_WALL_LIMIT_S
        with self._lock:
            while running := self._running_threads():
                if time.monotonic() > limit_s:  # a bug: never wait for ever on it
                    LOG.warning("instrument clock: a loop waited %.0f wall s for %s; it goes "
                                "on (events at this instant may run out of order)",
                                THREADS_WALL_LIMIT_S, running)
                    return
                self._threads_idle.wait(0.5)

    @contextlib.contextmanager
    def hold(self, reason: str, wall_limit_s: float = WALL_WATCHDOG_S) -> Iterator[None]:
        participant = self.participant(f"hold:{reason}")
        participant.holds = True

        def give_up() -> None:
            LOG.warning("instrument clock: %s took %s wall seconds; time moves again",
                        reason, wall_limit_s)
            self.close(participant)

        watchdog = threading.Timer(wall_limit_s, give_up)
        watchdog.daemon = True
        watchdog.start()
        try:
            yield
        finally:
            watchdog.cancel()
            self.close(participant)

    def serve_wire(self, port: int) -> Wire:
        with self._lock:
            ledger = self._wires[port] = _WireLedger(self, port)
        return ledger

    def stop_serving_wire(self, port: int) -> None:
        with self._lock:
            self._wires.pop(port, None)
            self._maybe_advance()

    def wire_for(self, address: str) -> Wire | None:
        match = _ADDRESS_PORT.match(address.strip())
        if match is None:
            return None
        host = match["visa_host"] or match["host"]
        port = int(match["visa_port"] or match["port"])
        if host.lower() not in _LOOPBACK_NAMES:
            return None
        with self._lock:
            return self._wires.get(port)


def _report_if_stuck(clock_ref: weakref.ref[VirtualClock]) -> None:
    """Say what a clock waits for when nothing has moved for `STUCK_REPORT_S` of wall time
    while something waits on a deadline (a diagnosis, never a decision). Holds the clock
    only weakly: the thread ends with it."""
    last = None
    while True:
        time.sleep(STUCK_REPORT_S)
        clock = clock_ref()
        if clock is None:
            return
        with clock._lock:
            state = (clock.jumps, clock._activity)
            waiting = any(p.deadline_s is not None for p in clock._participants)
            if state == last and waiting:
                LOG.warning("instrument clock stuck at %.3f s for %.0f wall s: %s; %s",
                            clock._elapsed_s, STUCK_REPORT_S, clock._participants,
                            list(clock._wires.values()))
            last = state
        del clock


class ClockLock:
    """A mutex whose hand-over the clock sees: the thread that gets it next is made busy in
    the same critical section in which the holder lets go (a worker thread queued behind
    another on one instrument channel waits, it is not busy)."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._owner: object | None = None
        self._waiters: list[Participant] = []

    def acquire(self) -> bool:
        clock = self._clock
        with clock._thread_participant("lock") as participant:
            with clock.lock:
                if self._owner is None:
                    self._owner = participant
                    return True
                self._waiters.append(participant)
            clock.wait(participant, lambda: self._owner is participant, None)
        return True

    def release(self) -> None:
        clock = self._clock
        with clock.lock:
            self._owner = self._waiters.pop(0) if self._waiters else None
            if self._owner is not None:
                clock.changed()

    def __enter__(self) -> ClockLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class _WireLedger(Wire):
    """Message boundaries of one simulated text wire (one client connection at a time).

    The client bumps `generation` whenever it opens or closes its connection, so claims
    and announcements from a server thread still serving an abandoned connection (a
    reply that comes after the client timed out) are ignored.
    """

    def __init__(self, clock: VirtualClock, port: int) -> None:
        self.clock = clock
        self.port = port
        self.generation = 0
        self.unclaimed = 0
        self.undelivered = 0
        self.server_closed = False
        self.processing = False
        """The server is working on an earlier line of this connection (it reads the next
        one when done, as an instrument does: such a line is queued, not in flight)."""

    def in_flight(self) -> bool:
        """A request is on its way to a server that is waiting for it."""
        return self.unclaimed > 0 and not self.processing

    def __repr__(self) -> str:
        return (f"<Wire :{self.port} gen={self.generation} unclaimed={self.unclaimed} "
                f"undelivered={self.undelivered} closed={self.server_closed}>")

    # client side

    def _new_generation(self) -> None:
        with self.clock.lock:
            self.generation += 1
            self.unclaimed = self.undelivered = 0
            self.server_closed = self.processing = False
            self.clock.changed()

    def connecting(self) -> None:
        self._new_generation()

    def closed(self) -> None:
        self._new_generation()

    def request_sent(self) -> None:
        with self.clock.lock:
            if not self.server_closed:
                self.unclaimed += 1

    def await_reply(self, timeout_s: float) -> str:
        clock = self.clock
        with clock._thread_participant(f"client:{self.port}") as participant:
            clock.wait(participant, self._reply_ready, clock.elapsed_s() + max(0.0, timeout_s))
        with clock.lock:
            if self.undelivered:
                self.undelivered -= 1
                return "reply"
            return "closed" if self.server_closed else "timeout"

    def _reply_ready(self) -> bool:
        return self.undelivered > 0 or self.server_closed

    # server side

    def accepted(self) -> int:
        with self.clock.lock:
            return self.generation

    def claim(self, generation: int) -> None:
        clock = self.clock
        with clock.lock:
            participant = clock.current()
            if participant is not None:
                clock.set_busy(participant)
            if generation == self.generation:
                self.processing = True
                if self.unclaimed:
                    self.unclaimed -= 1
            clock._maybe_advance()

    def announce_reply(self, generation: int) -> None:
        with self.clock.lock:
            if generation == self.generation and not self.server_closed:
                self.undelivered += 1
                self.clock.changed()

    def announce_close(self, generation: int) -> None:
        with self.clock.lock:
            if generation == self.generation:
                self.server_closed = True
                self.unclaimed = 0
                self.clock.changed()

    def server_waiting(self, generation: int) -> None:
        with self.clock.lock:
            if generation == self.generation:
                self.processing = False
            participant = self.clock.current()
            if participant is not None:
                self.clock.set_waiting(participant)
            else:
                self.clock._maybe_advance()


# --- the event loop -------------------------------------------------------------------

_WAKE = object()


class _VirtualSelector(selectors.BaseSelector):
    """The loop's selector: blocking in `select` is where a loop waits on the clock."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, _WAKE)
        self.loop: VirtualEventLoop | None = None

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake is already pending
            self._wake_writer.send(b"\0")

    def register(self, fileobj, events, data=None):
        return self._selector.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._selector.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._selector.modify(fileobj, events, data)

    def get_key(self, fileobj):
        key = self._selector.get_key(fileobj)
        if key.data is _WAKE:
            raise KeyError(fileobj)
        return key

    def get_map(self):
        return self._selector.get_map()

    def close(self) -> None:
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def _poll(self, timeout: float | None) -> list:
        events = []
        for key, mask in self._selector.select(timeout):
            if key.data is _WAKE:
                with contextlib.suppress(OSError):
                    while self._wake_reader.recv(4096):
                        pass
            else:
                events.append((key, mask))
        return events

    def select(self, timeout: float | None = None) -> list:
        loop = self.loop
        participant = None if loop is None else loop.participant
        if participant is None:
            return self._poll(timeout)
        assert loop is not None
        if timeout is not None and timeout <= 0:
            return self._poll(0)
        if loop.release_idle_waiters():
            return self._poll(0)
        clock = self._clock
        with clock.lock:
            if participant.wake_pending:
                participant.wake_pending = False
                block = False
            else:
                deadline = None if timeout is None else loop.time() + timeout
                clock._set_waiting(participant, None, deadline)
                block = not participant.busy
        events = self._poll(None if block else 0)
        with clock.lock:
            participant.wake_pending = False
            if not participant.busy:  # woken by a socket (the IOC's circuits)
                clock._make_busy_quietly(participant)
        clock.wait_for_threads()
        return events


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose time is the virtual clock's and whose idleness it knows."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._virtual_selector = _VirtualSelector(clock)
        self.participant: Participant | None = None
        self._loop_thread_id: int | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        super().__init__(selector=self._virtual_selector)
        self._virtual_selector.loop = self
        # A worker submitted but not yet started counts as busy; with asyncio's default
        # pool (cpu + 4 threads) the exchanges queued behind one channel's lock could fill
        # it and leave the next one waiting for a thread while the clock waits for it.
        self.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="worker"))

    def time(self) -> float:
        """Elapsed instrument seconds (small numbers keep timer arithmetic exact)."""
        return self.clock.elapsed_s()

    def run_forever(self) -> None:
        self._loop_thread_id = threading.get_ident()
        self.participant = self.clock.participant(
            f"loop:{threading.current_thread().name}", wake=self._virtual_selector.wake)
        try:
            with self.clock.acting_as(self.participant):  # a blocking call on the loop waits
                super().run_forever()                    # as the loop
        finally:
            participant, self.participant = self.participant, None
            self.clock.close(participant)

    def call_soon_threadsafe(self, callback, *args, context=None):
        participant = self.participant
        if participant is None or threading.get_ident() == self._loop_thread_id:
            return super().call_soon_threadsafe(callback, *args, context=context)
        with self.clock.lock:
            self.clock.foreign_wake(participant)
            return super().call_soon_threadsafe(callback, *args, context=context)

    def call_from_clock(self, callback: Callable[[], object]) -> None:
        """Queue `callback` for the clock itself: the loop is busy, but no activity is
        counted (the clock's own barrier must not make itself dirty)."""
        participant = self.participant
        with self.clock.lock:
            if participant is not None:
                participant.wake_pending = True
                participant.busy = True
                participant.fired = "clock"
                participant.condition = None
                participant.deadline_s = None
            super().call_soon_threadsafe(callback)

    async def until_idle(self) -> None:
        """Return once this loop has nothing else to run (for a barrier served last)."""
        future: asyncio.Future[None] = self.create_future()
        self._idle_waiters.append(future)
        await future

    def release_idle_waiters(self) -> bool:
        if not self._idle_waiters:
            return False
        waiters, self._idle_waiters = self._idle_waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)
        return True
