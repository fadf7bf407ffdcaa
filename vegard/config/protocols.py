"""Protocol files: what to measure, in the scientist's units, validated up front.

The `protocol` field names the kind; each installed protocol kind (see
`vegard.registry`) brings its own pydantic model. Limits here are the
instruments' rated ranges; the session checks them again against the profile
before connecting.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from .errors import ConfigError, describe_validation_error
from .models import ProtocolSettings
from .yaml_file import read_yaml_mapping

Protocol = ProtocolSettings
"""Any protocol: an instance of one protocol kind's model."""


def protocol_models() -> dict[str, type[ProtocolSettings]]:
    """protocol name → its file model, for every installed protocol kind."""
    from vegard.registry import protocol_kinds

    return {name: kind.model for name, kind in protocol_kinds().items()}


def load_protocol(path: Path | str) -> Protocol:
    path = Path(path)
    data = read_yaml_mapping(path)
    from vegard.registry import protocol_kind_named, protocol_kind_names

    kind = data.get("protocol")
    found = protocol_kind_named(kind) if isinstance(kind, str) else None  # a list: unhashable
    if found is None:
        known = ", ".join(protocol_kind_names())
        if kind is None:
            raise ConfigError(f"{path}: protocol is missing (required field; one of: {known})")
        raise ConfigError(f"{path}: protocol = {kind!r} is not valid: allowed: one of {known}")
    try:
        return found.model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(path, error)) from None
