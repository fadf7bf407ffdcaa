"""Current through a conductive tip on a memristive mixed conductor: c-AFM I–V sweeps.

The tip–sample junction is a spreading resistance in parallel with a rectifying contact, and
the wiring adds a stray capacitance (BRIEF §4, review "Hysteretic I–V detection"):

    I = G(w)·V + I0·(exp(V/(n·k_B·T/q)) − 1) + I_C
    G(w) = G_off + w·(G_on − G_off),  G_on = 4r/ρ (spreading resistance ρ/4r),  G_off = G_on/ratio

w ∈ [0.01, 0.99] is the ionic (dopant) state under the tip. Ions move only beyond the
threshold: for |V| > V_th the state follows a logistic law, d logit(w)/dt = ±ν(T)·sinh(|V|/V0)
/ sinh(V_th/V0) (set at positive, reset at negative bias: dw/dt ∝ sinh(V/V0)·w(1−w)), ν(T)
Arrhenius; below V_th it holds, so the I–V curve is hysteretic only once the sweep passes V_th.
V_th and G_on vary from grain to grain (ESM sample grains). The state persists at a point from
one sweep to the next.

The controller steps the bipolar triangle 0 → +A → 0 → −A → 0 (+ offset) at a constant sweep
rate; the current amplifier averages each step. Each voltage step ΔV moves a charge C·ΔV
through the stray capacitance, delivered with the time constant R·C of the junction (R = ρ/4r)
— the displacement current C·dV/dt, smeared over the following steps when a step is shorter
than R·C. Then amplifier noise (white, A/√Hz over the step's bandwidth 1/(2·step)) and its
range: readings clip at ±full scale.

The review's numbers do not agree with each other: ρ = 10⁴ Ω·cm and r = 10 nm give ρ/4r =
2.5 GΩ as it says, but with its 10–100 pF stray capacitance R·C = 25–250 ms, not the 4–40 s it
quotes. We keep R and C (the physical inputs) and so R·C = 50 ms at the defaults (20 pF).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .parameters import Parameter, model_values

BOLTZMANN_EV_PER_K = 8.617333262e-5
REFERENCE_TEMPERATURE_K = 300.0
STATE_BOUND_LOGIT = math.log(99.0)
"""w stays within [0.01, 0.99]: a fresh point starts at 0.01 (off)."""
BIAS_LIMIT_V = 10.0
POINTS_LIMITS = (8, 8192)
CYCLES_LIMITS = (1, 64)
RATE_LIMITS_V_PER_S = (1e-3, 1e4)
RANGE_LIMITS_A = (1e-12, 1e-5)
SWEEP_TRUTH = ("sample_x_nm", "sample_y_nm", "grain_id", "switching_threshold_v",
               "on_conductance_s", "off_conductance_s", "stray_capacitance_f",
               "temperature_k", "saturated_samples")
"""Per-sweep truth: where, the threshold and conductances it switched with."""


class CafmSettingError(ValueError):
    """A c-AFM setting the controller refuses; the message names it and its range."""


@dataclass(frozen=True)
class IvSweep:
    """`CAFM:SWEEP`: the bipolar triangle, its offset, points, cycles and sweep rate."""

    amplitude_v: float = 1.0
    offset_v: float = 0.0
    points_per_cycle: int = 64
    cycles: int = 1
    sweep_rate_v_per_s: float = 1.0

    def step_duration_s(self) -> float:
        return 4.0 * self.amplitude_v / self.sweep_rate_v_per_s / self.points_per_cycle

    def duration_s(self) -> float:
        return self.points_per_cycle * self.cycles * self.step_duration_s()

    def bias_v(self) -> np.ndarray:
        """0 → +A → 0 → −A → 0 in `points_per_cycle` steps (ramps without their end
        points), plus offset, repeated: the convention of `plans.spectroscopy_waveforms`."""
        quarter = self.points_per_cycle // 4
        ramp = np.arange(quarter) / quarter
        unit = np.concatenate([ramp, 1.0 - ramp, -ramp, ramp - 1.0])
        return np.tile(self.offset_v + self.amplitude_v * unit, self.cycles)

    def check(self) -> None:
        _check("sweep amplitude", self.amplitude_v, 1e-3, BIAS_LIMIT_V, "V")
        _check("sweep |offset| + amplitude", abs(self.offset_v) + self.amplitude_v, 0.0,
               BIAS_LIMIT_V, "V")
        _check("sweep points per cycle", self.points_per_cycle, *POINTS_LIMITS, "")
        if self.points_per_cycle % 4:
            raise CafmSettingError(
                f"sweep points per cycle = {self.points_per_cycle} not valid: a multiple of 4")
        _check("sweep cycles", self.cycles, *CYCLES_LIMITS, "")
        _check("sweep rate", self.sweep_rate_v_per_s, *RATE_LIMITS_V_PER_S, "V/s")


class MemristiveContact:
    """I(V, t) of the tip–sample junction with its ionic state, per grain."""

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("cafm_resistivity_ohm_cm", 1.0e4, "Ω·cm", 1.0, 1e12,
                  "resistivity ρ of the switched (on) state; typical ion conductor 1e4"),
        Parameter("cafm_contact_radius_nm", 10.0, "nm", 1.0, 500.0,
                  "tip–surface contact radius r (10–100 nm); R_on = ρ/4r"),
        Parameter("cafm_on_off_ratio", 10.0, "1", 1.0, 1e6,
                  "G_on/G_off: conductance contrast of the ionic state"),
        Parameter("cafm_conductance_grain_spread", 0.3, "1", 0.0, 0.9,
                  "grain-to-grain relative spread of G_on (uniform, ±)"),
        Parameter("cafm_rectifier_saturation_current_a", 1.0e-13, "A", 0.0, 1e-6,
                  "I0 of the rectifying (Schottky-like) contact"),
        Parameter("cafm_rectifier_ideality", 20.0, "1", 1.0, 200.0,
                  "ideality n of the rectifying contact (n·kT/q = 0.52 V at 300 K)"),
        Parameter("cafm_stray_capacitance_pf", 20.0, "pF", 0.0, 1000.0,
                  "stray capacitance C of the AFM wiring (review: 10–100 pF)"),
        Parameter("cafm_switching_threshold_v", 3.0, "V", 0.1, 9.0,
                  "threshold V_th of ionic motion (FORC-IV on Ca-BFO: ~3 V)"),
        Parameter("cafm_threshold_grain_spread_v", 0.3, "V", 0.0, 2.0,
                  "grain-to-grain spread of V_th (uniform, ±)"),
        Parameter("cafm_switching_rate_300k_per_s", 300.0, "1/s", 1e-3, 1e6,
                  "rate ν of the logistic state change at V_th, 300 K"),
        Parameter("cafm_switching_voltage_scale_v", 0.5, "V", 0.01, 10.0,
                  "V0 of the sinh(V/V0) field acceleration above V_th"),
        Parameter("cafm_switching_activation_energy_ev", 0.3, "eV", 0.0, 2.0,
                  "activation energy of ν"),
        Parameter("cafm_current_noise_a_per_rthz", 1.0e-13, "A/√Hz", 0.0, 1e-6,
                  "current amplifier input noise floor"),
    )

    def __init__(self, parameters: Mapping[str, float] | None = None,
                 seed: int | Sequence[int] = 0) -> None:
        self.parameters = model_values(self.PARAMETERS, parameters, "cafm_iv")
        p = self.parameters
        if p["cafm_threshold_grain_spread_v"] >= p["cafm_switching_threshold_v"]:
            raise ValueError(
                f"cafm_iv: cafm_threshold_grain_spread_v = {p['cafm_threshold_grain_spread_v']:g}"
                f" V must stay below cafm_switching_threshold_v = "
                f"{p['cafm_switching_threshold_v']:g} V")
        self._seed = tuple(np.atleast_1d(seed).tolist())

    def _grain_uniform(self, grain_id: int, stream: int) -> float:
        return float(np.random.default_rng((*self._seed, 0xCAF, stream, int(grain_id))
                                           ).uniform(-1, 1))

    def on_conductance_s(self, grain_id: int) -> float:
        p = self.parameters
        ohm_m = p["cafm_resistivity_ohm_cm"] * 1e-2
        nominal = 4.0 * p["cafm_contact_radius_nm"] * 1e-9 / ohm_m
        return nominal * (1.0 + p["cafm_conductance_grain_spread"] * self._grain_uniform(
            grain_id, 1))

    def threshold_v(self, grain_id: int) -> float:
        p = self.parameters
        return p["cafm_switching_threshold_v"] + p["cafm_threshold_grain_spread_v"] * (
            self._grain_uniform(grain_id, 2))

    def rc_time_s(self) -> float:
        """R·C with R = ρ/4r (nominal) and the stray C: the smearing of C·dV/dt."""
        p = self.parameters
        resistance = p["cafm_resistivity_ohm_cm"] * 1e-2 / (4.0 * p["cafm_contact_radius_nm"]
                                                            * 1e-9)
        return resistance * p["cafm_stray_capacitance_pf"] * 1e-12

    def sweep(self, sweep: IvSweep, grain_id: int, temperature_k: float, initial_logit: float,
              range_a: float, rng: np.random.Generator | None
              ) -> tuple[np.ndarray, float, dict[str, float]]:
        """Currents (A, clipped) of every step, the final state's logit, and the truth."""
        p = self.parameters
        bias = sweep.bias_v()
        dt = sweep.step_duration_s()
        g_on = self.on_conductance_s(grain_id)
        g_off = g_on / p["cafm_on_off_ratio"]
        v_th = self.threshold_v(grain_id)
        v0 = p["cafm_switching_voltage_scale_v"]
        barrier = p["cafm_switching_activation_energy_ev"] / BOLTZMANN_EV_PER_K
        rate = p["cafm_switching_rate_300k_per_s"] * math.exp(
            -barrier * (1.0 / temperature_k - 1.0 / REFERENCE_TEMPERATURE_K))
        beyond = np.abs(bias) > v_th
        drive = np.where(beyond, np.sign(bias) * rate * np.sinh(np.abs(bias) / v0)
                         / math.sinh(v_th / v0), 0.0)
        logit = np.empty(bias.size)
        state = initial_logit
        for k in range(bias.size):  # the state is read at the end of each step
            state = min(max(state + drive[k] * dt, -STATE_BOUND_LOGIT), STATE_BOUND_LOGIT)
            logit[k] = state
        w = 1.0 / (1.0 + np.exp(-logit))
        thermal_v = p["cafm_rectifier_ideality"] * BOLTZMANN_EV_PER_K * temperature_k
        current = (g_off + w * (g_on - g_off)) * bias + p[
            "cafm_rectifier_saturation_current_a"] * np.expm1(np.minimum(bias / thermal_v, 200.0))
        current = current + self._displacement_current_a(bias, dt)
        sigma = p["cafm_current_noise_a_per_rthz"] * math.sqrt(1.0 / (2.0 * dt))
        if rng is not None and sigma > 0:
            current = current + sigma * rng.standard_normal(current.shape)
        saturated = int(np.count_nonzero(np.abs(current) >= range_a))
        truth = {"switching_threshold_v": v_th, "on_conductance_s": g_on,
                 "off_conductance_s": g_off,
                 "stray_capacitance_f": p["cafm_stray_capacitance_pf"] * 1e-12,
                 "temperature_k": temperature_k, "saturated_samples": float(saturated)}
        return np.clip(current, -range_a, range_a), state, truth

    def _displacement_current_a(self, bias_v: np.ndarray, step_s: float) -> np.ndarray:
        """Per step, the mean current of the charges C·ΔV moved by the voltage steps, each
        delivered as exp(−t/RC) (the sweep starts from 0 V)."""
        capacitance_f = self.parameters["cafm_stray_capacitance_pf"] * 1e-12
        rc_s = self.rc_time_s()
        delivered = 1.0 if rc_s <= 0 else -math.expm1(-step_s / rc_s)
        jumps = np.diff(bias_v, prepend=0.0) * capacitance_f
        out = np.empty(bias_v.size)
        pending = 0.0
        for k, charge in enumerate(jumps):
            pending += charge
            out[k] = pending * delivered / step_s
            pending -= pending * delivered
        return out


class CafmChannel:
    """The controller's c-AFM mode: sweep, amplifier range, states per point, truth."""

    def __init__(self, physics: MemristiveContact, seed: int | Sequence[int] = 0) -> None:
        self.physics = physics
        self.sweep = IvSweep()
        self.range_a = 1e-8
        self._states: dict[tuple[float, float], float] = {}
        self._rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 0xCAF])
        self._truth: list[dict[str, float]] = []

    def reset(self) -> None:
        self.sweep = IvSweep()
        self.range_a = 1e-8

    def set_sweep(self, amplitude_v: float, offset_v: float, points_per_cycle: int,
                  cycles: int, sweep_rate_v_per_s: float) -> None:
        sweep = IvSweep(amplitude_v, offset_v, int(points_per_cycle), int(cycles),
                        sweep_rate_v_per_s)
        sweep.check()
        self.sweep = sweep

    def set_range(self, range_a: float) -> None:
        _check("current amplifier range", range_a, *RANGE_LIMITS_A, "A")
        self.range_a = range_a

    def acquire(self, local: Mapping[str, np.ndarray], sample_x_nm: float, sample_y_nm: float,
                temperature_k: float) -> np.ndarray:
        grain = int(np.ravel(local["grain_id"])[0])
        key = (round(sample_x_nm, 1), round(sample_y_nm, 1))
        current, state, truth = self.physics.sweep(
            self.sweep, grain, temperature_k, self._states.get(key, -STATE_BOUND_LOGIT),
            self.range_a, self._rng)
        self._states[key] = state
        self._truth.append({"sample_x_nm": sample_x_nm, "sample_y_nm": sample_y_nm,
                            "grain_id": float(grain), **truth})
        return np.ascontiguousarray(current, dtype=np.float64)

    def truth(self) -> dict[str, np.ndarray]:
        if not self._truth:
            return {}
        return {name: np.array([record[name] for record in self._truth])
                for name in SWEEP_TRUTH}

    def ground_truth(self) -> dict[str, float]:
        sweeps = self.truth()
        if not sweeps:
            return {}
        p = self.physics.parameters
        return {
            "sweeps": len(self._truth),
            "cafm_switching_threshold_v": p["cafm_switching_threshold_v"],
            "rc_time_s": self.physics.rc_time_s(),
            "switching_threshold_v_mean": float(np.mean(sweeps["switching_threshold_v"])),
            "on_conductance_s_mean": float(np.mean(sweeps["on_conductance_s"])),
            "saturated_samples": int(np.sum(sweeps["saturated_samples"])),
        }


def _check(name: str, value: float, low: float, high: float, unit: str) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        unit_text = f" {unit}" if unit else ""
        raise CafmSettingError(f"{name} = {value:g} not valid: allowed {low:g} … {high:g}"
                               f"{unit_text}")
