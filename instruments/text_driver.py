"""What the drivers of text-protocol instruments share: the channel, its name, strict numbers."""

from __future__ import annotations

from .line_channel import LineChannel
from .replies import parse_float, parse_floats, parse_ints


class TextDriver:
    """A driver over one line channel; replies that are not the numbers promised raise
    `InstrumentReplyError` naming the instrument and the command."""

    def __init__(self, connection: LineChannel) -> None:
        self.connection = connection

    @property
    def name(self) -> str:
        return self.connection.name

    async def _float(self, command: str) -> float:
        return await self.connection.query(
            command, lambda reply: parse_float(reply, instrument=self.name, command=command))

    async def _floats(self, command: str, count: int) -> list[float]:
        return await self.connection.query(
            command, lambda reply: parse_floats(reply, count, instrument=self.name, command=command)
        )

    async def _ints(self, command: str, count: int) -> list[int]:
        return await self.connection.query(
            command, lambda reply: parse_ints(reply, count, instrument=self.name, command=command))
