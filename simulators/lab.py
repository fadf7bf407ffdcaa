"""The simulated lab of a dry run: one clock, every simulator model, and their servers.

Which simulator a device gets is part of its instrument kind (`vegard.registry`):
each installed kind (entry point group `vegard.instrument_kinds`) may give a
`SimulatorKind`: a model class declaring `PARAMETERS` and built as
`model(clock, parameters, seed, **peers)`, and how it is reached (`transport`): an
emulator class built as `emulator(model)` and served by a `ScpiServer` on TCP (a
VISA address, or a pyserial `socket://` URL for instruments on a serial line), or a
model that serves itself (`start()`, `stop()`, `address`, optionally
`client_environment()`; built with `port=` too), like the diffractometer's Channel
Access IOC. `peers` names the models of other instruments this one is physically
coupled to, by keyword and driver (the AFM sits on the temperature stage: its sample
temperature and thermal drift come from there); they are built first. A lab builds
the instruments it is given by name (a profile's device names, with their drivers)
and, transitively, their peers; without names, every kind at its usual name.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from types import TracebackType
from typing import Any, Literal, Protocol

from vegard.clock import InstrumentClock

from .link_costs import LINK_PARAMETER_NAMES, LinkCosts
from .parameters import Parameter, resolve_parameters
from .scpi_server import LOOPBACK_HOST, Instrument, ScpiServer
from .wire_faults import WIRE_FAULT_NAMES, WIRE_FAULT_PARAMETERS, WireFaults

INSTRUMENT_KINDS_GROUP = "vegard.instrument_kinds"
"""Where installed instrument kinds are declared (as `vegard.registry` reads them)."""

Transport = Literal["visa", "serial", "self"]


class SimulatorModel(Protocol):
    """What the lab needs of a physics model."""

    PARAMETERS: tuple[Parameter, ...]

    def ground_truth(self) -> dict[str, Any]: ...


class Service(Protocol):
    """Something the lab starts and stops, reached at `address`."""

    @property
    def address(self) -> str: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class SimulatorKind:
    """How to build one simulated instrument: its physics model and how it is reached."""

    model: type
    emulator: type[Instrument] | None = None
    """The wire emulator a `ScpiServer` serves (transports "visa" and "serial")."""
    peers: Mapping[str, str] = field(default_factory=dict)
    """keyword → driver of each coupled instrument's model the model is built with."""
    transport: Transport = "visa"
    """"visa": TCP, VISA socket address; "serial": TCP reached like a serial line (pyserial
    `socket://` URL); "self": the model serves itself (`start`, `stop`, `address`)."""

    def __post_init__(self) -> None:
        if (self.transport == "self") != (self.emulator is None):
            raise ValueError("an emulator is needed exactly when the model does not serve itself")

    @property
    def serial(self) -> bool:
        """Reached like a serial-line instrument (pyserial `socket://` URL), not over VISA."""
        return self.transport == "serial"


@cache
def simulator_kinds() -> dict[str, tuple[str, SimulatorKind]]:
    """driver → (usual instrument name, simulator kind), of every installed instrument
    kind that has a simulator."""
    found: dict[str, tuple[str, SimulatorKind]] = {}
    for point in sorted(entry_points(group=INSTRUMENT_KINDS_GROUP), key=lambda p: p.name):
        kind = point.load()
        if kind.simulator is not None:
            found[kind.driver] = (kind.default_name, kind.simulator())
    return found


def default_instruments() -> dict[str, str]:
    """Every simulated kind at its usual name: name → driver."""
    return {name: driver for driver, (name, _) in simulator_kinds().items()}


LAB_PARAMETER_SOURCE = "SimulatedLab(parameters=...)"


def parameter_specs(instruments: Mapping[str, str] | None = None) -> dict[str, list[Parameter]]:
    """Instrument name → its parameters (the model's, then the wire-fault switches of text
    instruments), for `parameters.resolve_parameters` and `parameters.parameter_table`.
    `instruments`: name → driver (default: every kind at its usual name)."""
    kinds = simulator_kinds()
    named = default_instruments() if instruments is None else instruments
    return {
        name: [*kinds[driver][1].model.PARAMETERS, *_wire_parameters(kinds[driver][1])]
        for name, driver in named.items()
    }


def _wire_parameters(kind: SimulatorKind) -> tuple[Parameter, ...]:
    """A text instrument's link costs and wire-fault switches."""
    if kind.emulator is None:
        return ()
    link = kind.emulator.LINK.parameters() if kind.emulator.LINK is not None else ()
    return (*link, *WIRE_FAULT_PARAMETERS)


@dataclass(frozen=True)
class LabPlan:
    """What a lab builds: name → driver in build order (peers first), and each one's peers
    (keyword → instrument name)."""

    drivers: dict[str, str]
    peers: dict[str, dict[str, str]]


def plan_lab(instruments: Iterable[str] | Mapping[str, str] | None) -> LabPlan:
    """The named instruments (names at their usual kind, or name → driver) and,
    transitively, their peers: a peer is the lab's only instrument of the peer's driver,
    else one added at its usual name."""
    kinds = simulator_kinds()
    usual = default_instruments()
    if instruments is None:
        wanted = dict(usual)
    elif isinstance(instruments, Mapping):
        wanted = dict(instruments)
    else:
        names = list(instruments)
        unknown = sorted(set(names) - set(usual))
        if unknown:
            raise ValueError(
                f"unknown simulated instruments: {unknown} (known: {', '.join(usual)})")
        wanted = {name: usual[name] for name in names}
    unsimulated = sorted(name for name, driver in wanted.items() if driver not in kinds)
    if unsimulated:
        raise ValueError(f"no simulator for {unsimulated} (drivers with one: {sorted(kinds)})")
    drivers: dict[str, str] = {}
    peers: dict[str, dict[str, str]] = {}

    def add(name: str, driver: str, chain: tuple[str, ...]) -> None:
        if name in drivers:
            return
        if name in chain:
            raise ValueError(f"simulator peers form a cycle: {' → '.join((*chain, name))}")
        bound: dict[str, str] = {}
        for keyword, peer_driver in kinds[driver][1].peers.items():
            candidates = [n for n, d in wanted.items() if d == peer_driver]
            if len(candidates) > 1:
                raise ValueError(
                    f"{name}: its {keyword} could be any of {candidates} (one per lab)")
            peer = candidates[0] if candidates else kinds[peer_driver][0]
            if wanted.setdefault(peer, peer_driver) != peer_driver:
                raise ValueError(f"{name}: its {keyword} peer {peer!r} is a {wanted[peer]!r}")
            add(peer, peer_driver, (*chain, name))
            bound[keyword] = peer
        drivers[name] = driver
        peers[name] = bound

    for name, driver in list(wanted.items()):
        add(name, driver, ())
    return LabPlan(drivers, peers)


class _ScpiService:
    """A `ScpiServer`, with the form of address its instrument is reached by."""

    def __init__(self, server: ScpiServer, serial: bool) -> None:
        self.server = server
        self.serial = serial

    @property
    def address(self) -> str:
        return self.server.serial_url if self.serial else self.server.visa_address

    def start(self) -> _ScpiService:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


class SimulatedLab:
    """Simulated instruments, each served on loopback, sharing one instrument clock.

    `instruments`: build only these (names at their usual kind, or name → driver) and
    their peers (None: every kind at its usual name). Parameters are validated for every
    kind at its usual name and every name in `known` (name → driver: a profile's simulated
    devices) either way (those of instruments not built are not used), and `ports` may name
    any of them.
    """

    def __init__(
        self,
        clock: InstrumentClock,
        parameters: Mapping[str, Mapping[str, float]] | None = None,
        ports: Mapping[str, int] | None = None,
        seed: int = 0,
        instruments: Iterable[str] | Mapping[str, str] | None = None,
        host: str = LOOPBACK_HOST,
        allow_remote: bool = False,
        known: Mapping[str, str] | None = None,
    ) -> None:
        ports = dict(ports or {})
        plan = plan_lab(instruments)
        described = {**default_instruments(), **(known or {}), **plan.drivers}
        unknown = sorted(set(ports) - set(described))
        if unknown:
            raise ValueError(f"ports given for unknown simulated instruments: {unknown}")
        self.clock = clock
        self.host = host
        self.allow_remote = allow_remote
        """Where every service binds; non-loopback only with `allow_remote` (logged)."""
        self.started_s = clock.now()
        """Instrument time the lab was built: fault schedules (`fault_*_at_s`) count from it."""
        self.parameter_specs = parameter_specs(described)
        """Instrument name → parameters, of every instrument whose parameters may be set."""
        self.parameters = resolve_parameters(
            self.parameter_specs, parameters or {}, [], LAB_PARAMETER_SOURCE,
            profile_field_prefix="",
        )
        self.models: dict[str, SimulatorModel] = {}
        self.instruments: dict[str, Instrument] = {}
        self._services: dict[str, Service] = {}
        kinds = simulator_kinds()
        for name, driver in plan.drivers.items():
            kind = kinds[driver][1]
            # Each instrument its own reproducible noise stream, independent of the others.
            peers = {keyword: self.models[peer] for keyword, peer in plan.peers[name].items()}
            options: dict[str, Any] = {}
            if kind.transport == "self":
                options.update(port=ports.get(name, 0), host=host, allow_remote=allow_remote)
            model_parameters = {
                key: value for key, value in self.parameters[name].items()
                if key not in WIRE_FAULT_NAMES and key not in LINK_PARAMETER_NAMES
            }
            model = kind.model(
                clock, model_parameters, seed=[seed, zlib.crc32(name.encode())],
                **peers, **options,
            )  # fmt: skip
            self.models[name] = model
            if kind.emulator is None:
                self._services[name] = model
            else:
                self.instruments[name] = kind.emulator(model)
                if kind.emulator.LINK is not None:
                    self.instruments[name].link = LinkCosts.from_parameters(self.parameters[name])
                faults = WireFaults(clock, self.parameters[name], started_s=self.started_s)
                if faults.enabled:
                    self.instruments[name].wire_faults = faults
                server = ScpiServer(
                    self.instruments[name], host=host, port=ports.get(name, 0),
                    allow_remote=allow_remote,
                )
                self._services[name] = _ScpiService(server, kind.serial)

    def start(self) -> SimulatedLab:
        started: list[Service] = []
        try:
            for service in self._services.values():
                service.start()
                started.append(service)
        except BaseException:
            for service in reversed(started):
                service.stop()
            raise
        return self

    def stop(self) -> None:
        for service in reversed(list(self._services.values())):
            service.stop()

    def __enter__(self) -> SimulatedLab:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def built(self) -> tuple[str, ...]:
        """The instruments this lab simulates."""
        return tuple(self.models)

    @property
    def addresses(self) -> dict[str, str]:
        """Instrument name → address a driver opens: VISA, `socket://` for serial ones,
        `ca://<PV prefix>` for the diffractometer's IOC."""
        return {name: service.address for name, service in self._services.items()}

    def client_environment(self) -> dict[str, str]:
        """Environment variables a client needs: the IOC's EPICS_CA_* (empty without one).

        Needs the lab started (the IOC's search port may be chosen then).
        """
        environment: dict[str, str] = {}
        for service in self._services.values():
            variables = getattr(service, "client_environment", None)
            if variables is not None:
                environment.update(variables())
        return environment

    def clock_sync_pvs(self) -> list[str]:
        """The PVs a virtual clock's barrier reads, one per IOC the lab serves."""
        return [pv for model in self.models.values()
                if (pv := getattr(model, "clock_sync_pv", None)) is not None]

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        return {name: model.ground_truth() for name, model in self.models.items()}

    def safe_state(self) -> dict[str, dict[str, Any]]:
        """Each instrument's state as its model knows it (not as a client reports it), with
        `safe`: whether it could be left unattended (tip unbiased and parked, heater at a safe
        setpoint or off, cell at open circuit, detector disarmed, no axis moving)."""
        return {
            name: model.safe_state()  # type: ignore[attr-defined]
            for name, model in self.models.items() if hasattr(model, "safe_state")
        }

    def injected_faults(self) -> dict[str, list[dict[str, Any]]]:
        """The faults that fired, per instrument (wire faults and the models' physics faults)."""
        fired: dict[str, list[dict[str, Any]]] = {}
        for name, instrument in self.instruments.items():
            if instrument.wire_faults is not None and instrument.wire_faults.fired:
                fired[name] = instrument.wire_faults.report()
        for name, model in self.models.items():
            physics = getattr(model, "fired_faults", None)
            physics_fired = [] if physics is None else physics()
            if physics_fired:
                fired.setdefault(name, []).extend(physics_fired)
        return fired

    def truth_arrays(self) -> dict[str, Any]:
        """Per-pixel truth of models that record it, keyed `<instrument>.<name>`."""
        arrays: dict[str, Any] = {}
        for name, model in self.models.items():
            record = getattr(model, "truth_arrays", None)
            if record is not None:
                arrays.update({f"{name}.{key}": value for key, value in record().items()})
        return arrays

    def command_log(self, name: str) -> list[str]:
        """The commands instrument `name` has received, in order."""
        return [entry.command for entry in self.instruments[name].command_log()]
