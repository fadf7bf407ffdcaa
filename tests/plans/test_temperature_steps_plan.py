"""temperature_steps in a real RunEngine against the simulated stage, on a virtual clock."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import pytest
from bluesky.run_engine import call_in_bluesky_event_loop
from virtual_engines import close_virtual_run_engine, make_virtual_run_engine

from vegard.instruments.lakeshore336_driver import HeaterRange, LakeShore336Driver
from vegard.instruments.temperature_stage_device import TemperatureStage
from vegard.instruments.visa_connection import VisaConnection
from vegard.plans.temperature_steps import MONITOR_STREAM, temperature_steps
from vegard.simulators.lab import SimulatedLab
from vegard.virtual_clock import VirtualClock

pytestmark = pytest.mark.simulators("temperature_stage")


@pytest.fixture
def lab():
    with SimulatedLab(VirtualClock(), seed=7, instruments=["temperature_stage"]) as started:
        yield started


@pytest.fixture
def RE(lab):
    engine = make_virtual_run_engine(lab.clock)
    yield engine
    close_virtual_run_engine(engine, lab.clock)


@pytest.fixture
def recorded(RE):
    documents: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    return RE, documents


def connected_stage(lab, **options) -> TemperatureStage:
    connection = VisaConnection(lab.addresses["temperature_stage"], name="temperature_stage",
                                clock=lab.clock)
    stage = TemperatureStage(
        LakeShore336Driver(connection), clock=lab.clock, name="temperature_stage", **options
    )
    call_in_bluesky_event_loop(stage.connect(timeout=5))
    return stage


def events_by_stream(documents):
    streams = {doc["uid"]: doc["name"] for name, doc in documents if name == "descriptor"}
    by_stream: dict[str, list[dict]] = {}
    for name, doc in documents:
        if name == "event":
            by_stream.setdefault(streams[doc["descriptor"]], []).append(doc)
    return by_stream


def test_each_step_settles_and_is_recorded_with_a_monitored_stream(lab, recorded):
    run_engine, documents = recorded
    stage = connected_stage(lab, poll_period_s=5.0)
    visited = []

    def per_step(stage, temperature_k, index):
        visited.append((index, temperature_k, lab.ground_truth()["temperature_stage"]))
        yield from bps.trigger_and_read([stage])

    run_engine(temperature_steps(
        stage, [320.0, 280.0], settle_tolerance_k=0.1, settle_time_s=30.0, per_step=per_step,
        ramp_rate_k_per_min=20.0, heater_range=HeaterRange.HIGH,
    ))
    assert [(i, t) for i, t, _ in visited] == [(0, 320.0), (1, 280.0)]
    for _, setpoint_k, truth in visited:  # the real (noise-free) temperature, at each step
        assert abs(truth["stage_temperature_k"] - setpoint_k) < 0.1
    streams = events_by_stream(documents)
    primary = streams["primary"]
    assert [e["data"]["temperature_stage-setpoint_k"] for e in primary] == [320.0, 280.0]
    assert all(e["data"]["temperature_stage-settling_time_s"] > 0 for e in primary)
    monitor = streams[MONITOR_STREAM]
    # 2 × (40 K at 20 K/min + 30 s hold) = 300 s at a nominal 5 s poll; at 2000× a read over
    # the wire takes several instrument seconds, so expect fewer points than nominal
    assert len(monitor) > 15
    assert {"temperature_stage-temperature_k", "temperature_stage-heater_output_percent"} <= set(
        monitor[0]["data"]
    )
    assert documents[-1][1]["exit_status"] == "success"


def test_a_failed_step_leaves_the_stage_at_the_safe_temperature(lab, recorded):
    run_engine, documents = recorded
    stage = connected_stage(lab, settle_timeout_s=60.0)
    with pytest.raises(Exception, match="not settled"):
        run_engine(temperature_steps(
            stage, [380.0], settle_tolerance_k=0.1, settle_time_s=10.0,
            ramp_rate_k_per_min=5.0, safe_temperature_k=290.0,
        ))
    stop = documents[-1][1]
    assert stop["exit_status"] == "fail" and "not settled" in stop["reason"]
    lab.clock.quiesce()  # the safe setpoint is a write: let it reach the simulator
    assert lab.ground_truth()["temperature_stage"]["target_setpoint_k"] == pytest.approx(290.0)


def test_out_of_range_temperature_is_refused_before_the_run_opens(lab, recorded):
    run_engine, documents = recorded
    stage = connected_stage(lab)
    with pytest.raises(ValueError, match="450 K is outside"):
        run_engine(temperature_steps(stage, [300.0, 450.0], 0.1, 10.0))
    assert documents == []
    assert not [c for c in lab.command_log("temperature_stage") if c.startswith("SETP ")]
