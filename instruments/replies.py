"""Strict parsing of instrument replies.

A reply that is not what the command promises raises `InstrumentReplyError`
naming the instrument, command and reply; it never becomes a silent NaN.
"""

from __future__ import annotations

import math

from .errors import InstrumentReplyError


def parse_float(reply: str, *, instrument: str, command: str) -> float:
    try:
        value = float(reply)
    except ValueError:
        raise InstrumentReplyError(instrument, command, reply, "a number") from None
    if not math.isfinite(value):
        raise InstrumentReplyError(instrument, command, reply, "a finite number")
    return value


def parse_floats(reply: str, count: int, *, instrument: str, command: str) -> list[float]:
    fields = reply.split(",")
    if len(fields) != count:
        raise InstrumentReplyError(instrument, command, reply, f"{count} comma-separated numbers")
    return [parse_float(f, instrument=instrument, command=command) for f in fields]


def parse_ints(reply: str, count: int, *, instrument: str, command: str) -> list[int]:
    values = parse_floats(reply, count, instrument=instrument, command=command)
    if any(value != int(value) for value in values):
        raise InstrumentReplyError(instrument, command, reply, f"{count} integer(s)")
    return [int(value) for value in values]


def read_back_matches(read: tuple, sent: tuple) -> bool:
    """Settings read back equal those sent, as far as the commands' formats carry them
    (positions to 0.1 pm, `%.6g` for the rest), so rounding never reads as a lost write."""
    return len(read) == len(sent) and all(
        abs(float(a) - float(b)) <= 1e-4 + 1e-5 * abs(float(b))
        for a, b in zip(read, sent, strict=True)
    )
