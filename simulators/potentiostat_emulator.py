"""A one-channel potentiostat, emulated over the `LmnoCell` model.

The command set is ours (each real potentiostat has its own protocol); it is SCPI-shaped so
the same base server, driver tooling and error queue apply. Currents in A (positive =
charge, i.e. oxidation of the working electrode), potentials in V vs Li+/Li, charge in mAh.

    *IDN?              VEGARD,SIM-POTENTIOSTAT,0,0.1
    *RST               open circuit (REST); CURR 0, VLIM 4.9, VOLT 4.05; no technique
    MODE <m>           REST (open circuit), GALV (constant current), POT (hold VOLT)
    MODE?              REST | GALV | POT - what the channel does now
    CURR <A>           galvanostatic current, ±0.1 A           CURR?   -> 4.900000e-05
    VLIM <V>           galvanostatic cut-off, 0-5.5 V          VLIM?   -> 4.900000
    VOLT <V>           potentiostatic setpoint, 0-5.5 V        VOLT?   -> 4.800000
    OUTP <0|1>         cell connected; 0 = open circuit (= MODE REST), 1 = resume the last
                       technique (refused with -200 if none since *RST)
    OUTP?              1 while GALV or POT, else 0
    MEAS:VOLT?         potential reading                       -> 4.712345
    MEAS:CURR?         current                                 -> 4.900000e-05
    MEAS:CHAR?         charge passed since power-on, mAh       -> 1.234567e-01
    MEAS:ALL?          potential_v,current_a,charge_mah,mode_code in one line
                       (mode code 0 REST, 1 GALV, 2 POT)
    STAT:LIM?          1 if the last galvanostatic run hit VLIM (cleared by the next start)

Settings sent while their technique runs take effect at once. The cut-off is an upper
limit while charging (CURR > 0) and a lower one while discharging; when the potential
reaches it the channel opens the circuit by itself (MODE? REST, STAT:LIM? 1). A value
out of range gives -222 naming it and the range, and changes nothing.
"""

from __future__ import annotations

from vegard.clock import InstrumentClock

from .link_costs import LinkCost
from .lmno_cell_model import MAXIMUM_POTENTIAL_V, CellMode, LmnoCell
from .scpi_server import (
    DATA_OUT_OF_RANGE,
    EXECUTION_ERROR,
    ILLEGAL_PARAMETER_VALUE,
    Instrument,
    ScpiError,
    parse_float,
    require_arguments,
)

CURRENT_RANGE_A = (-0.1, 0.1)
POTENTIAL_RANGE_V = (0.0, MAXIMUM_POTENTIAL_V)
DEFAULT_VOLTAGE_LIMIT_V = 4.9
DEFAULT_POTENTIAL_V = 4.05

MODE_TOKENS = {CellMode.REST: "REST", CellMode.GALVANOSTATIC: "GALV",
               CellMode.POTENTIOSTATIC: "POT"}
MODE_CODES = {CellMode.REST: 0, CellMode.GALVANOSTATIC: 1, CellMode.POTENTIOSTATIC: 2}
_MODES_BY_WORD = {
    "REST": CellMode.REST,
    "GALV": CellMode.GALVANOSTATIC,
    "GALVANOSTATIC": CellMode.GALVANOSTATIC,
    "POT": CellMode.POTENTIOSTATIC,
    "POTENTIOSTATIC": CellMode.POTENTIOSTATIC,
}


class PotentiostatEmulator(Instrument):
    """Wire-level emulator: parses potentiostat commands and drives the cell model."""

    LINK = LinkCost(
        0.005, 960.0,
        "RS-232 at 9600 baud, 8N1: 10 bits "
        "per byte; 5 ms command parsing assumed",
    )
    """What the real link costs (see `link_costs`)."""

    identity = "VEGARD,SIM-POTENTIOSTAT,0,0.1"

    def __init__(self, model: LmnoCell, clock: InstrumentClock | None = None) -> None:
        super().__init__(clock or model.clock)
        self.model = model
        self._current_a = 0.0
        self._voltage_limit_v = DEFAULT_VOLTAGE_LIMIT_V
        self._potential_v = DEFAULT_POTENTIAL_V
        self._technique: CellMode | None = None
        for header, handler in {
            "MODE": self._set_mode,
            "MODE?": lambda _: MODE_TOKENS[self.model.mode],
            "CURR": self._set_current,
            "CURR?": lambda _: f"{self._current_a:.6e}",
            "VLIM": self._set_voltage_limit,
            "VLIM?": lambda _: f"{self._voltage_limit_v:.6f}",
            "VOLT": self._set_potential,
            "VOLT?": lambda _: f"{self._potential_v:.6f}",
            "OUTP": self._set_output,
            "OUTP?": lambda _: "0" if self.model.mode is CellMode.REST else "1",
            "MEAS:VOLT?": lambda _: f"{self.model.read_potential_v():.6f}",
            "MEAS:CURR?": lambda _: f"{self.model.current_a():.6e}",
            "MEAS:CHAR?": lambda _: f"{self.model.charge_mah():.6e}",
            "MEAS:ALL?": self._measure_all,
            "STAT:LIM?": lambda _: "1" if self.model.limit_reached else "0",
        }.items():
            self.register(header, handler)

    def reset(self) -> None:
        self.model.rest()
        self._current_a = 0.0
        self._voltage_limit_v = DEFAULT_VOLTAGE_LIMIT_V
        self._potential_v = DEFAULT_POTENTIAL_V
        self._technique = None

    # ------------------------------------------------------------------ commands

    def _set_mode(self, arguments: list[str]) -> None:
        require_arguments(arguments, 1)
        word = arguments[0].upper()
        if word not in _MODES_BY_WORD:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE,
                            f"mode {arguments[0]!r}: allowed REST, GALV, POT")
        self._run(_MODES_BY_WORD[word])

    def _set_output(self, arguments: list[str]) -> None:
        require_arguments(arguments, 1)
        text = arguments[0].upper()
        if text in ("0", "OFF"):
            self._run(CellMode.REST)
        elif text in ("1", "ON"):
            if self._technique is None:
                raise ScpiError(EXECUTION_ERROR, "no technique to resume: send MODE GALV or POT")
            self._run(self._technique)
        else:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"expected 0/1/ON/OFF, got {arguments[0]!r}")

    def _set_current(self, arguments: list[str]) -> None:
        self._current_a = _checked(arguments, CURRENT_RANGE_A, "current", "A")
        self._apply_if_running(CellMode.GALVANOSTATIC)

    def _set_voltage_limit(self, arguments: list[str]) -> None:
        self._voltage_limit_v = _checked(arguments, POTENTIAL_RANGE_V, "voltage limit", "V")
        self._apply_if_running(CellMode.GALVANOSTATIC)

    def _set_potential(self, arguments: list[str]) -> None:
        self._potential_v = _checked(arguments, POTENTIAL_RANGE_V, "potential", "V")
        self._apply_if_running(CellMode.POTENTIOSTATIC)

    def _apply_if_running(self, technique: CellMode) -> None:
        if self.model.mode is technique:
            self._run(technique)

    def _run(self, mode: CellMode) -> None:
        if mode is CellMode.GALVANOSTATIC:
            self.model.galvanostatic(self._current_a, self._voltage_limit_v)
        elif mode is CellMode.POTENTIOSTATIC:
            self.model.potentiostatic(self._potential_v)
        else:
            self.model.rest()
            return
        self._technique = mode

    # ------------------------------------------------------------------- queries

    def _measure_all(self, arguments: list[str]) -> str:
        potential_v, current_a, charge_mah, mode = self.model.measure()
        return f"{potential_v:.6f},{current_a:.6e},{charge_mah:.6e},{MODE_CODES[mode]}"


def _checked(arguments: list[str], limits: tuple[float, float], what: str, unit: str) -> float:
    require_arguments(arguments, 1)
    value = parse_float(arguments[0])
    low, high = limits
    if not low <= value <= high:
        raise ScpiError(
            DATA_OUT_OF_RANGE, f"{what} {value:g} {unit} outside {low:g} to {high:g} {unit}")
    return value
