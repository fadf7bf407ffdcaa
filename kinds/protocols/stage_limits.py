"""Protocol temperatures against the rated range of the profile's temperature stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from vegard.config.errors import ConfigError
from vegard.registry import Bench

StageTemperatureK = Annotated[float, Field(ge=200.0, le=400.0)]
"""The widest range any shipped stage is rated for; the profile narrows it."""

STAGE_DRIVER = "lakeshore336"


def check_stage_temperatures(temperatures_k: dict[str, float], bench: Bench, path: Path) -> None:
    """Every protocol temperature (field → value) within the profile stage's rated range."""
    stage = bench.settings["temperature_stage"]
    low, high = stage.minimum_temperature_k, stage.maximum_temperature_k
    for field, value in temperatures_k.items():
        if not low <= value <= high:
            raise ConfigError(
                f"{path}: {field} = {value:g} is not valid: "
                f"allowed: {low:g} ≤ value ≤ {high:g} K (profile {bench.profile!r})"
            )
