"""The instrument clock shared by simulators, devices and plans.

A dry run must be able to try a 15-hour protocol in a minute, so every wait
that stands for physical time (plan sleeps, settling holds, simulator physics)
is expressed in *instrument seconds* and goes through one clock. At the real
instrument the clock runs at speed-up 1 and instrument time is wall time.

Instrument time is an epoch time (seconds since 1970) that starts at the wall
time when the clock was made and then runs `speedup` times faster. Reading
timestamps taken from it therefore look exactly as they would in the real run.

This module is a leaf: it imports nothing from the project, so every layer
(simulators included, which may not import bluesky or ophyd) can share it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


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

    def __repr__(self) -> str:
        return f"InstrumentClock(speedup={self.speedup:g})"


WALL_CLOCK = InstrumentClock(speedup=1.0)
"""The clock of a real instrument: instrument time is wall time."""
