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


class MotorStalledError(RuntimeError):
    """A move reported done (DMOV=1) with the axis short of its target."""

    def __init__(self, axis: str, target: float, readback: float, tolerance: float) -> None:
        self.axis = axis
        self.target = target
        self.readback = readback
        super().__init__(
            f"{axis}: stalled at {readback:.6g}, target {target:.6g} "
            f"(off by {abs(readback - target):.3g}, retry deadband {tolerance:.3g})")
