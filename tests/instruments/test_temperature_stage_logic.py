"""The stage's settle logic in ophyd-async mock mode: no wire, no simulator, a stepped
clock; the control temperature is whatever the test sets on the mocked signal."""

from __future__ import annotations

import asyncio

import pytest
from ophyd_async.core import callback_on_mock_put, get_mock_put, set_mock_value

from vegard.instruments.lakeshore336_driver import LakeShore336Driver
from vegard.instruments.temperature_stage_device import (
    TemperatureNotSettledError,
    TemperatureOutOfRangeError,
    TemperatureStage,
)
from vegard.instruments.visa_connection import VisaConnection

POLL_S = 2.0


class SteppedClock:
    """Instrument time that moves only when the device sleeps; a step of the 'stage'
    runs at each sleep (the unit-test stand-in for the thermal model)."""

    virtual = True

    def __init__(self) -> None:
        self.now_s = 0.0
        self.on_sleep = lambda: None

    def now(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.now_s += seconds
        self.on_sleep()
        await asyncio.sleep(0)


async def mocked_stage(rate_k_per_poll: float, settle_timeout_s: float = 3600.0):
    clock = SteppedClock()
    connection = VisaConnection("TCPIP::127.0.0.1::9::SOCKET", name="stage")  # never opened
    stage = TemperatureStage(LakeShore336Driver(connection), clock=clock, poll_period_s=POLL_S,
                             settle_timeout_s=settle_timeout_s, name="stage")
    await stage.connect(mock=True)
    state = {"temperature_k": 295.0, "setpoint_k": 295.0}
    set_mock_value(stage.temperature_k, state["temperature_k"])
    callback_on_mock_put(stage.setpoint_k,
                         lambda value, wait=True: state.update(setpoint_k=value))

    def approach() -> None:  # the stage moves rate_k_per_poll towards its setpoint per poll
        gap = state["setpoint_k"] - state["temperature_k"]
        state["temperature_k"] += max(-rate_k_per_poll, min(rate_k_per_poll, gap))
        set_mock_value(stage.temperature_k, state["temperature_k"])

    clock.on_sleep = approach
    return stage, clock


def test_settles_after_holding_the_band_for_the_settle_time() -> None:
    async def scenario():
        stage, clock = await mocked_stage(rate_k_per_poll=1.0)
        await stage.settle_time_s.set(10.0)
        await stage.settle_tolerance_k.set(0.1)
        await stage.set(300.0)
        # 295 → 300 K at 1 K per 2 s poll: in band from t = 10 s, held 10 s → done at 20 s
        return clock.now(), await stage.settling_time_s.get_value(), get_mock_put(
            stage.setpoint_k).call_args_list

    done_s, settling_s, puts = asyncio.run(scenario())
    assert done_s == pytest.approx(20.0)
    assert settling_s == pytest.approx(10.0)
    assert [call.args[0] for call in puts] == [300.0]


def test_a_stage_that_never_reaches_the_band_fails_at_the_settle_timeout() -> None:
    async def scenario():
        stage, clock = await mocked_stage(rate_k_per_poll=0.001, settle_timeout_s=60.0)
        with pytest.raises(TemperatureNotSettledError, match="after 60 s"):
            await stage.set(350.0)
        return clock.now()

    assert 60.0 < asyncio.run(scenario()) <= 60.0 + POLL_S


def test_a_setpoint_outside_the_rated_range_is_refused_before_anything_is_sent() -> None:
    async def scenario():
        stage, _ = await mocked_stage(rate_k_per_poll=1.0)
        with pytest.raises(TemperatureOutOfRangeError, match="450 K is outside"):
            await stage.set(450.0)
        return get_mock_put(stage.setpoint_k).call_count

    assert asyncio.run(scenario()) == 0
