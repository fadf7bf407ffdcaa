"""The simulated lab, its control port and `serve_forever`, end to end over sockets."""

from __future__ import annotations

import io
import json
import socket
import threading
import time

import pytest

from vegard.clock import InstrumentClock
from vegard.simulators.control import control_server, parse_clock_reply
from vegard.simulators.lab import SimulatedLab, default_instruments, simulator_kinds
from vegard.simulators.lakeshore336_emulator import LakeShore336Emulator
from vegard.simulators.parameters import SimulatorParameterError
from vegard.simulators.serve import serve_forever
from vegard.simulators.temperature_stage_model import TemperatureStageModel
from vegard.virtual_clock import VirtualClock

FAST = 10_000.0
"""Instrument seconds per wall second: 0.05 s of test time is 500 s on the stage."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def lab():
    with SimulatedLab(InstrumentClock(speedup=FAST), seed=7) as running:
        yield running


def test_registry_maps_the_temperature_stage_to_model_and_emulator() -> None:
    assert default_instruments()["temperature_stage"] == "lakeshore336"
    usual_name, kind = simulator_kinds()["lakeshore336"]
    assert usual_name == "temperature_stage"
    assert kind.model is TemperatureStageModel
    assert kind.emulator is LakeShore336Emulator


def test_addresses_are_loopback_visa_sockets(lab, connect, port_from_address) -> None:
    address = lab.addresses["temperature_stage"]
    assert address.startswith("TCPIP0::127.0.0.1::") and address.endswith("::SOCKET")
    client = connect(port_from_address(address))
    assert client.query("*IDN?") == "LSCI,MODEL336,SIM336,2.9"
    assert isinstance(lab.instruments["temperature_stage"], LakeShore336Emulator)


def test_fixed_ports_are_used() -> None:
    port = free_port()
    with SimulatedLab(InstrumentClock(speedup=FAST), ports={"temperature_stage": port}) as lab:
        assert lab.addresses["temperature_stage"] == f"TCPIP0::127.0.0.1::{port}::SOCKET"


def test_stage_physics_runs_on_the_fast_clock_behind_the_wire(
    lab, connect, port_from_address
) -> None:
    client = connect(port_from_address(lab.addresses["temperature_stage"]))
    client.send("SETP 1,350")
    deadline = time.monotonic() + 2.0
    while abs(float(client.query("KRDG? A")) - 350.0) > 0.1:  # ~80 instrument s ≈ 8 ms
        assert time.monotonic() < deadline, "stage did not reach 350 K"
        time.sleep(0.005)
    truth = lab.ground_truth()["temperature_stage"]
    assert truth["target_setpoint_k"] == 350.0
    assert truth["stage_temperature_k"] > 349.0


def test_command_log_shows_what_each_simulator_received(lab, connect, port_from_address) -> None:
    assert lab.command_log("temperature_stage") == []
    client = connect(port_from_address(lab.addresses["temperature_stage"]))
    client.query("RANGE? 1;SETP? 1")
    assert lab.command_log("temperature_stage") == ["RANGE? 1", "SETP? 1"]


def test_parameters_reach_the_model_and_bad_ones_are_refused() -> None:
    clock = InstrumentClock(speedup=FAST)
    lab = SimulatedLab(clock, {"temperature_stage": {"bath_temperature_k": 4.2}})
    assert lab.ground_truth()["temperature_stage"]["parameters"]["bath_temperature_k"] == 4.2
    with pytest.raises(SimulatorParameterError, match=r"temperature_stage\.thermal_mass_j_per_k"
                       r" = 0 is out of range: allowed 0.1 … 1000 J/K"):
        SimulatedLab(clock, {"temperature_stage": {"thermal_mass_j_per_k": 0.0}})


def test_same_seed_same_noise() -> None:
    readings = []
    for _ in range(2):
        clock = VirtualClock()  # a wall clock would let the stage warm between the reads
        lab = SimulatedLab(clock, seed=5)
        stage = lab.models["temperature_stage"]
        readings.append([stage.read_temperature_k("B") for _ in range(5)])
    assert readings[0] == readings[1]


def test_control_port_reports_clock_truth_and_addresses(lab, connect) -> None:
    with control_server(lab) as control:
        client = connect(control.port)
        state = parse_clock_reply(client.query("CLOCK?"))
        assert state.speedup == FAST
        assert state.instrument_time_s == pytest.approx(lab.clock.now(), abs=FAST * 0.5)
        truth = json.loads(client.query("TRUTH? temperature_stage"))
        assert truth["parameters"]["thermal_mass_j_per_k"] == 20.0
        assert set(truth) == set(lab.ground_truth()["temperature_stage"])
        listed = dict(item.split("=") for item in client.query("INST?").split(","))
        assert listed == lab.addresses
        client.expect_no_reply("TRUTH? levitator")
        assert client.query("SYST:ERR?").startswith("-224,")
        safe = json.loads(client.query("SAFE? afm"))
        assert safe == json.loads(json.dumps(lab.safe_state()["afm"]))
        assert safe["safe"] is True  # nothing has biased the tip


def test_serve_forever_prints_addresses_and_stops_cleanly() -> None:
    lab = SimulatedLab(InstrumentClock(speedup=FAST))
    out, stop = io.StringIO(), threading.Event()
    server = threading.Thread(target=serve_forever, args=(lab,), kwargs={"out": out, "stop": stop})
    server.start()
    deadline = time.monotonic() + 2.0
    while "control " not in out.getvalue():
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.01)
    printed = [line.split(" ", 1) for line in out.getvalue().splitlines()]
    assert all(len(words) == 2 for words in printed)  # `name address`, parsed by scripts
    lines = dict(printed)
    assert lines["temperature_stage"] == lab.addresses["temperature_stage"]
    assert lines["diffractometer"] == "ca://SIM:DIFF:"
    exported = dict(value.split("=", 1) for key, value in printed if key == "export")
    assert exported == lab.client_environment()
    assert exported["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert printed[-1][0] == "control"
    control_port = int(lines["control"].split("::")[2])
    with socket.create_connection(("127.0.0.1", control_port), timeout=2.0) as control:
        control.sendall(b"CLOCK?\n")
        assert b"," in control.recv(100)
    stop.set()
    server.join(timeout=2.0)
    assert not server.is_alive()
    for port in (control_port, int(lines["temperature_stage"].split("::")[2])):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1.0)


def test_serial_line_instruments_are_reached_by_a_pyserial_url(lab) -> None:
    import asyncio

    from vegard.instruments.serial_connection import SerialConnection

    address = lab.addresses["potentiostat"]
    assert address.startswith("socket://127.0.0.1:")
    connection = SerialConnection(address, name="potentiostat")

    async def identity():
        try:
            return await connection.identify("SIM-POTENTIOSTAT", "a potentiostat")
        finally:
            connection.close()

    assert "POTENTIOSTAT" in asyncio.run(identity())


def test_the_diffractometer_is_served_by_its_ioc_over_channel_access(lab) -> None:
    from caproto.sync.client import read

    assert lab.addresses["diffractometer"] == "ca://SIM:DIFF:"
    ioc = lab.models["diffractometer"].ioc
    assert ioc.running
    environment = lab.client_environment()
    assert environment == ioc.ca_address_env()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        assert read("SIM:DIFF:ETA.RBV", timeout=2.0, repeater=False).data[0] == 17.68
    assert lab.ground_truth()["diffractometer"]["positions"]["eta_deg"] == 17.68
    assert lab.addresses["area_detector"].startswith("TCPIP0::127.0.0.1::")
    assert lab.models["area_detector"].diffractometer is lab.models["diffractometer"]
    assert lab.models["area_detector"].potentiostat is lab.models["potentiostat"]
    json.dumps(lab.ground_truth())


def test_the_ioc_search_port_can_be_fixed() -> None:
    from vegard.simulators.diffractometer_ioc_emulator import free_port as free_udp_and_tcp_port

    port = free_udp_and_tcp_port()
    clock = InstrumentClock(speedup=FAST)
    with SimulatedLab(clock, ports={"diffractometer": port}, instruments=["diffractometer"]) as lab:
        assert lab.client_environment()["EPICS_CA_ADDR_LIST"] == f"127.0.0.1:{port}"
    assert not lab.models["diffractometer"].running


def test_a_subset_of_instruments_builds_their_peers_only() -> None:
    clock = InstrumentClock(speedup=FAST)
    with SimulatedLab(clock, instruments=["afm"]) as lab:
        assert lab.built == ("temperature_stage", "afm")
        assert set(lab.addresses) == {"temperature_stage", "afm"}
        assert lab.client_environment() == {}  # no IOC started
        assert set(lab.ground_truth()) == {"temperature_stage", "afm"}
    detector_lab = SimulatedLab(clock, instruments=["area_detector"])
    assert detector_lab.built == ("potentiostat", "diffractometer", "area_detector")
    assert not detector_lab.models["diffractometer"].running  # built, not started
    with pytest.raises(ValueError, match="unknown simulated instruments"):
        SimulatedLab(clock, instruments=["levitator"])


def test_parameters_of_instruments_not_built_are_still_checked() -> None:
    clock = InstrumentClock(speedup=FAST)
    with pytest.raises(SimulatorParameterError, match=r"area_detector\.detector_distance_m"):
        SimulatedLab(clock, {"area_detector": {"detector_distance_m": 9.0}}, instruments=["afm"])
    lab = SimulatedLab(clock, {"area_detector": {"detector_distance_m": 2.0}},
                       instruments=["area_detector"])
    assert lab.models["area_detector"].geometry(10000.0).distance_m == 2.0
    assert set(default_instruments()) >= {"diffractometer", "area_detector"}
