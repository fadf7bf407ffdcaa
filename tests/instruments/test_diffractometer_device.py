"""The ophyd-async diffractometer against the simulated motor-record IOC, over Channel Access.

The IOC and the test's RunEngine share a virtual clock: durations are instrument time and
do not depend on the machine's load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import bluesky.plan_stubs as bps
import pytest
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import FailedStatus
from ophyd_async.core import wait_for_value
from ophyd_async.epics.motor import MotorLimitsError
from virtual_engines import close_virtual_run_engine, make_virtual_run_engine

from vegard.instruments.diffractometer_device import (
    MOTOR_PV_SUFFIXES,
    Diffractometer,
    release_channel_access,
)
from vegard.simulators.diffractometer_ioc_emulator import DIFFRACTOMETER_MOTORS, DiffractometerIoc
from vegard.virtual_clock import VirtualClock

PREFIX = "SIM:DIFF:"


def restart_channel_access() -> None:
    """Drop aioca's libca context, so the next channel reads EPICS_CA_* afresh.

    libca reads the address list once per context; without this a module that
    ran earlier in the session with another IOC would decide where we search.
    aioca has no public reset: this goes through `vegard._compat`.
    """
    release_channel_access()


@pytest.fixture(scope="module")
def ioc() -> Iterator[DiffractometerIoc]:
    with DiffractometerIoc(VirtualClock(), prefix=PREFIX) as started:
        with pytest.MonkeyPatch.context() as environment:
            for key, value in started.ca_address_env().items():
                environment.setenv(key, value)
            restart_channel_access()
            yield started
            restart_channel_access()


@pytest.fixture(scope="module")
def RE(ioc):
    """One RunEngine on the IOC's virtual clock for the module, as in a session (channels
    closed and reopened between tests left libca's monitors silent now and then)."""
    engine = make_virtual_run_engine(ioc.clock, [ioc.sync_pv])
    yield engine
    close_virtual_run_engine(engine, ioc.clock)


def connected(ioc) -> Diffractometer:
    device = Diffractometer(PREFIX, name="diff")
    with ioc.clock.hold("connecting the diffractometer"):
        call_in_bluesky_event_loop(device.connect(timeout=5))
    return device


def run(ioc, body):
    """Connect a fresh device and run `body(device)` in the RunEngine's loop."""
    return call_in_bluesky_event_loop(body(connected(ioc)))


def test_device_pv_names_match_the_simulated_ioc(ioc) -> None:
    assert set(MOTOR_PV_SUFFIXES) == {spec.name for spec in DIFFRACTOMETER_MOTORS}
    for name, suffix in MOTOR_PV_SUFFIXES.items():
        assert ioc.pv_prefix(name) == PREFIX + suffix


def test_connects_to_every_field_and_reads_the_axes_with_units(ioc, RE) -> None:
    async def body(device):
        return await device.read(), await device.describe()

    reading, description = run(ioc, body)
    assert set(reading) >= {f"diff-{name}" for name in MOTOR_PV_SUFFIXES}
    assert reading["diff-energy_ev"]["value"] == 10000.0
    assert description["diff-eta_deg"]["source"] == f"ca://{PREFIX}ETA.RBV"
    units = {name: description[f"diff-{name}"]["units"] for name in MOTOR_PV_SUFFIXES}
    assert units["sample_x_um"] == "um" and units["energy_ev"] == "eV"
    assert units["eta_deg"] == units["delta_deg"] == "deg"


def test_set_returns_at_the_target_after_the_move_took_instrument_time(ioc, RE) -> None:
    clock = ioc.clock

    async def body(device):
        eta = device.eta_deg
        start_deg = await eta.user_readback.get_value()
        started_s = clock.now()
        await eta.set(start_deg + 3.0)  # 1°/s with 0.2 s ramps: 3.2 s
        elapsed_s = clock.now() - started_s
        reading = (await eta.read())["diff-eta_deg"]
        done = await eta.motor_done_move.get_value()
        step_s = []
        for step in range(1, 11):  # 80 nm piezo steps, as in an SXDM map
            before_s = clock.now()
            await device.sample_x_um.set(0.08 * step)
            step_s.append(clock.now() - before_s)
        return start_deg + 3.0, elapsed_s, reading, done, started_s, step_s

    target_deg, elapsed_s, reading, done, started_s, step_s = run(ioc, body)
    assert done == 1
    assert reading["value"] == target_deg == ioc.ground_truth()["eta_deg"].position
    put_latency_s = ioc.put_latency_s
    # the trajectory, the modelled put latency and at most one 10 Hz readback tick
    assert 3.2 + put_latency_s <= elapsed_s <= 3.2 + put_latency_s + 0.1 + 1e-6
    # CA hands over the IOC's timestamp: instrument time at the end of the move
    assert started_s + 3.2 <= reading["timestamp"] <= started_s + elapsed_s
    assert ioc.ground_truth()["sample_x_um"].position == pytest.approx(0.8)
    # a piezo step costs its modelled latency and trajectory, not the host's round trips
    assert step_s == pytest.approx([step_s[0]] * 10, abs=0.1 + 1e-6)
    assert all(put_latency_s <= s <= 0.5 for s in step_s)


def test_mv_moves_several_axes_together_in_the_run_engine(ioc, RE) -> None:
    device = connected(ioc)
    truth = ioc.ground_truth()
    targets = {
        "eta_deg": truth["eta_deg"].position + 10.0,  # 10.2 s
        "delta_deg": truth["delta_deg"].position + 20.0,  # 10.5 s
        "energy_ev": truth["energy_ev"].position - 1000.0,  # 10.5 s
    }
    started_s = ioc.clock.now()
    RE(bps.mv(*(x for name, value in targets.items() for x in (device.motors[name], value))))
    elapsed_s = ioc.clock.now() - started_s
    truth = ioc.ground_truth()
    assert {name: truth[name].position for name in targets} == targets
    assert not any(axis.moving for axis in truth.values())
    assert 10.5 <= elapsed_s < 10.5 + 0.2  # in parallel, not one after another (31.2 s)


def test_a_limit_violation_names_the_axis_and_its_limits(ioc, RE) -> None:
    async def body(device):
        with pytest.raises(MotorLimitsError, match=r"diff-eta_deg .* to 95\.0deg .* 90\.0deg"):
            await device.eta_deg.set(95.0)

    before = ioc.ground_truth()
    run(ioc, body)
    device = connected(ioc)
    with pytest.raises(FailedStatus) as failure:
        RE(bps.mv(device.energy_ev, 20000.0))
    assert isinstance(failure.value.__cause__, MotorLimitsError)
    assert "diff-energy_ev" in str(failure.value.__cause__)
    assert "5000.0eV <= x <= 15000.0eV" in str(failure.value.__cause__)
    assert ioc.ground_truth() == before


def test_safe_park_stops_a_move_in_progress(ioc, RE) -> None:
    async def body(device):
        energy = device.energy_ev
        start_ev = await energy.user_readback.get_value()
        target_ev = 15000.0 if start_ev < 12500.0 else 5000.0  # ≈ 1 s of wall time or more
        move = energy.set(target_ev)
        await wait_for_value(energy.motor_done_move, 0, timeout=2)
        await asyncio.sleep(1.0)  # one instrument second into the move
        await device.safe_park()
        with pytest.raises(RuntimeError, match="diff-energy_ev was stopped"):
            await move
        done = [await m.motor_done_move.get_value() for m in device.motors.values()]
        return start_ev, target_ev, done

    start_ev, target_ev, done = run(ioc, body)
    assert done == [1] * len(MOTOR_PV_SUFFIXES)
    truth = ioc.ground_truth()["energy_ev"]
    assert not truth.moving
    assert min(start_ev, target_ev) < truth.position < max(start_ev, target_ev)
