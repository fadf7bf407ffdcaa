"""Step a temperature stage through a series, settling at every step.

The building block of temperature series (the ESM Arrhenius series composes
it with a map per step through `per_step`). Temperature and heater output are
recorded continuously as the `temperature_monitor` stream; one `primary` event
per step records the settled state and the measured settling time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import Msg

from vegard.instruments.lakeshore336_driver import HeaterRange
from vegard.instruments.temperature_stage_device import TemperatureStage

PerStep = Callable[[TemperatureStage, float, int], Generator[Msg, Any, Any]]

MONITOR_STREAM = "temperature_monitor"

logger = logging.getLogger(__name__)


def read_settled_stage(stage: TemperatureStage, setpoint_k: float, index: int):
    """Default per-step action: one event with the settled stage readings."""
    yield from bps.trigger_and_read([stage])


def temperature_steps(
    stage: TemperatureStage,
    temperatures_k: Sequence[float],
    settle_tolerance_k: float,
    settle_time_s: float,
    per_step: PerStep | None = None,
    *,
    ramp_rate_k_per_min: float | None = None,
    heater_range: HeaterRange | None = None,
    final_temperature_k: float | None = None,
    safe_temperature_k: float = 295.0,
    md: dict[str, Any] | None = None,
):
    """Settle at each of `temperatures_k` in turn and run `per_step` there.

    On any exit other than success the stage is made safe (`stage.safe_state`, which runs
    `TemperatureStage.make_safe`: `safe_temperature_k`, or the heater off if the stage is
    out of its rated range or cannot be read); on success it is sent to
    `final_temperature_k` if given (neither waits).
    """
    temperatures_k = [float(t) for t in temperatures_k]
    if not temperatures_k:
        raise ValueError("temperature_steps needs at least one temperature")
    for temperature_k in [*temperatures_k, safe_temperature_k]:
        stage.check_setpoint(temperature_k)
    if final_temperature_k is not None:
        stage.check_setpoint(final_temperature_k)
    per_step = per_step or read_settled_stage

    metadata = {
        "plan_name": "temperature_steps",
        "plan_args": {
            "temperatures_k": temperatures_k,
            "settle_tolerance_k": settle_tolerance_k,
            "settle_time_s": settle_time_s,
            "ramp_rate_k_per_min": ramp_rate_k_per_min,
        },
        "num_points": len(temperatures_k),
        "temperature_stage": stage.name,
        "monitor_stream": MONITOR_STREAM,
        "hints": {"dimensions": [([f"{stage.name}-setpoint_k"], "primary")]},
        **(md or {}),
    }
    completed = False

    @bpp.run_decorator(md=metadata)
    def steps():
        nonlocal completed
        yield from bps.mv(
            stage.settle_tolerance_k, settle_tolerance_k, stage.settle_time_s, settle_time_s
        )
        if ramp_rate_k_per_min is not None:
            yield from bps.mv(stage.ramp_rate_k_per_min, ramp_rate_k_per_min)
        if heater_range is not None:
            yield from bps.mv(stage.heater_range, heater_range)
        yield from bps.monitor(stage, name=MONITOR_STREAM)
        for index, temperature_k in enumerate(temperatures_k):
            yield from bps.checkpoint()
            yield from bps.mv(stage, temperature_k)
            yield from per_step(stage, temperature_k, index)
        yield from bps.unmonitor(stage)
        completed = True

    def leave_stage():
        # waits only for the setpoint write, not for the stage to get there
        if not completed:
            yield from bps.mv(stage.safe_state, safe_temperature_k)
            action = yield from bps.rd(stage.safe_state.action)
            logger.warning("%s left safe: %s", stage.name, action)
        elif final_temperature_k is not None:
            yield from bps.abs_set(stage.setpoint_k, final_temperature_k, wait=True)

    return (yield from bpp.finalize_wrapper(steps(), leave_stage()))
