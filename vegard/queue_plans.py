"""The plans a queue server offers: vegard's protocols, and bluesky's standard scans.

bluesky-queueserver lists and validates a plan from its signature, so each plan here has
type-annotated parameters (JSON-able: paths, numbers, lists) and a docstring; clients
see them with `qserver allowed plans` or the HTTP API. The protocol plans run the same
code as `vegard run`: the protocol model validates the parameters, the protocol kind's
checks run against the profile's limits before anything moves, and the kind's live
analyses are subscribed for the run.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import bluesky.plans as bp
import bluesky.preprocessors as bpp
from pydantic import ValidationError

from vegard.config.errors import ConfigError, describe_validation_error
from vegard.config.protocols import Protocol, load_protocol
from vegard.session import Session

STANDARD_PLANS = {"count": bp.count, "scan": bp.scan, "list_scan": bp.list_scan}
"""bluesky's own plans, offered with the profile's devices by their profile names."""

QUEUE_SOURCE = "queue"
"""What a protocol built from plan parameters names as its file in messages and runs."""


def _protocol_run(session: Session, protocol: Protocol, path: Path):
    """Check the protocol against the profile, then run its plan with its analyses."""
    bench = session.check(protocol, path)
    missing = [name for name in bench.names.values() if name not in session.devices]
    if missing:
        raise ConfigError(
            f"{path}: protocol {protocol.protocol!r} needs devices {missing}, not opened "
            f"by this queue server (opened: {sorted(session.devices)})")
    analyses = session.protocol_analyses(protocol)
    plan = session.protocol_plan(protocol, path, bench)
    return (yield from bpp.subs_wrapper(plan, {"all": analyses}))


def _validated(model: type[Protocol], data: dict[str, Any], source: str) -> Protocol:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(source, error)) from None


def vegard_plans(session_of: Callable[[], Session]) -> dict[str, Callable[..., Any]]:
    """The plans of one queue server's namespace, bound to its session (looked up when a
    plan runs: the lists of plans are generated without one)."""

    def run_protocol(protocol_path: str):
        """Run a protocol file with the checks and the live analysis of `vegard run`.

        Parameters
        ----------
        protocol_path
            Path of the protocol YAML file on the queue server's machine (relative paths
            from the directory `vegard serve` was started in).
        """
        path = Path(protocol_path).expanduser()
        protocol = load_protocol(path)
        return (yield from _protocol_run(session_of(), protocol, path))

    def temperature_steps(
        temperatures_k: list[float],
        ramp_rate_k_per_min: float = 10.0,
        settle_tolerance_k: float = 0.1,
        settle_time_s: float = 60.0,
        heater_range: Literal["low", "medium", "high"] = "high",
        final_temperature_k: float | None = None,
        sample: str = "not named",
    ):
        """Step the temperature stage through setpoints, settling at each (the
        `temperature_steps` protocol, its settings given as parameters).

        Parameters
        ----------
        temperatures_k
            Setpoints in K, in order (within the stage's limits in the profile).
        ramp_rate_k_per_min
            Setpoint ramp rate, K/min (0 < value <= 50).
        settle_tolerance_k
            Settled when within this many K of the setpoint (0 < value <= 10) ...
        settle_time_s
            ... for this many seconds of instrument time (0 <= value <= 3600).
        heater_range
            The LakeShore heater range: low, medium or high.
        final_temperature_k
            Where the stage is sent after the last step (no wait); none: stays.
        sample
            The sample, for the run's start document.
        """
        source = f"{QUEUE_SOURCE}:temperature_steps"
        from vegard.kinds.protocols.temperature_steps import TemperatureStepsProtocol

        protocol = _validated(TemperatureStepsProtocol, {
            "protocol": "temperature_steps", "sample": sample,
            "temperature_stage": {
                "temperatures_k": temperatures_k, "ramp_rate_k_per_min": ramp_rate_k_per_min,
                "settle_tolerance_k": settle_tolerance_k, "settle_time_s": settle_time_s,
                "heater_range": heater_range, "final_temperature_k": final_temperature_k,
            },
        }, source)
        return (yield from _protocol_run(session_of(), protocol, Path(source)))

    return {"run_protocol": run_protocol, "temperature_steps": temperature_steps}
