"""Physics model of a variable-temperature AFM stage on a cryogen bath (no wire protocol).

The stage is what a LakeShore 336 controls: sensor A on the stage block, which a
heater warms against a liquid-nitrogen bath, and sensor B on the sample, which
follows the stage through a thermal contact (tens of seconds behind). The
sample's position drifts with its temperature, which an AFM simulator reads
through `sample_drift_nm()`.

The model is integrated lazily (see `thermal_loop` for how hours cost
milliseconds), and its history does not depend on when it is looked at: the state
is committed only at commands, fault events and every `COMMIT_TICKS` controller
ticks, and a query between two commit points computes its answer on a copy from
the last one. The controller's sensor noise is indexed by tick. So the same
commands at the same instrument times give the same temperatures to the last bit,
however often (or from however many threads) the stage is read. The stage starts as
if the controller had long been holding `initial_temperature_k` on the high range with
the power-on PID.

Defaults are sized so that the 336's power-on PID (P 50, I 20, D 0) works on
the high range: holding 200-400 K takes 12-32 W of the 50 W heater (the open
stage relaxes with C/G = 200 s); 295 → 350 K settles to ±0.1 K in about 80 s
and 350 → 250 K in about 160 s, without overshoot (the integral is frozen while
the heater saturates); the sample follows some 60-80 s later; a 10 K/min ramp
is followed to about 0.02 K.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vegard.clock import InstrumentClock

from .heater_control import CONTROL_PERIOD_S, POWER_ON_PID, HeaterRange, PidSettings
from .parameters import Parameter, model_values
from .thermal_loop import ThermalLoop, ThermalNodes

RAMP_RATE_LIMITS_K_PER_MIN = (0.1, 100.0)
"""Allowed setpoint ramp rates (those of the 336)."""

_NOISE_BLOCK = 4096
COMMIT_TICKS = 600
"""Controller ticks (60 s) between the stage's commit points, aligned to its origin."""


class SetpointOutOfRange(ValueError):
    """A setpoint outside the stage's rated temperature range."""


class TemperatureStageModel:
    """Variable-temperature stage: thermal nodes, heater loop, noisy sensors, sample drift.

    Thread-safe: the emulator's connections and other simulators may call it at once.
    """

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("thermal_mass_j_per_k", 20.0, "J/K", 0.1, 1000.0,
                  "heat capacity of the stage block (heater and sensor A)"),
        Parameter("bath_temperature_k", 77.0, "K", 1.0, 300.0,
                  "cryogen bath temperature (77 K: liquid nitrogen)"),
        Parameter("bath_conductance_w_per_k", 0.1, "W/K", 0.001, 10.0,
                  "thermal link stage → bath; sets the heater power needed to hold"),
        Parameter("heater_max_power_w", 50.0, "W", 0.1, 1000.0,
                  "full-scale power of the high range (336 output 1: 50 W into 50 Ω)"),
        Parameter("sample_thermal_mass_j_per_k", 1.0, "J/K", 0.001, 100.0,
                  "heat capacity of sample and holder (sensor B)"),
        Parameter("sample_conductance_w_per_k", 0.05, "W/K", 0.0001, 10.0,
                  "thermal contact stage → sample; the sample lags by C/G"),
        Parameter("sensor_noise_k", 0.005, "K", 0.0, 1.0,
                  "standard deviation of each sensor reading (Gaussian)"),
        Parameter("initial_temperature_k", 295.0, "K", 1.0, 1000.0,
                  "stage and sample temperature at start, held by the loop"),
        Parameter("minimum_temperature_k", 200.0, "K", 1.0, 1000.0,
                  "lowest rated stage temperature; lower setpoints are refused"),
        Parameter("maximum_temperature_k", 400.0, "K", 1.0, 1000.0,
                  "highest rated stage temperature; higher setpoints are refused"),
        Parameter("drift_x_nm_per_k", 3.0, "nm/K", -1000.0, 1000.0,
                  "thermal drift of the sample position along x per kelvin"),
        Parameter("drift_y_nm_per_k", -2.0, "nm/K", -1000.0, 1000.0,
                  "thermal drift of the sample position along y per kelvin"),
        Parameter("drift_reference_temperature_k", 295.0, "K", 1.0, 1000.0,
                  "sample temperature at which the drift is zero"),
        Parameter("safe_setpoint_max_k", 320.0, "K", 1.0, 1000.0,
                  "highest setpoint a stage may be left at unattended (safe-state truth)"),
        Parameter("fault_heater_runaway_at_s", 0.0, "s", 0.0, 1e8,
                  "fault injection: the heater output sticks at 100 % at this instrument time "
                  "after start, until the heater range is switched off (0 = off)"),
        Parameter("fault_heater_runaway_s", 0.0, "s", 0.0, 1e8,
                  "fault injection: how long the runaway lasts if nobody switches the heater "
                  "off (0 = until switched off)"),
    )

    def __init__(
        self,
        clock: InstrumentClock,
        parameters: Mapping[str, float] | None = None,
        seed: int | Sequence[int] = 0,
    ) -> None:
        values = model_values(self.PARAMETERS, parameters, "temperature_stage")
        if not values["minimum_temperature_k"] < values["maximum_temperature_k"]:
            raise ValueError(
                f"temperature_stage: minimum_temperature_k = {values['minimum_temperature_k']:g}"
                f" must be below maximum_temperature_k = {values['maximum_temperature_k']:g}")
        self.parameters: dict[str, float] = values
        self.clock = clock
        self._lock = threading.RLock()
        control_seed, reading_seed = np.random.SeedSequence(seed).spawn(2)
        self._control_seed = control_seed
        self._control_noise: dict[int, np.ndarray] = {}
        self._reading_rng = np.random.default_rng(reading_seed)
        self._noise = np.empty(0)
        self._noise_index = 0
        nodes = ThermalNodes(
            stage_thermal_mass_j_per_k=values["thermal_mass_j_per_k"],
            sample_thermal_mass_j_per_k=values["sample_thermal_mass_j_per_k"],
            bath_conductance_w_per_k=values["bath_conductance_w_per_k"],
            sample_conductance_w_per_k=values["sample_conductance_w_per_k"],
            bath_temperature_k=values["bath_temperature_k"],
            heater_max_power_w=values["heater_max_power_w"],
        )
        self._loop = ThermalLoop(nodes, values["initial_temperature_k"])
        """The committed state (at the last commit point)."""
        self._view: ThermalLoop = self._loop
        """The state at the present tick: the committed one, or a copy run on from it."""
        self._origin_s = clock.now()
        self._runaway_ticks = self._fault_ticks("fault_heater_runaway_at_s")
        self._runaway_end_tick: int | None = None
        self._fired: list[dict[str, Any]] = []

    def _fault_ticks(self, name: str) -> int | None:
        at_s = self.parameters[name]
        return None if at_s <= 0 else round(at_s / CONTROL_PERIOD_S)

    # ------------------------------------------------------------------ commands

    @property
    def rated_range_k(self) -> tuple[float, float]:
        return self.parameters["minimum_temperature_k"], self.parameters["maximum_temperature_k"]

    def set_setpoint(self, target_k: float) -> None:
        """New target; the setpoint jumps there, or ramps if ramping is enabled."""
        low, high = self.rated_range_k
        if not low <= target_k <= high:
            raise SetpointOutOfRange(
                f"setpoint {target_k:g} K outside the stage's rated {low:g} ... {high:g} K")
        with self._lock:
            self._commit()
            self._loop.set_target(target_k)

    def set_ramp(self, enabled: bool, rate_k_per_min: float) -> None:
        """Ramp settings; switching ramping off mid-ramp puts the setpoint at the target."""
        low, high = RAMP_RATE_LIMITS_K_PER_MIN
        if not low <= rate_k_per_min <= high:
            raise ValueError(f"ramp rate {rate_k_per_min:g} K/min outside {low:g} ... {high:g}")
        with self._lock:
            self._commit()
            self._loop.set_ramp(enabled, rate_k_per_min)

    def set_heater_range(self, heater_range: int) -> None:
        new_range = HeaterRange(heater_range)
        with self._lock:
            self._commit()
            self._loop.set_heater_range(new_range)

    def set_pid(self, proportional: float, integral: float, derivative: float) -> None:
        settings = PidSettings(proportional, integral, derivative).check()
        with self._lock:
            self._commit()
            self._loop.pid = settings

    def reset(self) -> None:
        """The 336's power-up settings (`*RST`): heater off, power-on PID, no ramp.

        With the heater off the stage then cools towards the bath, as a real one would.
        """
        with self._lock:
            self._commit()
            self._loop.set_ramp(False, self._loop.ramp_rate_k_per_min)
            self._loop.set_heater_range(HeaterRange.OFF)
            self._loop.pid = POWER_ON_PID

    # ------------------------------------------------------------------- queries

    @property
    def time_s(self) -> float:
        """Instrument time of the model's state: its latest controller tick."""
        with self._lock:
            return self._origin_s + self._view.tick_count * CONTROL_PERIOD_S

    @property
    def setpoint_k(self) -> float:
        """The effective setpoint, which moves towards the target while ramping."""
        with self._lock:
            self._advance()
            return self._view.setpoint_k

    @property
    def target_setpoint_k(self) -> float:
        with self._lock:
            return self._loop.target_k

    @property
    def ramp_enabled(self) -> bool:
        with self._lock:
            return self._loop.ramp_enabled

    @property
    def ramp_rate_k_per_min(self) -> float:
        with self._lock:
            return self._loop.ramp_rate_k_per_min

    @property
    def ramping(self) -> bool:
        with self._lock:
            self._advance()
            return self._view.ramping

    @property
    def heater_range(self) -> HeaterRange:
        with self._lock:
            return self._loop.heater_range

    @property
    def pid(self) -> PidSettings:
        with self._lock:
            return self._loop.pid

    def stage_temperature_k(self) -> float:
        """True (noise-free) stage temperature."""
        with self._lock:
            self._advance()
            return self._view.stage_k

    def sample_temperature_k(self) -> float:
        """True (noise-free) sample temperature."""
        with self._lock:
            self._advance()
            return self._view.sample_k

    def read_temperature_k(self, sensor: str) -> float:
        """A reading with Gaussian noise: sensor "A" on the stage, "B" on the sample."""
        with self._lock:
            self._advance()
            true_k = {"A": self._view.stage_k, "B": self._view.sample_k}[sensor.upper()]
            return true_k + self._next_reading_noise_k()

    def heater_output_percent(self) -> float:
        """Output as % of the selected range's full-scale power."""
        with self._lock:
            self._advance()
            return self._view.output_percent

    def heater_power_w(self) -> float:
        with self._lock:
            self._advance()
            return self._view.heater_power_w

    def sample_drift_nm(self) -> tuple[float, float]:
        """Thermal drift (x, y) of the sample position from where it sits at the reference T."""
        with self._lock:
            self._advance()
            delta_k = self._view.sample_k - self.parameters["drift_reference_temperature_k"]
            return (
                self.parameters["drift_x_nm_per_k"] * delta_k,
                self.parameters["drift_y_nm_per_k"] * delta_k,
            )

    def ground_truth(self) -> dict[str, Any]:
        """The true state (JSON-serialisable), for checking what drivers and analysis recover."""
        with self._lock:
            self._advance()
            loop = self._view
            drift_x_nm, drift_y_nm = self.sample_drift_nm()
            return {
                "elapsed_s": self.time_s - self._origin_s,
                "stage_temperature_k": loop.stage_k,
                "sample_temperature_k": loop.sample_k,
                "setpoint_k": loop.setpoint_k,
                "target_setpoint_k": loop.target_k,
                "ramp_enabled": loop.ramp_enabled,
                "ramp_rate_k_per_min": loop.ramp_rate_k_per_min,
                "ramping": loop.ramping,
                "heater_range": int(loop.heater_range),
                "heater_output_percent": loop.output_percent,
                "heater_power_w": loop.heater_power_w,
                "pid": {
                    "proportional": loop.pid.proportional,
                    "integral": loop.pid.integral,
                    "derivative": loop.pid.derivative,
                },
                "drift_x_nm": drift_x_nm,
                "drift_y_nm": drift_y_nm,
                "parameters": dict(self.parameters),
            }

    # --------------------------------------------------------------- integration

    def advance(self) -> None:
        """Bring the model up to the clock's present."""
        with self._lock:
            self._advance()

    def _due_tick(self) -> int:
        # Ticks are counted from a fixed origin, so rounding never accumulates.
        return int((self.clock.now() - self._origin_s) / CONTROL_PERIOD_S + 1e-6)

    def _advance(self) -> None:
        """Commit up to the last commit point before now, then view the present from it."""
        due = self._due_tick()
        while events := self._fault_events(due):  # a runaway's start sets its end: loop
            self._run_to(events[0])
            self._apply_fault_event(events[0])
        self._run_to(due - due % COMMIT_TICKS)
        if self._loop.tick_count == due:
            self._view = self._loop
        elif self._view is not self._loop and self._view.tick_count == due:
            pass  # already viewed at this tick (the other queries of the same line)
        elif self._view is self._loop or self._view.tick_count > due or self._view.tried_skipping:
            start = self._loop
            if self._view is not self._loop:  # from where its first skip was tried
                tried = self._view.before_first_try
                start = tried if tried is not None and tried.tick_count <= due else start
            view = copy.copy(start)
            view.tried_skipping, view.before_first_try = False, None
            view.run(due - view.tick_count, self._control_noise_k)
            self._view = view
        elif self._view.tick_count < due:
            # run on: the view never tried to skip, so this is where a run from the commit
            # point to `due` passes too (see `ThermalLoop.run`), and polling every few
            # seconds costs the ticks since the last poll, not since the commit
            self._view.run(due - self._view.tick_count, self._control_noise_k)

    def _commit(self) -> None:
        """Commit the state at the present tick (a command is about to change it)."""
        self._advance()
        self._run_to(self._due_tick())
        self._view = self._loop

    def _run_to(self, tick: int) -> None:
        """Run the committed state to `tick` through every commit point on the way."""
        loop = self._loop
        while loop.tick_count < tick:
            stop = min(tick, (loop.tick_count // COMMIT_TICKS + 1) * COMMIT_TICKS)
            loop.run(stop - loop.tick_count, self._control_noise_k)
        if self._view is not loop and self._view.tick_count <= loop.tick_count:
            self._view = loop

    def _fault_events(self, due: int) -> list[int]:
        """Ticks up to `due` at which the heater-runaway fault starts or ends."""
        events = []
        if self._runaway_ticks is not None and self._runaway_ticks <= due:
            events.append(self._runaway_ticks)
        if self._runaway_end_tick is not None and self._runaway_end_tick <= due:
            events.append(self._runaway_end_tick)
        return sorted(events)

    def _apply_fault_event(self, tick: int) -> None:
        loop = self._loop
        if tick == self._runaway_ticks:
            self._runaway_ticks = None
            if loop.heater_range != HeaterRange.OFF:
                loop.stuck_output_percent = 100.0
                duration_s = self.parameters["fault_heater_runaway_s"]
                if duration_s > 0:
                    self._runaway_end_tick = tick + round(duration_s / CONTROL_PERIOD_S)
            self._fired.append({
                "kind": "heater_runaway", "instrument_time_s": tick * CONTROL_PERIOD_S,
                "stage_temperature_k": loop.stage_k, "heater_range": int(loop.heater_range),
            })
        elif tick == self._runaway_end_tick:
            self._runaway_end_tick = None
            loop.stuck_output_percent = None

    def fired_faults(self) -> list[dict[str, Any]]:
        with self._lock:
            self._advance()
            return list(self._fired)

    def safe_state(self) -> dict[str, Any]:
        """Safe when no runaway is on and the heater is off or held at a safe setpoint."""
        with self._lock:
            self._advance()
            loop = self._view
            heater_off = loop.heater_range == HeaterRange.OFF
            runaway = loop.stuck_output_percent is not None
            safe_setpoint = loop.target_k <= self.parameters["safe_setpoint_max_k"]
            return {
                "safe": not runaway and (heater_off or safe_setpoint),
                "heater_off": heater_off,
                "heater_runaway": runaway,
                "target_setpoint_k": loop.target_k,
                "stage_temperature_k": loop.stage_k,
            }

    def _control_noise_k(self, tick: int) -> float:
        """The controller's sensor noise at `tick`: a block of the control stream per 4096."""
        block_index, offset = divmod(tick, _NOISE_BLOCK)
        block = self._control_noise.get(block_index)
        if block is None:
            if len(self._control_noise) > 4:
                self._control_noise.clear()
            rng = np.random.default_rng(np.random.SeedSequence(
                self._control_seed.entropy,
                spawn_key=(*self._control_seed.spawn_key, block_index)))
            block = self._control_noise[block_index] = rng.standard_normal(_NOISE_BLOCK)
        return float(block[offset]) * self.parameters["sensor_noise_k"]

    def _next_reading_noise_k(self) -> float:
        if self._noise_index >= len(self._noise):
            self._noise = self._reading_rng.standard_normal(_NOISE_BLOCK)
            self._noise_index = 0
        value = float(self._noise[self._noise_index])
        self._noise_index += 1
        return value * self.parameters["sensor_noise_k"]
