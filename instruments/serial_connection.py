"""A line-terminated text connection over pyserial, for instruments on a serial port.

Many potentiostats and small controllers speak ASCII over RS-232 or a USB serial adapter
rather than VISA. pyserial's `serial_for_url` opens both a real port (`/dev/ttyUSB0`,
`COM3`) and `socket://127.0.0.1:PORT`, which is how a dry run reaches the emulator served
on loopback by `ScpiServer`: the driver cannot tell the two apart.

The interface mirrors `VisaConnection` (`open`, `close`, `query`, `write`, their blocking
forms, `identify`) and fails the same way: `InstrumentCommunicationError` naming the
instrument, the command and the reason. Exchanges are serialised by a lock and run in a
worker thread so a slow instrument never blocks the RunEngine's event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import serial

from vegard.clock import WALL_CLOCK, InstrumentClock

from .errors import InstrumentCommunicationError, InstrumentReplyError
from .line_channel import LineChannel

TIMEOUT_REASON = "no reply (timeout)"


class SerialConnection(LineChannel):
    """One instrument's line-terminated text channel on a serial port or a pyserial URL."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        timeout_s: float = 2.0,
        baudrate: int = 9600,
        termination: str = "\n",
        clock: InstrumentClock = WALL_CLOCK,
    ) -> None:
        if not termination:
            raise ValueError("a serial text connection needs a line termination")
        self.url = url
        self.clock = clock
        self.name = name
        self.timeout_s = timeout_s
        self.baudrate = baudrate
        self.termination = termination
        self._port: serial.SerialBase | None = None
        self._lock = clock.new_lock()

    @property
    def address(self) -> str:
        """The URL, under the name `VisaConnection` uses (for signal sources and messages)."""
        return self.url

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open_blocking(self) -> None:
        with self._lock:
            if self._port is not None:
                return
            self.connect_wire().connecting()
            wall_timeout_s = self.reply_deadline()[1]
            try:
                self._port = serial.serial_for_url(
                    self.url, baudrate=self.baudrate, timeout=wall_timeout_s,
                    write_timeout=wall_timeout_s,
                )
                self._was_opened = True
            except (serial.SerialException, OSError, ValueError) as error:
                raise InstrumentCommunicationError(
                    self.name, f"open {self.url}", str(error) or type(error).__name__
                ) from error

    def close(self) -> None:
        with self._lock:
            if self._port is not None:
                try:
                    self._port.close()
                except (serial.SerialException, OSError):
                    pass
                self._port = None
                self.wire.closed()

    def query_blocking(self, command: str) -> str:
        return self._exchange(command, expect_reply=True)

    def write_blocking(self, command: str) -> None:
        self._exchange(command, expect_reply=False)

    def _exchange(self, command: str, *, expect_reply: bool) -> str:
        with self._lock:
            port = self._port
            if port is None:
                raise InstrumentCommunicationError(self.name, command, "not connected")
            terminator = self.termination.encode("ascii")
            wire = self.wire
            with self._errors_named(command):
                if expect_reply:
                    # a reply that arrived after an earlier timeout must not answer this query
                    port.reset_input_buffer()
                wire.request_sent()
                port.write(command.encode("ascii") + terminator)
                port.flush()
                if not expect_reply:
                    return ""
                self.await_reply(wire, command, self.reply_deadline()[0])
                raw = port.read_until(terminator)
            if not raw.endswith(terminator):
                reason = TIMEOUT_REASON if not raw else f"{TIMEOUT_REASON}; partial {raw[:40]!r}"
                raise InstrumentCommunicationError(self.name, command, reason)
            try:
                return raw[: -len(terminator)].decode("ascii").strip()
            except UnicodeDecodeError as error:
                raise InstrumentReplyError(
                    self.name, command, repr(raw[:40]), "ASCII text") from error

    @contextmanager
    def _errors_named(self, command: str) -> Iterator[None]:
        """pyserial and socket failures as `InstrumentCommunicationError` naming the command."""
        try:
            yield
        except serial.SerialTimeoutException as error:
            raise InstrumentCommunicationError(
                self.name, command, "write timed out") from error
        except (serial.SerialException, OSError) as error:
            reason = f"{error or type(error).__name__} (port {self.url})"
            raise InstrumentCommunicationError(self.name, command, reason) from error



