"""Physics model of a Li || LiMn1.5Ni0.5O4 (LMNO) half cell on a potentiostat (no wire protocol).

The operando SXDM experiment charges one LMNO electrode against lithium metal at C/15 up to
4.9 V while crystals in it are imaged; a crystal simulator couples to the cell through
`lithium_content()` (x in Li_x Mn1.5 Ni0.5 O4, 1 → 0 on charge).

Model (I > 0 is charge, i.e. oxidation of the cathode; the double layer is neglected):

    E(t)   = U(x) + I·R_ohm + η_ct(I) + η_d                terminal potential vs Li+/Li
    η_ct   = (2RT/F) · asinh(I / 2 i0)                      symmetric Butler–Volmer, α = 0.5
    dη_d/dt = (I·R_d − η_d) / τ_d                            solid-state diffusion polarisation
    dx/dt  = −I / Q                                          Q: capacity in coulombs

η_d is what makes the potential relax towards U(x) for minutes after the current stops, as
the real cell's open-circuit potential does.

The open-circuit potential U(x) is defined through its inverse: the lithium left at
potential U is a sum of Fermi occupancies, one per redox process k (share n_k of the
capacity, centre E_k, width w_k):

    θ(U) = Σ_k n_k / (1 + exp((U − E_k)/w_k)) + b·(U_max − U)
    x(U) = (θ(U) − θ(U_max)) / (θ(U_ocv) − θ(U_max))

normalised so that x = 1 at the pristine open-circuit potential U_ocv (4.05 V) and x = 0
at U_max = 5.5 V; b is a tiny background that keeps x(U) strictly monotonic. Processes:

    Mn3+/Mn4+ trace      a few % of the capacity, broad: the sloping start above 4.05 V
    Ni2+/Ni3+  4.70 V    narrow: the flat first plateau, x ≈ 1 → 0.5
    Ni3+/Ni4+  4.75 V    narrow: the second plateau, x ≈ 0.5 → 0
    high-potential tail  ~2 %, broad: the steep climb past 4.9 V as x → 0

A narrow width makes a plateau flat (the two-phase region); its Fermi tails are the
solid-solution regions at its ends (around x ≈ 0.5 between the two plateaus). U(x) is
tabulated once on a 0.1 mV grid and interpolated; outside 0 ≤ x ≤ 1 (over-charge or
over-discharge) the potential continues along steep linear walls.

Integration is lazy: every query first advances the cell to `clock.now()`, and the cell's
history does not depend on when it is looked at. Its state is committed only at commands and
at `COMMIT_INTERVAL_S` boundaries from when it was built; a query between two commit points
runs a copy on from the last one (sub-steps, limit searches and the hold's growing step
would otherwise split differently with every poll, and a dry run's answer would change in
its last digits with the number of polls the machine's speed let through). Under constant
current the state update is exact over any step (x linear, η_d exponential), so sub-steps
exist only to find when the voltage limit is crossed; a potential hold is integrated
implicitly (backward Euler in x), which stays stable for any step. A 15 h charge costs a
few hundred sub-steps.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
from scipy.optimize import brentq

from vegard.clock import InstrumentClock

from .parameters import Parameter, model_values

FARADAY_C_PER_MOL = 96485.332
GAS_CONSTANT_J_PER_MOL_K = 8.314462618
COULOMBS_PER_MAH = 3.6

MAXIMUM_POTENTIAL_V = 5.5
"""Upper end of the OCV table (x = 0); also the potentiostat's highest setpoint."""
_GRID_STEP_V = 1e-4
_BACKGROUND_PER_V = 1e-5
_WALL_V_PER_UNIT_X = 50.0
"""Slope of U beyond x = 0 and x = 1, where the model has no redox process left."""
_MAX_LITHIUM_STEP = 0.005
"""Largest change of x in one sub-step (resolution of the limit search and the hold)."""
_MAX_RELAXATION_STEP = 0.25
"""Largest sub-step as a fraction of the diffusion time constant (potential hold)."""
_MAX_CONSTANT_CURRENT_STEP = 0.5
"""Largest sub-step under constant current, as a fraction of the diffusion time constant."""
_FIRST_HOLD_STEP_S = 0.1
_NOISE_BLOCK = 4096
COMMIT_INTERVAL_S = 60.0
"""Instrument time between the cell's commit points."""
_EVOLVING = ("_time_s", "_lithium", "_polarisation_v", "_charge_mah", "_current_a", "_mode",
             "_limit_reached_time_s", "_hold_step_s", "_jump_due_s")
"""The attributes that integration changes (and `_fired`, copied with them)."""


class CellMode(StrEnum):
    """What the potentiostat does to the cell."""

    REST = "rest"
    GALVANOSTATIC = "galvanostatic"
    POTENTIOSTATIC = "potentiostatic"


class LmnoCell:
    """Li || LMNO half cell: open-circuit potential, polarisation, and the potentiostat's modes.

    Thread-safe: the emulator's connections and a crystal simulator may call it at once.
    """

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("active_mass_mg", 5.0, "mg", 0.001, 1000.0,
                  "mass of LMNO in the electrode; with the specific capacity sets Q"),
        Parameter("capacity_mah_per_g", 147.0, "mAh/g", 1.0, 300.0,
                  "specific capacity for x 1 → 0 (147 mAh/g: theoretical for LMNO)"),
        Parameter("initial_lithium_content", 1.0, "1", 0.0, 1.0,
                  "x in Li_x Mn1.5 Ni0.5 O4 at start (1: pristine, discharged)"),
        Parameter("open_circuit_potential_v", 4.05, "V", 3.5, 4.5,
                  "open-circuit potential of the pristine electrode (x = 1)"),
        Parameter("plateau_1_potential_v", 4.70, "V", 4.3, 5.0,
                  "centre of the Ni2+/Ni3+ plateau (x ≈ 1 → 0.5)"),
        Parameter("plateau_2_potential_v", 4.75, "V", 4.3, 5.0,
                  "centre of the Ni3+/Ni4+ plateau (x ≈ 0.5 → 0)"),
        Parameter("plateau_width_v", 0.006, "V", 0.001, 0.05,
                  "width of each Ni step; small = flat two-phase plateau, short tails"),
        Parameter("manganese_fraction", 0.04, "1", 0.0, 0.2,
                  "share of the capacity in the sloping Mn3+/Mn4+ start"),
        Parameter("manganese_potential_v", 4.10, "V", 3.5, 4.6,
                  "centre of the Mn3+/Mn4+ process"),
        Parameter("manganese_width_v", 0.04, "V", 0.005, 0.2,
                  "width of the Mn3+/Mn4+ process (broad: solid solution)"),
        Parameter("tail_fraction", 0.02, "1", 0.0, 0.2,
                  "share of the capacity in the high-potential solid-solution tail"),
        Parameter("tail_potential_v", 4.85, "V", 4.5, 5.4,
                  "centre of the high-potential tail (the climb past 4.9 V)"),
        Parameter("tail_width_v", 0.03, "V", 0.005, 0.2,
                  "width of the high-potential tail"),
        Parameter("ohmic_resistance_ohm", 30.0, "Ω", 0.0, 1e4,
                  "electrolyte, separator and contact resistance (I·R drop)"),
        Parameter("exchange_current_a", 2e-4, "A", 1e-8, 1.0,
                  "Butler–Volmer exchange current of the whole electrode"),
        Parameter("diffusion_resistance_ohm", 50.0, "Ω", 0.0, 1e5,
                  "steady-state solid-diffusion polarisation per ampere"),
        Parameter("diffusion_time_s", 600.0, "s", 1.0, 1e5,
                  "time constant of the diffusion polarisation (relaxation at rest)"),
        Parameter("temperature_k", 294.15, "K", 250.0, 350.0,
                  "cell temperature (the operando cell was held at 21.0 °C)"),
        Parameter("compliance_current_a", 0.01, "A", 1e-6, 0.1,
                  "largest current the potentiostat delivers while holding a potential"),
        Parameter("potential_noise_v", 2e-4, "V", 0.0, 0.01,
                  "standard deviation of each potential reading (Gaussian)"),
        Parameter("fault_potential_jump_at_s", 0.0, "s", 0.0, 1e8,
                  "fault injection, lost contact: at the first instant of a galvanostatic "
                  "run at or after this instrument time since the lab started, the potential "
                  "jumps to the voltage limit and the channel opens the circuit (0 = off)"),
    )

    def __init__(
        self,
        clock: InstrumentClock,
        parameters: Mapping[str, float] | None = None,
        seed: int | Sequence[int] = 0,
    ) -> None:
        values = model_values(self.PARAMETERS, parameters, "lmno_cell")
        _check_consistent(values)
        self.parameters: dict[str, float] = values
        self.clock = clock
        self._lock = threading.RLock()
        self._rng = np.random.default_rng(seed)
        self._noise = np.empty(0)
        self._noise_index = 0
        self._lithium_table, self._potential_table_v = _ocv_table(values)
        self._capacity_c = self.capacity_mah * COULOMBS_PER_MAH
        self._kinetic_scale_v = (
            2.0 * GAS_CONSTANT_J_PER_MOL_K * values["temperature_k"] / FARADAY_C_PER_MOL
        )
        self._time_s = clock.now()
        self._lithium = values["initial_lithium_content"]
        self._polarisation_v = 0.0
        self._charge_mah = 0.0
        self._current_a = 0.0
        self._mode = CellMode.REST
        self._current_setpoint_a = 0.0
        self._voltage_limit_v = MAXIMUM_POTENTIAL_V
        self._potential_setpoint_v = values["open_circuit_potential_v"]
        self._limit_reached_time_s: float | None = None
        self._technique_start_time_s: float | None = None
        self._hold_step_s = _FIRST_HOLD_STEP_S
        self._built_s = clock.now()
        """Fault schedules count from here (the lab builds its models when it starts)."""
        jump_at_s = values["fault_potential_jump_at_s"]
        self._jump_due_s: float | None = self._built_s + jump_at_s if jump_at_s > 0 else None
        self._fired: list[dict[str, Any]] = []
        self._committed: dict[str, Any] | None = None
        """The state at the last commit point while the present one is a view (else None)."""
        self._view_s = self._time_s

    # ------------------------------------------------------------------ commands

    @property
    def capacity_mah(self) -> float:
        """Charge that takes the electrode from x = 1 to x = 0."""
        return self.parameters["active_mass_mg"] * self.parameters["capacity_mah_per_g"] / 1000.0

    def c_rate_current_a(self, c_rate: float) -> float:
        """The current of a C-rate (1/15: a full charge in 15 h)."""
        return c_rate * self.capacity_mah / 1000.0

    def rest(self) -> None:
        """Open circuit: no current; the potential relaxes towards U(x)."""
        with self._lock:
            self._commit()
            self._mode = CellMode.REST
            self._current_a = 0.0

    def galvanostatic(self, current_a: float, voltage_limit_v: float) -> None:
        """Constant current until the potential reaches `voltage_limit_v`, then rest.

        The limit is an upper cut-off while charging (I > 0), a lower one while
        discharging (I < 0); at zero current there is none.
        """
        if not (math.isfinite(current_a) and math.isfinite(voltage_limit_v)):
            raise ValueError(f"current {current_a!r} A and limit {voltage_limit_v!r} V must be "
                             "finite")
        with self._lock:
            self._commit()
            self._mode = CellMode.GALVANOSTATIC
            self._current_a = self._current_setpoint_a = float(current_a)
            self._voltage_limit_v = float(voltage_limit_v)
            self._limit_reached_time_s = None
            self._technique_start_time_s = self._time_s
            self._check_limit_now()

    def potentiostatic(self, potential_v: float) -> None:
        """Hold the terminal potential; the current follows (within the compliance)."""
        if not math.isfinite(potential_v):
            raise ValueError(f"potential {potential_v!r} V must be finite")
        with self._lock:
            self._commit()
            self._mode = CellMode.POTENTIOSTATIC
            self._potential_setpoint_v = float(potential_v)
            self._technique_start_time_s = self._time_s
            self._hold_step_s = _FIRST_HOLD_STEP_S
            self._current_a = self._hold_current_a(0.0)

    # ------------------------------------------------------------------- queries

    @property
    def time_s(self) -> float:
        """Instrument time of the model's state."""
        with self._lock:
            return self._time_s

    @property
    def mode(self) -> CellMode:
        with self._lock:
            self._advance()
            return self._mode

    @property
    def current_setpoint_a(self) -> float:
        with self._lock:
            return self._current_setpoint_a

    @property
    def voltage_limit_v(self) -> float:
        with self._lock:
            return self._voltage_limit_v

    @property
    def potential_setpoint_v(self) -> float:
        with self._lock:
            return self._potential_setpoint_v

    @property
    def limit_reached(self) -> bool:
        """True once the last galvanostatic run hit its voltage limit."""
        with self._lock:
            self._advance()
            return self._limit_reached_time_s is not None

    @property
    def limit_reached_time_s(self) -> float | None:
        """Instrument time at which the last galvanostatic run hit its limit."""
        with self._lock:
            self._advance()
            return self._limit_reached_time_s

    def lithium_content(self) -> float:
        """x in Li_x Mn1.5 Ni0.5 O4 (what a crystal simulator couples to)."""
        with self._lock:
            self._advance()
            return self._lithium

    def open_circuit_potential_v(self, lithium_content: float | None = None) -> float:
        """U(x): at the present x, or at the x given."""
        with self._lock:
            if lithium_content is None:
                self._advance()
                lithium_content = self._lithium
            return self._ocv_v(lithium_content)

    def potential_v(self) -> float:
        """True (noise-free) terminal potential."""
        with self._lock:
            self._advance()
            return self._terminal_v(self._lithium, self._current_a, self._polarisation_v)

    def read_potential_v(self) -> float:
        """A potential reading with Gaussian noise."""
        with self._lock:
            return self.potential_v() + self._next_noise_v()

    def current_a(self) -> float:
        with self._lock:
            self._advance()
            return self._current_a

    def charge_mah(self) -> float:
        """Charge passed since the model was made (positive on charge)."""
        with self._lock:
            self._advance()
            return self._charge_mah

    def measure(self) -> tuple[float, float, float, CellMode]:
        """(potential reading, current, charge, mode), all at one instant."""
        with self._lock:
            return self.read_potential_v(), self._current_a, self._charge_mah, self._mode

    def ground_truth(self) -> dict[str, Any]:
        """The true state (JSON-serialisable), for checking what drivers and analysis recover."""
        with self._lock:
            self._advance()
            return {
                "instrument_time_s": self._time_s,
                "mode": self._mode.value,
                "lithium_content": self._lithium,
                "open_circuit_potential_v": self._ocv_v(self._lithium),
                "potential_v": self.potential_v(),
                "current_a": self._current_a,
                "charge_mah": self._charge_mah,
                "diffusion_polarisation_v": self._polarisation_v,
                "current_setpoint_a": self._current_setpoint_a,
                "voltage_limit_v": self._voltage_limit_v,
                "potential_setpoint_v": self._potential_setpoint_v,
                "limit_reached": self._limit_reached_time_s is not None,
                "limit_reached_time_s": self._limit_reached_time_s,
                "technique_start_time_s": self._technique_start_time_s,
                "capacity_mah": self.capacity_mah,
                "parameters": dict(self.parameters),
            }

    def safe_state(self) -> dict[str, Any]:
        """Safe = open circuit: no technique running, no current through the cell."""
        with self._lock:
            self._advance()
            output_on = self._mode is not CellMode.REST
            return {"safe": not output_on and self._current_a == 0.0, "output_on": output_on,
                    "current_a": self._current_a, "mode": self._mode.name}

    def fired_faults(self) -> list[dict[str, Any]]:
        """The physics faults that happened (instrument time since the lab started)."""
        with self._lock:
            self._advance()
            return [dict(fault) for fault in self._fired]

    # ---------------------------------------------------------------- potentials

    def _ocv_v(self, lithium: float) -> float:
        if lithium > 1.0:
            return float(self._potential_table_v[-1]) - _WALL_V_PER_UNIT_X * (lithium - 1.0)
        if lithium < 0.0:
            return float(self._potential_table_v[0]) - _WALL_V_PER_UNIT_X * lithium
        return float(np.interp(lithium, self._lithium_table, self._potential_table_v))

    def _kinetic_v(self, current_a: float) -> float:
        return self._kinetic_scale_v * math.asinh(
            current_a / (2.0 * self.parameters["exchange_current_a"]))

    def _terminal_v(self, lithium: float, current_a: float, polarisation_v: float) -> float:
        return (self._ocv_v(lithium) + current_a * self.parameters["ohmic_resistance_ohm"]
                + self._kinetic_v(current_a) + polarisation_v)

    # --------------------------------------------------------------- integration

    def advance(self) -> None:
        """Bring the model up to the clock's present."""
        with self._lock:
            self._advance()

    def _advance(self) -> None:
        """Commit to the last commit point before now, then run a view on to now."""
        target_s = self.clock.now()
        if self._committed is not None:
            if target_s == self._view_s:
                return
            self.__dict__.update(self._committed)
            self._committed = None
        step = math.floor((target_s - self._built_s) / COMMIT_INTERVAL_S)
        while True:  # through every commit point on the way
            point_s = self._built_s + (math.floor(
                (self._time_s - self._built_s) / COMMIT_INTERVAL_S) + 1) * COMMIT_INTERVAL_S
            if point_s > self._built_s + step * COMMIT_INTERVAL_S:
                break
            self._integrate_to(point_s)
        if self._time_s < target_s:
            self._committed = {name: self.__dict__[name] for name in _EVOLVING}
            self._committed["_fired"] = list(self._fired)
            self._integrate_to(target_s)
            self._view_s = target_s

    def _commit(self) -> None:
        """Make the present a commit point (a command is about to change the state)."""
        self._advance()
        self._committed = None

    def _integrate_to(self, target_s: float) -> None:
        while self._time_s < target_s:
            remaining_s = target_s - self._time_s
            if self._mode is CellMode.REST:
                self._step_at_current(remaining_s, 0.0)
            elif self._mode is CellMode.GALVANOSTATIC:
                self._galvanostatic_step(remaining_s)
            else:
                self._hold_step(remaining_s)

    def _after(self, duration_s: float, current_a: float) -> tuple[float, float]:
        """(x, η_d) after `duration_s` at constant current: exact for any duration."""
        steady_v = current_a * self.parameters["diffusion_resistance_ohm"]
        decay = math.exp(-duration_s / self.parameters["diffusion_time_s"])
        lithium = self._lithium - current_a * duration_s / self._capacity_c
        return lithium, steady_v + (self._polarisation_v - steady_v) * decay

    def _step_at_current(self, duration_s: float, current_a: float) -> None:
        self._lithium, self._polarisation_v = self._after(duration_s, current_a)
        self._charge_mah += current_a * duration_s / COULOMBS_PER_MAH
        self._time_s += duration_s

    def _beyond_limit_v(self, potential_v: float) -> float:
        """> 0 once the potential is past the limit in the direction of the current."""
        if self._current_a > 0:
            return potential_v - self._voltage_limit_v
        if self._current_a < 0:
            return self._voltage_limit_v - potential_v
        return -1.0

    def _galvanostatic_step(self, remaining_s: float) -> None:
        current_a = self._current_a
        if self._jump_due_s is not None and current_a:
            if self._time_s >= self._jump_due_s:
                self._jump_to_limit()
                return
            remaining_s = min(remaining_s, self._jump_due_s - self._time_s)
        step_s = min(remaining_s, _MAX_CONSTANT_CURRENT_STEP * self.parameters["diffusion_time_s"])
        if current_a:
            step_s = min(step_s, _MAX_LITHIUM_STEP * self._capacity_c / abs(current_a))

        def beyond(duration_s: float) -> float:
            lithium, polarisation_v = self._after(duration_s, current_a)
            return self._beyond_limit_v(self._terminal_v(lithium, current_a, polarisation_v))

        if beyond(step_s) < 0:
            self._step_at_current(step_s, current_a)
            return
        crossing_s = 0.0 if beyond(0.0) >= 0 else brentq(beyond, 0.0, step_s, xtol=1e-3)
        self._step_at_current(crossing_s, current_a)
        self._reach_limit()

    def _jump_to_limit(self) -> None:
        """Lost contact: the potential jumps to the cut-off, which opens the circuit."""
        before_v = self._terminal_v(self._lithium, self._current_a, self._polarisation_v)
        self._jump_due_s = None
        self._fired.append({
            "kind": "potential_jump",
            "instrument_time_s": self._time_s - self._built_s,
            "potential_before_v": before_v,
            "potential_after_v": self._voltage_limit_v,
            "lithium_content": self._lithium,
            "charge_mah": self._charge_mah,
        })
        self._reach_limit()

    def _check_limit_now(self) -> None:
        if (self._jump_due_s is not None and self._current_a
                and self._time_s >= self._jump_due_s):
            self._jump_to_limit()
            return
        potential_v = self._terminal_v(self._lithium, self._current_a, self._polarisation_v)
        if self._beyond_limit_v(potential_v) >= 0:
            self._reach_limit()

    def _reach_limit(self) -> None:
        self._limit_reached_time_s = self._time_s
        self._mode = CellMode.REST
        self._current_a = 0.0

    def _hold_step(self, remaining_s: float) -> None:
        # the allowed step doubles each time (fast after a setpoint change, cheap later);
        # a short step forced by the query time does not shrink it
        allowed_s = min(2.0 * self._hold_step_s,
                        _MAX_RELAXATION_STEP * self.parameters["diffusion_time_s"])
        if self._current_a:
            allowed_s = min(allowed_s,
                            _MAX_LITHIUM_STEP * self._capacity_c / abs(self._current_a))
        self._hold_step_s = allowed_s
        step_s = min(remaining_s, allowed_s)
        current_a = self._hold_current_a(step_s)
        self._current_a = current_a
        self._step_at_current(step_s, current_a)

    def _hold_current_a(self, step_s: float) -> float:
        """The current that puts the terminal potential on the setpoint at the end of the step.

        Backward Euler: x and η_d are taken at the step's end, so the residual grows
        monotonically with the current and the root is bracketed by the compliance.
        """
        limit_a = self.parameters["compliance_current_a"]
        target_v = self._potential_setpoint_v

        def residual_v(current_a: float) -> float:
            lithium, polarisation_v = self._after(step_s, current_a)
            return self._terminal_v(lithium, current_a, polarisation_v) - target_v

        if residual_v(limit_a) <= 0:
            return limit_a
        if residual_v(-limit_a) >= 0:
            return -limit_a
        return float(brentq(residual_v, -limit_a, limit_a, xtol=1e-15, rtol=1e-10))

    def _next_noise_v(self) -> float:
        if self._noise_index >= len(self._noise):
            self._noise = self._rng.standard_normal(_NOISE_BLOCK)
            self._noise_index = 0
        value = float(self._noise[self._noise_index])
        self._noise_index += 1
        return value * self.parameters["potential_noise_v"]


def _processes(values: Mapping[str, float]) -> list[tuple[float, float, float]]:
    """(share, centre V, width V) of each redox process, the Ni shares filling up to 1/2 each."""
    return [
        (values["manganese_fraction"], values["manganese_potential_v"],
         values["manganese_width_v"]),
        (0.5 - values["manganese_fraction"], values["plateau_1_potential_v"],
         values["plateau_width_v"]),
        (0.5 - values["tail_fraction"], values["plateau_2_potential_v"],
         values["plateau_width_v"]),
        (values["tail_fraction"], values["tail_potential_v"], values["tail_width_v"]),
    ]


def _ocv_table(values: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(x ascending from 0 to 1, U at each x): the inverse of the Fermi sum on a fine grid."""
    start_v = values["open_circuit_potential_v"]
    potentials_v = np.arange(MAXIMUM_POTENTIAL_V, start_v - 0.5 * _GRID_STEP_V, -_GRID_STEP_V)
    potentials_v[-1] = start_v
    occupancy = _BACKGROUND_PER_V * (MAXIMUM_POTENTIAL_V - potentials_v)
    for share, centre_v, width_v in _processes(values):
        occupancy += share * _fermi((potentials_v - centre_v) / width_v)
    lithium = (occupancy - occupancy[0]) / (occupancy[-1] - occupancy[0])
    return lithium, potentials_v


def _fermi(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^z) without overflow."""
    return 0.5 * (1.0 - np.tanh(0.5 * z))


def _check_consistent(values: Mapping[str, float]) -> None:
    """Refuse parameter sets whose processes are in the wrong order."""
    ocv_v = values["open_circuit_potential_v"]
    first_v, second_v = values["plateau_1_potential_v"], values["plateau_2_potential_v"]
    if not ocv_v < first_v < second_v:
        raise ValueError(
            f"lmno_cell: need open_circuit_potential_v ({ocv_v:g} V) < plateau_1_potential_v "
            f"({first_v:g} V) < plateau_2_potential_v ({second_v:g} V)")
    if values["manganese_fraction"] >= 0.5 or values["tail_fraction"] >= 0.5:
        raise ValueError("lmno_cell: manganese_fraction and tail_fraction must be below 0.5")
