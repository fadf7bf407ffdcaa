"""The SCPI server base: framing, error queue, command log, connections, bind address."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from vegard.simulators.scpi_server import (
    DATA_OUT_OF_RANGE,
    ERROR_QUEUE_LENGTH,
    Instrument,
    ScpiError,
    ScpiServer,
    parse_float,
    require_arguments,
)


class Thermometer(Instrument):
    """A tiny emulator: one settable value and a query for it."""

    identity = "TEST,THERMOMETER,0,1"

    def __init__(self, clock) -> None:
        super().__init__(clock)
        self.value = 0.0
        self.register("VAL", self._set_value)
        self.register("VAL?", lambda _: f"{self.value:+.3f}")
        self.register("SLOW?", self._slow)
        self.register("BROKEN", lambda _: 1 / 0)

    def _set_value(self, arguments: list[str]) -> None:
        require_arguments(arguments, 1)
        value = parse_float(arguments[0])
        if not 0 <= value <= 100:
            raise ScpiError(DATA_OUT_OF_RANGE, "0-100")
        self.value = value

    def _slow(self, arguments: list[str]) -> str:
        time.sleep(0.02)
        return "done"

    def reset(self) -> None:
        self.value = 0.0


@pytest.fixture
def served(manual_clock):
    with ScpiServer(Thermometer(manual_clock)) as server:
        yield server


def test_serves_on_loopback_with_an_ephemeral_port_and_a_visa_address(served, connect) -> None:
    assert served.host == "127.0.0.1"
    assert served.port > 0
    assert served.visa_address == f"TCPIP0::127.0.0.1::{served.port}::SOCKET"
    listening = served._server.socket.getsockname()
    assert listening == ("127.0.0.1", served.port)
    assert connect(served.port).query("*IDN?") == "TEST,THERMOMETER,0,1"


def test_a_non_loopback_host_needs_allow_remote_and_is_logged(manual_clock, caplog) -> None:
    with pytest.raises(ValueError, match="not loopback"):
        ScpiServer(Thermometer(manual_clock), host="0.0.0.0")
    with caplog.at_level(logging.WARNING):
        server = ScpiServer(Thermometer(manual_clock), host="0.0.0.0", allow_remote=True)
    assert server.host == "0.0.0.0"
    assert "non-loopback" in caplog.text


def test_common_commands(served, connect) -> None:
    client = connect(served.port)
    assert client.query("*OPC?") == "1"
    client.send("VAL 42")
    assert client.query("VAL?") == "+42.000"
    client.send("*RST")
    assert client.query("val?") == "+0.000"  # headers are case-insensitive
    assert client.query("SYST:ERR?") == '0,"No error"'


def test_unknown_header_queues_minus_113_and_gets_no_reply(served, connect) -> None:
    client = connect(served.port)
    client.expect_no_reply("BOGUS?")
    assert client.query("SYST:ERR?").startswith('-113,"Undefined header')
    assert client.query("SYST:ERR?") == '0,"No error"'


def test_handler_errors_are_queued_in_order_and_cleared_by_cls(served, connect) -> None:
    client = connect(served.port)
    client.send("VAL 500")
    client.send("VAL")
    client.send("VAL hot")
    assert client.query("VAL?") == "+0.000"
    assert client.query("SYST:ERR?").startswith('-222,"Data out of range')
    assert client.query("SYST:ERR?").startswith('-109,"Missing parameter')
    assert client.query("SYST:ERR?").startswith('-104,"Data type error')
    client.send("VAL 500")
    client.send("*CLS")
    assert client.query("SYST:ERR?") == '0,"No error"'


def test_error_queue_is_bounded_and_reports_overflow(served, connect) -> None:
    client = connect(served.port)
    assert client.query(";".join(["VAL 500"] * (ERROR_QUEUE_LENGTH + 8) + ["*OPC?"])) == "1"
    errors = served.instrument.errors()
    assert len(errors) == ERROR_QUEUE_LENGTH
    assert errors[0].startswith("-222")
    assert errors[-1] == '-350,"Queue overflow"'


def test_semicolon_separated_commands_and_joined_replies(served, connect) -> None:
    client = connect(served.port)
    assert client.query("VAL 12.5;VAL?") == "+12.500"
    assert client.query("VAL?;*OPC?; VAL?") == "+12.500;1;+12.500"


def test_crlf_terminated_lines_are_accepted(served, connect) -> None:
    client = connect(served.port)
    client.send("VAL 7", terminator="\r\n")
    client.send("VAL?", terminator="\r\n")
    assert client.read_line() == "+7.000"


def test_command_log_records_every_command_with_instrument_time(
    served, connect, manual_clock
) -> None:
    client = connect(served.port)
    assert served.instrument.command_log() == []  # the simulator received nothing yet
    client.query("VAL 3;VAL?")
    manual_clock.advance(10.0)
    client.query("*OPC?")
    log = served.instrument.command_log()
    assert [entry.command for entry in log] == ["VAL 3", "VAL?", "*OPC?"]
    assert log[2].instrument_time_s - log[0].instrument_time_s == 10.0


def test_several_clients_are_served_at_once(served, connect) -> None:
    first, second = connect(served.port), connect(served.port)
    first.send("SLOW?")
    assert second.query("*IDN?") == "TEST,THERMOMETER,0,1"
    assert first.read_line() == "done"

    replies: list[str] = []

    def hammer(client) -> None:
        for _ in range(20):
            replies.append(client.query("*IDN?"))

    threads = [threading.Thread(target=hammer, args=(connect(served.port),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert replies == ["TEST,THERMOMETER,0,1"] * 80


def test_stop_closes_client_connections_promptly_and_frees_the_port(
    manual_clock, connect
) -> None:
    server = ScpiServer(Thermometer(manual_clock)).start()
    port = server.port
    client = connect(port)
    assert client.query("*OPC?") == "1"
    server.stop()
    client.socket.settimeout(10.0)  # a hang guard only: stop() closes before it returns
    assert client.socket.recv(16) == b""  # closed by the server, not timed out
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0)


def test_a_failing_handler_queues_an_execution_error_and_keeps_the_connection(
    served, connect, caplog
) -> None:
    client = connect(served.port)
    with caplog.at_level(logging.ERROR):
        client.send("BROKEN")
        assert client.query("SYST:ERR?") == '-200,"Execution error;ZeroDivisionError"'
    assert "ZeroDivisionError" in caplog.text
    assert client.query("*OPC?") == "1"
