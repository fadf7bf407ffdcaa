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


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases are not allowed in vegard files", event.start_mark
            )
        return super().compose_node(parent, index)


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
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(f"{path}: expected a mapping of fields at the top, got {kind}")
    return data
