"""Surface-potential relaxation after a lateral bias step: what time-resolved KPFM records.

The sample carries lateral electrodes a distance d apart (the review's tr-KPFM devices;
Ca-BFO, LiNbO3, ceria); the controller's bias output drives one of them. At the tip the
surface potential follows a bias step at once by the electronic part f_e·V (electrons
answer in < 1 µs) and is then screened by mobile ionic charge, which relaxes towards its
new equilibrium −f_i·V with a single time constant τ = d²/D (D the diffusivity of the
charged species, the review's D ≈ d²/τ):

    CPD(u) = CPD0 + (f_e − f_i)·V1 + f_i·(V1 − V0)·exp(−u/τ)      (u since the step)
           = A + B·exp(−u/τ)

CPD0 is the ESM sample's own contact potential at the point, so it differs from grain to
grain; D(T) = D(300 K)·exp(−E_a/k_B·(1/T − 1/300 K)) (Ca-BFO: 2·10⁻⁹ m²/s, E_a 0.13–0.14
eV), times a per-grain factor. The record starts with the surface in equilibrium at the
baseline bias V0. The KPFM feedback loop follows with a first-order lag `kpfm_loop_time_
constant_s` (the 20 ms resolution of tr-KPFM is the sampling), adds white CPD noise and
cannot null beyond its range (the reading saturates there). Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .parameters import Parameter, model_values

BOLTZMANN_EV_PER_K = 8.617333262e-5
REFERENCE_TEMPERATURE_K = 300.0
NOISE_REFERENCE_INTERVAL_S = 0.02
"""The CPD noise parameter is the rms of one sample at the 20 ms tr-KPFM resolution."""
STEP_BIAS_LIMIT_V = 10.0
INTERVAL_LIMITS_S = (1e-3, 10.0)
DURATION_LIMIT_S = 3600.0
MAX_SAMPLES = 200_000
RECORD_TRUTH = ("sample_x_nm", "sample_y_nm", "grain_id", "relaxation_time_s",
                "diffusion_coefficient_m2_per_s", "cpd_offset_v", "cpd_amplitude_v",
                "temperature_k")
"""Per-record truth: where, and the A, B, τ (and D) of CPD(u) = A + B·exp(−u/τ)."""


class KpfmSettingError(ValueError):
    """A tr-KPFM setting the controller refuses; the message names it and its range."""


@dataclass(frozen=True)
class KpfmStep:
    """`KPFM:STEP`: baseline for `before_s`, then the step bias for `after_s`, sampled."""

    step_bias_v: float = 0.0
    before_s: float = 1.0
    after_s: float = 10.0
    sample_interval_s: float = 0.02
    baseline_v: float = 0.0

    def samples_before(self) -> int:
        return round(self.before_s / self.sample_interval_s)

    def samples(self) -> int:
        return self.samples_before() + round(self.after_s / self.sample_interval_s)

    def duration_s(self) -> float:
        return self.samples() * self.sample_interval_s

    def check(self) -> None:
        for name, value in (("step bias", self.step_bias_v), ("baseline", self.baseline_v)):
            _check(f"KPFM {name}", value, -STEP_BIAS_LIMIT_V, STEP_BIAS_LIMIT_V, "V")
        _check("KPFM sample interval", self.sample_interval_s, *INTERVAL_LIMITS_S, "s")
        _check("KPFM time before the step", self.before_s, 0.0, DURATION_LIMIT_S, "s")
        _check("KPFM time after the step", self.after_s, self.sample_interval_s,
               DURATION_LIMIT_S, "s")
        _check("KPFM samples", self.samples(), 2, MAX_SAMPLES, "")


class SurfacePotentialRelaxation:
    """CPD(t) at the tip after a lateral bias step, per grain, with the KPFM loop's limits."""

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("kpfm_diffusion_coefficient_300k_m2_per_s", 2.0e-9, "m²/s", 1e-14, 1e-5,
                  "diffusivity D of the screening charge at 300 K (Ca-BFO, tr-KPFM: 2e-9)"),
        Parameter("kpfm_activation_energy_ev", 0.14, "eV", 0.0, 2.0,
                  "activation energy of D (Ca-BFO bias-on 0.14 eV, bias-off 0.13 eV)"),
        Parameter("kpfm_interelectrode_distance_um", 100.0, "µm", 0.1, 10_000.0,
                  "lateral electrode gap d; τ = d²/D (the review's Ca-BFO device: ~100 µm)"),
        Parameter("kpfm_diffusion_grain_spread", 0.2, "1", 0.0, 0.9,
                  "grain-to-grain relative spread of D (uniform, ±)"),
        Parameter("kpfm_bias_fraction", 0.5, "1", 0.0, 1.0,
                  "fraction f_e of the lateral bias at the tip at once (mid-gap: 0.5)"),
        Parameter("kpfm_screening_fraction", 0.3, "1", 0.0, 1.0,
                  "fraction f_i of the lateral bias the mobile ions screen at equilibrium"),
        Parameter("kpfm_cpd_noise_v", 0.005, "V", 0.0, 1.0,
                  "rms CPD noise of one 20 ms sample (scales as 1/√interval)"),
        Parameter("kpfm_loop_time_constant_s", 0.005, "s", 1e-6, 1.0,
                  "first-order lag of the KPFM nulling loop"),
        Parameter("kpfm_feedback_range_v", 10.0, "V", 0.1, 10.0,
                  "largest |CPD| the nulling loop reaches; the reading saturates there"),
    )

    def __init__(self, parameters: Mapping[str, float] | None = None,
                 seed: int | Sequence[int] = 0) -> None:
        self.parameters = model_values(self.PARAMETERS, parameters, "trkpfm_relaxation")
        self._seed = tuple(np.atleast_1d(seed).tolist())

    def _grain_factor(self, grain_id: int) -> float:
        """1 ± spread, the same for a grain wherever it is met."""
        u = np.random.default_rng((*self._seed, 0x4B50, int(grain_id))).uniform(-1, 1)
        return 1.0 + self.parameters["kpfm_diffusion_grain_spread"] * float(u)

    def diffusion_coefficient_m2_per_s(self, grain_id: int, temperature_k: float) -> float:
        p = self.parameters
        barrier = p["kpfm_activation_energy_ev"] / BOLTZMANN_EV_PER_K
        arrhenius = math.exp(-barrier * (1.0 / temperature_k - 1.0 / REFERENCE_TEMPERATURE_K))
        return p["kpfm_diffusion_coefficient_300k_m2_per_s"] * arrhenius * (
            self._grain_factor(grain_id))

    def relaxation_time_s(self, grain_id: int, temperature_k: float) -> float:
        d_m = self.parameters["kpfm_interelectrode_distance_um"] * 1e-6
        return d_m**2 / self.diffusion_coefficient_m2_per_s(grain_id, temperature_k)

    def record(self, step: KpfmStep, grain_id: int, contact_potential_v: float,
               temperature_k: float, rng: np.random.Generator | None
               ) -> tuple[np.ndarray, dict[str, float]]:
        """CPD samples (V) of one record and its truth (A, B, τ, D)."""
        p = self.parameters
        f_e, f_i = p["kpfm_bias_fraction"], p["kpfm_screening_fraction"]
        tau_s = self.relaxation_time_s(grain_id, temperature_k)
        lag_s = p["kpfm_loop_time_constant_s"]
        v0, v1 = step.baseline_v, step.step_bias_v
        before = contact_potential_v + (f_e - f_i) * v0
        offset_v = contact_potential_v + (f_e - f_i) * v1
        amplitude_v = f_i * (v1 - v0)
        t = np.arange(step.samples()) * step.sample_interval_s
        u = t - step.samples_before() * step.sample_interval_s
        after = u >= 0
        ua = np.where(after, u, 0.0)
        lagged = 1.0 - np.exp(-ua / lag_s)
        # first-order lag of the exponential part: τ/(τ − τ_L)·(e^{−u/τ} − e^{−u/τ_L})
        ratio = tau_s / (tau_s - lag_s) if abs(tau_s - lag_s) > 1e-12 else 1.0
        decaying = ratio * (np.exp(-ua / tau_s) - np.exp(-ua / lag_s))
        cpd = np.where(after, before + (offset_v - before) * lagged + amplitude_v * decaying,
                       before)
        sigma = p["kpfm_cpd_noise_v"] * math.sqrt(
            NOISE_REFERENCE_INTERVAL_S / step.sample_interval_s)
        if rng is not None and sigma > 0:
            cpd = cpd + sigma * rng.standard_normal(cpd.shape)
        limit = p["kpfm_feedback_range_v"]
        truth = {"relaxation_time_s": tau_s,
                 "diffusion_coefficient_m2_per_s": self.diffusion_coefficient_m2_per_s(
                     grain_id, temperature_k),
                 "cpd_offset_v": offset_v, "cpd_amplitude_v": amplitude_v}
        return np.clip(cpd, -limit, limit), truth


class KpfmChannel:
    """The controller's tr-KPFM mode: the step it will apply and the truth of each record."""

    def __init__(self, physics: SurfacePotentialRelaxation,
                 seed: int | Sequence[int] = 0) -> None:
        self.physics = physics
        self.step = KpfmStep()
        self._rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), 0x4B50])
        self._truth: list[dict[str, float]] = []

    def reset(self) -> None:
        self.step = KpfmStep()

    def set_step(self, step_bias_v: float, before_s: float, after_s: float,
                 sample_interval_s: float, baseline_v: float) -> None:
        step = KpfmStep(step_bias_v, before_s, after_s, sample_interval_s, baseline_v)
        step.check()
        self.step = step

    def acquire(self, local: Mapping[str, np.ndarray], sample_x_nm: float, sample_y_nm: float,
                temperature_k: float) -> np.ndarray:
        """One record at a point (`local`: the sample's properties there, one value each)."""
        grain = int(np.ravel(local["grain_id"])[0])
        cpd, truth = self.physics.record(
            self.step, grain, float(np.ravel(local["contact_potential_v"])[0]), temperature_k,
            self._rng)
        self._truth.append({"sample_x_nm": sample_x_nm, "sample_y_nm": sample_y_nm,
                            "grain_id": float(grain), "temperature_k": temperature_k, **truth})
        return np.ascontiguousarray(cpd, dtype=np.float64)

    def truth(self) -> dict[str, np.ndarray]:
        """Every record's truth, in order (`RECORD_TRUTH` arrays), {} before the first."""
        if not self._truth:
            return {}
        return {name: np.array([record[name] for record in self._truth])
                for name in RECORD_TRUTH}

    def ground_truth(self) -> dict[str, float]:
        records = self.truth()
        if not records:
            return {}
        p = self.physics.parameters
        return {
            "records": len(self._truth),
            "kpfm_diffusion_coefficient_300k_m2_per_s": p[
                "kpfm_diffusion_coefficient_300k_m2_per_s"],
            "kpfm_interelectrode_distance_um": p["kpfm_interelectrode_distance_um"],
            "relaxation_time_s_mean": float(np.mean(records["relaxation_time_s"])),
            "diffusion_coefficient_m2_per_s_mean": float(
                np.mean(records["diffusion_coefficient_m2_per_s"])),
        }


def _check(name: str, value: float, low: float, high: float, unit: str) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        unit_text = f" {unit}" if unit else ""
        raise KpfmSettingError(f"{name} = {value:g} not valid: allowed {low:g} … {high:g}"
                               f"{unit_text}")
