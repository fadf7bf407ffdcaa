"""The one place instrument kinds and protocol kinds are found: `vegard.*_kinds` entry points.

A kind is one module that exports `KIND`. The CLI, the session, the profile and
protocol loaders and the simulated lab look kinds up here by the name a file gives
(`driver:` of a profile device, `protocol:` of a protocol file) and never name one.
A third-party package adds a kind by declaring an entry point in the same groups.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vegard.config.errors import ConfigError
from vegard.config.models import DeviceSettings, ProtocolSettings

if TYPE_CHECKING:
    from bluesky.utils import Msg

    from vegard.config.profiles import Profile
    from vegard.devices import BuildContext

INSTRUMENT_GROUP = "vegard.instrument_kinds"
PROTOCOL_GROUP = "vegard.protocol_kinds"

FiguresFor = Callable[[str], Path]


class Analysis:
    """What protocol analyses share: a document callback with a `result` dict."""

    result: dict[str, Any] | None

    def __call__(self, name: str, doc: dict) -> Any: ...


@dataclass(frozen=True)
class InstrumentKind:
    """One kind of instrument: its profile settings, its device and its simulator."""

    driver: str
    """The value of `driver:` in a profile device entry."""
    settings: type[DeviceSettings]
    build: Callable[[Any, str, str, BuildContext], Any]
    """`build(settings, name, address, context)`: the ophyd-async device, unconnected."""
    default_name: str
    """What a profile usually calls it; a simulated lab without a profile uses this name."""
    simulator: Callable[[], Any] | None = None
    """The `SimulatorKind` (imported only when a lab is built)."""
    placeholder_address: str = "TCPIP::127.0.0.1::9::SOCKET"
    """`vegard check`: a well-formed address of this kind that is never opened (loopback
    port 9, discard) for a device at address `sim`."""


@dataclass(frozen=True)
class Bench:
    """The profile devices that play a protocol's roles, and their settings."""

    profile: str
    names: Mapping[str, str]
    """role → profile device name"""
    settings: Mapping[str, Any]
    """role → that device's settings"""

    def where(self, role: str, setting: str) -> str:
        """How a message names a profile limit: `devices.<name>.<setting> of profile 'p'`."""
        return f"devices.{self.names[role]}.{setting} of profile {self.profile!r}"


@dataclass(frozen=True)
class ProtocolKind:
    """One kind of protocol: its file's model, the roles it needs, its checks against
    the profile, its plan, its analyses, its summary lines and its simulator truth."""

    name: str
    model: type[ProtocolSettings]
    roles: Callable[[Any], Mapping[str, str]]
    """role → driver the role needs, for this protocol (some use a role only sometimes)."""
    check: Callable[[Any, Bench, Path], None]
    plan: Callable[[Any, Mapping[str, Any], Bench, dict[str, Any]], Generator[Msg, Any, Any]]
    analyses: Callable[[FiguresFor | None], list[Analysis]]
    summary_lines: Callable[[dict[str, Any]], list[str]] = field(default=lambda analysis: [])
    """What `vegard dry-run` / `replay` print of the analysis, with units."""
    ground_truth: Callable[[Any, Mapping[str, str], dict[str, Any]], dict[str, Any]] | None = None
    """Dry runs: `ground_truth(lab, names, analysis)`, extra truth from the simulator lab
    (`{"maps": [...], "arrays": {name: array}}`; arrays go to the truth file)."""
    canned_readings: Callable[[Any, Bench], Any] | None = None
    """`vegard check`: what the plan reads where it decides on it (`CannedReadings`,
    paths by role: `"temperature_stage.temperature_k"`)."""


def _load(group: str, key: Callable[[Any], str]) -> dict[str, Any]:
    kinds: dict[str, Any] = {}
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        kind = point.load()
        name = key(kind)
        if name in kinds:
            raise RuntimeError(f"two {group} entry points declare {name!r}")
        kinds[name] = kind
    if not kinds:
        raise RuntimeError(f"no {group} entry points: is vegard installed (pip install -e .)?")
    return kinds


@cache
def instrument_kinds() -> dict[str, InstrumentKind]:
    """driver → kind, for every installed instrument kind."""
    return _load(INSTRUMENT_GROUP, lambda kind: kind.driver)


@cache
def protocol_kinds() -> dict[str, ProtocolKind]:
    """protocol name → kind, for every installed protocol kind."""
    return _load(PROTOCOL_GROUP, lambda kind: kind.name)


def protocol_kind_names() -> list[str]:
    """Installed protocol kinds, from their entry points (nothing imported)."""
    return sorted({point.name for point in entry_points(group=PROTOCOL_GROUP)})


@cache
def protocol_kind_named(name: str) -> ProtocolKind | None:
    """One protocol kind, importing only its module (a dry run of an ESM map need not
    import the SXDM plans); None if no installed kind has that name."""
    points = [point for point in entry_points(group=PROTOCOL_GROUP) if point.name == name]
    if not points:
        return None
    if len(points) > 1:
        raise RuntimeError(f"two {PROTOCOL_GROUP} entry points declare {name!r}")
    kind = points[0].load()
    if kind.name != name:
        raise RuntimeError(
            f"entry point {name!r} of {PROTOCOL_GROUP} loads protocol kind {kind.name!r}")
    return kind


def protocol_kind(protocol: ProtocolSettings) -> ProtocolKind:
    kind = protocol_kind_named(protocol.protocol)
    if kind is None:
        raise KeyError(protocol.protocol)
    return kind


def bench_for(protocol: ProtocolSettings, profile: Profile, source: str,
              protocol_source: str = "protocol") -> Bench:
    """Each role of the protocol bound to a profile device of the driver it needs.

    A role is played by the device the protocol names for it (`devices: {role: name}`),
    else by the device named like the role, else by the profile's only device of that
    driver; anything else is refused here, before a device is built. `source` and
    `protocol_source` name the profile and protocol files in the messages.
    """
    roles = protocol_kind(protocol).roles(protocol)
    unknown = sorted(set(protocol.devices) - set(roles))
    if unknown:
        raise ConfigError(
            f"{protocol_source}: devices.{unknown[0]} is not a role of protocol "
            f"{protocol.protocol!r} "
            f"(roles: {', '.join(roles) or 'none'})")
    names: dict[str, str] = {}
    for role, driver in roles.items():
        chosen = protocol.devices.get(role)
        if chosen is None:
            of_driver = [n for n, s in profile.devices.items() if s.driver == driver]
            chosen = role if role in profile.devices else (
                of_driver[0] if len(of_driver) == 1 else None)
            if chosen is None:
                raise ConfigError(
                    f"{source}: devices.{role} is missing (protocol {protocol.protocol!r} "
                    f"needs it: a {driver!r} device"
                    + (f"; the profile has {', '.join(of_driver)}: name one in the protocol's "
                       f"devices.{role}" if of_driver else "") + ")")
        settings = profile.devices.get(chosen)
        if settings is None:
            raise ConfigError(
                f"{source}: devices.{chosen} is missing (protocol {protocol.protocol!r} "
                f"needs it as its {role})")
        if settings.driver != driver:
            raise ConfigError(
                f"{source}: devices.{chosen}.driver = {settings.driver!r} is not valid for "
                f"the {role} of protocol {protocol.protocol!r}: allowed: {driver!r}")
        names[role] = chosen
    return Bench(profile.profile, names, {role: profile.devices[n] for role, n in names.items()})


def run_metadata(protocol: ProtocolSettings, path: Path) -> dict[str, Any]:
    """What every run's start document says about the protocol that made it."""
    return {
        "protocol": str(path),
        "protocol_kind": protocol.protocol,
        "sample": protocol.sample,
        "protocol_settings": protocol.model_dump(mode="json"),
    }


def session_metadata(
    protocol: ProtocolSettings, path: Path, profile: Profile, *, dry_run: bool, clock: Any
) -> dict[str, Any]:
    """`run_metadata` and what a session adds: the profile, dry or real, and the clock."""
    return {
        **run_metadata(protocol, path),
        "profile": profile.profile,
        "dry_run": dry_run,
        "instrument_clock": {
            "kind": clock.describe(), "started_s": clock.now(),
            **({} if clock.virtual else {"speedup": clock.speedup}),
        },
    }


def merged_analysis(analyses: list[Analysis]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for analysis in analyses:
        merged.update(analysis.result or {})
    return merged
