"""The instrument clock shared by simulators, devices and plans.

Every wait that stands for physical time (plan sleeps, settling holds, acquisitions,
motions, reply timeouts, simulator physics) is expressed in *instrument seconds* and
goes through one clock. Two kinds exist:

- `InstrumentClock` (this module): wall time scaled by a constant speed-up. At the real
  instrument the speed-up is 1 and instrument time is wall time; a served simulator lab
  (`vegard sim serve`) and `vegard dry-run --paced` run it faster, for watching live.
- `VirtualClock` (`vegard.virtual_clock`): in-process dry runs. Instrument time moves
  only through modelled durations and jumps to the next deadline when nothing can make
  progress, so the answer does not depend on the machine's speed or load.

Instrument time is an epoch time (seconds since 1970), so reading timestamps taken
from it look exactly as they would in the real run.

The methods below the line "hooks of the virtual clock" let drivers, servers and
event loops tell a virtual clock what they are doing (a request on a wire, a worker
thread, a reply awaited); on this clock they cost nothing and change nothing.

This module is a leaf: it imports nothing from the project, so every layer
(simulators included, which may not import bluesky or ophyd) can share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ClockState:
    """What another process needs to run a clock in step with this one."""

    instrument_time_s: float
    speedup: float


class InstrumentClock:
    """Wall time scaled by a constant speed-up, with an epoch origin."""

    def __init__(self, speedup: float = 1.0, origin_s: float | None = None) -> None:
        if not speedup > 0:
            raise ValueError(f"clock speed-up must be > 0, got {speedup!r}")
        self.speedup = float(speedup)
        self._wall_start_s = time.monotonic()
        self._origin_s = time.time() if origin_s is None else float(origin_s)

    @classmethod
    def following(cls, state: ClockState) -> InstrumentClock:
        """A clock that continues another process's clock from `state`."""
        return cls(speedup=state.speedup, origin_s=state.instrument_time_s)

    def now(self) -> float:
        """Instrument time, epoch seconds."""
        return self._origin_s + (time.monotonic() - self._wall_start_s) * self.speedup

    def elapsed_s(self) -> float:
        """Instrument seconds since the clock was made."""
        return self.now() - self._origin_s

    def state(self) -> ClockState:
        return ClockState(instrument_time_s=self.now(), speedup=self.speedup)

    def wall_duration_s(self, instrument_duration_s: float) -> float:
        return max(0.0, instrument_duration_s) / self.speedup

    async def sleep(self, instrument_duration_s: float) -> None:
        """Let `instrument_duration_s` of instrument time pass (asyncio)."""
        await asyncio.sleep(self.wall_duration_s(instrument_duration_s))

    def sleep_blocking(self, instrument_duration_s: float) -> None:
        """Let instrument time pass in a thread that may block."""
        time.sleep(self.wall_duration_s(instrument_duration_s))

    # --- hooks of the virtual clock (no-ops here) -------------------------------------

    virtual = False
    """True for a `VirtualClock`: time moves only through modelled durations."""

    def describe(self) -> str:
        """Which clock ran, for summaries."""
        return "real time" if self.speedup == 1.0 else f"paced x{self.speedup:g}"

    def new_lock(self) -> threading.Lock:
        """A mutex for threads that exchange with an instrument (here: an ordinary one)."""
        return threading.Lock()

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """An event loop whose timers run on this clock (here: an ordinary loop)."""
        return asyncio.new_event_loop()

    async def run_in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking `function` in a worker thread (a virtual clock counts it as busy)."""
        return await asyncio.to_thread(function, *args)

    def wire_for(self, address: str) -> Wire | None:
        """The message ledger of a simulated wire at `address` (None: none kept)."""
        return None

    def serve_wire(self, port: int) -> Wire | None:
        """A server on `port` keeps the ledger of its wire (None: none kept)."""
        return None

    def reply_timeout_wall_s(self, instrument_timeout_s: float) -> float:
        """The wall-clock timeout a blocking read needs for a reply due within
        `instrument_timeout_s` of instrument time."""
        return max(0.0, instrument_timeout_s) / self.speedup

    def quiesce(self) -> None:
        """Return once every request sent has reached its simulator (virtual clock only:
        in wall time there is nothing to wait for that a client could know of)."""

    @contextlib.contextmanager
    def hold(self, reason: str, wall_limit_s: float = 60.0) -> Iterator[None]:
        """Keep instrument time still while `reason` is done (device connection)."""
        yield

    def add_barrier(
        self, loop: asyncio.AbstractEventLoop, barrier: Callable[[], Awaitable[object]]
    ) -> None:
        """A round trip on a wire the clock cannot see into (Channel Access)."""

    def remove_barriers(self) -> None:
        """Forget the barriers (their peer is about to go)."""

    def __repr__(self) -> str:
        return f"InstrumentClock(speedup={self.speedup:g})"


class Wire:
    """What a virtual clock knows of one simulated text wire (see `vegard.virtual_clock`).

    The ledger carries no data, only message boundaries: a request sent and not yet
    read by the server, a reply announced and not yet taken by the client. On a real
    wire there is no ledger (`InstrumentClock.wire_for` returns None).
    """

    def connecting(self) -> None: ...

    def closed(self) -> None: ...

    def request_sent(self) -> None: ...

    def await_reply(self, timeout_s: float) -> str:
        """Block until a reply is announced ("reply") or the server closed the connection
        ("closed"), or until `timeout_s` of instrument time passed ("timeout")."""
        return "reply"

    def accepted(self) -> int:
        """Server side: a connection was accepted; its generation."""
        return 0

    def claim(self, generation: int) -> None: ...

    def announce_reply(self, generation: int) -> None: ...

    def announce_close(self, generation: int) -> None: ...

    def server_waiting(self, generation: int) -> None:
        """Server side: the connection's thread is about to block reading the socket."""


NO_WIRE = Wire()
"""The ledger of a wire no virtual clock watches (every method a no-op)."""


WALL_CLOCK = InstrumentClock(speedup=1.0)
"""The clock of a real instrument: instrument time is wall time."""
