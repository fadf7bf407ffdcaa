"""A channel's turns: first come, first served, counted from the moment of asking.

An `asyncio.Lock` orders its waiters by when they first await it. A batch of queries
is sent by a task that starts after the queries were asked, so a write asked between
them would reach a free lock first and overtake them. Here a place in line is taken
when the exchange is asked for, and kept while its coroutine or task gets going.
"""

from __future__ import annotations

import asyncio
from collections import deque


class TurnQueue:
    """One exchange at a time on one event loop, in the order they were asked for."""

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._busy = False

    def ask(self) -> asyncio.Future[None]:
        """A place in line, now; await `wait(ticket)` for the turn."""
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._busy and not self._waiting:
            self._busy = True
            ticket.set_result(None)
        else:
            self._waiting.append(ticket)
        return ticket

    async def wait(self, ticket: asyncio.Future[None]) -> None:
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():  # granted as it was cancelled
                self.release()
            else:
                ticket.cancel()
            raise

    def release(self) -> None:
        """The turn is over: the next in line that still waits gets it."""
        while self._waiting:
            ticket = self._waiting.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return
        self._busy = False
