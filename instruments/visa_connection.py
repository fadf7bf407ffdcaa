"""A message-based instrument connection over pyvisa (pyvisa-py backend).

The same class talks to a real instrument at its own VISA address and to a
simulator on loopback (`TCPIP0::127.0.0.1::PORT::SOCKET`); it cannot tell them
apart. Exchanges are serialised (one command/reply in flight per instrument)
and run in a worker thread so that a slow instrument never blocks the
RunEngine's event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np
import pyvisa
import pyvisa.errors

from vegard.clock import WALL_CLOCK, InstrumentClock

from .errors import InstrumentCommunicationError, InstrumentReplyError
from .line_channel import LineChannel


def _read_definite_length_block(resource: pyvisa.resources.MessageBasedResource) -> bytes:
    """The payload of an IEEE 488.2 definite-length block (`#<n><length><payload>` and the
    line terminator), read with the terminator off: with it on, pyvisa ends a read at every
    0x0A byte of the payload, some hundred reads for one scan line of floats."""
    termination = resource.read_termination or ""
    with resource.read_termination_context(None):
        head = bytes(resource.read_bytes(2))
        if head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
            raise ValueError(f"{head!r} does not start a definite-length block")
        digits = bytes(resource.read_bytes(int(head[1:2])))
        if not digits.isdigit():
            raise ValueError(f"block length {digits!r} is not a number")
        length = int(digits)
        payload = bytes(resource.read_bytes(length)) if length else b""
        if termination:
            trailer = bytes(resource.read_bytes(len(termination)))
            if trailer != termination.encode("ascii"):
                raise ValueError(f"block not followed by the line terminator ({trailer!r})")
    return payload


@cache
def _resource_manager() -> pyvisa.ResourceManager:
    return pyvisa.ResourceManager("@py")


class VisaConnection(LineChannel):
    """One instrument's line-terminated text channel."""

    def __init__(
        self,
        address: str,
        *,
        name: str,
        timeout_s: float = 2.0,
        termination: str = "\n",
        clock: InstrumentClock = WALL_CLOCK,
    ) -> None:
        self.address = address
        self.name = name
        self.timeout_s = timeout_s
        self.clock = clock
        self.termination = termination
        self._resource: pyvisa.resources.MessageBasedResource | None = None
        self._lock = clock.new_lock()

    @property
    def is_open(self) -> bool:
        return self._resource is not None

    def open_blocking(self) -> None:
        with self._lock:
            if self._resource is not None:
                return
            self.connect_wire().connecting()
            try:
                resource = _resource_manager().open_resource(
                    self.address,
                    read_termination=self.termination,
                    write_termination=self.termination,
                    timeout=int(self.reply_deadline()[1] * 1000),
                )
            except (pyvisa.errors.Error, OSError, ValueError) as error:
                raise InstrumentCommunicationError(
                    self.name, f"open {self.address}", str(error) or type(error).__name__
                ) from error
            self._resource = resource  # type: ignore[assignment]
            self._was_opened = True

    def close(self) -> None:
        with self._lock:
            if self._resource is not None:
                try:
                    self._resource.close()
                except (pyvisa.errors.Error, OSError):
                    pass
                self._resource = None
                self.wire.closed()

    def query_blocking(self, command: str) -> str:
        return self._exchange(command, expect_reply=True)

    def query_block_blocking(
        self, command: str, dtype: np.dtype | str, *, acquisition_s: float = 0.0
    ) -> np.ndarray:
        """A query answered by an IEEE 488.2 definite-length block, as a 1-D array of `dtype`.

        `acquisition_s` (instrument time the command takes on the instrument, a scan line)
        lengthens the timeout of this one exchange, so only those wait long.
        """
        dtype = np.dtype(dtype)
        instrument_timeout_s, wall_timeout_s = self.reply_deadline(acquisition_s)
        with self._lock:
            if self._resource is None:
                raise InstrumentCommunicationError(self.name, command, "not connected")
            resource = self._resource
            wire = self.wire
            saved_timeout = resource.timeout
            resource.timeout = int(wall_timeout_s * 1000)
            try:
                with self._errors_named(command):
                    wire.request_sent()
                    resource.write(command)
                    self.await_reply(wire, command, instrument_timeout_s)
                    raw = _read_definite_length_block(resource)
            except ValueError as error:  # a reply that is not a definite-length block
                raise InstrumentReplyError(
                    self.name, command, str(error)[:80], "an IEEE 488.2 binary block"
                ) from error
            finally:
                resource.timeout = saved_timeout
        payload = np.frombuffer(raw, dtype=np.uint8)
        if payload.size % dtype.itemsize:
            raise InstrumentReplyError(
                self.name, command, f"<{payload.size} bytes>",
                f"a whole number of {dtype.name} values",
            )
        return payload.view(dtype)

    def write_blocking(self, command: str) -> None:
        self._exchange(command, expect_reply=False)

    def _exchange(self, command: str, *, expect_reply: bool) -> str:
        with self._lock:
            if self._resource is None:
                raise InstrumentCommunicationError(self.name, command, "not connected")
            wire = self.wire
            with self._errors_named(command):
                wire.request_sent()
                self._resource.write(command)
                if not expect_reply:
                    return ""
                self.await_reply(wire, command, self.reply_deadline()[0])
                return self._resource.read().strip()

    @contextmanager
    def _errors_named(self, command: str) -> Iterator[None]:
        """pyvisa and socket failures as `InstrumentCommunicationError` naming the command."""
        try:
            yield
        except pyvisa.errors.VisaIOError as error:
            timed_out = error.error_code == pyvisa.constants.StatusCode.error_timeout
            reason = "no reply (timeout)" if timed_out else str(error)
            raise InstrumentCommunicationError(self.name, command, reason) from error
        except (OSError, pyvisa.errors.Error) as error:
            reason = f"{error or type(error).__name__} (address {self.address})"
            raise InstrumentCommunicationError(self.name, command, reason) from error

    async def query_block(
        self, command: str, dtype: np.dtype | str, *, acquisition_s: float = 0.0,
        idempotent: bool = False,
    ) -> np.ndarray:
        """A binary-block query. Not retried unless the caller says it only reads (the bin
        frequencies, the last topography): most blocks are acquisitions (a scan line)."""

        def exchange() -> np.ndarray:
            self.reopen_if_dropped(command)
            return self.query_block_blocking(command, dtype, acquisition_s=acquisition_s)

        return await self.retrying(
            command, lambda: self.in_turn(exchange), idempotent=idempotent)
