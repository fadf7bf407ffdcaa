"""Errors of instrument exchanges: they name the instrument, the command and what went wrong."""

from __future__ import annotations


class InstrumentCommunicationError(RuntimeError):
    """An exchange with an instrument failed; the message says which and why."""

    def __init__(self, instrument: str, command: str, reason: str) -> None:
        self.instrument = instrument
        self.command = command
        self.reason = reason
        super().__init__(f"{instrument}: {command!r} failed: {reason}")


class InstrumentReplyError(InstrumentCommunicationError):
    """An instrument answered, but not with what the command promises."""

    def __init__(self, instrument: str, command: str, reply: str, expected: str) -> None:
        self.reply = reply
        super().__init__(instrument, command, f"reply {reply!r} is not {expected}")
