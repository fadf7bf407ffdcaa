"""RunEngines on a virtual clock for tests, set up as a dry-run session sets up its own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from aioca import purge_channel_caches
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop

from vegard.instruments.diffractometer_device import channel_access_barrier
from vegard.virtual_clock import VirtualClock


def close_run_engine(engine: RunEngine, before_closing: Callable[[], None] = lambda: None) -> None:
    engine.loop.call_soon_threadsafe(engine.loop.stop)
    while engine.loop.is_running():
        time.sleep(0.001)
    before_closing()
    engine.loop.close()


def make_virtual_run_engine(clock: VirtualClock, sync_pvs: Iterable[str] = ()) -> RunEngine:
    """A RunEngine on the virtual clock's loop, with a Channel Access barrier per simulated
    IOC (as a dry-run session sets them up)."""
    engine = RunEngine({}, call_returns_result=True, loop=clock.new_event_loop())
    for pv in sync_pvs:
        barrier = channel_access_barrier(pv)
        with clock.hold(f"connecting {pv}"):
            call_in_bluesky_event_loop(barrier())
        clock.add_barrier(engine.loop, barrier)
    return engine


def close_virtual_run_engine(engine: RunEngine, clock: VirtualClock) -> None:
    """The barriers go, the loop stops, and only then are its channels closed: a barrier
    still running would otherwise open a channel on a loop about to close."""
    clock.remove_barriers()
    close_run_engine(engine, purge_channel_caches)
