"""Reading configuration YAML safely.

Profiles and protocols are small hand-written files: anchors/aliases (the
vehicle of "billion laughs" bombs), custom tags and huge files are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

MAXIMUM_FILE_BYTES = 1_000_000
MAXIMUM_NESTING = 32
"""Deeper nesting is no hand-written file; refused before the parser's recursion overflows."""


class _NoAliasLoader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases are not allowed in vegard files", event.start_mark
            )
        if self._depth >= MAXIMUM_NESTING:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAXIMUM_NESTING} levels deep",
                self.peek_event().start_mark,
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAXIMUM_FILE_BYTES:
        raise ConfigError(f"{path}: file is {size} bytes; at most {MAXIMUM_FILE_BYTES} allowed")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}".replace("\n", " ")) from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(f"{path}: expected a mapping of fields at the top, got {kind}")
    return data
