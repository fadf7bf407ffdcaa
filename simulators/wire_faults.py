"""Faults on the wire of a simulated text instrument, scheduled by command count or time.

What goes wrong between a controller and the acquisition PC, made to happen on purpose
so drivers and plans can be tested against it:

- `drop`: the instrument closes the connection instead of answering (cable, switch,
  controller reboot);
- `timeout`: a query is swallowed, no reply ever comes;
- `malformed`: the reply arrives garbled (a half-written number, a broken binary header);
- `slow`: the reply arrives late, after `fault_slow_reply_s` of instrument time (the
  client's timeout is instrument time too: a 3 s reply against a 2 s timeout always
  times out on the virtual clock, whatever the machine's load);
- `error`: the command is refused and a device-specific error goes on the error queue.

Each kind is switched on by its own parameters (so profiles and `--set` reach them like
any physical parameter): `fault_<kind>_at_command` fires on the N-th line received
(counting from 1; one line may carry several `;`-joined commands), `fault_<kind>_at_s`
on the first line at or after that much instrument time since the lab was built; 0 is off.
A fired fault affects `fault_repeat` consecutive eligible lines (a persistent outage is
a large repeat). `timeout`, `malformed` and `slow` only affect lines with a query, which
are the ones a client can notice.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from vegard.clock import InstrumentClock

from .parameters import Parameter

WIRE_FAULT_KINDS = ("drop", "timeout", "malformed", "slow", "error")
QUERY_ONLY_KINDS = frozenset({"timeout", "malformed", "slow"})

_DESCRIPTIONS = {
    "drop": "instrument closes the connection instead of answering",
    "timeout": "a query gets no reply",
    "malformed": "a reply arrives garbled",
    "slow": "a reply arrives fault_slow_reply_s (instrument time) late",
    "error": "a command is refused with an error on the error queue",
}


def wire_fault_parameters() -> tuple[Parameter, ...]:
    """The fault switches every text instrument accepts (0 = off)."""
    parameters: list[Parameter] = []
    for kind in WIRE_FAULT_KINDS:
        parameters.append(Parameter(
            f"fault_{kind}_at_command", 0, "lines", 0, 1e9,
            f"fault injection, {_DESCRIPTIONS[kind]}: at the N-th line received (0 = off)",
        ))
        parameters.append(Parameter(
            f"fault_{kind}_at_s", 0, "s", 0, 1e8,
            f"fault injection, {_DESCRIPTIONS[kind]}: at this instrument time after the lab "
            "started (0 = off)",
        ))
    parameters.append(Parameter(
        "fault_repeat", 1, "lines", 1, 1e6,
        "fault injection: consecutive lines each fired wire fault affects",
    ))
    parameters.append(Parameter(
        "fault_slow_reply_s", 3.0, "s", 0, 60,
        "fault injection: instrument-time delay of a slow reply (longer than the client's "
        "timeout makes it a timeout followed by a late reply)",
    ))
    return tuple(parameters)


WIRE_FAULT_PARAMETERS = wire_fault_parameters()
WIRE_FAULT_NAMES = frozenset(parameter.name for parameter in WIRE_FAULT_PARAMETERS)


@dataclass(frozen=True)
class FiredFault:
    """One line a fault acted on (ground truth for tests and the fault matrix)."""

    kind: str
    line_number: int
    instrument_time_s: float
    """Since the lab started."""
    line: str

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "line_number": self.line_number,
                "instrument_time_s": self.instrument_time_s, "line": self.line[:120]}


@dataclass
class _Schedule:
    kind: str
    at_command: int
    at_s: float
    remaining: int
    armed: bool = False

    def due(self, line_number: int, elapsed_s: float) -> bool:
        if self.remaining <= 0:
            return False
        if not self.armed:
            by_count = self.at_command > 0 and line_number >= self.at_command
            by_time = self.at_s > 0 and elapsed_s >= self.at_s
            self.armed = by_count or by_time
        return self.armed


@dataclass
class WireFaults:
    """Decides, line by line, which fault (if any) the server applies."""

    clock: InstrumentClock
    values: Mapping[str, float]
    started_s: float = field(default=0.0)
    fired: list[FiredFault] = field(default_factory=list)

    def __post_init__(self) -> None:
        repeat = int(self.values.get("fault_repeat", 1))
        self.slow_reply_s = float(self.values.get("fault_slow_reply_s", 3.0))
        self._schedules = [
            _Schedule(kind, int(self.values.get(f"fault_{kind}_at_command", 0)),
                      float(self.values.get(f"fault_{kind}_at_s", 0.0)), repeat)
            for kind in WIRE_FAULT_KINDS
        ]
        self._schedules = [s for s in self._schedules if s.at_command > 0 or s.at_s > 0]
        self._lines = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._schedules)

    def next_fault(self, line: str) -> str | None:
        """Count `line` and return the fault kind to apply to it, or None."""
        with self._lock:
            self._lines += 1
            if not self._schedules:
                return None
            elapsed_s = self.clock.now() - self.started_s
            is_query = any(part.strip().split(" ")[0].endswith("?") for part in line.split(";"))
            for schedule in self._schedules:
                if not schedule.due(self._lines, elapsed_s):
                    continue
                if schedule.kind in QUERY_ONLY_KINDS and not is_query:
                    continue
                schedule.remaining -= 1
                self.fired.append(FiredFault(schedule.kind, self._lines, elapsed_s, line))
                return schedule.kind
            return None

    def report(self) -> list[dict[str, object]]:
        with self._lock:
            return [fault.as_dict() for fault in self.fired]


def garbled(reply: bytes) -> bytes:
    """A reply as line noise leaves it: a broken block header, or half a number behind junk."""
    if reply.startswith(b"#"):
        return b"?" + reply[1:]
    return b"?~" + reply[: max(len(reply) // 2, 1)]
