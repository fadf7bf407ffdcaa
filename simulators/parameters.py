"""Declarative physical parameters of the simulator models.

Each model lists its parameters (default, unit, allowed range, meaning) as a
class-level `PARAMETERS` tuple, so `vegard sim params` can show them and a bad
value in a profile or on the command line is refused with a message that names
the source, the field, the value and the allowed range - before anything runs.
Fault-injection switches are numbers too (0 = off; see `wire_faults.py` and the
models' `fault_*` parameters).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OVERRIDE_SOURCE = "--set"
"""The `source` to name for command-line overrides."""

PROFILE_FIELD_PREFIX = "simulation.parameters"
"""Where simulator parameters live in a profile file (for the dotted field in messages)."""


class SimulatorParameterError(ValueError):
    """A simulator parameter that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Parameter:
    """One physical parameter of a simulator model."""

    name: str
    default: float
    unit: str
    minimum: float
    maximum: float
    description: str

    def allowed(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"allowed {self.minimum:g} … {self.maximum:g}{unit}"

    def admits(self, value: float) -> bool:
        return math.isfinite(value) and self.minimum <= value <= self.maximum


def defaults(parameters: Iterable[Parameter]) -> dict[str, float]:
    """Name → default value."""
    return {parameter.name: float(parameter.default) for parameter in parameters}


def model_values(
    parameters: Iterable[Parameter], given: Mapping[str, float] | None, owner: str
) -> dict[str, float]:
    """A model's parameter values: defaults, overridden by `given`, each within its range.

    Models are also built directly (tests, notebooks), not only through
    `resolve_parameters`, so they refuse unknown names and out-of-range values
    themselves.
    """
    parameters = list(parameters)
    values = defaults(parameters)
    given = dict(given or {})
    unknown = sorted(set(given) - set(values))
    if unknown:
        raise ValueError(f"unknown {owner} parameters: {unknown}")
    values.update({name: float(value) for name, value in given.items()})
    for parameter in parameters:
        value = values[parameter.name]
        if not parameter.admits(value):
            raise ValueError(
                f"{owner}: {parameter.name} = {value:g} is out of range: {parameter.allowed()}")
    return values


def parameter_table(
    instruments: Mapping[str, Iterable[Parameter]],
    values: Mapping[str, Mapping[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """One row per parameter of each instrument (e.g. `lab.parameter_specs()`).

    `values` (e.g. the output of `resolve_parameters`) overrides the defaults shown.
    """
    values = values or {}
    rows = []
    for instrument, parameters in instruments.items():
        given = values.get(instrument, {})
        for parameter in parameters:
            rows.append(
                {
                    "instrument": instrument,
                    "name": parameter.name,
                    "value": float(given.get(parameter.name, parameter.default)),
                    "unit": parameter.unit,
                    "minimum": parameter.minimum,
                    "maximum": parameter.maximum,
                    "description": parameter.description,
                }
            )
    return rows


def resolve_parameters(
    specs: Mapping[str, Iterable[Parameter]],
    from_profile: Mapping[str, Mapping[str, Any]],
    overrides: Iterable[str],
    source: str,
    *,
    profile_field_prefix: str = PROFILE_FIELD_PREFIX,
) -> dict[str, dict[str, float]]:
    """Defaults, then the profile's values, then `instrument.name=value` overrides.

    `source` names the profile file in messages; overrides are reported as `--set`.
    Returns every parameter of every instrument in `specs`.
    """
    by_instrument = {name: {p.name: p for p in parameters} for name, parameters in specs.items()}
    resolved = {name: defaults(parameters.values()) for name, parameters in by_instrument.items()}
    prefix = f"{profile_field_prefix}." if profile_field_prefix else ""
    for instrument, values in from_profile.items():
        for name, value in values.items():
            parameter = _lookup(by_instrument, instrument, name, source, prefix)
            field = f"{prefix}{instrument}.{name}"
            resolved[instrument][name] = _checked(parameter, value, source, field)
    for override in overrides:
        target, equals, text = override.partition("=")
        instrument, dot, name = target.strip().partition(".")
        if not equals or not dot or not name:
            raise SimulatorParameterError(
                f"{OVERRIDE_SOURCE}: {override!r} is not of the form instrument.parameter=value"
            )
        parameter = _lookup(by_instrument, instrument, name, OVERRIDE_SOURCE, "")
        field = f"{instrument}.{name}"
        resolved[instrument][name] = _checked(parameter, text.strip(), OVERRIDE_SOURCE, field)
    return resolved


def _lookup(
    by_instrument: Mapping[str, Mapping[str, Parameter]],
    instrument: str,
    name: str,
    source: str,
    prefix: str,
) -> Parameter:
    if instrument not in by_instrument:
        known = ", ".join(sorted(by_instrument)) or "none"
        raise SimulatorParameterError(
            f"{source}: {prefix}{instrument} is not a simulated instrument (known: {known})"
        )
    parameters = by_instrument[instrument]
    if name not in parameters:
        known = ", ".join(sorted(parameters))
        raise SimulatorParameterError(
            f"{source}: {prefix}{instrument}.{name} is not a parameter of {instrument} "
            f"(known: {known})"
        )
    return parameters[name]


def _checked(parameter: Parameter, value: Any, source: str, field: str) -> float:
    shown = value if isinstance(value, str) else _format(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        number = 1.0 if value.strip().lower() == "true" else 0.0
    if not math.isfinite(number):
        raise SimulatorParameterError(
            f"{source}: {field} = {shown} is not a number: {parameter.allowed()}"
        )
    if not parameter.admits(number):
        raise SimulatorParameterError(
            f"{source}: {field} = {shown} is out of range: {parameter.allowed()}"
        )
    return number


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{value:g}"
    return repr(value)
