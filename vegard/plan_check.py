"""Checking a protocol's plan without hardware: every message it would send, summarised.

`vegard check` refuses what a dry run would refuse (the protocol file, the profile, the
protocol against the profile's limits, the devices it needs), then builds the plan on
devices that are never connected and walks it through bluesky's `RunEngineSimulator`,
which answers each message instead of executing it. No simulator starts, no socket
opens, no RunEngine (nor its event loop) is made: a check costs a second, not a dry run.

Where a plan decides on what it reads (a temperature guard, a Bragg peak search, a drift
correlation, the cell's voltage limit), the answers are canned per protocol kind
(`CannedReadings`, see `vegard.canned_readings`); every other message gets the reply a
message without a RunEngine gets (None, so `bps.rd` returns its default).

Instrument time stands still during a check (`StoppedClock`): a plan that waits for "the
next map three hours after this one started" sleeps the protocol's three hours.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bluesky.protocols import Locatable, Reading
from bluesky.simulators import RunEngineSimulator
from bluesky.utils import Msg

from vegard.clock import InstrumentClock
from vegard.config.errors import ConfigError
from vegard.config.profiles import SIM_ADDRESS, Profile
from vegard.config.protocols import Protocol
from vegard.devices import BuildContext, build_device
from vegard.registry import Bench, bench_for, instrument_kinds, protocol_kind, session_metadata

MAX_MESSAGES = 2_500_000
"""The check stops a plan still sending after this many messages (about 1 GB of them
kept): one waiting forever on a canned reading, or too large to walk message by message
(the full-size operando SXDM protocol run at instruments is 1.9 million)."""

VALUES_SHOWN = 8
"""Distinct values per line of the summary before it says how many more there are."""
VALUES_IN_JSON = 50

UNIT_SUFFIXES: dict[str, str] = {
    "_k_per_min": "K/min", "_angstrom": "Å", "_mah": "mAh", "_deg": "°", "_um": "µm",
    "_nm": "nm", "_ev": "eV", "_hz": "Hz", "_k": "K", "_s": "s", "_v": "V", "_a": "A",
}
"""Units by the name suffix every quantity of this project carries (`setpoint_k`)."""

RUN_HIGHLIGHT_SKIPPED = {"protocol", "protocol_kind", "sample", "profile", "dry_run"}
"""Start-document keys the summary's header says once, not per run."""


class PlanCheckError(RuntimeError):
    """The plan failed, or never ended, on the canned readings. `check`: its messages up
    to the failure, clean-up included (None if it failed before its first)."""

    def __init__(self, message: str, check: PlanCheck | None = None) -> None:
        super().__init__(message)
        self.check = check


class StoppedClock(InstrumentClock):
    """Instrument time that never moves: the waits a plan computes from the clock are the
    protocol's own, and every check of a protocol gives the same messages."""

    def now(self) -> float:
        return self._origin_s

    def describe(self) -> str:
        return "stopped (plan check)"


Value = Any
"""A canned value, or a callable giving it when asked (stateful answers)."""


@dataclass(frozen=True)
class CannedReadings:
    """What a plan reads, answered without instruments, by dotted device path
    (`"area_detector.search.counts"`, the first part a profile device name)."""

    reads: Mapping[str, Value] = field(default_factory=dict)
    """`read`/`locate` of the object at a path: its value; for a device, a mapping of
    child paths to values (the readings `bps.read` of it returns)."""
    sets: Mapping[str, Callable[[Any], None]] = field(default_factory=dict)
    """Called with the value of every `set` of the object at a path."""

    def __or__(self, other: CannedReadings) -> CannedReadings:
        return CannedReadings({**self.reads, **other.reads}, {**self.sets, **other.sets})


CannedReadingsFor = Callable[[Any, Bench], CannedReadings]


@dataclass
class PlanCheck:
    """A protocol's plan as the messages it sent on the canned readings."""

    protocol_path: Path
    protocol_kind: str
    profile: str
    dry_run: bool
    """Checked as `vegard dry-run` would run it (else as `vegard run`)."""
    messages: list[Msg]
    return_value: Any
    wall_time_s: float

    def start_documents(self) -> list[dict[str, Any]]:
        """The metadata of every run the plan opened, in order."""
        return [dict(msg.kwargs) for msg in self.messages if msg.command == "open_run"]


def _no_arrays_directory() -> Path:
    raise PlanCheckError("a plan check records no arrays")


def unconnected_devices(bench: Bench, clock: InstrumentClock) -> dict[str, Any]:
    """The bench's devices (by role) as a session builds them, never connected (a simulated
    one at a placeholder address): what a plan needs to be generated, no more."""
    context = BuildContext(clock, _no_arrays_directory)
    devices = {}
    for role, name in bench.names.items():
        settings = bench.settings[role]
        address = settings.address
        if address == SIM_ADDRESS:
            address = instrument_kinds()[settings.driver].placeholder_address
        devices[role] = build_device(name, settings, address, context)
    return devices


def check_protocol(
    protocol: Protocol,
    protocol_path: Path,
    profile: Profile,
    canned_readings: Mapping[str, CannedReadingsFor] | None = None,
    *,
    profile_source: str = "profile",
) -> PlanCheck:
    """Refuse the protocol as a dry run would, then walk its whole plan on the canned
    readings of its kind. Raises `ConfigError` for refused input, `PlanCheckError` if the
    plan fails or does not end."""
    kind = protocol_kind(protocol)
    bench = bench_for(protocol, profile, profile_source, str(protocol_path))
    kind.check(protocol, bench, protocol_path)
    canned_for = (canned_readings or {}).get(protocol.protocol, kind.canned_readings)
    if canned_for is None:
        raise PlanCheckError(f"no canned readings for protocol kind {protocol.protocol!r}")
    clock = StoppedClock()
    dry_run = profile.runs_dry()
    devices = unconnected_devices(bench, clock)
    metadata = session_metadata(protocol, protocol_path, profile, dry_run=dry_run, clock=clock)
    simulator = RunEngineSimulator()
    answer(simulator, devices, canned_for(protocol, bench))
    started_s = time.monotonic()
    seen: list[Msg] = []

    def checked(messages: list[Msg], return_value: Any = None) -> PlanCheck:
        return PlanCheck(
            protocol_path=protocol_path, protocol_kind=protocol.protocol,
            profile=profile.profile, dry_run=dry_run, messages=messages,
            return_value=return_value, wall_time_s=time.monotonic() - started_s)

    try:
        plan = kind.plan(protocol, devices, bench, metadata)
        messages = simulator.simulate_plan(_watched(plan, seen))
    except ConfigError:
        raise
    except Exception as error:
        where = f"; its last message (of {len(seen):,}) was {_describe(seen[-1])}" \
            if seen else " before its first message"  # fmt: skip
        if isinstance(error, PlanCheckError):
            raise PlanCheckError(f"{protocol_path}: {error}", checked(seen)) from None
        raise PlanCheckError(
            f"{protocol_path}: the plan failed: {type(error).__name__}: {error}{where}",
            checked(seen) if seen else None,
        ) from error
    return checked(messages, simulator.return_value)


# --- answering messages ------------------------------------------------------------------


def resolve(devices: Mapping[str, Any], path: str) -> Any:
    """The object at a dotted path (`"temperature_stage.safe_state.action"`)."""
    device, *children = path.split(".")
    obj = devices[device]
    for child in children:
        obj = getattr(obj, child)
    return obj


def _value(value: Value) -> Any:
    return value() if callable(value) else value


def _reading(value: Any) -> Reading:
    return Reading(value=value, timestamp=time.time(), alarm_severity=0)


def answer(
    simulator: RunEngineSimulator, devices: Mapping[str, Any], canned: CannedReadings
) -> None:
    """Register the canned readings with the simulator (only for the plan's devices)."""
    for path, value in canned.reads.items():
        if path.split(".")[0] in devices:
            obj = resolve(devices, path)
            simulator.add_handler(("read", "locate"), _read_reply(devices, path, obj, value),
                                  obj.name)
    for path, remember in canned.sets.items():
        if path.split(".")[0] in devices:
            simulator.add_handler("set", _set_reply(remember), resolve(devices, path).name)


def _read_reply(devices: Mapping[str, Any], path: str, obj: Any, value: Value):
    def reply(msg: Msg) -> Any:
        given = _value(value)
        if msg.command == "locate":
            if not isinstance(obj, Locatable):
                raise PlanCheckError(f"locate of {obj.name}, which is not Locatable")
            return {"setpoint": given, "readback": given}
        if isinstance(given, Mapping):  # a device: readings of some of its children
            return {resolve(devices, f"{path}.{child}").name: _reading(_value(v))
                    for child, v in given.items()}
        return {obj.name: _reading(given)}

    return reply


def _set_reply(remember: Callable[[Any], None]):
    def reply(msg: Msg) -> None:
        remember(msg.args[0])

    return reply


def _watched(plan: Generator[Msg, Any, Any], seen: list[Msg]):
    """The plan, its messages kept in `seen` as well (the simulator's list is lost when the
    plan raises), and stopped past `MAX_MESSAGES`."""
    reply = None
    while True:
        try:
            msg = plan.send(reply)
        except StopIteration as stop:
            return stop.value
        seen.append(msg)
        if len(seen) > MAX_MESSAGES:
            plan.close()
            raise PlanCheckError(
                f"the plan did not end within {MAX_MESSAGES:,} messages (last: "
                f"{_describe(msg)}): it waits on a reading the check does not give, or is "
                "too large to check message by message")
        reply = yield msg


def _describe(msg: Msg | None) -> str:
    if msg is None:
        return "none"
    name = getattr(msg.obj, "name", None)
    return f"{msg.command} {name}" if name else msg.command


# --- the summary -------------------------------------------------------------------------


@dataclass
class _Group:
    verb: str
    target: str
    count: int = 0
    values: dict[str, Any] = field(default_factory=dict)
    """Distinct values by their text, first seen first."""
    unit: str | None = None
    saved: int = 0


@dataclass
class _Segment:
    """A run (open_run … close_run), or the messages outside runs."""

    metadata: dict[str, Any] | None
    groups: dict[str, dict[str, _Group]] = field(default_factory=dict)
    verbs: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    exit_status: str | None = None
    reason: str | None = None
    stream: str | None = None

    def add(self, msg: Msg) -> None:
        self.messages += 1
        self.verbs[msg.command] = self.verbs.get(msg.command, 0) + 1
        command = msg.command
        if command in ("open_run", "close_run"):
            return
        if command == "save":
            self._group("create/save", self.stream or "?").saved += 1
            return
        if command == "create":
            self.stream = msg.kwargs.get("name", "primary")
            self._group("create/save", self.stream, count=True)
            return
        target = getattr(msg.obj, "name", "") or ""
        group = self._group(command, target, count=True)
        value = _message_value(msg)
        if value is not _NO_VALUE:
            group.values.setdefault(format_value(value), value)
            if group.unit is None:
                group.unit = _unit_of_value(msg)

    def _group(self, verb: str, target: str, *, count: bool = False) -> _Group:
        group = self.groups.setdefault(target, {}).setdefault(verb, _Group(verb, target))
        if count:
            group.count += 1
        return group


_NO_VALUE = object()


def _message_value(msg: Msg) -> Any:
    if msg.command in ("set", "prepare", "sleep") and msg.args:
        return msg.args[0]
    if msg.command == "monitor":
        return msg.kwargs.get("name") or _NO_VALUE
    return _NO_VALUE


def _unit_of_value(msg: Msg) -> str:
    if msg.command == "sleep":
        return "s"
    return "" if msg.command == "monitor" else unit_of(msg.obj)


def unit_of(obj: Any) -> str:
    """The unit a quantity's name says (`eta_deg` → °); a device's, by its one hinted
    field (the temperature stage's control temperature → K); '' if none."""
    names = [getattr(obj, "name", "") or ""]
    hints = getattr(obj, "hints", None)
    if isinstance(hints, Mapping) and len(hints.get("fields", ())) == 1:
        names.append(hints["fields"][0])
    for name in names:
        for suffix, unit in UNIT_SUFFIXES.items():
            if name.endswith(suffix):
                return unit
    return ""


def format_value(value: Any, depth: int = 0) -> str:
    """A set value as the summary shows it: numbers to 6 digits, enums by name,
    dataclasses by their fields (nested ones elided)."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if depth:
            return f"{name}(…)"
        fields = ", ".join(f"{f.name}={format_value(getattr(value, f.name), depth + 1)}"
                           for f in dataclasses.fields(value))
        return f"{name}({fields})"
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    if isinstance(value, tuple | list):
        return "(" + ", ".join(format_value(v, depth + 1) for v in value) + ")"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and not isinstance(value, enum.Enum):
        return int(value)
    if isinstance(value, float | np.floating) and not isinstance(value, enum.Enum):
        return float(value) if np.isfinite(value) else format_value(value)
    return format_value(value)


def segments(messages: Iterable[Msg]) -> list[_Segment]:
    """The runs in order, then one segment of every message outside them."""
    outside = _Segment(metadata=None)
    runs: list[_Segment] = []
    current: _Segment | None = None
    for msg in messages:
        if msg.command == "open_run":
            current = _Segment(metadata=dict(msg.kwargs))
            runs.append(current)
        (current or outside).add(msg)
        if msg.command == "close_run" and current is not None:
            current.exit_status = msg.kwargs.get("exit_status") or "success"
            current.reason = msg.kwargs.get("reason") or None
            current = None
    return [*runs, outside]


def summarize(check: PlanCheck) -> dict[str, Any]:
    """Counts per verb, per run (with its metadata highlights) and the values set: what
    `vegard check --json` prints."""
    *runs, outside = segments(check.messages)
    verbs: dict[str, int] = {}
    for msg in check.messages:
        verbs[msg.command] = verbs.get(msg.command, 0) + 1
    sets: dict[str, list[Any]] = {}
    for segment in [*runs, outside]:
        for target, by_verb in segment.groups.items():
            group = by_verb.get("set")
            if group is not None:
                known = sets.setdefault(target, [])
                known.extend(v for v in map(_json_value, group.values.values())
                             if v not in known and len(known) < VALUES_IN_JSON)
    return {
        "protocol": str(check.protocol_path),
        "protocol_kind": check.protocol_kind,
        "profile": check.profile,
        "checked_as": "dry-run" if check.dry_run else "run",
        "messages": len(check.messages),
        "verbs": _by_count(verbs),
        "runs": [_segment_json(run) for run in runs],
        "outside_runs": _segment_json(outside),
        "sets": sets,
        "wall_time_s": check.wall_time_s,
    }


def _by_count(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _segment_json(segment: _Segment) -> dict[str, Any]:
    entry: dict[str, Any] = {"messages": segment.messages, "verbs": _by_count(segment.verbs)}
    if segment.metadata is not None:
        metadata = segment.metadata
        entry.update(
            plan_name=metadata.get("plan_name"),
            highlights={key: value for key, value in metadata.items()
                        if key not in RUN_HIGHLIGHT_SKIPPED
                        and (key == "plan_args" or isinstance(value, str | int | float | bool))},
            metadata_keys=sorted(metadata),
            exit_status=segment.exit_status,
            reason=segment.reason,
        )
    entry["groups"] = [
        {"verb": group.verb, "object": group.target, "count": group.count,
         **({"saved": group.saved} if group.verb == "create/save" else {}),
         **({"values": [_json_value(v) for v in list(group.values.values())[:VALUES_IN_JSON]],
             "distinct": len(group.values), "unit": group.unit or ""} if group.values else {})}
        for by_verb in segment.groups.values() for group in by_verb.values()
    ]
    return entry


def summary_lines(
    check: PlanCheck, run_notes: Callable[[dict[str, Any]], list[str]] | None = None
) -> list[str]:
    """The readable summary: per run the verbs by object, then what lies outside runs.
    `run_notes(start metadata)`: lines to show under a run's header."""
    *runs, outside = segments(check.messages)
    how = "vegard dry-run" if check.dry_run else "vegard run"
    lines = [
        f"protocol      {check.protocol_path} ({check.protocol_kind})",
        f"profile       {check.profile}, checked as for `{how}` "
        "(no simulator started, no device connected)",
        f"plan          ends after {len(check.messages):,} messages in {len(runs)} "
        f"run{'s' if len(runs) != 1 else ''} ({check.wall_time_s:.2f} s)",
    ]
    for index, run in enumerate(runs, 1):
        metadata = run.metadata or {}
        details = [f"{metadata.get('plan_name', '?')}"]
        if "num_points" in metadata:
            details.append(f"{metadata['num_points']} points")
        details.append(f"{run.messages:,} messages")
        closed = run.exit_status or "not closed"
        details.append(f"closed {closed}" + (f": {run.reason}" if run.reason else ""))
        lines.append(f"run {index:<9} " + ", ".join(details))
        if run_notes is not None:
            lines.extend(run_notes(metadata))
        lines.extend(_group_lines(run))
    if outside.messages:
        lines.append(f"outside runs  {outside.messages:,} messages")
        lines.extend(_group_lines(outside))
    verbs = _by_count(_count_verbs(check.messages))
    lines.append("verbs         " + ", ".join(f"{verb} {n:,}" for verb, n in verbs.items()))
    return lines


def _count_verbs(messages: Iterable[Msg]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for msg in messages:
        counts[msg.command] = counts.get(msg.command, 0) + 1
    return counts


def _group_lines(segment: _Segment) -> list[str]:
    """Verbs by object in first-seen order; the verbs without an object (wait, sleep,
    checkpoint) last."""
    ordered = sorted(segment.groups.items(), key=lambda item: item[0] == "")
    lines = []
    for _, by_verb in ordered:
        for group in by_verb.values():
            target = f" {group.target}" if group.target else ""
            if group.verb == "create/save" and group.saved != group.count:
                lines.append(f"  create {group.target} ×{group.count:,}, "
                             f"save ×{group.saved:,}")
            elif group.values:
                text, distinct = _values_text(group)
                lines.append(f"  {group.verb}{target} → {text} ({distinct}{group.count:,}×)")
            else:
                lines.append(f"  {group.verb}{target} ×{group.count:,}")
    return lines


def _values_text(group: _Group) -> tuple[str, str]:
    """The distinct values (a consecutive integer range as its ends), and how many there
    are when not all are shown."""
    values = list(group.values.values())
    texts = list(group.values)
    unit = f" {group.unit}" if group.unit else ""
    integers = [int(v) for v in values
                if isinstance(v, int | np.integer) and not isinstance(v, bool | enum.Enum)]
    if len(integers) == len(values) > 3 and sorted(integers) == list(
            range(min(integers), max(integers) + 1)):
        return f"{min(integers)} … {max(integers)}{unit}", ""
    if len(texts) > VALUES_SHOWN:
        return ", ".join(texts[:VALUES_SHOWN]) + f", …{unit}", f"{len(texts)} distinct, "
    return ", ".join(texts) + unit, ""
