"""Physics models and instrument emulators that speak the instruments' wire protocols.

No bluesky or ophyd imports here: a simulator is a server, not a device. Only
the standard library, numpy and `vegard.clock` are used, so a simulator can run
in a process of its own (`vegard sim serve`). Which simulator serves which
instrument kind is declared by the kinds (`vegard.kinds.instruments`).
"""

from .lab import SimulatedLab, SimulatorKind, default_instruments, parameter_specs, simulator_kinds
from .parameters import Parameter, SimulatorParameterError, parameter_table, resolve_parameters
from .scpi_server import Instrument, ScpiError, ScpiServer
from .serve import serve_forever

__all__ = [
    "Instrument",
    "Parameter",
    "ScpiError",
    "ScpiServer",
    "SimulatedLab",
    "SimulatorKind",
    "SimulatorParameterError",
    "default_instruments",
    "parameter_specs",
    "parameter_table",
    "resolve_parameters",
    "serve_forever",
    "simulator_kinds",
]
