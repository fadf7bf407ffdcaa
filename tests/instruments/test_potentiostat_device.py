"""Potentiostat driver and device over pyserial's socket:// against the emulated LMNO cell,
on a virtual clock: a 15 h charge takes its 15 instrument hours, whatever the load."""

from __future__ import annotations

import asyncio
import itertools
import socket
import statistics

import bluesky.plan_stubs as bps
import pytest
from bluesky.run_engine import call_in_bluesky_event_loop
from virtual_engines import close_virtual_run_engine, make_virtual_run_engine

from vegard.instruments.potentiostat_device import (
    GalvanostaticCharge,
    Potentiostat,
    c_rate_current_a,
)
from vegard.instruments.potentiostat_driver import (
    CellMode,
    PotentiostatDriver,
    SettingOutOfRangeError,
)
from vegard.instruments.serial_connection import SerialConnection
from vegard.instruments.visa_connection import (
    InstrumentCommunicationError,
    InstrumentReplyError,
)
from vegard.simulators.lmno_cell_model import LmnoCell
from vegard.simulators.potentiostat_emulator import PotentiostatEmulator
from vegard.simulators.scpi_server import Instrument, ScpiServer
from vegard.virtual_clock import VirtualClock

HOUR_S = 3600.0
C15_A = c_rate_current_a(1 / 15, active_mass_mg=5.0)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def RE(clock):
    engine = make_virtual_run_engine(clock)
    yield engine
    close_virtual_run_engine(engine, clock)


@pytest.fixture
def cell(clock) -> LmnoCell:
    return LmnoCell(clock, seed=4)


@pytest.fixture
def emulator(cell) -> PotentiostatEmulator:
    return PotentiostatEmulator(cell)


@pytest.fixture
def url(emulator):
    with ScpiServer(emulator) as server:
        yield f"socket://127.0.0.1:{server.port}"


def make_device(url: str, clock: VirtualClock, **options) -> Potentiostat:
    connection = SerialConnection(url, name="potentiostat", clock=clock)
    return Potentiostat(PotentiostatDriver(connection), clock=clock, name="pstat", **options)


def run(url, clock, body, **options):
    device = make_device(url, clock, **options)

    async def main():
        await device.connect(timeout=5)
        try:
            return await body(device)
        finally:
            device.driver.connection.close()

    loop = clock.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


# ---------------------------------------------------------------------- device


def test_c15_charge_is_monitored_until_the_cut_off_then_rests(url, clock, cell) -> None:
    async def body(device):
        readings = []
        await device.start_charge(C15_A, 4.9)
        device.subscribe(readings.append)
        deadline_s = clock.now() + 16 * HOUR_S
        while not (readings and readings[-1]["pstat-limit_reached"]["value"]):
            assert clock.now() < deadline_s, "no cut-off within 16 instrument hours"
            await asyncio.sleep(60.0)
        device.clear_sub(readings.append)
        return readings, await device.rest()

    readings, at_rest = run(url, clock, body, poll_period_s=300.0)
    truth = cell.ground_truth()
    charging = [r for r in readings if r["pstat-mode"]["value"] is CellMode.GALVANOSTATIC]
    assert 175 <= len(charging) <= 181  # 15 h at a 5 min poll
    assert all(r["pstat-current_a"]["value"] == pytest.approx(C15_A) for r in charging)
    stamps = [r["pstat-potential_v"]["timestamp"] for r in readings]
    assert all(later > earlier for earlier, later in itertools.pairwise(stamps))
    # the first plateau (Ni2+/Ni3+ at 4.70 V plus ≈ 10 mV of polarisation)
    plateau_v = [r["pstat-potential_v"]["value"] for r in charging
                 if 0.15 < r["pstat-charge_mah"]["value"] / cell.capacity_mah < 0.4]
    assert statistics.median(plateau_v) == pytest.approx(4.71, abs=0.01)
    assert charging[-1]["pstat-potential_v"]["value"] > 4.85
    last = readings[-1]
    assert last["pstat-mode"]["value"] is CellMode.REST and last["pstat-current_a"]["value"] == 0
    assert 0.98 < last["pstat-charge_mah"]["value"] / cell.capacity_mah <= 1.0
    charge_h = (truth["limit_reached_time_s"] - truth["technique_start_time_s"]) / HOUR_S
    assert 0.98 * 15.0 < charge_h <= 15.0
    assert at_rest.mode is CellMode.REST and at_rest.current_a == 0.0 and at_rest.limit_reached
    assert truth["mode"] == "rest" and truth["current_a"] == 0.0


def test_read_is_one_exchange_stamped_on_the_instrument_clock(url, clock, emulator) -> None:
    async def body(device):
        described = await device.describe()
        emulator.clear_command_log()
        before_s = clock.now()
        reading = await device.read()
        return described, reading, before_s, clock.now()

    described, reading, before_s, after_s = run(url, clock, body)
    assert set(reading) == set(described) == {
        "pstat-potential_v", "pstat-current_a", "pstat-charge_mah", "pstat-mode",
        "pstat-limit_reached"}
    assert [c.command for c in emulator.command_log()] == ["MEAS:ALL?", "STAT:LIM?"]
    stamps = {r["timestamp"] for r in reading.values()}
    assert len(stamps) == 1 and before_s <= stamps.pop() <= after_s
    assert reading["pstat-potential_v"]["value"] == pytest.approx(4.05, abs=2e-3)
    assert described["pstat-potential_v"]["units"] == "V"


def test_configuration_signals_read_and_write_through(url, clock) -> None:
    async def body(device):
        await device.voltage_limit_v.set(4.85)
        await device.current_setpoint_a.set(2e-5)
        return await device.read_configuration()

    configuration = run(url, clock, body)
    assert configuration["pstat-voltage_limit_v"]["value"] == 4.85
    assert configuration["pstat-current_setpoint_a"]["value"] == 2e-5
    assert configuration["pstat-potential_setpoint_v"]["value"] == 4.05


def test_stop_opens_the_circuit(url, clock, cell) -> None:
    async def body(device):
        await device.hold_potential(4.2)
        held = await device.mode.get_value()
        await device.stop()
        return held, await device.mode.get_value(), await device.current_a.get_value()

    held, mode, current_a = run(url, clock, body)
    assert held is CellMode.POTENTIOSTATIC
    assert mode is CellMode.REST and current_a == 0.0
    assert cell.ground_truth()["mode"] == "rest"


@pytest.mark.parametrize(
    ("current_a", "limit_v", "message"),
    [
        (0.5, 4.9, r"current 0.5 A is outside -0.1 to 0.1 A"),
        (1e-4, 6.0, r"voltage limit 6 V is outside 0 to 5.5 V"),
        (-1e-4, 4.9, r"a charge needs a positive current"),
    ],
)
def test_out_of_range_charge_never_reaches_the_wire(
    url, clock, emulator, current_a, limit_v, message
) -> None:
    async def body(device):
        with pytest.raises(SettingOutOfRangeError, match=message):
            await device.start_charge(current_a, limit_v)

    run(url, clock, body)
    sent = [c.command for c in emulator.command_log()]
    assert not [c for c in sent if c.startswith(("CURR", "VLIM", "MODE"))]


def test_monitored_stream_in_a_run_engine(url, clock, RE) -> None:
    documents: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    device = make_device(url, clock, poll_period_s=600.0)
    call_in_bluesky_event_loop(device.connect(timeout=5))

    def plan():
        yield from bps.open_run()
        yield from bps.monitor(device, name="potentiostat_monitor")
        yield from bps.mv(device.technique, GalvanostaticCharge(C15_A, 4.9))
        for _ in range(3):
            yield from bps.trigger_and_read([device])
            yield from bps.sleep(1200.0)  # instrument seconds: two polls each
        yield from bps.unmonitor(device)
        yield from bps.stop(device)  # at rest
        yield from bps.close_run()

    try:
        RE(plan())
    finally:
        device.driver.connection.close()
    keys = {doc["uid"]: (doc["name"], set(doc["data_keys"]))
            for name, doc in documents if name == "descriptor"}
    events = [doc for name, doc in documents if name == "event"]
    assert {stream for stream, _ in keys.values()} == {"primary", "potentiostat_monitor"}
    assert all(set(e["data"]) == keys[e["descriptor"]][1] for e in events)
    monitored = sum(keys[e["descriptor"]][0] == "potentiostat_monitor" for e in events)
    assert monitored == 3600 // 600  # at 0, 10, ... 50 min; the unmonitor comes at 60
    assert documents[-1][1]["exit_status"] == "success"


# ---------------------------------------------------------------------- driver


class ScriptedConnection:
    """Answers every query with one fixed reply, as a faulty instrument would."""

    name = "potentiostat"
    address = "scripted"

    def __init__(self, reply: str, error_queue: str = '0,"No error"') -> None:
        self.reply = reply
        self.error_queue = error_queue
        self.written: list[str] = []

    async def identify(self, must_contain: str, instrument_kind: str) -> str:
        return "VEGARD,SIM-POTENTIOSTAT,0,0.1"

    async def query(self, command: str, parse=None, *, idempotent: bool = True):
        reply = self.error_queue if command == "SYST:ERR?" else self.reply
        return reply if parse is None else parse(reply)

    async def until_confirmed(self, what: str, factory):
        return await factory()

    async def write(self, command: str) -> None:
        self.written.append(command)


READ_ALL = "MEAS:ALL?;STAT:LIM?"


@pytest.mark.parametrize(
    ("method", "command", "reply"),
    [
        ("potential_v", "MEAS:VOLT?", "4.7V"),
        ("current_a", "MEAS:CURR?", ""),
        ("charge_mah", "MEAS:CHAR?", "nan"),
        ("limit_reached", "STAT:LIM?", "2"),
        ("mode", "MODE?", "CHARGE"),
        ("output_on", "OUTP?", "on"),
        ("current_setpoint_a", "CURR?", "x"),
        ("voltage_limit_v", "VLIM?", "inf"),
        ("potential_setpoint_v", "VOLT?", "4,2"),
        ("read_all", READ_ALL, "4.7,1e-5,0.1;0"),
        ("read_all", READ_ALL, "4.7,1e-5,0.1,7;0"),
        ("read_all", READ_ALL, "4.7,1e-5,0.1,1"),
        ("read_all", READ_ALL, "4.7,1e-5,0.1,1;yes"),
        ("read_all", READ_ALL, "4.7,1e-5,0.1,1.5;0"),
    ],
)
def test_every_reply_parse_failure_names_the_command(method, command, reply) -> None:
    driver = PotentiostatDriver(ScriptedConnection(reply))
    with pytest.raises(InstrumentReplyError) as failed:
        asyncio.run(getattr(driver, method)())
    assert failed.value.command == command
    assert f"{command!r}" in str(failed.value) and "potentiostat" in str(failed.value)


def test_a_refused_setting_raises_naming_the_command_and_the_instrument_error() -> None:
    connection = ScriptedConnection("", error_queue='-222,"Data out of range;current"')
    driver = PotentiostatDriver(connection)
    with pytest.raises(InstrumentCommunicationError, match=r"'CURR 1.000000e-03'.*-222"):
        asyncio.run(driver.set_current_setpoint_a(1e-3))
    garbled = PotentiostatDriver(ScriptedConnection("", error_queue="fine"))
    with pytest.raises(InstrumentReplyError, match=r"SYST:ERR\? \(after VLIM 4.800000\)"):
        asyncio.run(garbled.set_voltage_limit_v(4.8))


def test_rest_that_is_not_confirmed_raises() -> None:
    driver = PotentiostatDriver(ScriptedConnection("4.7,4.9e-05,0.1,1;0"))
    with pytest.raises(InstrumentCommunicationError, match="not at open circuit"):
        asyncio.run(driver.rest())


def test_a_start_already_past_the_cut_off_says_so(url, clock, cell) -> None:
    async def body(device):
        with pytest.raises(InstrumentCommunicationError, match="already past the voltage limit"):
            await device.start_charge(C15_A, 4.0)

    run(url, clock, body)
    assert cell.ground_truth()["mode"] == "rest"


def test_connect_refuses_another_instrument(clock) -> None:
    with ScpiServer(Instrument(clock)) as server:
        driver = PotentiostatDriver(
            SerialConnection(f"socket://127.0.0.1:{server.port}", name="potentiostat"))
        with pytest.raises(InstrumentReplyError, match=r"'\*IDN\?'.*a potentiostat"):
            asyncio.run(driver.connect())
        driver.connection.close()


# ---------------------------------------------------------------------- connection


def test_serial_connection_timeout_names_the_command_and_recovers(url) -> None:
    connection = SerialConnection(url, name="potentiostat", timeout_s=0.2)
    connection.open_blocking()
    try:
        with pytest.raises(InstrumentCommunicationError) as failed:
            connection.query_blocking("MEAS:POW?")  # refused: no reply
        assert failed.value.command == "MEAS:POW?"
        assert failed.value.reason == "no reply (timeout)"
        assert connection.query_blocking("SYST:ERR?").startswith("-113,")
        assert connection.query_blocking("MODE?") == "REST"
    finally:
        connection.close()
    with pytest.raises(InstrumentCommunicationError, match="not connected"):
        connection.query_blocking("MODE?")


def test_serial_connection_that_cannot_open_names_the_url() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connection = SerialConnection(f"socket://127.0.0.1:{port}", name="potentiostat")
    with pytest.raises(InstrumentCommunicationError, match=rf"open socket://127.0.0.1:{port}"):
        asyncio.run(connection.open())
    assert not connection.is_open
