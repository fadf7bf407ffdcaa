"""A loopback TCP server for SCPI-style text instruments, and the emulator base class.

Simulating at the wire means the drivers talk to these servers exactly as they
would to the real instrument (pyvisa `TCPIP0::host::port::SOCKET`), so their
parsers, terminators, error-queue handling and timeouts are exercised too.

Wire conventions (IEEE 488.2 style, as the instruments we emulate use them):
commands end in `\\n` (`\\r\\n` tolerated); one line may carry several
commands separated by `;`; a query (header ending in `?`) produces a reply,
and the replies to all queries of one line are sent as one line joined by
`;`, terminated by `\\n`. Bulk data (a scan line of spectra) is sent as an IEEE 488.2
definite-length binary block (`#<n><length><bytes>`, see `binary_block`) followed by the
same terminator. A failing command puts an error on the queue
(read with `SYST:ERR?`) and sends no reply, so a client waiting for one times
out - as with a real instrument.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import socket
import socketserver
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

from vegard.clock import NO_WIRE, InstrumentClock, Wire

from .link_costs import FREE_LINK, LinkCost, LinkCosts
from .wire_faults import WireFaults, garbled

LOG = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"
ERROR_QUEUE_LENGTH = 32
COMMAND_LOG_LENGTH = 100_000
"""Most recent commands kept per instrument (a 15 h dry run polling every 2 s fits easily)."""
MAX_LINE_BYTES = 65536

UNDEFINED_HEADER = -113
MISSING_PARAMETER = -109
DATA_TYPE_ERROR = -104
EXECUTION_ERROR = -200
DEVICE_SPECIFIC_ERROR = -300
DATA_OUT_OF_RANGE = -222
ILLEGAL_PARAMETER_VALUE = -224
QUEUE_OVERFLOW = -350

SCPI_ERROR_MESSAGES = {
    0: "No error",
    DATA_TYPE_ERROR: "Data type error",
    EXECUTION_ERROR: "Execution error",
    DEVICE_SPECIFIC_ERROR: "Device-specific error",
    MISSING_PARAMETER: "Missing parameter",
    UNDEFINED_HEADER: "Undefined header",
    DATA_OUT_OF_RANGE: "Data out of range",
    ILLEGAL_PARAMETER_VALUE: "Illegal parameter value",
    QUEUE_OVERFLOW: "Queue overflow",
}

Reply = str | bytes
Handler = Callable[[list[str]], Reply | None]
"""Takes the comma-separated arguments (stripped); a query handler returns the reply
(text, or `bytes` already framed by `binary_block`)."""


def binary_block(payload: bytes) -> bytes:
    """An IEEE 488.2 definite-length block: `#`, digit count, byte count, bytes."""
    length = str(len(payload))
    if len(length) > 9:
        raise ValueError("binary block longer than 999 999 999 bytes")
    return b"#" + str(len(length)).encode() + length.encode() + payload


class ScpiError(Exception):
    """Raised by a command handler to put a SCPI error on the instrument's queue."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code},{SCPI_ERROR_MESSAGES.get(code, 'Error')}: {detail}")

    def queue_entry(self) -> str:
        message = SCPI_ERROR_MESSAGES.get(self.code, "Error")
        if self.detail:
            message = f"{message};{self.detail}"
        return f'{self.code},"{message.replace(chr(34), chr(39))}"'


def require_arguments(arguments: list[str], count: int) -> None:
    """Refuse a command with fewer than `count` (non-empty) arguments."""
    if len(arguments) < count or any(not a for a in arguments[:count]):
        raise ScpiError(MISSING_PARAMETER, f"expected {count} argument(s)")


def parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ScpiError(DATA_TYPE_ERROR, f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ScpiError(DATA_TYPE_ERROR, f"not a finite number: {text!r}")
    return value


def parse_int(text: str) -> int:
    value = parse_float(text)
    if value != int(value):
        raise ScpiError(DATA_TYPE_ERROR, f"not an integer: {text!r}")
    return int(value)


def parse_floats(arguments: list[str], count: int) -> list[float]:
    """The first `count` arguments as finite numbers (refused if missing)."""
    require_arguments(arguments, count)
    return [parse_float(text) for text in arguments[:count]]


def parse_ints(arguments: list[str], count: int) -> list[int]:
    require_arguments(arguments, count)
    return [parse_int(text) for text in arguments[:count]]


def parse_switch(arguments: list[str]) -> bool:
    """ON/OFF/1/0, as SCPI boolean parameters are spelled."""
    require_arguments(arguments, 1)
    text = arguments[0].upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"expected ON/OFF/1/0, got {arguments[0]!r}")


@dataclass(frozen=True)
class LoggedCommand:
    """One command as the instrument received it, at instrument time."""

    instrument_time_s: float
    command: str


class Instrument:
    """An instrument emulator: a command table, an error queue and a command log.

    Subclasses register handlers by header (`register("SETP", ...)`,
    `register("SETP?", ...)`); headers are matched case-insensitively. The
    common commands `*IDN?`, `*RST`, `*CLS`, `*OPC?` and `SYST:ERR?` are built
    in. Commands are handled one at a time (a lock), because every connection
    shares the one emulated instrument.
    """

    identity = "VEGARD,SIMULATED-INSTRUMENT,0,0.1"
    LINK: LinkCost | None = None
    """The real link's cost (declared by each emulator; None: free)."""

    def __init__(self, clock: InstrumentClock) -> None:
        self.clock = clock
        self.link: LinkCosts = FREE_LINK
        """Set by the lab from the instrument's link parameters."""
        self.wire_faults: WireFaults | None = None
        """Set by the lab when the profile schedules faults on this instrument's wire."""
        self._lock = threading.RLock()
        self._handlers: dict[str, Handler] = {}
        self._errors: deque[str] = deque()
        self._log: deque[LoggedCommand] = deque(maxlen=COMMAND_LOG_LENGTH)
        self.register("*IDN?", lambda _: self.identity)
        self.register("*RST", lambda _: self.reset())
        self.register("*CLS", lambda _: self.clear_status())
        self.register("*OPC?", lambda _: "1")
        for header in ("SYST:ERR?", "SYSTEM:ERROR?", "SYST:ERR:NEXT?", "SYSTEM:ERROR:NEXT?"):
            self.register(header, lambda _: self.pop_error())

    def register(self, header: str, handler: Handler) -> None:
        self._handlers[header.upper()] = handler

    def reset(self) -> None:
        """`*RST`: subclasses put the emulated instrument back to its power-on settings."""

    def clear_status(self) -> None:
        """`*CLS`: empty the error queue."""
        with self._lock:
            self._errors.clear()

    def push_error(self, error: ScpiError) -> None:
        with self._lock:
            if len(self._errors) >= ERROR_QUEUE_LENGTH:
                self._errors[-1] = ScpiError(QUEUE_OVERFLOW).queue_entry()
            else:
                self._errors.append(error.queue_entry())

    def pop_error(self) -> str:
        with self._lock:
            return self._errors.popleft() if self._errors else '0,"No error"'

    def errors(self) -> list[str]:
        """The error queue without emptying it (for tests and ground truth)."""
        with self._lock:
            return list(self._errors)

    def command_log(self) -> list[LoggedCommand]:
        with self._lock:
            return list(self._log)

    def clear_command_log(self) -> None:
        with self._lock:
            self._log.clear()

    def handle_line(self, line: str) -> bytes | None:
        """Run every `;`-separated command of one line; the reply line, if any query answered."""
        replies: list[bytes] = []
        with self._lock:
            for command in line.strip().split(";"):
                command = command.strip()
                if not command:
                    continue
                self._log.append(LoggedCommand(self.clock.now(), command))
                reply = self.execute(command)
                if reply is not None:
                    replies.append(
                        reply if isinstance(reply, bytes)
                        else reply.encode("ascii", errors="replace")
                    )
        return b";".join(replies) if replies else None

    def execute(self, command: str) -> Reply | None:
        """Run one command; errors go to the queue and give no reply."""
        header, _, rest = re.sub(r"\s+", " ", command.strip()).partition(" ")
        header = header.upper()
        arguments = [argument.strip() for argument in rest.split(",")] if rest.strip() else []
        with self._lock:
            handler = self._handlers.get(header)
            try:
                if handler is None:
                    raise ScpiError(UNDEFINED_HEADER, header)
                reply = handler(arguments)
            except ScpiError as error:
                self.push_error(error)
                return None
            except Exception as error:  # an emulator bug must not kill the connection
                LOG.exception("%s failed on %r", type(self).__name__, command)
                self.push_error(ScpiError(EXECUTION_ERROR, type(error).__name__))
                return None
        return reply if header.endswith("?") else None


class _ConnectionHandler(socketserver.BaseRequestHandler):
    server: _ThreadingServer

    def handle(self) -> None:
        connection: socket.socket = self.request
        if not self.server.track(connection):
            return
        clock = self.server.instrument.clock
        wire = self.server.wire
        generation = wire.accepted()
        # On a virtual clock this thread is a participant: busy from reading a line until
        # it blocks on the socket again, except while it sleeps on the clock.
        participant = clock.participant(f"scpi:{self.server.server_address[1]}") \
            if clock.virtual else None  # fmt: skip
        try:
            with clock.acting_as(participant) if participant else _no_participant():
                self._serve(connection, wire, generation)
        finally:
            if participant is not None:
                clock.close(participant)
            self.server.untrack(connection)

    def _serve(self, connection: socket.socket, wire: Wire, generation: int) -> None:
        instrument = self.server.instrument
        buffer = b""
        _no_delays(connection)
        while True:
            wire.server_waiting(generation)
            try:
                chunk = connection.recv(4096)
                _quick_ack(connection)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            if len(buffer) > MAX_LINE_BYTES:
                LOG.warning("dropping an over-long line from %s", self.client_address)
                buffer = b""
            for number, raw in enumerate(lines):
                wire.claim(generation)
                line = raw.decode("ascii", errors="replace").rstrip("\r")
                fault = self._fault_for(line)
                if fault == "drop":
                    for _ in lines[number + 1:]:  # read, never answered
                        wire.claim(generation)
                    wire.announce_close(generation)
                    return  # the server closes the connection
                if fault in ("timeout", "error"):
                    if fault == "error":
                        instrument.push_error(ScpiError(DEVICE_SPECIFIC_ERROR, "injected fault"))
                    continue
                reply = instrument.handle_line(line)
                reply_bytes = 0 if reply is None else len(reply) + 1
                cost_s = instrument.link.line_s(len(raw) + 1, reply_bytes)
                if cost_s > 0.0:
                    instrument.clock.sleep_blocking(cost_s)
                if reply is None:
                    continue
                if fault == "malformed":
                    reply = garbled(reply)
                elif fault == "slow":
                    assert instrument.wire_faults is not None
                    instrument.clock.sleep_blocking(instrument.wire_faults.slow_reply_s)
                wire.announce_reply(generation)
                try:
                    connection.sendall(reply + b"\n")
                except OSError:
                    return

    def _fault_for(self, line: str) -> str | None:
        faults = self.server.instrument.wire_faults
        return None if faults is None else faults.next_fault(line)


@contextlib.contextmanager
def _no_participant() -> Iterator[None]:
    yield


def _no_delays(connection: socket.socket) -> None:
    """Replies go out at once (no Nagle): an instrument's reply is one short segment."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _quick_ack(connection: socket.socket) -> None:
    """Acknowledge each request at once. A client that writes a command and then a query
    without waiting (Nagle's algorithm on its side) would otherwise wait for this side's
    delayed ACK, 40 ms on Linux, per such pair. Linux only; re-armed after every read."""
    quick_ack = getattr(socket, "TCP_QUICKACK", None)
    if quick_ack is not None:
        with contextlib.suppress(OSError):
            connection.setsockopt(socket.IPPROTO_TCP, quick_ack, 1)


class _ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], instrument: Instrument) -> None:
        self.instrument = instrument
        self.wire: Wire = NO_WIRE
        """The message ledger a virtual clock keeps of this server's wire."""
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._closing = False
        super().__init__(address, _ConnectionHandler)

    def track(self, connection: socket.socket) -> bool:
        """Remember an open connection; False if the server is already closing."""
        with self._connections_lock:
            if self._closing:
                return False
            self._connections.add(connection)
            return True

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            self._closing = True
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()


class ScpiServer:
    """Serves one `Instrument` on TCP from a background thread.

    Binds to 127.0.0.1 unless told otherwise: a simulator on a network interface
    could be mistaken for (or by) a real instrument, so another host needs
    `allow_remote=True` and is logged as a warning. Port 0 picks a free port.
    """

    def __init__(
        self,
        instrument: Instrument,
        host: str = LOOPBACK_HOST,
        port: int = 0,
        *,
        allow_remote: bool = False,
    ) -> None:
        if not is_loopback(host):
            if not allow_remote:
                raise ValueError(
                    f"simulator server host {host!r} is not loopback; pass allow_remote=True"
                )
            LOG.warning("simulator %s serving on non-loopback host %s", instrument.identity, host)
        self.instrument = instrument
        self.host = host
        self._requested_port = port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.server_address[1])

    @property
    def visa_address(self) -> str:
        return f"TCPIP0::{self.host}::{self.port}::SOCKET"

    @property
    def serial_url(self) -> str:
        """The pyserial URL of this server, for instruments that sit on a serial line."""
        return f"socket://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> ScpiServer:
        if self._server is not None:
            return self
        self._server = _ThreadingServer((self.host, self._requested_port), self.instrument)
        self._server.wire = self.instrument.clock.serve_wire(self.port) or NO_WIRE
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"scpi-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every client connection, release the port."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        stop_serving = getattr(self.instrument.clock, "stop_serving_wire", None)
        if stop_serving is not None:
            stop_serving(int(server.server_address[1]))
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=2.0)

    def __enter__(self) -> ScpiServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (simulators must not face a network)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
