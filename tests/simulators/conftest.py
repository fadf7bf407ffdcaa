"""Fixtures for simulator tests: a clock the test moves by hand, and a plain-socket client."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from vegard.clock import InstrumentClock


class ManualClock(InstrumentClock):
    """An instrument clock that only moves when the test says so."""

    def __init__(self, start_s: float = 1_700_000_000.0) -> None:
        super().__init__(speedup=1.0, origin_s=start_s)
        self.time_s = start_s

    def now(self) -> float:
        return self.time_s

    def advance(self, duration_s: float) -> None:
        self.time_s += duration_s


class LineClient:
    """Talks to a simulator like a driver would, over a real TCP socket."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 2.0) -> None:
        self.socket = socket.create_connection((host, port), timeout=timeout_s)
        self._buffer = b""

    def send(self, line: str, terminator: str = "\n") -> None:
        self.socket.sendall((line + terminator).encode("ascii"))

    def read_line(self, timeout_s: float | None = None) -> str:
        if timeout_s is not None:
            self.socket.settimeout(timeout_s)
        while b"\n" not in self._buffer:
            chunk = self.socket.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("ascii")

    def query(self, line: str) -> str:
        self.send(line)
        return self.read_line()

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            chunk = self.socket.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buffer += chunk

    def read_block(self) -> bytes:
        """One IEEE 488.2 definite-length block's payload (and its line terminator)."""
        self._fill(2)
        assert self._buffer[:1] == b"#", self._buffer[:40]
        digits = int(self._buffer[1:2])
        self._fill(2 + digits)
        length = int(self._buffer[2:2 + digits]) if digits else 0
        end = 2 + digits + length
        self._fill(end + 1)
        payload, self._buffer = self._buffer[2 + digits:end], self._buffer[end + 1:]
        return payload

    def expect_no_reply(self, line: str, wait_s: float = 0.2) -> None:
        self.send(line)
        with pytest.raises(TimeoutError):
            self.read_line(timeout_s=wait_s)
        self.socket.settimeout(2.0)

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def connect() -> Iterator[Callable[[int], LineClient]]:
    """connect(port) → a client; every client is closed after the test."""
    clients: list[LineClient] = []

    def open_client(port: int) -> LineClient:
        client = LineClient(port)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def port_of(visa_address: str) -> int:
    """The port of `TCPIP0::host::port::SOCKET`."""
    return int(visa_address.split("::")[2])


@pytest.fixture
def port_from_address() -> Callable[[str], int]:
    return port_of
