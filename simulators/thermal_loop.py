"""The stage's closed heater loop in time: two thermal nodes, setpoint ramp and PID.

Two lumped nodes - the stage (heater, control sensor) tied to a cryogen bath,
and the sample on the stage behind a thermal contact:

    C_stage  dT_stage/dt  = P_heater - G_bath (T_stage - T_bath) - G_sample (T_stage - T_sample)
    C_sample dT_sample/dt = G_sample (T_stage - T_sample)

The controller updates every `CONTROL_PERIOD_S`; in between the heater power is
constant and the nodes are advanced exactly (matrix exponential), so the step
size costs no accuracy.

Hours of instrument time must cost milliseconds. Whenever the loop is in a
regime where one tick is an affine map of the state - holding or following a
ramp without saturating, saturated at full or zero output, or heater off - n
ticks are one matrix power. Only transients are stepped tick by tick, with the
sensor noise fed into the loop. The mK jitter that noise causes in the *true*
temperature is therefore left out of skipped stretches (readings stay noisy).
A loop tuned into oscillation (e.g. P near 1000) never settles and is stepped
throughout: about half a second of computing per instrument hour.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .heater_control import (
    CONTROL_PERIOD_S,
    HEATER_RANGE_FRACTION,
    POWER_ON_PID,
    HeaterRange,
    PidSettings,
    clamp_output,
    integral_frozen,
    loop_terms,
)

# The loop's state as a vector, for the affine maps:
_STAGE, _SAMPLE, _INTEGRAL, _PREVIOUS_ERROR, _SLOPE, _SETPOINT, _ONE = range(7)
_SIZE = 7
_LINEAR, _FULL_POWER, _ZERO_POWER, _HEATER_OFF = "linear", "full power", "zero power", "off"
_SETTLED_K = 0.05
"""How close to its steady state the loop must be before a linear stretch is skipped."""
_TICKS_BETWEEN_CHECKS = 20


@dataclass(frozen=True)
class ThermalNodes:
    """The physical constants of the two-node stage."""

    stage_thermal_mass_j_per_k: float
    sample_thermal_mass_j_per_k: float
    bath_conductance_w_per_k: float
    sample_conductance_w_per_k: float
    bath_temperature_k: float
    heater_max_power_w: float

    @property
    def sample_lag_s(self) -> float:
        return self.sample_thermal_mass_j_per_k / self.sample_conductance_w_per_k

    def holding_power_w(self, temperature_k: float) -> float:
        """Heater power that holds both nodes at `temperature_k` (the bath leak)."""
        return self.bath_conductance_w_per_k * (temperature_k - self.bath_temperature_k)

    def tick_coefficients(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """Exact one-period update at constant power: (node matrix, power input, bath input)."""
        c_stage, c_sample = self.stage_thermal_mass_j_per_k, self.sample_thermal_mass_j_per_k
        g_bath, g_sample = self.bath_conductance_w_per_k, self.sample_conductance_w_per_k
        generator = np.zeros((4, 4))
        generator[:2, :2] = [
            [-(g_bath + g_sample) / c_stage, g_sample / c_stage],
            [g_sample / c_sample, -g_sample / c_sample],
        ]
        generator[0, 2] = 1.0 / c_stage
        generator[0, 3] = g_bath * self.bath_temperature_k / c_stage
        step = [[float(x) for x in row] for row in matrix_exponential(generator * CONTROL_PERIOD_S)]
        return (
            (step[0][0], step[0][1], step[1][0], step[1][1]),
            (step[0][2], step[1][2]),
            (step[0][3], step[1][3]),
        )


def matrix_exponential(matrix: np.ndarray) -> np.ndarray:
    """exp(matrix) by scaling and squaring a Taylor series (small matrices; avoids scipy)."""
    norm = float(np.max(np.sum(np.abs(matrix), axis=1)))
    squarings = max(0, math.ceil(math.log2(norm / 0.25))) if norm > 0.25 else 0
    scaled = matrix / 2.0**squarings
    result = term = np.eye(len(matrix))
    for order in range(1, 18):
        term = term @ scaled / order
        result = result + term
    for _ in range(squarings):
        result = result @ result
    return result


class ThermalLoop:
    """State and time evolution of stage, sample and controller (not thread-safe; see owner)."""

    def __init__(self, nodes: ThermalNodes, initial_temperature_k: float) -> None:
        self.nodes = nodes
        self._plant = nodes.tick_coefficients()
        self._maps: dict[tuple[object, ...], np.ndarray] = {}
        self.tick_count = 0
        self.tried_skipping = False
        """A stretch was skipped, or tried, since this was last cleared (see `run`)."""
        self.before_first_try: ThermalLoop | None = None
        """The state at the first try, where any run through it tries the same skip."""
        self._pid_cache: tuple[PidSettings, tuple[float, float, float, float]] | None = None
        self._range_cache: tuple[HeaterRange, float] | None = None
        self.stage_k = self.sample_k = float(initial_temperature_k)
        self.setpoint_k = self.target_k = float(initial_temperature_k)
        self.ramp_enabled = False
        self.ramp_rate_k_per_min = 10.0
        self.ramping = False
        self.pid: PidSettings = POWER_ON_PID
        self.heater_range = HeaterRange.HIGH
        self.previous_error_k = 0.0
        self.slope_k_per_s = 0.0
        self.stuck_output_percent: float | None = None
        """A failed output stage (heater runaway): the output ignores the loop until the range
        is switched off."""
        # Start as if the loop had long been holding the initial temperature.
        self.integral_percent = clamp_output(self._holding_output_percent(initial_temperature_k))
        self.output_percent = self.integral_percent

    # ------------------------------------------------------------------ settings

    def set_target(self, target_k: float) -> None:
        """The setpoint jumps to the target, or ramps there if ramping is enabled."""
        self.target_k = float(target_k)
        if self.ramp_enabled:
            self.ramping = self.setpoint_k != self.target_k
        else:
            self.setpoint_k = self.target_k
            self.ramping = False

    def set_ramp(self, enabled: bool, rate_k_per_min: float) -> None:
        """Ramp settings; switching ramping off mid-ramp puts the setpoint at the target."""
        self.ramp_enabled = bool(enabled)
        self.ramp_rate_k_per_min = float(rate_k_per_min)
        if not enabled and self.ramping:
            self.setpoint_k = self.target_k
            self.ramping = False

    def set_heater_range(self, heater_range: HeaterRange) -> None:
        self.heater_range = HeaterRange(heater_range)
        if self.heater_range == HeaterRange.OFF:
            self.integral_percent = self.output_percent = 0.0
            self.stuck_output_percent = None  # the range relay opens: the runaway ends

    @property
    def full_scale_power_w(self) -> float:
        return HEATER_RANGE_FRACTION[self.heater_range] * self.nodes.heater_max_power_w

    @property
    def heater_power_w(self) -> float:
        return self.output_percent / 100.0 * self.full_scale_power_w

    # ----------------------------------------------------------------- evolution

    def run(self, ticks: int, noise_k: Callable[[int], float]) -> None:
        """Advance `ticks` controller periods; `noise_k(tick)` gives the noise of the control
        reading taken at that tick (a function of the tick, so batching cannot shift it).

        The loop looks for an affine stretch to skip only at ticks that are multiples of
        `_TICKS_BETWEEN_CHECKS`, whatever tick a run starts at: a run that never tried to skip
        (`tried_skipping` stays False) then ends in the state a longer run from the same start
        passes through, so a view of the present can be run on instead of recomputed, and one
        that tried can be recomputed from `before_first_try`."""
        while ticks > 0:
            phase = self.tick_count % _TICKS_BETWEEN_CHECKS
            if phase == 0 and self.stuck_output_percent is None:
                mode = self._settled_mode()
                if mode is not None:
                    if not self.tried_skipping:  # how far it gets depends on `ticks`
                        self.tried_skipping = True
                        self.before_first_try = copy.copy(self)
                    done = self._skip(mode, ticks)
                    if done:
                        ticks -= done
                        continue
            for _ in range(min(ticks, _TICKS_BETWEEN_CHECKS - phase)):
                self.tick(noise_k(self.tick_count))
                ticks -= 1

    def tick(self, noise_k: float = 0.0) -> None:
        """One controller period: ramp the setpoint, update the output, advance the nodes."""
        if self.ramping:
            step_k = self._ramp_step_k()
            if abs(self.target_k - self.setpoint_k) <= abs(step_k):
                self.setpoint_k, self.ramping = self.target_k, False
            else:
                self.setpoint_k += step_k
        error_k = self.setpoint_k - (self.stage_k + noise_k)
        memory, proportional, derivative_time_s, integral_step = self._pid_terms()
        # `loop_terms`, term for term (the same operations in the same order: same bits)
        slope = memory * self.slope_k_per_s + (1.0 - memory) * (
            error_k - self.previous_error_k) / CONTROL_PERIOD_S
        direct = proportional * (error_k + derivative_time_s * slope)
        trial_integral = self.integral_percent + integral_step * error_k
        if self.heater_range == HeaterRange.OFF:
            self.integral_percent, output = 0.0, 0.0
        elif integral_frozen(direct + trial_integral, error_k):
            output = direct + self.integral_percent
        else:
            self.integral_percent, output = trial_integral, direct + trial_integral
        if self.stuck_output_percent is not None and self.heater_range != HeaterRange.OFF:
            output = self.stuck_output_percent
        self.output_percent = output = min(max(output, 0.0), 100.0)
        self.previous_error_k, self.slope_k_per_s = error_k, slope
        power_w = output / 100.0 * self._full_scale_w()
        (a, b, c, d), (p_stage, p_sample), (k_stage, k_sample) = self._plant
        stage_k, sample_k = self.stage_k, self.sample_k
        self.stage_k = a * stage_k + b * sample_k + p_stage * power_w + k_stage
        self.sample_k = c * stage_k + d * sample_k + p_sample * power_w + k_sample
        self.tick_count += 1

    def _pid_terms(self) -> tuple[float, float, float, float]:
        """(slope memory, P, derivative time, integral gain per period) of the current PID,
        computed once per PID setting: a tick runs hundreds of thousands of times a run."""
        pid = self.pid
        cached = self._pid_cache
        if cached is None or cached[0] is not pid:
            terms = (pid.slope_memory, pid.proportional, pid.derivative_time_s,
                     pid.integral_rate_percent_per_k_s * CONTROL_PERIOD_S)
            self._pid_cache = cached = (pid, terms)
        return cached[1]

    def _full_scale_w(self) -> float:
        heater_range = self.heater_range
        cached = self._range_cache
        if cached is None or cached[0] is not heater_range:
            self._range_cache = cached = (heater_range, self.full_scale_power_w)
        return cached[1]

    def _holding_output_percent(self, temperature_k: float) -> float:
        if self.full_scale_power_w <= 0:
            return 0.0
        return 100.0 * self.nodes.holding_power_w(temperature_k) / self.full_scale_power_w

    def _ramp_step_k(self) -> float:
        """Signed setpoint change per period while ramping (0 otherwise)."""
        if not self.ramping:
            return 0.0
        step_k = self.ramp_rate_k_per_min / 60.0 * CONTROL_PERIOD_S
        return math.copysign(step_k, self.target_k - self.setpoint_k)

    # ------------------------------------------------------ skipping affine stretches

    def _noise_free_state(self) -> np.ndarray:
        """The state as a vector, with the noisy controller memory replaced by its true value."""
        return np.array([
            self.stage_k, self.sample_k, self.integral_percent,
            self.setpoint_k - self.stage_k, 0.0, self.setpoint_k, 1.0,
        ])

    def _mode_of(self, state: np.ndarray) -> str | None:
        """The regime of the next (noise-free) tick from `state`, if it is affine."""
        if self.heater_range == HeaterRange.OFF:
            return _HEATER_OFF
        error_k = float(state[_SETPOINT]) + self._ramp_step_k() - float(state[_STAGE])
        direct, trial_integral, _ = loop_terms(
            self.pid, error_k, float(state[_INTEGRAL]), float(state[_PREVIOUS_ERROR]),
            float(state[_SLOPE]))
        frozen = direct + float(state[_INTEGRAL])
        if error_k > 0 and frozen >= 100.0:
            return _FULL_POWER
        if error_k < 0 and frozen <= 0.0:
            return _ZERO_POWER
        if 0.0 <= direct + trial_integral <= 100.0:
            return _LINEAR
        return None

    def _settled_mode(self) -> str | None:
        """The affine regime the loop is settled in now, or None during a transient.

        A linear stretch is only skipped near the holding or ramp-following steady
        state, where the output cannot leave 0-100 % between the stretch's ends.
        """
        state = self._noise_free_state()
        mode = self._mode_of(state)
        if mode != _LINEAR:
            return mode
        rate_k_per_s = self._ramp_step_k() / CONTROL_PERIOD_S
        nodes = self.nodes
        steady_power_w = nodes.holding_power_w(self.stage_k) + rate_k_per_s * (
            nodes.stage_thermal_mass_j_per_k + nodes.sample_thermal_mass_j_per_k)
        error_k = self.setpoint_k + self._ramp_step_k() - self.stage_k
        direct, trial_integral, _ = loop_terms(
            self.pid, error_k, self.integral_percent, error_k, 0.0)
        output = direct + trial_integral
        settled = (
            abs(self.setpoint_k - self.stage_k) < _SETTLED_K
            and abs(self.stage_k - self.sample_k - nodes.sample_lag_s * rate_k_per_s) < _SETTLED_K
            and abs(output / 100.0 * self.full_scale_power_w - steady_power_w)
            < 0.01 * self.full_scale_power_w
            and 2.0 <= output <= 98.0
        )
        return _LINEAR if settled else None

    def _skip(self, mode: str, ticks: int) -> int:
        """Advance up to `ticks` periods by one affine map; how many were done (0 if none)."""
        if self.ramping:  # stop before the ramp's last (partial) step
            steps_left = math.ceil(abs(self.target_k - self.setpoint_k) / abs(self._ramp_step_k()))
            ticks = min(ticks, steps_left - 1)
        start = self._noise_free_state()
        if self._mode_of(start) != mode:
            return 0
        matrix = self._tick_map(mode)
        while ticks >= 2:
            with np.errstate(all="ignore"):  # an unstable loop overflows: refused below
                end = np.linalg.matrix_power(matrix, ticks - 1) @ start
            if np.all(np.isfinite(end)) and self._mode_of(end) == mode:
                self.stage_k, self.sample_k = float(end[_STAGE]), float(end[_SAMPLE])
                self.integral_percent = float(end[_INTEGRAL])
                self.previous_error_k = float(end[_PREVIOUS_ERROR])
                self.slope_k_per_s = float(end[_SLOPE])
                self.setpoint_k = float(end[_SETPOINT])
                self.tick_count += ticks - 1
                self.tick()  # the last period explicitly, so the output is the current one
                return ticks
            ticks //= 2
        return 0

    def _tick_map(self, mode: str) -> np.ndarray:
        """One noise-free tick in `mode` as a matrix over the state vector."""
        key = (mode, self.heater_range, self.pid, self._ramp_step_k())
        if key in self._maps:
            return self._maps[key]
        unit = np.eye(_SIZE)
        setpoint = unit[_SETPOINT] + self._ramp_step_k() * unit[_ONE]
        error = setpoint - unit[_STAGE]
        direct, trial_integral, slope = loop_terms(
            self.pid, error, unit[_INTEGRAL], unit[_PREVIOUS_ERROR], unit[_SLOPE])
        if mode == _LINEAR:
            integral, output = trial_integral, direct + trial_integral
        elif mode == _HEATER_OFF:
            integral, output = np.zeros(_SIZE), np.zeros(_SIZE)
        else:
            integral = unit[_INTEGRAL]
            output = (100.0 if mode == _FULL_POWER else 0.0) * unit[_ONE]
        power = output / 100.0 * self.full_scale_power_w
        (a, b, c, d), (p_stage, p_sample), (k_stage, k_sample) = self._plant
        matrix = np.empty((_SIZE, _SIZE))
        matrix[_STAGE] = a * unit[_STAGE] + b * unit[_SAMPLE] + p_stage * power + (
            k_stage * unit[_ONE])
        matrix[_SAMPLE] = c * unit[_STAGE] + d * unit[_SAMPLE] + p_sample * power + (
            k_sample * unit[_ONE])
        matrix[_INTEGRAL] = integral
        matrix[_PREVIOUS_ERROR] = error
        matrix[_SLOPE] = slope
        matrix[_SETPOINT] = setpoint
        matrix[_ONE] = unit[_ONE]
        if len(self._maps) >= 64:
            self._maps.clear()
        self._maps[key] = matrix
        return matrix
