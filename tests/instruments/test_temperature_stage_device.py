"""The ophyd-async temperature stage against the simulated LakeShore 336."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from vegard.instruments.lakeshore336_driver import LakeShore336Driver
from vegard.instruments.temperature_stage_device import (
    SettleWindow,
    TemperatureNotSettledError,
    TemperatureOutOfRangeError,
    TemperatureStage,
)
from vegard.instruments.visa_connection import VisaConnection
from vegard.simulators.lab import SimulatedLab
from vegard.virtual_clock import VirtualClock

pytestmark = pytest.mark.simulators("temperature_stage")


def make_stage(lab, **options) -> TemperatureStage:
    connection = VisaConnection(lab.addresses["temperature_stage"], name="temperature_stage",
                                clock=lab.clock)
    return TemperatureStage(LakeShore336Driver(connection), clock=lab.clock, name="stage",
                            **options)


def run(lab, body, **options):
    stage = make_stage(lab, **options)

    async def main():
        await stage.connect(timeout=5)
        try:
            return await body(stage)
        finally:
            stage.controller.connection.close()

    if not lab.clock.virtual:
        return asyncio.run(main())
    loop = lab.clock.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def test_set_completes_only_once_settled_within_tolerance(virtual_lab):
    lab = virtual_lab
    async def body(stage):
        await stage.settle_tolerance_k.set(0.1)
        await stage.settle_time_s.set(30.0)
        started_s = lab.clock.now()
        await stage.set(330.0)
        return lab.clock.now() - started_s, await stage.settling_time_s.get_value()

    elapsed_s, settling_time_s = run(lab, body)
    truth = lab.ground_truth()["temperature_stage"]
    assert abs(truth["stage_temperature_k"] - 330.0) < 0.1
    # the hold (30 s) comes after settling, so the move lasts at least settling + hold
    assert 0.0 < settling_time_s <= elapsed_s - 30.0
    # 35 K takes 44 s of instrument time at the heater's power (virtual clock: exactly
    # that, whatever the load), not the milliseconds of wall time it took
    assert settling_time_s > 30.0


def test_setpoint_outside_the_rated_range_never_reaches_the_wire(virtual_lab):
    lab = virtual_lab
    async def body(stage):
        with pytest.raises(TemperatureOutOfRangeError, match=r"500 K is outside .*200–400 K"):
            await stage.set(500.0)

    run(lab, body)
    assert not [c for c in lab.command_log("temperature_stage") if c.startswith("SETP ")]


def test_a_stage_that_cannot_settle_in_time_raises(virtual_lab):
    lab = virtual_lab
    async def body(stage):
        await stage.ramp_rate_k_per_min.set(10.0)  # 85 K takes 8.5 min
        with pytest.raises(TemperatureNotSettledError, match="not settled within"):
            await stage.set(380.0)
        return lab.ground_truth()["temperature_stage"]["stage_temperature_k"]

    temperature_when_refused_k = run(lab, body, settle_timeout_s=60.0)
    assert temperature_when_refused_k < 320.0


def test_readings_carry_instrument_time(virtual_lab):
    lab = virtual_lab
    async def body(stage):
        before_s = lab.clock.now()
        reading = (await stage.read())["stage-temperature_k"]
        return before_s, reading["timestamp"], lab.clock.now()

    before_s, stamp_s, after_s = run(lab, body)
    assert before_s <= stamp_s <= after_s


def test_monitor_polls_all_readings_on_the_instrument_clock(virtual_lab):
    lab = virtual_lab
    async def body(stage):
        readings = []
        stage.subscribe(readings.append)
        await lab.clock.sleep(60.0)
        stage.clear_sub(readings.append)
        return readings

    readings = run(lab, body, poll_period_s=5.0)
    assert len(readings) >= 3
    assert {"stage-temperature_k", "stage-heater_output_percent"} <= set(readings[0])
    stamps = [r["stage-temperature_k"]["timestamp"] for r in readings]
    assert all(later > earlier for earlier, later in itertools.pairwise(stamps))


def test_settle_window_restarts_on_any_reading_out_of_band():
    window = SettleWindow(setpoint_k=250.0, tolerance_k=0.1)
    window.observe(249.95, 100.0)
    window.observe(249.92, 130.0)
    assert window.held_for_s(160.0) == 60.0
    window.observe(249.899, 161.0)  # a single excursion (e.g. seen by the monitor poll)
    assert window.held_for_s(170.0) == 0.0
    window.observe(249.93, 172.0)
    assert window.in_band_since_s == 172.0


def test_monitor_readings_count_towards_settling():
    """Every reading the monitor records during the hold is inside the tolerance."""
    # on the virtual clock: every poll of the 60 s hold happens, whatever the load
    with SimulatedLab(VirtualClock(), seed=3) as lab:
        readings, finished_s = run(lab, _settle_while_monitored, poll_period_s=1.0)
    in_hold = [
        r["stage-temperature_k"]["value"] for r in readings
        if finished_s - 60.0 <= r["stage-temperature_k"]["timestamp"] <= finished_s
    ]
    # one poll a second for the 60 s hold (the settle polls fall between them)
    assert len(in_hold) >= 59
    assert max(abs(t - 250.0) for t in in_hold) <= 0.1


async def _settle_while_monitored(stage):
    readings = []
    stage.subscribe(readings.append)
    await stage.settle_tolerance_k.set(0.1)
    await stage.settle_time_s.set(60.0)
    await stage.ramp_rate_k_per_min.set(10.0)  # a down-ramp ends ~0.09 K low
    await stage.set(250.0)
    finished_s = stage.clock.now()
    stage.clear_sub(readings.append)
    return readings, finished_s
