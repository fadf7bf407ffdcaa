"""Queries asked at the same moment leave as one compound line, for instruments that allow it.

A LakeShore 336 answers several `;`-separated queries of one message in one line, the
answers `;`-separated in the same order (Lake Shore's own Python driver splits such
replies). A device's `read()` asks its signals concurrently, so a stage's four readings
would otherwise be four exchanges, each with its own turnaround on the link: on the real
instrument 40 ms instead of 10, and in a dry run four round trips through the wire.

Only idempotent queries are combined: when the reply does not have one answer per query
(the instrument refused one of them, or line noise), each is asked again on its own, so
the refused one fails alone and the others still get their answers. Writes are never
combined, and a write seals the batch being gathered, so no query overtakes a write
issued before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import InstrumentCommunicationError

SEPARATOR = ";"


@dataclass
class QueryBatch:
    """Queries waiting for the channel's next turn, each with the future of its reply."""

    max_line_chars: int
    commands: list[str] = field(default_factory=list)
    replies: list[asyncio.Future[str]] = field(default_factory=list)
    sealed: bool = False

    def has_room_for(self, command: str) -> bool:
        if self.sealed:
            return False
        if not self.commands:
            return True
        line_chars = sum(len(c) + len(SEPARATOR) for c in self.commands) + len(command)
        return line_chars <= self.max_line_chars

    def add(self, command: str, loop: asyncio.AbstractEventLoop) -> asyncio.Future[str]:
        reply: asyncio.Future[str] = loop.create_future()
        self.commands.append(command)
        self.replies.append(reply)
        return reply

    @property
    def line(self) -> str:
        return SEPARATOR.join(self.commands)

    def resolve(self, outcomes: Sequence[str | BaseException]) -> None:
        for reply, outcome in zip(self.replies, outcomes, strict=True):
            if reply.done():  # its caller gave up waiting
                continue
            if isinstance(outcome, BaseException):
                reply.set_exception(outcome)
            else:
                reply.set_result(outcome)

    def cancel(self) -> None:
        for reply in self.replies:
            reply.cancel()


def ask_batch(
    commands: Sequence[str], query: Callable[[str], str], reset: Callable[[], None]
) -> list[str | InstrumentCommunicationError]:
    """The blocking exchange of one batch: one line, else each query on its own.

    A failure of the whole line (timeout, dropped connection) is every query's failure:
    raised, so the channel closes as after any failed exchange. When one query fails on
    its own, `reset` closes the connection before the next (`query` opens it again), so
    a late answer to the failed one cannot answer the next."""
    if len(commands) == 1:
        return [query(commands[0])]
    line = SEPARATOR.join(commands)
    answers = query(line).split(SEPARATOR)
    if len(answers) == len(commands):
        return [answer.strip() for answer in answers]
    outcomes: list[str | InstrumentCommunicationError] = []
    for command in commands:
        try:
            outcomes.append(query(command))
        except InstrumentCommunicationError as error:
            outcomes.append(error)
            reset()
    return outcomes

