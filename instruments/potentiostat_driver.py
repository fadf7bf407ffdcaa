"""Driver for a one-channel potentiostat (vegard's SCPI-shaped command set; see the emulator).

Setpoints are checked against the instrument's ranges before anything is sent, and every
setting is followed by `SYST:ERR?`, so a refused command is an error here rather than a
charge that silently never started. Every reply is parsed strictly: one that is not what
the command promises raises `InstrumentReplyError` naming the instrument, command and reply.
"""

from __future__ import annotations

from dataclasses import dataclass

from ophyd_async.core import StrictEnum

from .errors import InstrumentCommunicationError, InstrumentReplyError
from .line_channel import LineChannel
from .replies import parse_floats
from .text_driver import TextDriver

CURRENT_RANGE_A = (-0.1, 0.1)
POTENTIAL_RANGE_V = (0.0, 5.5)


class CellMode(StrictEnum):
    """What the potentiostat does to the cell."""

    REST = "rest"
    GALVANOSTATIC = "galvanostatic"
    POTENTIOSTATIC = "potentiostatic"


_MODE_TOKENS = {CellMode.REST: "REST", CellMode.GALVANOSTATIC: "GALV",
                CellMode.POTENTIOSTATIC: "POT"}
_MODES_BY_TOKEN = {token: mode for mode, token in _MODE_TOKENS.items()}
_MODES_BY_CODE = {0: CellMode.REST, 1: CellMode.GALVANOSTATIC, 2: CellMode.POTENTIOSTATIC}
_READ_ALL = "MEAS:ALL?;STAT:LIM?"


class SettingOutOfRangeError(ValueError):
    """A setpoint outside the potentiostat's range; refused before it is sent."""


TextConnection = LineChannel
"""`SerialConnection` or `VisaConnection`: the driver only needs the line channel."""


@dataclass(frozen=True)
class CellReading:
    """One `MEAS:ALL?;STAT:LIM?` exchange: everything the monitor records, at one instant."""

    potential_v: float
    current_a: float
    charge_mah: float
    mode: CellMode
    limit_reached: bool


class PotentiostatDriver(TextDriver):
    """Techniques (rest, constant current with cut-off, potential hold) and measurements."""

    connection: TextConnection

    async def connect(self) -> str:
        """Open the channel and check that a potentiostat answers; returns its identity."""
        return await self.connection.identify("POTENTIOSTAT", "a potentiostat")

    # ------------------------------------------------------------------ parsing

    async def _write_checked(self, command: str) -> None:
        """Send a setting, then read the error queue: a refusal raises, naming the command."""
        await self.connection.write(command)
        # not idempotent: reading the queue removes the entry, so a lost reply is not re-asked
        reply = await self.connection.query("SYST:ERR?", idempotent=False)
        code_text = reply.partition(",")[0]
        try:
            code = int(code_text)
        except ValueError:
            raise InstrumentReplyError(
                self.name, f"SYST:ERR? (after {command})", reply, "an error-queue entry"
            ) from None
        if code != 0:
            raise InstrumentCommunicationError(self.name, command, f"refused: {reply}")

    # ------------------------------------------------------------------ measurements

    async def potential_v(self) -> float:
        return await self._float("MEAS:VOLT?")

    async def current_a(self) -> float:
        return await self._float("MEAS:CURR?")

    async def charge_mah(self) -> float:
        return await self._float("MEAS:CHAR?")

    async def limit_reached(self) -> bool:
        return await self._flag("STAT:LIM?")

    async def read_all(self) -> CellReading:
        """Potential, current, charge, mode and limit flag in one exchange."""
        return await self.connection.query(_READ_ALL, self._reading)

    def _reading(self, reply: str) -> CellReading:
        measured, separator, limit_text = reply.partition(";")
        if not separator:
            raise InstrumentReplyError(self.name, _READ_ALL, reply, "two ';'-separated replies")
        potential_v, current_a, charge_mah, code = parse_floats(
            measured, 4, instrument=self.name, command=_READ_ALL)
        if code not in _MODES_BY_CODE:
            raise InstrumentReplyError(self.name, _READ_ALL, reply, "a mode code 0, 1 or 2")
        return CellReading(
            potential_v=potential_v, current_a=current_a, charge_mah=charge_mah,
            mode=_MODES_BY_CODE[int(code)], limit_reached=self._parse_flag(limit_text, _READ_ALL),
        )

    # ------------------------------------------------------------------ settings

    async def mode(self) -> CellMode:
        def parse(reply: str) -> CellMode:
            if reply not in _MODES_BY_TOKEN:
                raise InstrumentReplyError(self.name, "MODE?", reply, "REST, GALV or POT")
            return _MODES_BY_TOKEN[reply]

        return await self.connection.query("MODE?", parse)

    async def set_mode(self, mode: CellMode) -> None:
        await self._write_checked(f"MODE {_MODE_TOKENS[CellMode(mode)]}")

    async def output_on(self) -> bool:
        return await self._flag("OUTP?")

    async def set_output(self, on: bool) -> None:
        await self._write_checked(f"OUTP {int(bool(on))}")

    async def current_setpoint_a(self) -> float:
        return await self._float("CURR?")

    async def set_current_setpoint_a(self, current_a: float) -> None:
        self._check_current(current_a)
        await self._write_checked(f"CURR {current_a:.6e}")

    async def voltage_limit_v(self) -> float:
        return await self._float("VLIM?")

    async def set_voltage_limit_v(self, potential_v: float) -> None:
        self._check_potential(potential_v, "voltage limit")
        await self._write_checked(f"VLIM {potential_v:.6f}")

    async def potential_setpoint_v(self) -> float:
        return await self._float("VOLT?")

    async def set_potential_setpoint_v(self, potential_v: float) -> None:
        self._check_potential(potential_v, "potential setpoint")
        await self._write_checked(f"VOLT {potential_v:.6f}")

    def _check_current(self, current_a: float) -> None:
        low, high = CURRENT_RANGE_A
        if not low <= current_a <= high:
            raise SettingOutOfRangeError(
                f"{self.name}: current {current_a:g} A is outside {low:g} to {high:g} A")

    def _check_potential(self, potential_v: float, what: str) -> None:
        low, high = POTENTIAL_RANGE_V
        if not low <= potential_v <= high:
            raise SettingOutOfRangeError(
                f"{self.name}: {what} {potential_v:g} V is outside {low:g} to {high:g} V")

    # ------------------------------------------------------------------ techniques

    async def start_galvanostatic(self, current_a: float, voltage_limit_v: float) -> None:
        """Constant current (positive = charge) until the potential reaches the limit."""
        self._check_current(current_a)
        self._check_potential(voltage_limit_v, "voltage limit")
        await self._write_checked(f"CURR {current_a:.6e};VLIM {voltage_limit_v:.6f}")
        await self._write_checked("MODE GALV")
        await self._expect_mode(CellMode.GALVANOSTATIC, "MODE GALV")

    async def hold_potential(self, potential_v: float) -> None:
        """Hold the potential; the current follows (within the instrument's compliance)."""
        self._check_potential(potential_v, "potential setpoint")
        await self._write_checked(f"VOLT {potential_v:.6f}")
        await self._write_checked("MODE POT")
        await self._expect_mode(CellMode.POTENTIOSTATIC, "MODE POT")

    async def rest(self) -> CellReading:
        """The safe state, open circuit; raises unless the channel confirms REST and 0 A.

        Retried as a whole (a lost reply or a dropped line must not leave the cell charging).
        """

        async def open_circuit() -> CellReading:
            await self._write_checked("OUTP 0")
            reading = await self.read_all()
            if reading.mode is not CellMode.REST or reading.current_a != 0.0:
                raise InstrumentCommunicationError(
                    self.name, "OUTP 0",
                    f"cell not at open circuit afterwards (mode {reading.mode.value}, "
                    f"current {reading.current_a:g} A)")
            return reading

        return await self.connection.until_confirmed("open circuit", open_circuit)

    async def _expect_mode(self, expected: CellMode, command: str) -> None:
        mode = await self.mode()
        if mode is expected:
            return
        reason = f"channel reports {mode.value}, not {expected.value}"
        if expected is CellMode.GALVANOSTATIC and await self.limit_reached():
            reason += " (the potential was already past the voltage limit)"
        raise InstrumentCommunicationError(self.name, command, reason)
