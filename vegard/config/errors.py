"""Configuration errors that tell the scientist exactly what to fix.

Every message names the file, the field (dotted path), the offending value and
what is allowed, on one line per problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

_BOUND_WORDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


class ConfigError(ValueError):
    """A profile or protocol file that cannot be used; refused before hardware moves."""


def field_path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _allowed(error: dict[str, Any], units: dict[str, str]) -> str:
    context = error.get("ctx") or {}
    field = next((str(p) for p in reversed(error["loc"]) if isinstance(p, str)), "")
    unit = units.get(field, "")
    bounds = [f"{_BOUND_WORDS[k]} {context[k]}" for k in ("ge", "gt", "le", "lt") if k in context]
    if bounds:
        return "allowed: value " + " and ".join(bounds) + (f" {unit}" if unit else "")
    if "expected" in context:
        return f"allowed: {context['expected']}"
    return error["msg"]


def unit_of_field(name: str) -> str:
    """Units are in the field names (`settle_time_s`); recover them for messages."""
    suffixes = {
        "_k_per_min": "K/min", "_k": "K", "_s": "s", "_hz": "Hz", "_v": "V", "_pm": "pm",
        "_nm": "nm", "_um": "µm", "_percent": "%", "_w": "W", "_ohm": "Ω",
    }
    for suffix, unit in suffixes.items():
        if name.endswith(suffix):
            return unit
    return ""


def without_union_tags(location: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """`devices.stage.lakeshore336.timeout_s` → `devices.stage.timeout_s`: pydantic puts a
    discriminated union's tag in the path, where the file has no such level."""
    if len(location) >= 3 and location[0] == "devices":
        from vegard.registry import instrument_kinds

        if location[2] in instrument_kinds():
            return (*location[:2], *location[3:])
    return location


def describe_validation_error(source: Path | str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        item = {**item, "loc": without_union_tags(item["loc"])}
        location = field_path(item["loc"])
        kind = item["type"]
        last = next((str(p) for p in reversed(item["loc"]) if isinstance(p, str)), "")
        units = {last: unit_of_field(last)}
        if kind == "missing":
            lines.append(f"{source}: {location} is missing (required field)")
        elif kind == "value_error":
            # cross-field checks say which fields and values themselves
            lines.append(f"{source}: {location}: {item['ctx']['error']}")
        elif kind == "extra_forbidden":
            lines.append(f"{source}: {location} is not a known field (value {item['input']!r})")
        else:
            lines.append(
                f"{source}: {location} = {item['input']!r} is not valid: {_allowed(item, units)}"
            )
    return "\n".join(lines)
