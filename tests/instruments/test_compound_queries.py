"""Queries asked at one instant share one line to a LakeShore 336 (simulated, virtual clock)."""

from __future__ import annotations

import asyncio

import pytest
from bluesky.run_engine import call_in_bluesky_event_loop
from virtual_engines import close_virtual_run_engine, make_virtual_run_engine

from vegard.instruments.errors import InstrumentCommunicationError
from vegard.instruments.lakeshore336_driver import LakeShore336Driver
from vegard.instruments.temperature_stage_device import TemperatureStage
from vegard.instruments.visa_connection import VisaConnection
from vegard.simulators.lab import SimulatedLab
from vegard.virtual_clock import VirtualClock

pytestmark = pytest.mark.simulators("temperature_stage")

TURNAROUND_S = 0.01


@pytest.fixture
def lab():
    parameters = {"temperature_stage": {"link_turnaround_s": TURNAROUND_S}}
    with SimulatedLab(VirtualClock(), seed=3, instruments=["temperature_stage"],
                      parameters=parameters) as started:
        engine = make_virtual_run_engine(started.clock)
        yield started
        close_virtual_run_engine(engine, started.clock)


def stage_of(lab) -> TemperatureStage:
    connection = VisaConnection(lab.addresses["temperature_stage"], name="temperature_stage",
                                clock=lab.clock)
    stage = TemperatureStage(LakeShore336Driver(connection), clock=lab.clock,
                             name="temperature_stage")
    call_in_bluesky_event_loop(stage.connect(timeout=5))
    return stage


def lines_received(lab) -> int:
    return lab.instruments["temperature_stage"].link_lines


def test_a_stage_reading_is_one_line_and_one_turnaround(lab):
    stage = stage_of(lab)

    async def read():
        started_s = lab.clock.elapsed_s()
        before = len(lab.command_log("temperature_stage"))
        reading = await stage.read()
        return reading, lab.clock.elapsed_s() - started_s, lab.command_log(
            "temperature_stage")[before:]

    reading, took_s, commands = call_in_bluesky_event_loop(read())
    assert sorted(commands) == ["HTR? 1", "KRDG? A", "KRDG? B", "SETP? 1"]
    truth = lab.ground_truth()["temperature_stage"]
    assert reading["temperature_stage-setpoint_k"]["value"] == pytest.approx(
        truth["target_setpoint_k"])
    assert reading["temperature_stage-temperature_k"]["value"] == pytest.approx(
        truth["stage_temperature_k"], abs=0.1)
    # four answers for the time of one line on the wire (they were four lines before)
    assert took_s == pytest.approx(TURNAROUND_S, rel=0.05)


def test_a_write_between_queries_is_not_overtaken(lab):
    stage = stage_of(lab)
    driver = stage.controller

    async def interleaved():
        before = await driver.setpoint_k()
        return before, *await asyncio.gather(
            driver.setpoint_k(), driver.set_setpoint_k(321.5), driver.setpoint_k())

    before, first, _, after = call_in_bluesky_event_loop(interleaved())
    assert first == pytest.approx(before)
    assert after == pytest.approx(321.5)


def test_a_refused_query_fails_alone(lab):
    stage = stage_of(lab)
    connection = stage.controller.connection

    async def mixed():
        return await asyncio.gather(
            connection.query("KRDG? A"), connection.query("KRDG? Q"),
            connection.query("SETP? 1"), return_exceptions=True)

    temperature, refused, setpoint = call_in_bluesky_event_loop(mixed())
    assert float(temperature) == pytest.approx(295.0, abs=1.0)
    assert float(setpoint) == pytest.approx(lab.ground_truth()["temperature_stage"][
        "target_setpoint_k"])
    assert isinstance(refused, InstrumentCommunicationError)
