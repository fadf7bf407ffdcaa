"""A LakeShore 336 temperature controller, emulated over the `TemperatureStageModel` model.

Only control output 1 (heater on the stage, input A) and inputs A/B exist;
other outputs give -224 "Illegal parameter value". Syntax and reply formats
follow the 336 manual as far as we know them:

    *IDN?                    LSCI,MODEL336,SIM336,2.9
    *RST                     power-up settings: heater range off, PID 50,20,0, ramp off
    SETP <out>,<K>           setpoint (refused with -222 outside the stage's rated range)
    SETP? <out>              +295.000 (the effective, possibly ramping, setpoint)
    KRDG? <A|B|0>            +295.123 (0: both, "A,B")
    RAMP <out>,<0|1>,<K/min> rate 0.1-100 K/min
    RAMP? <out>              1,+10.0
    RAMPST? <out>            1 while the setpoint is ramping, else 0
    RANGE <out>,<0-3>        off, low (1 %), medium (10 %), high (100 % of max power)
    RANGE? <out>             3
    PID <out>,<P>,<I>,<D>    P 0.1-1000, I 0.1-1000, D 0-200
    PID? <out>               +50.0,+20.0,+0
    HTR? <out>               +045.20 (% of the range's full-scale power)

Deviations from the real instrument: the 336 is not a SCPI instrument and has no
`SYST:ERR?` error queue (it sets status bits); the queue is kept here because
the test and driver tooling use it. PID? widths and HTR? in % of power (not
current) are our choice where the manual leaves room.
"""

from __future__ import annotations

from vegard.clock import InstrumentClock

from .heater_control import PID_LIMITS, HeaterRange
from .link_costs import LinkCost
from .scpi_server import (
    DATA_OUT_OF_RANGE,
    ILLEGAL_PARAMETER_VALUE,
    Instrument,
    ScpiError,
    parse_float,
    parse_int,
    require_arguments,
)
from .temperature_stage_model import RAMP_RATE_LIMITS_K_PER_MIN, TemperatureStageModel

CONTROL_OUTPUT = 1
INPUTS = ("A", "B")


def format_kelvin(value_k: float) -> str:
    """The 336's temperature format: sign, three decimals (`+295.123`)."""
    return f"{value_k:+08.3f}"


class LakeShore336Emulator(Instrument):
    """Wire-level emulator: parses 336 commands and drives the stage model."""

    LINK = LinkCost(
        0.010, 1.25e7,
        "LakeShore 336 on 100 Mbit/s "
        "Ethernet; 10 ms turnaround assumed",
    )
    """What the real link costs (see `link_costs`)."""

    identity = "LSCI,MODEL336,SIM336,2.9"

    def __init__(self, model: TemperatureStageModel, clock: InstrumentClock | None = None) -> None:
        super().__init__(clock or model.clock)
        self.model = model
        for header, handler in {
            "SETP": self._set_setpoint,
            "SETP?": self._query_setpoint,
            "KRDG?": self._query_kelvin_reading,
            "RAMP": self._set_ramp,
            "RAMP?": self._query_ramp,
            "RAMPST?": self._query_ramp_status,
            "RANGE": self._set_range,
            "RANGE?": self._query_range,
            "PID": self._set_pid,
            "PID?": self._query_pid,
            "HTR?": self._query_heater_output,
        }.items():
            self.register(header, handler)

    def reset(self) -> None:
        self.model.reset()

    # ------------------------------------------------------------------ commands

    def _set_setpoint(self, arguments: list[str]) -> None:
        require_arguments(arguments, 2)
        _output(arguments[0])
        value_k = parse_float(arguments[1])
        low, high = self.model.rated_range_k
        if not low <= value_k <= high:
            raise ScpiError(DATA_OUT_OF_RANGE, f"setpoint {value_k:g} K outside {low:g}-{high:g}")
        self.model.set_setpoint(value_k)

    def _set_ramp(self, arguments: list[str]) -> None:
        require_arguments(arguments, 3)
        _output(arguments[0])
        enabled = parse_int(arguments[1])
        if enabled not in (0, 1):
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, "ramp on/off must be 0 or 1")
        rate_k_per_min = parse_float(arguments[2])
        low, high = RAMP_RATE_LIMITS_K_PER_MIN
        if not low <= rate_k_per_min <= high:
            raise ScpiError(
                DATA_OUT_OF_RANGE, f"ramp rate {rate_k_per_min:g} K/min outside {low:g}-{high:g}")
        self.model.set_ramp(bool(enabled), rate_k_per_min)

    def _set_range(self, arguments: list[str]) -> None:
        require_arguments(arguments, 2)
        _output(arguments[0])
        heater_range = parse_int(arguments[1])
        if heater_range not in {r.value for r in HeaterRange}:
            raise ScpiError(DATA_OUT_OF_RANGE, f"heater range {heater_range} outside 0-3")
        self.model.set_heater_range(heater_range)

    def _set_pid(self, arguments: list[str]) -> None:
        require_arguments(arguments, 4)
        _output(arguments[0])
        values = [parse_float(text) for text in arguments[1:4]]
        for (name, (low, high)), value in zip(PID_LIMITS.items(), values, strict=True):
            if not low <= value <= high:
                raise ScpiError(DATA_OUT_OF_RANGE, f"{name} {value:g} outside {low:g}-{high:g}")
        self.model.set_pid(*values)

    # ------------------------------------------------------------------- queries

    def _query_setpoint(self, arguments: list[str]) -> str:
        require_arguments(arguments, 1)
        _output(arguments[0])
        return format_kelvin(self.model.setpoint_k)

    def _query_kelvin_reading(self, arguments: list[str]) -> str:
        require_arguments(arguments, 1)
        sensor = arguments[0].upper()
        if sensor == "0":
            return ",".join(format_kelvin(self.model.read_temperature_k(s)) for s in INPUTS)
        if sensor not in INPUTS:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"input {arguments[0]!r}: A, B or 0")
        return format_kelvin(self.model.read_temperature_k(sensor))

    def _query_ramp(self, arguments: list[str]) -> str:
        require_arguments(arguments, 1)
        _output(arguments[0])
        return f"{int(self.model.ramp_enabled)},{self.model.ramp_rate_k_per_min:+.1f}"

    def _query_ramp_status(self, arguments: list[str]) -> str:
        require_arguments(arguments, 1)
        _output(arguments[0])
        return "1" if self.model.ramping else "0"

    def _query_range(self, arguments: list[str]) -> str:
        require_arguments(arguments, 1)
        _output(arguments[0])
        return str(int(self.model.heater_range))

    def _query_pid(self, arguments: list[str]) -> str:
        require_arguments(arguments, 1)
        _output(arguments[0])
        pid = self.model.pid
        return f"{pid.proportional:+.1f},{pid.integral:+.1f},{pid.derivative:+.0f}"

    def _query_heater_output(self, arguments: list[str]) -> str:
        require_arguments(arguments, 1)
        _output(arguments[0])
        return f"{self.model.heater_output_percent():+07.2f}"


def _output(text: str) -> int:
    """The control output a command addresses; only output 1 is emulated."""
    output = parse_int(text)
    if output != CONTROL_OUTPUT:
        raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"output {output}: only output 1 is emulated")
    return output
