"""Hold a map while the stage temperature is out of band; stop safely if it runs away.

A map at a set temperature is only worth recording while the sample is at that
temperature. Between lines the guard reads the stage and the sample (which follows the
stage tens of seconds behind, so a stage back in band can carry a sample still warm from
an excursion): out of band, either of them, the plan waits
(instrument time) until the temperature is back and has stayed in band for
`resume_after_s`, then goes on; a line during which the band was left is taken again
after the pause (the analysis keeps the last take of a row). Above the stage's rated
maximum (by `RUNAWAY_MARGIN_K`) the heater is running away: waiting is wrong, the plan
raises and the stage's safe exit switches the heater off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import bluesky.plan_stubs as bps

from vegard.instruments.temperature_stage_device import TemperatureStage

logger = logging.getLogger(__name__)

EXCURSION_FACTOR = 2.0
"""A map pauses when a reading is this many settle tolerances from the setpoint."""
RUNAWAY_MARGIN_K = 2.0
"""How far above the rated maximum a reading means runaway (a map held at the maximum
itself reads a few mK above it half the time)."""


class TemperatureRunawayError(RuntimeError):
    """The stage passed its rated maximum: the heater is not under control."""


class TemperatureExcursionTimeout(TimeoutError):
    """The temperature did not come back into band within the longest pause."""


@dataclass(frozen=True)
class TemperatureGuard:
    stage: TemperatureStage
    setpoint_k: float
    tolerance_k: float
    resume_after_s: float
    longest_pause_s: float

    @classmethod
    def for_map(cls, stage: TemperatureStage, setpoint_k: float, settle_tolerance_k: float,
                settle_time_s: float) -> TemperatureGuard:
        return cls(stage, setpoint_k, EXCURSION_FACTOR * settle_tolerance_k, settle_time_s,
                   stage.settle_timeout_s)

    def in_band(self, temperature_k: float, sample_temperature_k: float | None = None) -> bool:
        """Stage (and, when given, sample) within tolerance of the setpoint."""
        return all(abs(value - self.setpoint_k) <= self.tolerance_k
                   for value in (temperature_k, sample_temperature_k) if value is not None)

    def read(self):
        """(stage K, sample K), read now."""
        temperature_k = yield from bps.rd(self.stage.temperature_k)
        sample_k = yield from bps.rd(self.stage.sample_temperature_k)
        return temperature_k, sample_k

    def check_limit(self, temperature_k: float) -> None:
        rated_k = self.stage.maximum_temperature_k
        if temperature_k > rated_k + RUNAWAY_MARGIN_K:
            raise TemperatureRunawayError(
                f"{self.stage.name}: {temperature_k:.2f} K is more than {RUNAWAY_MARGIN_K:g} K "
                f"above the rated maximum {rated_k:g} K while holding {self.setpoint_k:g} K "
                "(heater runaway)")

    def wait_in_band(self):
        """Return at once if in band; else pause until back for `resume_after_s`.

        Returns the pause in instrument seconds (0 if none).
        """
        clock = self.stage.clock
        paused_at_s: float | None = None
        back_since_s: float | None = None
        while True:
            temperature_k, sample_k = yield from self.read()
            self.check_limit(temperature_k)
            now_s = clock.now()
            if self.in_band(temperature_k, sample_k):
                if paused_at_s is None:
                    return 0.0
                back_since_s = now_s if back_since_s is None else back_since_s
                if now_s - back_since_s >= self.resume_after_s:
                    logger.warning("%s back at %.3f K (sample %.3f K): map resumed after "
                                   "%.0f s", self.stage.name, temperature_k, sample_k,
                                   now_s - paused_at_s)
                    return now_s - paused_at_s
            else:
                back_since_s = None
                if paused_at_s is None:
                    paused_at_s = now_s
                    logger.warning("%s at %.3f K (sample %.3f K), out of %g ± %g K: map "
                                   "paused", self.stage.name, temperature_k, sample_k,
                                   self.setpoint_k, self.tolerance_k)
                elif now_s - paused_at_s > self.longest_pause_s:
                    raise TemperatureExcursionTimeout(
                        f"{self.stage.name}: {temperature_k:.3f} K, not back within "
                        f"{self.setpoint_k:g} ± {self.tolerance_k:g} K after "
                        f"{self.longest_pause_s:g} s (instrument time)")
            yield from bps.sleep(self.stage.poll_period_s)
