"""Event documents validated against an equivalent, flattened schema.

event-model's event schema is `allOf: [PartialEvent]` with `unevaluatedProperties: false`.
jsonschema evaluates that keyword by trying every top-level value against a `false`
schema, and each try formats `repr(value)` for an error nobody reads: the repr of an
event's `data`, with every numpy array of a band-excitation line in it. That was a tenth
of a dry run's computing. The same constraint written as `properties` +
`additionalProperties: false` accepts and refuses exactly the same documents and never
formats a value.
"""

from __future__ import annotations

import copy
from typing import Any

import event_model
from event_model import DocumentNames


def flattened_event_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The event schema with its `allOf` references merged in; refuses other shapes."""
    parts = schema.get("allOf", [])
    definitions = schema.get("$defs", {})
    if schema.get("unevaluatedProperties") is not False or not all(
            set(part) == {"$ref"} and part["$ref"].startswith("#/$defs/") for part in parts):
        raise ValueError("event schema is not allOf-of-$refs + unevaluatedProperties: false")
    flat = {key: copy.deepcopy(value) for key, value in schema.items()
            if key not in ("allOf", "$defs", "unevaluatedProperties")}
    flat.setdefault("properties", {})
    required = list(flat.get("required", []))
    for part in parts:
        included = definitions[part["$ref"].removeprefix("#/$defs/")]
        if set(included) - {"title", "type", "properties", "required", "description"}:
            raise ValueError(f"cannot flatten {part['$ref']}: {sorted(included)}")
        flat["properties"].update(copy.deepcopy(included.get("properties", {})))
        required += [name for name in included.get("required", []) if name not in required]
    flat["required"] = required
    flat["additionalProperties"] = False
    return flat


_installed: list[Any] = []


def use_flattened_event_schema() -> None:
    """Validate events (as bluesky's RunEngine does on every one) with the flat schema."""
    validator = event_model.schema_validators[DocumentNames.event]
    if validator in _installed:
        return
    flat = type(validator)(schema=flattened_event_schema(validator.schema))
    _installed.append(flat)
    event_model.schema_validators[DocumentNames.event] = flat
