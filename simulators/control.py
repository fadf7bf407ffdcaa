"""The "sim control" port: lets another process follow a served lab's clock and truth.

`vegard sim serve` runs the simulators in one process; a dry run in another
process must run its plans on the same instrument clock, and tests there want
the ground truth. Both are read over the same kind of loopback SCPI socket:

    CLOCK?               <instrument_time_s>,<speedup>   (Python float repr)
    TRUTH? <instrument>  the instrument's ground truth as one line of JSON
    SAFE? <instrument>   its safe state as its model knows it (`SimulatedLab.safe_state`)
    INST?                name=VISA address,...
"""

from __future__ import annotations

import json
from typing import Protocol

from vegard.clock import ClockState, InstrumentClock

from .scpi_server import (
    ILLEGAL_PARAMETER_VALUE,
    LOOPBACK_HOST,
    Instrument,
    ScpiError,
    ScpiServer,
    require_arguments,
)


class ServedLab(Protocol):
    """What the control port reads from a lab (a `SimulatedLab`)."""

    clock: InstrumentClock

    @property
    def addresses(self) -> dict[str, str]: ...

    def ground_truth(self) -> dict[str, dict[str, object]]: ...

    def safe_state(self) -> dict[str, dict[str, object]]: ...


class SimControl(Instrument):
    """Answers clock, ground-truth and address queries about a running lab."""

    identity = "VEGARD,SIM-CONTROL,0,0.1"

    def __init__(self, lab: ServedLab) -> None:
        super().__init__(lab.clock)
        self.lab = lab
        self.register("CLOCK?", self._query_clock)
        self.register("TRUTH?", self._query_truth)
        self.register("INST?", self._query_instruments)
        self.register("SAFE?", self._query_safe_state)

    def _query_clock(self, arguments: list[str]) -> str:
        state = self.clock.state()
        return f"{state.instrument_time_s!r},{state.speedup!r}"

    def _query_truth(self, arguments: list[str]) -> str:
        return self._one_instrument(arguments, self.lab.ground_truth())

    def _query_safe_state(self, arguments: list[str]) -> str:
        return self._one_instrument(arguments, self.lab.safe_state())

    @staticmethod
    def _one_instrument(arguments: list[str], by_instrument: dict[str, dict[str, object]]
                        ) -> str:
        require_arguments(arguments, 1)
        name = arguments[0].strip().strip('"').lower()
        if name not in by_instrument:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"no simulated instrument {name!r}")
        return json.dumps(by_instrument[name], separators=(",", ":"))

    def _query_instruments(self, arguments: list[str]) -> str:
        return ",".join(f"{name}={address}" for name, address in self.lab.addresses.items())


def parse_clock_reply(reply: str) -> ClockState:
    """The `CLOCK?` reply as a `ClockState` (for `InstrumentClock.following`)."""
    time_text, speedup_text = reply.strip().split(",")
    return ClockState(instrument_time_s=float(time_text), speedup=float(speedup_text))


def control_server(
    lab: ServedLab, port: int = 0, host: str = LOOPBACK_HOST, allow_remote: bool = False
) -> ScpiServer:
    """A (not yet started) server for the lab's control port: loopback unless `allow_remote`.

    It answers ground truth, so it is no more public than the instruments it describes.
    """
    return ScpiServer(SimControl(lab), host=host, port=port, allow_remote=allow_remote)
