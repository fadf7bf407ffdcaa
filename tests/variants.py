"""Protocol and profile variants for tests: the shipped file loaded, its model copied with
some fields changed and validated again, and written out. Never edited as text: a
renamed field fails here, loudly, instead of leaving the "variant" unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol


def _merged(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(data)
    for key, value in changes.items():
        if key not in merged:
            raise KeyError(f"{key!r} is not a field here (fields: {sorted(merged)})")
        if isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _write(model, changes: dict[str, Any], path: Path) -> Path:
    variant = type(model).model_validate(_merged(model.model_dump(mode="json"), changes))
    path.write_text(yaml.safe_dump(variant.model_dump(mode="json"), sort_keys=False))
    return path


def protocol_variant(source: Path, path: Path, **changes: Any) -> Path:
    """`source` with `changes` (nested dicts change nested fields), written to `path`."""
    return _write(load_protocol(source), changes, path)


def profile_variant(source: Path, path: Path, **changes: Any) -> Path:
    return _write(load_profile(source), changes, path)
