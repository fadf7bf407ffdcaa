"""What every line-terminated instrument channel offers the drivers, whatever the transport.

Subclasses (`VisaConnection` over pyvisa, `SerialConnection` over pyserial)
implement the blocking exchange; the coroutines here run it in a worker thread
so a slow instrument never blocks the RunEngine's event loop.

Faults on the wire are handled here, once for every driver:

- every exchange has the channel's timeout, in instrument time: on a virtual clock the
  reply is awaited on the clock (`Wire.await_reply`), so a reply later than the timeout
  by the instrument's clock times out, however busy the machine is;
- a failed exchange closes the channel, and the next exchange opens it again
  (reconnect after a dropped connection; a reply arriving after a timeout can never
  answer a later query on a fresh connection);
- a query is retried, with back-off, only when the driver says it is idempotent
  (`idempotent=True`, the default for `query`): reading a temperature twice is harmless,
  reading the error queue or a scan line twice is not. `parse` runs inside the retry, so
  a garbled number is retried like a lost reply. Writes are never retried.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

from vegard.clock import NO_WIRE, WALL_CLOCK, InstrumentClock, Wire

from .compound_queries import QueryBatch, ask_batch
from .errors import InstrumentCommunicationError, InstrumentReplyError
from .turns import TurnQueue

LOG = logging.getLogger(__name__)

T = TypeVar("T")

QUERY_ATTEMPTS = 3
"""Tries of an idempotent query before its error is raised (one try plus two retries)."""
SAFE_STATE_ATTEMPTS = 8
"""Tries of a safe-state or settings sequence: more than a query gets, because leaving a
biased tip or a charging cell is worse than waiting a few more seconds."""
RETRY_BACKOFF_S = 0.05
"""Pause before the first retry (instrument time: on the RunEngine's loop, whose timers run
on the clock); doubled before each further one."""
LONGEST_BACKOFF_S = 1.0


class LineChannel:
    """Async open/query/write with reconnect and bounded retries, and the `*IDN?` check."""

    name: str
    address: str
    timeout_s: float
    clock: InstrumentClock = WALL_CLOCK
    """Instrument time: reply timeouts and worker threads go through it."""
    attempts: int = QUERY_ATTEMPTS
    retries_made: int = 0
    """Retries so far (for the fault matrix and the log)."""
    reconnects_made: int = 0
    _was_opened: bool = False
    """Set by a subclass's successful `open_blocking`: only such a channel reconnects."""

    def open_blocking(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def query_blocking(self, command: str) -> str:
        raise NotImplementedError

    def write_blocking(self, command: str) -> None:
        raise NotImplementedError

    _wire: Wire | None = None
    _turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnQueue] | None = None
    """One first-come-first-served queue of exchanges per event loop (`in_turn`)."""
    compound_query_chars: int = 0
    """Longest line of `;`-separated queries the instrument answers at once (0: one query
    per line); see `compound_queries`."""
    _batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, QueryBatch] | None = None
    """The batch of queries being gathered for the next turn, per event loop."""

    def allow_compound_queries(self, max_line_chars: int) -> None:
        """The instrument answers several queries of one line (a driver's statement)."""
        self.compound_query_chars = max_line_chars

    @property
    def wire(self) -> Wire:
        """What a virtual clock knows of this channel's wire (a no-op ledger elsewhere);
        looked up once per connection (`connect_wire`), not per exchange."""
        return self._wire if self._wire is not None else self.connect_wire()

    def connect_wire(self) -> Wire:
        """Look the wire's ledger up again (called as the channel opens: a restarted
        simulator serves a new ledger on its port)."""
        self._wire = self.clock.wire_for(self.address) or NO_WIRE
        return self._wire

    def reply_deadline(self, acquisition_s: float = 0.0) -> tuple[float, float]:
        """(instrument, wall) timeout of one exchange: the channel's timeout plus
        `acquisition_s`, the instrument time the command itself takes (a scan line)."""
        instrument_s = self.timeout_s + max(acquisition_s, 0.0)
        if self.clock.virtual:
            return instrument_s, self.clock.reply_timeout_wall_s(instrument_s)
        return instrument_s, self.timeout_s + self.clock.reply_timeout_wall_s(acquisition_s)

    def await_reply(self, wire: Wire, command: str, instrument_timeout_s: float) -> None:
        """Raise the channel's timeout error unless the reply comes in time (virtual clock)."""
        outcome = wire.await_reply(instrument_timeout_s)
        if outcome == "timeout":
            raise InstrumentCommunicationError(self.name, command, "no reply (timeout)")
        if outcome == "closed":
            raise InstrumentCommunicationError(
                self.name, command, f"connection closed by the instrument ({self.address})")

    async def in_turn(self, function: Callable[..., T], *args: object) -> T:
        """Run one blocking exchange in a worker, after the ones asked for before it.

        The order is the event loop's (first come, first served, `TurnQueue`), not the
        order in which worker threads happen to reach the connection's lock: readings of
        several signals at one instant then leave the wire in the same order on every
        run, and each costs its link time at the same instrument time."""
        loop = asyncio.get_running_loop()
        self._seal_batch(loop)  # no query gathered after this exchange overtakes it
        turns = self._turn_queue(loop)
        await turns.wait(turns.ask())
        try:
            return await self.clock.run_in_thread(function, *args)
        finally:
            turns.release()

    def _turn_queue(self, loop: asyncio.AbstractEventLoop) -> TurnQueue:
        if self._turns is None:
            self._turns = weakref.WeakKeyDictionary()
        turns = self._turns.get(loop)
        if turns is None:
            turns = self._turns[loop] = TurnQueue()
        return turns

    def _seal_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = None if self._batches is None else self._batches.pop(loop, None)
        if batch is not None:
            batch.sealed = True

    async def _in_batch(self, command: str) -> str:
        """Ask `command` with the other queries asked before the channel's next turn."""
        loop = asyncio.get_running_loop()
        if self._batches is None:
            self._batches = weakref.WeakKeyDictionary()
        batch = self._batches.get(loop)
        if batch is None or not batch.has_room_for(command):
            self._seal_batch(loop)
            batch = self._batches[loop] = QueryBatch(self.compound_query_chars)
            ticket = self._turn_queue(loop).ask()  # its place in line is taken now
            sender = loop.create_task(self._send_batch(batch, loop, ticket))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await batch.add(command, loop)

    async def _send_batch(self, batch: QueryBatch, loop: asyncio.AbstractEventLoop,
                          ticket: asyncio.Future[None]) -> None:
        """Wait for the turn, then ask the batch gathered by then as one line."""
        turns = self._turn_queue(loop)
        try:
            await turns.wait(ticket)
            try:
                if self._batches is not None and self._batches.get(loop) is batch:
                    del self._batches[loop]
                batch.sealed = True
                try:
                    outcomes = await self.clock.run_in_thread(
                        ask_batch, list(batch.commands), self._query_reconnecting, self.close)
                except Exception as error:  # each caller's retry closes and tries again
                    outcomes = [error] * len(batch.commands)
                batch.resolve(outcomes)
            finally:
                turns.release()
        except BaseException:
            batch.cancel()
            raise

    @property
    def _senders(self) -> set[asyncio.Task]:
        """Batch senders in flight (held, so none is collected before it is done)."""
        senders = self.__dict__.get("_batch_senders")
        if senders is None:
            senders = self.__dict__["_batch_senders"] = set()
        return senders

    async def open(self) -> None:
        await self.clock.run_in_thread(self.open_blocking)

    def reopen_if_dropped(self, command: str) -> None:
        """Open again a channel that an earlier failure closed (called before each exchange).

        A channel never opened stays closed: using it before `open` is a programming error.
        """
        if self.is_open or not self._was_opened:
            return
        LOG.warning("%s: reconnecting before %r", self.name, command)
        self.reconnects_made += 1
        self.open_blocking()

    async def exchange_failed(self, command: str, error: Exception) -> None:
        """Close after any failed exchange, so the next one starts on a fresh connection.

        In a worker: the connection's lock may be held by another exchange in flight, and
        the event loop must not block behind it."""
        LOG.warning("%s: %r failed (%s); closing the connection", self.name, command, error)
        await self.clock.run_in_thread(self.close)

    @overload
    async def query(self, command: str, parse: None = None, *, idempotent: bool = True) -> str:
        ...

    @overload
    async def query(
        self, command: str, parse: Callable[[str], T], *, idempotent: bool = True
    ) -> T: ...

    async def query(self, command, parse=None, *, idempotent=True):
        """Send `command`, return its reply (through `parse`, which raises on a bad reply).

        Idempotent queries are tried `attempts` times with doubling back-off; the last
        error is raised as it came (it names instrument, command and reason).
        """

        async def once():
            if idempotent and self.compound_query_chars:
                reply = await self._in_batch(command)
            else:
                reply = await self.in_turn(self._query_reconnecting, command)
            return reply if parse is None else parse(reply)

        return await self.retrying(command, once, idempotent=idempotent)

    async def retrying(
        self, command: str, exchange: Callable[[], Awaitable[T]], *, idempotent: bool
    ) -> T:
        """Run one exchange; if `idempotent`, again after a failure (closed, backed off)."""
        return await self._repeated(
            command, exchange, self.attempts if idempotent else 1,
            on_failure=lambda error: self.exchange_failed(command, error))

    async def _repeated(
        self, what: str, call: Callable[[], Awaitable[T]], attempts: int,
        on_failure: Callable[[Exception], Awaitable[None]] | None = None,
    ) -> T:
        """`call()` up to `attempts` times while it raises `InstrumentCommunicationError`,
        backing off (doubling, at most `LONGEST_BACKOFF_S`) before each further try."""
        for attempt in range(attempts):
            try:
                return await call()
            except InstrumentCommunicationError as error:
                if on_failure is not None:
                    await on_failure(error)
                if attempt + 1 >= attempts:
                    raise
                LOG.warning("%s: %s failed (%s); trying again", self.name, what, error)
                self.retries_made += 1
                await asyncio.sleep(min(RETRY_BACKOFF_S * 2**attempt, LONGEST_BACKOFF_S))
        raise AssertionError("unreachable")

    async def write(self, command: str) -> None:
        try:
            await self.in_turn(self._write_reconnecting, command)
        except InstrumentCommunicationError as error:
            await self.exchange_failed(command, error)
            raise

    def _query_reconnecting(self, command: str) -> str:
        self.reopen_if_dropped(command)
        return self.query_blocking(command)

    def _write_reconnecting(self, command: str) -> None:
        self.reopen_if_dropped(command)
        self.write_blocking(command)

    async def until_confirmed(self, what: str, factory: Callable[[], Awaitable[T]]) -> T:
        """Run a sequence of absolute settings and their read-back until it succeeds.

        Such a sequence is idempotent by construction ("output off", "0 V", "raster 16 × 16
        at 0, 0"), so unlike single writes it is repeated as a whole: a dropped connection
        or a lost reply must not leave a biased tip, a charging cell or a wrong raster.
        """
        return await self._repeated(what, factory, SAFE_STATE_ATTEMPTS)

    async def identify(self, must_contain: str, instrument_kind: str) -> str:
        """Open the channel and check `*IDN?` names the expected instrument."""
        await self.open()
        identity = await self.query("*IDN?")
        if must_contain not in identity:
            raise InstrumentReplyError(self.name, "*IDN?", identity, instrument_kind)
        return identity
