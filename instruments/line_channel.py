"""What every line-terminated instrument channel offers the drivers, whatever the transport.

Subclasses (`VisaConnection` over pyvisa, `SerialConnection` over pyserial)
implement the blocking exchange; the coroutines here run it in a worker thread
so a slow instrument never blocks the RunEngine's event loop.
"""

from __future__ import annotations

import asyncio

from .errors import InstrumentReplyError


class LineChannel:
    """Async open/query/write and the `*IDN?` check on top of blocking exchanges."""

    name: str

    def open_blocking(self) -> None:
        raise NotImplementedError

    def query_blocking(self, command: str) -> str:
        raise NotImplementedError

    def write_blocking(self, command: str) -> None:
        raise NotImplementedError

    async def open(self) -> None:
        await asyncio.to_thread(self.open_blocking)

    async def query(self, command: str) -> str:
        return await asyncio.to_thread(self.query_blocking, command)

    async def write(self, command: str) -> None:
        await asyncio.to_thread(self.write_blocking, command)

    async def identify(self, must_contain: str, instrument_kind: str) -> str:
        """Open the channel and check `*IDN?` names the expected instrument."""
        await self.open()
        identity = await self.query("*IDN?")
        if must_contain not in identity:
            raise InstrumentReplyError(self.name, "*IDN?", identity, instrument_kind)
        return identity
