"""Drivers against simulators whose wire misbehaves on schedule (real sockets on loopback).

Each case fires one wire fault on the LakeShore 336 or the potentiostat and checks what the
channel did about it: a transient fault on an idempotent query is retried (and reconnects
when the line dropped), a persistent one raises an error naming instrument, command and
reason, and a non-idempotent query is never asked twice.

Everything runs on a virtual clock, so timeouts and slow replies are instrument time and
the outcome cannot depend on how busy the machine is.
"""

from __future__ import annotations

import pytest

from vegard.instruments.errors import InstrumentCommunicationError
from vegard.instruments.lakeshore336_driver import HeaterRange, LakeShore336Driver
from vegard.instruments.potentiostat_driver import PotentiostatDriver
from vegard.instruments.serial_connection import SerialConnection
from vegard.instruments.visa_connection import VisaConnection
from vegard.simulators.lab import SimulatedLab
from vegard.virtual_clock import VirtualClock

TIMEOUT_S = 0.3


def lakeshore_lab(clock: VirtualClock | None = None, **faults: float) -> SimulatedLab:
    return SimulatedLab(
        clock or VirtualClock(), {"temperature_stage": faults},
        instruments=["temperature_stage"],
    ).start()


def run_virtual(clock: VirtualClock, coroutine):
    """Run `coroutine` on an event loop of `clock` (its timers in instrument time)."""
    loop = clock.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def run_on_lakeshore(lab: SimulatedLab, exchange):
    connection = VisaConnection(
        lab.addresses["temperature_stage"], name="temperature_stage", timeout_s=TIMEOUT_S,
        clock=lab.clock)
    driver = LakeShore336Driver(connection)

    async def body():
        await driver.connect()
        return await exchange(driver)

    try:
        return run_virtual(lab.clock, body()), connection
    finally:
        connection.close()
        lab.stop()


@pytest.mark.parametrize("kind", ["timeout", "drop", "malformed", "slow", "error"])
def test_one_fault_on_a_reading_is_retried_and_the_reading_is_right(kind):
    # line 1 is *IDN?, line 2 the first KRDG? — the one that fails
    lab = lakeshore_lab(**{f"fault_{kind}_at_command": 2, "fault_slow_reply_s": 1.0})
    (first, second), connection = run_on_lakeshore(lab, _two_readings)
    assert lab.injected_faults()["temperature_stage"][0]["kind"] == kind
    assert lab.injected_faults()["temperature_stage"][0]["line"] == "KRDG? A"
    assert abs(first - 295.0) < 0.1 and abs(second - 295.0) < 0.1  # never NaN, never garbage
    assert connection.retries_made == 1
    assert connection.reconnects_made == 1  # every failed exchange starts a fresh connection


async def _two_readings(driver: LakeShore336Driver) -> tuple[float, float]:
    return await driver.temperature_k(), await driver.temperature_k()


def test_a_persistent_outage_raises_an_error_naming_instrument_command_and_reason():
    lab = lakeshore_lab(fault_timeout_at_command=2, fault_repeat=100)
    with pytest.raises(InstrumentCommunicationError) as raised:
        run_on_lakeshore(lab, lambda d: d.temperature_k())
    message = str(raised.value)
    assert "temperature_stage" in message and "KRDG? A" in message and "timeout" in message
    assert len(lab.injected_faults()["temperature_stage"]) == 3  # tried three times, no more


def test_a_refused_heater_range_is_noticed_by_reading_it_back():
    lab = lakeshore_lab(fault_error_at_command=2)  # the RANGE write is refused
    with pytest.raises(InstrumentCommunicationError, match=r"RANGE 1,1.*not taken"):
        run_on_lakeshore(lab, lambda d: d.set_heater_range(HeaterRange.LOW))
    assert lab.instruments["temperature_stage"].errors()[0].startswith("-300")


def test_the_error_queue_is_never_asked_twice_and_the_cell_is_still_put_at_rest():
    lab = SimulatedLab(
        VirtualClock(), {"potentiostat": {"fault_timeout_at_command": 3}},
        instruments=["potentiostat"],
    ).start()
    connection = SerialConnection(lab.addresses["potentiostat"], name="potentiostat",
                                  timeout_s=TIMEOUT_S, clock=lab.clock)
    driver = PotentiostatDriver(connection)

    async def body():
        await driver.connect()
        # line 2: OUTP 0, line 3: its SYST:ERR? (swallowed), then the whole rest is re-done
        return await driver.rest()

    try:
        reading = run_virtual(lab.clock, body())
    finally:
        connection.close()
        lab.stop()
    log = lab.command_log("potentiostat")
    assert lab.injected_faults()["potentiostat"][0]["line"] == "SYST:ERR?"
    assert log.count("OUTP 0") == 2  # the safe-state sequence was repeated as a whole
    assert reading.current_a == 0.0
    assert lab.safe_state()["potentiostat"]["safe"]


def test_faults_can_be_scheduled_in_instrument_time():
    clock = VirtualClock()
    lab = SimulatedLab(clock, {"temperature_stage": {"fault_malformed_at_s": 3600.0}},
                       instruments=["temperature_stage"]).start()

    async def body(driver: LakeShore336Driver) -> float:
        before = await driver.temperature_k()
        await clock.sleep(3600.0)
        return before, await driver.temperature_k()

    _, connection = run_on_lakeshore(lab, body)
    (fired,) = lab.injected_faults()["temperature_stage"]
    assert fired["kind"] == "malformed"
    assert fired["instrument_time_s"] >= 3600.0
    assert connection.retries_made == 1
