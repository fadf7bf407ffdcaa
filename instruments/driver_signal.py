"""ophyd-async signals whose values come from driver calls (a query per read).

A text-protocol instrument has no monitors, so these signals read through to
the wire every time and are timestamped on the instrument clock: in a dry run
the readings carry the instrument time at which they were taken, exactly as
they would at the real instrument.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic

from bluesky.protocols import Reading
from event_model import DataKey
from ophyd_async.core import SignalBackend, SignalDatatypeT, SignalR, SignalRW, make_datakey

from vegard._compat import signal_metadata
from vegard.clock import WALL_CLOCK, InstrumentClock

Connect = Callable[[float], Awaitable[object]]


class ConnectOnce:
    """A `Connect` that opens its driver once, whichever of a device's signals connects
    first (ophyd-async connects them all at once)."""

    def __init__(self, open_driver: Callable[[], Awaitable[object]]) -> None:
        self._open_driver = open_driver
        self._lock = asyncio.Lock()
        self.connected = False

    async def __call__(self, timeout: float) -> None:
        async with self._lock:
            if not self.connected:
                await asyncio.wait_for(self._open_driver(), timeout)
                self.connected = True


class DriverSignalBackend(SignalBackend[SignalDatatypeT], Generic[SignalDatatypeT]):
    """Reads and writes one quantity through a driver's coroutines."""

    def __init__(
        self,
        datatype: type[SignalDatatypeT],
        *,
        read: Callable[[], Awaitable[SignalDatatypeT]],
        write: Callable[[SignalDatatypeT], Awaitable[None]] | None,
        connect: Connect,
        source: str,
        units: str | None,
        clock: InstrumentClock,
    ) -> None:
        self._read = read
        self._write = write
        self._connect = connect
        self._source = source
        self._clock = clock
        self._metadata = signal_metadata(datatype, units)
        self._setpoint: SignalDatatypeT | None = None
        self._last: Reading[SignalDatatypeT] | None = None
        super().__init__(datatype)

    def source(self, name: str, read: bool) -> str:
        return self._source

    async def connect(self, timeout: float) -> None:
        await self._connect(timeout)

    async def put(self, value: SignalDatatypeT | None) -> None:
        if self._write is None:
            raise PermissionError(f"{self._source} is read-only")
        if value is None:
            raise ValueError(f"{self._source}: a value is required")
        self._setpoint = value
        await self._write(value)

    async def get_reading(self) -> Reading[SignalDatatypeT]:
        value = await self._read()
        self._last = Reading(value=value, timestamp=self._clock.now(), alarm_severity=0)
        return self._last

    async def get_value(self) -> SignalDatatypeT:
        return (await self.get_reading())["value"]

    async def get_setpoint(self) -> SignalDatatypeT:
        if self._setpoint is None:
            return await self.get_value()
        return self._setpoint

    async def get_datakey(self, source: str) -> DataKey:
        value = self._last["value"] if self._last else await self.get_value()
        return make_datakey(self.datatype or float, value, source, self._metadata)

    def set_callback(self, callback) -> None:
        if callback is not None:
            raise NotImplementedError(
                f"{self._source} has no monitor; subscribe to its device instead"
            )


def driver_signal_r(
    datatype: type[SignalDatatypeT],
    read: Callable[[], Awaitable[SignalDatatypeT]],
    *,
    connect: Connect,
    source: str,
    units: str | None = None,
    clock: InstrumentClock = WALL_CLOCK,
) -> SignalR[SignalDatatypeT]:
    backend = DriverSignalBackend(
        datatype, read=read, write=None, connect=connect, source=source, units=units, clock=clock
    )
    return SignalR(backend)


def driver_signal_rw(
    datatype: type[SignalDatatypeT],
    read: Callable[[], Awaitable[SignalDatatypeT]],
    write: Callable[[SignalDatatypeT], Awaitable[None]],
    *,
    connect: Connect,
    source: str,
    units: str | None = None,
    clock: InstrumentClock = WALL_CLOCK,
) -> SignalRW[SignalDatatypeT]:
    backend = DriverSignalBackend(
        datatype, read=read, write=write, connect=connect, source=source, units=units, clock=clock
    )
    return SignalRW(backend)
