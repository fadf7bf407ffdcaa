"""vegard: instrument control and data acquisition for nanoscale electrochemistry.

`vegard.open_lab(profile)` gives a profile's devices and a RunEngine (see
`vegard.interactive`); it is loaded on first use, so `import vegard` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["open_lab"]


def __getattr__(name: str) -> Any:
    if name == "open_lab":
        from vegard.interactive import open_lab

        return open_lab
    raise AttributeError(f"module 'vegard' has no attribute {name!r}")
