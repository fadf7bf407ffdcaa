"""Ionic switching under a biased tip: what ESM voltage spectroscopy sees at one point.

The ionic state under the tip is an ensemble of sites, each switching its Vegard strain up
once the bias (less the imprint) exceeds its threshold and down once it falls below minus
that threshold. Thresholds are spread normally with width `switching_width_v` about V_c, so
the fully relaxed (quasi-static) state θ ∈ [−1, 1] on the ascending branch is
2·Φ((V − V_c+)/w) − 1 and on the descending one 2·Φ((V − V_c−)/w) − 1, Φ the normal CDF,
V_c± = ±V_c + imprint: half switched exactly at the coercive biases (the BRIEF's "ion state θ
relaxing to θ_eq(V) only when |V| > V_c"). θ moves towards the branch only where the branch
lies beyond it (up on the ascending, down on the descending side), and only at the rate
1/τ(T), τ = τ(300 K)·exp(E_a/k_B·(1/T − 1/300 K)) (Arrhenius), so a sweep whose steps are
short against τ lags: it switches at larger |V| and less completely (the loop closes as the
sweep gets faster, opens as it slows). Between the thresholds (a 0 V read step) θ holds.

Response of a step, complex amplitude at the contact resonance (pm, before the sensitivity):
the switchable Vegard strain θ·A_sw·U_ac (A_sw per volt of drive, times the grain's
orientation factor) plus the in-field electrostatic first harmonic c·(V_dc − V_cpd)·U_ac,
signed, so in-field loops tilt with V_dc and out-of-field ones (V_dc = read bias, 0 V)
carry only c·(−V_cpd)·U_ac. V_c and the imprint vary from grain to grain (the ESM sample's
grains), each grain's values drawn from its id. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from .parameters import Parameter, model_values

BOLTZMANN_EV_PER_K = 8.617333262e-5
REFERENCE_TEMPERATURE_K = 300.0


@dataclass(frozen=True)
class SweepWaveform:
    """The controller's DC-modulation sweep: bias per step and which steps are in-field."""

    bias_v: np.ndarray  # (2·steps_per_cycle·cycles,) write, read, write, read, ...
    in_field: np.ndarray
    dc_v: np.ndarray  # (steps_per_cycle·cycles,) the write biases


def dc_modulation_sweep(amplitude_v: float, offset_v: float, steps_per_cycle: int,
                        cycles: int, read_bias_v: float) -> SweepWaveform:
    """0 → +A → 0 → −A → 0 in `steps_per_cycle` steps (ramps without their end points),
    plus offset, each write step followed by a read step: the BE convention the controller
    generates itself (the plans' `spectroscopy_waveforms` builds the same steps)."""
    quarter = steps_per_cycle // 4
    ramp = np.arange(quarter) / quarter
    unit = np.concatenate([ramp, 1.0 - ramp, -ramp, ramp - 1.0])
    dc = np.tile(offset_v + amplitude_v * unit, cycles)
    bias = np.empty(2 * dc.size)
    bias[0::2], bias[1::2] = dc, read_bias_v
    in_field = np.zeros(bias.size, dtype=bool)
    in_field[0::2] = True
    return SweepWaveform(bias_v=bias, in_field=in_field, dc_v=dc)


@dataclass(frozen=True)
class PointSwitching:
    """The switching parameters at a set of points (flat arrays)."""

    coercive_voltage_negative_v: np.ndarray
    coercive_voltage_positive_v: np.ndarray
    switchable_strain_pm_per_v: np.ndarray


class IonicSwitching:
    """Threshold switching of the Vegard strain under the tip, per grain, on the clock."""

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("switching_threshold_v", 3.0, "V", 0.1, 9.0,
                  "threshold bias V_c of ionic switching (FORC-IV on Ca-BFO: ~3 V)"),
        Parameter("switching_threshold_spread_v", 0.3, "V", 0.0, 3.0,
                  "grain-to-grain spread of V_c (uniform, ±)"),
        Parameter("switching_imprint_v", 0.2, "V", -3.0, 3.0,
                  "mean imprint: the loop's centre bias, (V_c+ + V_c−)/2"),
        Parameter("switching_imprint_spread_v", 0.2, "V", 0.0, 3.0,
                  "grain-to-grain spread of the imprint (uniform, ±)"),
        Parameter("switching_width_v", 0.3, "V", 0.01, 3.0,
                  "spread (standard deviation) of the site thresholds about V_c"),
        Parameter("switching_time_300k_s", 0.002, "s", 1.0e-6, 1.0e4,
                  "relaxation time τ of the ionic state at 300 K"),
        Parameter("switching_activation_energy_ev", 0.26, "eV", 0.0, 2.0,
                  "activation energy of τ (LiCoO2 from the √D scaling: 0.26 eV)"),
        Parameter("switchable_strain_pm_per_v", 20.0, "pm/V", 0.0, 1000.0,
                  "fully switched Vegard response per volt of AC drive, orientation factor 1"),
    )

    def __init__(self, parameters: Mapping[str, float] | None = None,
                 seed: int | Sequence[int] = 0) -> None:
        self.parameters = model_values(self.PARAMETERS, parameters, "esm_spectroscopy")
        p = self.parameters
        reach_v = abs(p["switching_imprint_v"]) + p["switching_imprint_spread_v"]
        if reach_v >= p["switching_threshold_v"]:
            raise ValueError(
                f"esm_spectroscopy: |switching_imprint_v| + switching_imprint_spread_v = "
                f"{reach_v:g} V must stay below switching_threshold_v = "
                f"{p['switching_threshold_v']:g} V (else a 0 V read step would switch)")
        self._seed = tuple(np.atleast_1d(seed).tolist())

    def relaxation_time_s(self, temperature_k: float) -> float:
        p = self.parameters
        barrier = p["switching_activation_energy_ev"] / BOLTZMANN_EV_PER_K
        return p["switching_time_300k_s"] * math.exp(
            barrier * (1.0 / temperature_k - 1.0 / REFERENCE_TEMPERATURE_K))

    def _grain_uniform(self, grain_id: np.ndarray, stream: int) -> np.ndarray:
        """A uniform number in [−1, 1) per grain, the same for a grain wherever it is met."""
        ids = np.asarray(grain_id, dtype=np.int64).ravel()
        unique, inverse = np.unique(ids, return_inverse=True)
        values = np.array([np.random.default_rng((*self._seed, stream, int(g))).uniform(-1, 1)
                           for g in unique])
        return values[inverse] if unique.size else np.zeros(0)

    def at(self, grain_id: np.ndarray, orientation_factor: np.ndarray) -> PointSwitching:
        """V_c−, V_c+ and the switchable strain per volt at points of these grains."""
        p = self.parameters
        threshold = p["switching_threshold_v"] + p["switching_threshold_spread_v"] * (
            self._grain_uniform(grain_id, 1))
        imprint = p["switching_imprint_v"] + p["switching_imprint_spread_v"] * (
            self._grain_uniform(grain_id, 2))
        return PointSwitching(
            coercive_voltage_negative_v=imprint - threshold,
            coercive_voltage_positive_v=imprint + threshold,
            switchable_strain_pm_per_v=p["switchable_strain_pm_per_v"] * np.asarray(
                orientation_factor, dtype=float).ravel(),
        )

    def states(self, switching: PointSwitching, bias_v: np.ndarray, step_duration_s: float,
               temperature_k: float, initial: np.ndarray) -> np.ndarray:
        """θ after each step of `bias_v` (steps,) at every point: (points, steps)."""
        width = self.parameters["switching_width_v"]
        keep = math.exp(-step_duration_s / self.relaxation_time_s(temperature_k))
        up_v = switching.coercive_voltage_positive_v
        down_v = switching.coercive_voltage_negative_v
        theta = np.asarray(initial, dtype=float).copy()
        out = np.empty((theta.size, np.size(bias_v)))
        for k, v in enumerate(np.asarray(bias_v, dtype=float)):  # over steps, not points
            ascending = erf((v - up_v) / (math.sqrt(2.0) * width))
            descending = erf((v - down_v) / (math.sqrt(2.0) * width))
            target = np.where(ascending > theta, ascending,
                              np.where(descending < theta, descending, theta))
            theta = target + (theta - target) * keep
            out[:, k] = theta
        return out

    def step_amplitudes_pm(self, switching: PointSwitching, theta: np.ndarray,
                           bias_v: np.ndarray, u_ac_v: float, electrostatic_pm_per_v2,
                           contact_potential_v) -> np.ndarray:
        """Signed amplitude of every step (points, steps), pm before the sensitivity."""
        vegard = theta * switching.switchable_strain_pm_per_v[:, None] * u_ac_v
        coupling = np.asarray(electrostatic_pm_per_v2, dtype=float).ravel()[:, None]
        cpd = np.asarray(contact_potential_v, dtype=float).ravel()[:, None]
        return vegard + coupling * (np.asarray(bias_v)[None, :] - cpd) * u_ac_v
