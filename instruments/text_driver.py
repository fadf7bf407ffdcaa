"""What the drivers of text-protocol instruments share: the channel, its name, strict numbers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InstrumentReplyError
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

    async def _flag(self, command: str) -> bool:
        """A 0/1 reply; parsed inside the query, so a garbled one is asked again."""
        return await self.connection.query(command, lambda reply: self._parse_flag(reply, command))

    def _parse_flag(self, reply: str, command: str) -> bool:
        (value,) = parse_ints(reply, 1, instrument=self.name, command=command)
        if value not in (0, 1):
            raise InstrumentReplyError(self.name, command, reply, "0 or 1")
        return bool(value)

    def _shaped(self, values: np.ndarray, shape: Sequence[int], command: str) -> np.ndarray:
        """A binary block as the array `shape` promises, every value finite."""
        expected = int(np.prod(shape))
        if values.size != expected:
            raise InstrumentReplyError(
                self.name, command, f"<block of {values.size} values>",
                f"{expected} values {tuple(shape)}")
        return self._finite(values.reshape(tuple(shape)), command)

    def _finite(self, values: np.ndarray, command: str) -> np.ndarray:
        if not np.isfinite(values).all():
            raise InstrumentReplyError(self.name, command, "<block with NaN/inf>", "finite values")
        return values
