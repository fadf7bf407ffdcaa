"""Driver for a LakeShore Model 336 temperature controller (the subset vegard uses).

Every reply is parsed strictly: a reply that is not the number the command
promises is an error naming the instrument, command and reply, never a NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

from ophyd_async.core import StrictEnum

from .replies import parse_float, parse_floats
from .visa_connection import InstrumentCommunicationError, InstrumentReplyError, VisaConnection


class HeaterRange(StrictEnum):
    """Heater ranges of a 336 output; each is a decade of full-scale power."""

    OFF = "off"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


_RANGE_CODES = {HeaterRange.OFF: 0, HeaterRange.LOW: 1, HeaterRange.MEDIUM: 2, HeaterRange.HIGH: 3}
_RANGES_BY_CODE = {code: heater_range for heater_range, code in _RANGE_CODES.items()}


@dataclass(frozen=True)
class RampSetting:
    enabled: bool
    rate_k_per_min: float


@dataclass(frozen=True)
class PidGains:
    proportional: float
    integral: float
    derivative: float


COMPOUND_QUERY_CHARS = 64
"""Longest line of `;`-separated queries sent at once: the 336 answers each query of a
message in order, one reply line (see `compound_queries`); 64 characters, well within its
input buffer, holds a stage's readings and a settle poll."""


class LakeShore336Driver:
    """Temperature readings, setpoint, ramp, heater range and PID of one output."""

    def __init__(self, connection: VisaConnection, *, output: int = 1,
                 control_input: str = "A", sample_input: str = "B") -> None:
        self.connection = connection
        connection.allow_compound_queries(COMPOUND_QUERY_CHARS)
        self.output = output
        self.control_input = control_input
        self.sample_input = sample_input

    @property
    def name(self) -> str:
        return self.connection.name

    async def connect(self) -> str:
        """Open the channel and check that a 336 answers; returns its identity."""
        return await self.connection.identify("336", "a LakeShore Model 336")

    async def _query_float(self, command: str) -> float:
        return await self.connection.query(
            command, lambda reply: parse_float(reply, instrument=self.name, command=command))

    async def temperature_k(self) -> float:
        return await self._query_float(f"KRDG? {self.control_input}")

    async def sample_temperature_k(self) -> float:
        return await self._query_float(f"KRDG? {self.sample_input}")

    async def setpoint_k(self) -> float:
        return await self._query_float(f"SETP? {self.output}")

    async def set_setpoint_k(self, value_k: float) -> None:
        # Not read back: while ramping, SETP? reports the moving setpoint, not the target.
        await self.connection.write(f"SETP {self.output},{value_k:.4f}")

    async def heater_output_percent(self) -> float:
        return await self._query_float(f"HTR? {self.output}")

    async def ramp(self) -> RampSetting:
        command = f"RAMP? {self.output}"
        enabled, rate = await self.connection.query(
            command, lambda reply: parse_floats(reply, 2, instrument=self.name, command=command))
        return RampSetting(enabled=bool(enabled), rate_k_per_min=rate)

    async def set_ramp(self, enabled: bool, rate_k_per_min: float) -> None:
        await self.connection.write(f"RAMP {self.output},{int(enabled)},{rate_k_per_min:.3f}")

    async def ramp_rate_k_per_min(self) -> float:
        return (await self.ramp()).rate_k_per_min

    async def set_ramp_rate_k_per_min(self, rate_k_per_min: float) -> None:
        """A rate of 0 switches ramping off (setpoint changes act at once)."""
        await self.set_ramp(rate_k_per_min > 0, rate_k_per_min)

    async def heater_range(self) -> HeaterRange:
        command = f"RANGE? {self.output}"

        def parse(reply: str) -> HeaterRange:
            try:
                return _RANGES_BY_CODE[int(reply)]
            except (ValueError, KeyError):
                raise InstrumentReplyError(
                    self.name, command, reply, "a range code 0-3") from None

        return await self.connection.query(command, parse)

    async def set_heater_range(self, heater_range: HeaterRange) -> None:
        code = _RANGE_CODES[HeaterRange(heater_range)]
        command = f"RANGE {self.output},{code}"
        await self.connection.write(command)
        taken = await self.heater_range()
        if taken is not HeaterRange(heater_range):  # refused or lost: must not go unseen
            raise InstrumentCommunicationError(
                self.name, command, f"not taken: RANGE? reads {_RANGE_CODES[taken]}")

    async def pid(self) -> PidGains:
        command = f"PID? {self.output}"
        p, i, d = await self.connection.query(
            command, lambda reply: parse_floats(reply, 3, instrument=self.name, command=command))
        return PidGains(p, i, d)

    async def set_pid(self, gains: PidGains) -> None:
        await self.connection.write(
            f"PID {self.output},{gains.proportional:g},{gains.integral:g},{gains.derivative:g}"
        )
