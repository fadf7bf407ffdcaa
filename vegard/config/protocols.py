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
    models = protocol_models()
    kind = data.get("protocol")
    if not isinstance(kind, str) or kind not in models:  # a list/dict is unhashable
        known = ", ".join(sorted(models))
        if kind is None:
            raise ConfigError(f"{path}: protocol is missing (required field; one of: {known})")
        raise ConfigError(f"{path}: protocol = {kind!r} is not valid: allowed: one of {known}")
    try:
        return models[kind].model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(path, error)) from None
