"""Protocol files: what to measure, in the scientist's units, validated up front.

The `protocol` field names the kind; each kind is one pydantic model. Limits
here are the instruments' rated ranges; the session checks them again against
the profile before connecting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from .errors import ConfigError, describe_validation_error
from .profiles import StrictModel
from .yaml_file import read_yaml_mapping

StageTemperatureK = Annotated[float, Field(ge=200.0, le=400.0)]


class TemperatureStepsSettings(StrictModel):
    temperatures_k: list[StageTemperatureK] = Field(min_length=1, max_length=500)
    ramp_rate_k_per_min: float = Field(gt=0, le=50)
    settle_tolerance_k: float = Field(gt=0, le=10)
    settle_time_s: float = Field(ge=0, le=3600)
    heater_range: Literal["low", "medium", "high"] = "high"
    final_temperature_k: StageTemperatureK | None = None


class TemperatureStepsProtocol(StrictModel):
    protocol: Literal["temperature_steps"]
    sample: str = Field(min_length=1)
    description: str = ""
    temperature_stage: TemperatureStepsSettings


PROTOCOL_MODELS: dict[str, type[StrictModel]] = {
    "temperature_steps": TemperatureStepsProtocol,
}

Protocol = TemperatureStepsProtocol


def load_protocol(path: Path | str) -> Protocol:
    path = Path(path)
    data = read_yaml_mapping(path)
    kind = data.get("protocol")
    if kind not in PROTOCOL_MODELS:
        known = ", ".join(sorted(PROTOCOL_MODELS))
        if kind is None:
            raise ConfigError(f"{path}: protocol is missing (required field; one of: {known})")
        raise ConfigError(f"{path}: protocol = {kind!r} is not valid: allowed: one of {known}")
    try:
        return PROTOCOL_MODELS[kind].model_validate(data)  # type: ignore[return-value]
    except ValidationError as error:
        raise ConfigError(describe_validation_error(path, error)) from None
