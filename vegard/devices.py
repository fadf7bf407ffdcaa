"""Building a profile's ophyd-async devices through their instrument kinds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vegard.clock import InstrumentClock
from vegard.config.models import DeviceSettings


@dataclass(frozen=True)
class BuildContext:
    """What a device may need from the session besides its own settings."""

    clock: InstrumentClock
    arrays_directory: Callable[[], Path]
    """The current run's folder for HDF5 files (valid once the run has started)."""


def build_device(name: str, settings: DeviceSettings, address: str, context: BuildContext) -> Any:
    """The unconnected device of profile entry `name`, built by its driver's kind."""
    from vegard.registry import instrument_kinds

    return instrument_kinds()[settings.driver].build(settings, name, address, context)


def close_device(device: object) -> None:
    """Close the wire connection(s) behind a device built here."""
    for owner in ("controller", "driver"):
        connection = getattr(getattr(device, owner, None), "connection", None)
        if connection is not None:
            connection.close()
