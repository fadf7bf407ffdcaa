"""Binary blocks over pyvisa: a payload full of line terminators must arrive whole.

The AFM's scan lines and the detector's frames are IEEE 488.2 definite-length blocks of
floats, in which 0x0A bytes are common; the connection reads them with the terminator
off, so such a byte ends nothing. A small loopback server stands in for the instrument.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from vegard.instruments.errors import InstrumentReplyError
from vegard.instruments.visa_connection import VisaConnection


def _block(payload: bytes) -> bytes:
    length = str(len(payload)).encode()
    return b"#" + str(len(length)).encode() + length + payload + b"\n"


@pytest.fixture
def server() -> Iterator[tuple[str, dict[bytes, bytes]]]:
    """(VISA address, command → reply bytes) of a one-connection server on loopback."""
    replies: dict[bytes, bytes] = {}
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with connection, contextlib.suppress(OSError):  # the client hangs up at the end
            buffer = b""
            while chunk := connection.recv(4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    connection.sendall(replies[line.strip()])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"TCPIP0::127.0.0.1::{port}::SOCKET", replies
    listener.close()


def test_a_block_of_newline_bytes_arrives_whole_and_the_next_reply_is_intact(server) -> None:
    address, replies = server
    values = np.full(4096, np.frombuffer(b"\n\n\n\n", dtype="<f4")[0], dtype="<f4")
    values[::7] = np.arange(values[::7].size)  # and other bytes between them
    replies[b"LINE?"] = _block(values.tobytes())
    replies[b"*IDN?"] = b"test,instrument\n"
    connection = VisaConnection(address, name="afm", timeout_s=2.0)
    connection.open_blocking()
    try:
        got = connection.query_block_blocking("LINE?", "<f4")
        assert np.array_equal(got, values)
        assert connection.query_blocking("*IDN?") == "test,instrument"
    finally:
        connection.close()


def test_a_broken_block_header_is_a_reply_error_naming_the_command(server) -> None:
    address, replies = server
    replies[b"LINE?"] = b"?5" + b"x" * 20 + b"\n"
    connection = VisaConnection(address, name="afm", timeout_s=2.0)
    connection.open_blocking()
    try:
        with pytest.raises(InstrumentReplyError, match="LINE\\?"):
            connection.query_block_blocking("LINE?", "<f4")
    finally:
        connection.close()
