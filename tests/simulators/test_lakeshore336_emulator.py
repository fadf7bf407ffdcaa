"""The LakeShore 336 emulator over a real socket: syntax, reply formats, refusals."""

from __future__ import annotations

import re

import pytest

from vegard.simulators.lakeshore336_emulator import LakeShore336Emulator
from vegard.simulators.scpi_server import ScpiServer
from vegard.simulators.temperature_stage_model import TemperatureStageModel


@pytest.fixture
def stage(manual_clock) -> TemperatureStageModel:
    return TemperatureStageModel(manual_clock, {"sensor_noise_k": 0.001}, seed=3)


@pytest.fixture
def client(stage, connect):
    with ScpiServer(LakeShore336Emulator(stage)) as server:
        yield connect(server.port)


def next_error(client) -> str:
    return client.query("SYST:ERR?")


def test_identity(client) -> None:
    assert client.query("*IDN?") == "LSCI,MODEL336,SIM336,2.9"


def test_kelvin_readings_in_the_336_format(client) -> None:
    reading_a = client.query("KRDG? A")
    assert re.fullmatch(r"\+\d{3}\.\d{3}", reading_a)
    assert float(reading_a) == pytest.approx(295.0, abs=0.01)
    assert float(client.query("krdg? b")) == pytest.approx(295.0, abs=0.01)
    both = client.query("KRDG? 0").split(",")
    assert len(both) == 2 and all(re.fullmatch(r"\+\d{3}\.\d{3}", text) for text in both)


def test_setpoint_set_and_query(client, stage) -> None:
    client.send("SETP 1,320.5")
    assert client.query("SETP? 1") == "+320.500"
    assert stage.target_setpoint_k == 320.5


def test_out_of_range_setpoint_is_refused_with_minus_222(client, stage) -> None:
    client.send("SETP 1,500")
    assert client.query("SETP? 1") == "+295.000"
    assert next_error(client).startswith('-222,"Data out of range')
    assert stage.target_setpoint_k == 295.0


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("SETP 2,300", "-224"),
        ("SETP 1", "-109"),
        ("SETP 1,warm", "-104"),
        ("RANGE 1,4", "-222"),
        ("RAMP 1,2,10", "-224"),
        ("RAMP 1,1,500", "-222"),
        ("PID 1,0,20,0", "-222"),
        ("PID 1,50,20", "-109"),
        ("KRDG? C", "-224"),
        ("NOPE 1", "-113"),
    ],
)
def test_bad_commands_queue_the_matching_error(client, stage, command: str, code: str) -> None:
    client.send(command)
    assert next_error(client).startswith(code + ",")
    assert next_error(client) == '0,"No error"'
    assert stage.target_setpoint_k == 295.0
    assert stage.heater_range == 3


def test_a_refused_query_gets_no_reply(client) -> None:
    client.expect_no_reply("KRDG? C")
    assert next_error(client).startswith("-224,")


def test_ramp_settings_and_status(client, manual_clock) -> None:
    client.send("RAMP 1,1,10")
    assert client.query("RAMP? 1") == "1,+10.0"
    assert client.query("RAMPST? 1") == "0"
    client.send("SETP 1,305")
    assert client.query("RAMPST? 1") == "1"
    manual_clock.advance(30.0)
    assert float(client.query("SETP? 1")) == pytest.approx(300.0, abs=0.02)
    manual_clock.advance(60.0)
    assert client.query("RAMPST? 1") == "0"
    assert client.query("SETP? 1") == "+305.000"


def test_heater_range_pid_and_output(client, manual_clock) -> None:
    assert client.query("RANGE? 1") == "3"
    assert client.query("PID? 1") == "+50.0,+20.0,+0"
    client.send("PID 1,40,30.5,10")
    assert client.query("PID? 1") == "+40.0,+30.5,+10"
    output = client.query("HTR? 1")
    assert re.fullmatch(r"\+\d{3}\.\d{2}", output)
    assert float(output) == pytest.approx(43.6, abs=1.0)  # holding 295 K against the bath
    client.send("RANGE 1,0")
    manual_clock.advance(1.0)
    assert client.query("RANGE? 1;HTR? 1") == "0;+000.00"


def test_reset_turns_the_heater_off(client) -> None:
    client.send("PID 1,10,10,0;RANGE 1,3")
    client.send("*RST")
    assert client.query("RANGE? 1;PID? 1") == "0;+50.0,+20.0,+0"


def test_semicolon_separated_setpoint_and_readback(client) -> None:
    assert client.query("SETP 1,300;SETP? 1;RANGE? 1") == "+300.000;3"
