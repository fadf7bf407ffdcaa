"""The instrument clock runs `speedup` times faster than wall time."""

from __future__ import annotations

import asyncio
import time

import pytest

from vegard.clock import InstrumentClock


def test_instrument_time_runs_speedup_times_faster_than_wall_time():
    clock = InstrumentClock(speedup=500.0)
    wall_start, instrument_start = time.monotonic(), clock.now()
    asyncio.run(clock.sleep(10.0))  # 10 instrument seconds = 20 ms of wall time
    wall_s, instrument_s = time.monotonic() - wall_start, clock.now() - instrument_start
    assert instrument_s >= 10.0
    assert instrument_s == pytest.approx(wall_s * 500.0, rel=0.01)
    assert wall_s < 1.0


def test_instrument_time_starts_at_the_epoch_wall_time():
    assert abs(InstrumentClock(speedup=1000.0).now() - time.time()) < 1.0


def test_a_following_clock_continues_from_the_state_it_was_given():
    leader = InstrumentClock(speedup=100.0, origin_s=1_000_000.0)
    follower = InstrumentClock.following(leader.state())
    assert follower.speedup == 100.0
    assert abs(follower.now() - leader.now()) < 1.0  # < 10 ms of wall time apart


@pytest.mark.parametrize("speedup", [0.0, -1.0])
def test_non_positive_speedup_is_refused(speedup):
    with pytest.raises(ValueError, match="speed-up must be > 0"):
        InstrumentClock(speedup=speedup)


def test_plan_sleeps_in_the_session_run_engine_last_instrument_time():
    import bluesky.plan_stubs as bps

    from vegard.session import make_run_engine

    clock = InstrumentClock(speedup=1000.0)
    run_engine = make_run_engine(clock)
    wall_start, instrument_start = time.monotonic(), clock.now()
    run_engine(bps.sleep(300.0))  # five instrument minutes
    assert clock.now() - instrument_start >= 300.0
    assert time.monotonic() - wall_start < 2.0
