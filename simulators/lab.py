"""The simulated lab of a dry run: one clock, every simulator model, and their servers.

New instruments plug in by adding a `SimulatorKind` to `SIMULATORS`: a model
class declaring `PARAMETERS` and built as `model(clock, parameters, seed, **peers)`,
and an emulator class built as `emulator(model)`. `peers` names the models of
other instruments this one is physically coupled to (the AFM sits on the
temperature stage: its sample temperature and thermal drift come from there);
they are built first and passed by keyword.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from vegard.clock import InstrumentClock

from .afm import AtomicForceMicroscope
from .afm_controller import AfmController
from .lakeshore336 import LakeShore336
from .lmno_cell import LmnoCell
from .parameters import Parameter, resolve_parameters
from .potentiostat import PotentiostatEmulator
from .scpi_server import Instrument, ScpiServer
from .temperature_stage import TemperatureStage


class SimulatorModel(Protocol):
    """What the lab needs of a physics model."""

    PARAMETERS: tuple[Parameter, ...]

    def ground_truth(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SimulatorKind:
    """How to build one simulated instrument: its physics model and its wire emulator."""

    model: type
    emulator: type[Instrument]
    peers: tuple[str, ...] = ()
    serial: bool = False
    """Reached like a serial-line instrument (pyserial `socket://` URL), not over VISA."""


SIMULATORS: dict[str, SimulatorKind] = {
    "temperature_stage": SimulatorKind(model=TemperatureStage, emulator=LakeShore336),
    "afm": SimulatorKind(
        model=AtomicForceMicroscope, emulator=AfmController, peers=("temperature_stage",)
    ),
    "potentiostat": SimulatorKind(model=LmnoCell, emulator=PotentiostatEmulator, serial=True),
}
"""Instrument name (as in profiles) → how to simulate it."""

LAB_PARAMETER_SOURCE = "SimulatedLab(parameters=...)"


def model_classes() -> dict[str, type]:
    """Instrument name → model class, e.g. for `parameters.parameter_table`."""
    return {name: kind.model for name, kind in SIMULATORS.items()}


def parameter_specs() -> dict[str, list[Parameter]]:
    """Instrument name → its model's parameters, for `parameters.resolve_parameters`."""
    return {name: list(kind.model.PARAMETERS) for name, kind in SIMULATORS.items()}


class SimulatedLab:
    """Every simulated instrument, each served on loopback, sharing one instrument clock."""

    def __init__(
        self,
        clock: InstrumentClock,
        parameters: Mapping[str, Mapping[str, float]] | None = None,
        ports: Mapping[str, int] | None = None,
        seed: int = 0,
    ) -> None:
        ports = dict(ports or {})
        unknown = sorted(set(ports) - set(SIMULATORS))
        if unknown:
            raise ValueError(f"ports given for unknown simulated instruments: {unknown}")
        self.clock = clock
        self.parameters = resolve_parameters(
            parameter_specs(), parameters or {}, [], LAB_PARAMETER_SOURCE,
            profile_field_prefix="",
        )
        self.models: dict[str, SimulatorModel] = {}
        self.instruments: dict[str, Instrument] = {}
        self._servers: dict[str, ScpiServer] = {}
        for name, kind in SIMULATORS.items():
            # Each instrument its own reproducible noise stream, independent of the others.
            peers = {peer: self.models[peer] for peer in kind.peers}
            model = kind.model(
                clock, self.parameters[name], seed=[seed, zlib.crc32(name.encode())], **peers
            )
            self.models[name] = model
            self.instruments[name] = kind.emulator(model)
            self._servers[name] = ScpiServer(self.instruments[name], port=ports.get(name, 0))

    def start(self) -> SimulatedLab:
        started = []
        try:
            for server in self._servers.values():
                started.append(server.start())
        except BaseException:
            for server in started:
                server.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()

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
    def addresses(self) -> dict[str, str]:
        """Instrument name → address a driver opens (VISA, or `socket://` for serial ones)."""
        return {
            name: server.serial_url if SIMULATORS[name].serial else server.visa_address
            for name, server in self._servers.items()
        }

    def ground_truth(self) -> dict[str, dict[str, Any]]:
        return {name: model.ground_truth() for name, model in self.models.items()}

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
