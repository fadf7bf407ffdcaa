"""The potentiostat emulator over a real socket: techniques, readings, refusals."""

from __future__ import annotations

import re

import pytest

from vegard.simulators.lmno_cell_model import LmnoCell
from vegard.simulators.potentiostat_emulator import PotentiostatEmulator
from vegard.simulators.scpi_server import ScpiServer

HOUR_S = 3600.0
C15_A = 4.9e-5  # C/15 of 5 mg at 147 mAh/g


@pytest.fixture
def cell(manual_clock) -> LmnoCell:
    return LmnoCell(manual_clock, {"potential_noise_v": 1e-4}, seed=2)


@pytest.fixture
def client(cell, connect):
    with ScpiServer(PotentiostatEmulator(cell)) as server:
        yield connect(server.port)


def next_error(client) -> str:
    return client.query("SYST:ERR?")


def send_and_wait(client, line: str) -> None:
    """Send settings and wait until they are applied (before the test moves the clock)."""
    assert client.query(f"{line};*OPC?") == "1"


def test_identity_and_power_on_state(client) -> None:
    assert client.query("*IDN?") == "VEGARD,SIM-POTENTIOSTAT,0,0.1"
    assert client.query("MODE?;OUTP?;MEAS:CURR?") == "REST;0;0.000000e+00"
    assert client.query("CURR?;VLIM?;VOLT?") == "0.000000e+00;4.900000;4.050000"
    assert float(client.query("MEAS:VOLT?")) == pytest.approx(4.05, abs=1e-3)


def test_galvanostatic_charge_reports_current_charge_and_potential(client, manual_clock) -> None:
    client.send(f"CURR {C15_A};VLIM 4.9;MODE GALV")
    assert client.query("MODE?;OUTP?;STAT:LIM?") == "GALV;1;0"
    assert float(client.query("MEAS:CURR?")) == pytest.approx(C15_A)
    manual_clock.advance(HOUR_S)
    assert float(client.query("MEAS:CHAR?")) == pytest.approx(C15_A * 1000.0, rel=1e-6)
    reply = client.query("MEAS:ALL?")
    number = r"[-+]?\d+\.\d+(e[-+]\d+)?"
    assert re.fullmatch(rf"{number},{number},{number},1", reply)
    potential_v, current_a, charge_mah, _ = (float(v) for v in reply.split(","))
    assert 4.65 < potential_v < 4.72  # on the first Ni plateau, above the OCV
    assert current_a == pytest.approx(C15_A) and charge_mah == pytest.approx(0.049, rel=1e-6)


def test_reaching_the_voltage_limit_opens_the_circuit(client, cell, manual_clock) -> None:
    send_and_wait(client, f"CURR {C15_A};VLIM 4.9;MODE GALV")
    manual_clock.advance(16 * HOUR_S)
    assert client.query("STAT:LIM?;MODE?;OUTP?;MEAS:CURR?") == "1;REST;0;0.000000e+00"
    assert client.query("MEAS:ALL?").endswith(",0")
    assert 0.98 < float(client.query("MEAS:CHAR?")) / cell.capacity_mah <= 1.0
    # at rest the I·R and kinetic terms vanish, so resuming charges a little further
    send_and_wait(client, "OUTP 1")
    assert client.query("STAT:LIM?;MODE?") == "0;GALV"
    manual_clock.advance(HOUR_S)
    assert client.query("STAT:LIM?;MODE?") == "1;REST"


def test_output_off_rests_and_on_resumes(client, manual_clock) -> None:
    send_and_wait(client, f"CURR {C15_A};MODE GALV")
    manual_clock.advance(600.0)
    send_and_wait(client, "OUTP 0")
    assert client.query("MODE?;OUTP?;MEAS:CURR?") == "REST;0;0.000000e+00"
    charge = client.query("MEAS:CHAR?")
    manual_clock.advance(600.0)
    assert client.query("MEAS:CHAR?") == charge
    client.send("OUTP 1")
    assert client.query("MODE?;OUTP?") == "GALV;1"


def test_output_on_without_a_technique_is_refused(client) -> None:
    client.send("*RST;OUTP 1")
    assert next_error(client).startswith("-200,")
    assert client.query("MODE?") == "REST"


def test_settings_take_effect_while_their_technique_runs(client, cell) -> None:
    client.send(f"CURR {C15_A};MODE GALV")
    client.send("CURR 1e-4;VLIM 4.8")
    assert float(client.query("MEAS:CURR?")) == pytest.approx(1e-4)
    assert cell.voltage_limit_v == 4.8
    client.send("VOLT 4.2")  # not the running technique: stored only
    assert client.query("MODE?;VOLT?") == "GALV;4.200000"


def test_potential_hold(client, cell, manual_clock) -> None:
    send_and_wait(client, "VOLT 4.2;MODE POT")
    assert client.query("MODE?;OUTP?") == "POT;1"
    manual_clock.advance(300.0)
    assert float(client.query("MEAS:VOLT?")) == pytest.approx(4.2, abs=1e-3)
    assert client.query("MEAS:ALL?").endswith(",2")
    assert float(client.query("MEAS:CURR?")) > 0
    assert cell.mode.value == "potentiostatic"


@pytest.mark.parametrize(
    ("command", "code", "detail"),
    [
        ("CURR 0.2", "-222", "current 0.2 A outside -0.1 to 0.1 A"),
        ("CURR -0.5", "-222", "current -0.5 A outside -0.1 to 0.1 A"),
        ("VLIM 6", "-222", "voltage limit 6 V outside 0 to 5.5 V"),
        ("VOLT -1", "-222", "potential -1 V outside 0 to 5.5 V"),
        ("CURR lots", "-104", "not a number"),
        ("VLIM", "-109", "expected 1"),
        ("MODE CV", "-224", "allowed REST, GALV, POT"),
        ("OUTP 2", "-224", "expected 0/1"),
        ("MEAS:POW?", "-113", "MEAS:POW?"),
    ],
)
def test_bad_commands_queue_the_matching_error(client, command, code, detail) -> None:
    client.send(command)
    error = next_error(client)
    assert error.startswith(code + ",") and detail in error
    assert next_error(client) == '0,"No error"'
    assert client.query("MODE?;CURR?;VLIM?;VOLT?") == "REST;0.000000e+00;4.900000;4.050000"


def test_a_refused_query_gets_no_reply(client) -> None:
    client.expect_no_reply("MEAS:POW?")
    assert next_error(client).startswith("-113,")


def test_reset_opens_the_circuit_and_restores_defaults(client) -> None:
    client.send("CURR 1e-3;VLIM 4.5;VOLT 4.3;MODE GALV")
    client.send("*RST")
    assert client.query("MODE?;OUTP?;CURR?;VLIM?;VOLT?") == (
        "REST;0;0.000000e+00;4.900000;4.050000")
