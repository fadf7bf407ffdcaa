"""Strain relaxation after a write pulse: what ESM time spectroscopy sees at one point.

A write pulse of V_w polarises the ionic state under the tip. Afterwards, read at a small
bias, the electrochemical strain relaxes as a stretched exponential (the form the review's
time-domain spectroscopies are fitted with):

    R(t) = R_irr + ΔR·exp(−(t/τ)^β),   t from the end of the pulse

* ΔR = a·V_w·U_ac·g: the reversible part, linear in the pulse (a per volt of pulse and of
  drive, g the grain's orientation factor); the pulse is taken to load it fully (the charge
  transfer under the tip is fast against the redistribution read afterwards).
* R_irr = b·sign(V_w)·max(0, |V_w| − V_c)·U_ac·g: the irreversible part, only above the
  injection threshold V_c of the grain (`esm_forc`'s, the same ionic threshold), which
  accumulates pulse after pulse at a point.
* τ per grain (log-uniform spread about τ(300 K)), Arrhenius: τ(T) = τ_grain·exp(E_a/k_B·
  (1/T − 1/300 K)); β the stretch exponent (0.3–1; a distribution of relaxation times).
  The apparent activation energy of τ from such curves is E_a/β (the review, td-EFS); here
  E_a is that of τ itself.

Numbers. τ ≈ a²/D (BRIEF §4, contact radius a of 10–50 nm): with this sample's D_Cu(300 K)
= 3·10⁻¹⁰ m²/s that is ≈ 1 µs, far below what BE reads of milliseconds resolve, so the
default τ(300 K) = 0.2 s stands for a slow, collective redistribution (a = 20 nm with
D ≈ 2·10⁻¹⁵ m²/s), the regime in which ESM time spectroscopy is read; a choice, not a
number from the papers.

Older pulses at the same point keep relaxing: each contributes its own stretched
exponential from its own end time on the instrument clock. The read response adds the
in-field electrostatic term c·(V_read − V_cpd)·U_ac (constant). Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .esm_forc import BOLTZMANN_EV_PER_K, REFERENCE_TEMPERATURE_K, grain_uniform
from .parameters import Parameter, model_values

_GRAIN_STREAM = 12
"""Random stream of the per-grain relaxation time (apart from the FORC threshold's)."""


@dataclass(frozen=True)
class RelaxationSchedule:
    """Read times of a write/read sequence: baseline reads, the pulse, relaxation reads."""

    read_time_s: np.ndarray  # (baseline + reads,) from the end of the pulse; < 0 before it
    write_start_s: float  # from the start of the sequence
    total_s: float


def relaxation_schedule(baseline_points: int, read_points: int, read_duration_s: float,
                        write_duration_s: float, acquisition_s: float) -> RelaxationSchedule:
    """Baseline reads, pulse, relaxation reads, as the controller runs them.

    Read steps are `read_duration_s / read_points` long (the baseline reads too); the
    spectrum of a step is taken over its first `acquisition_s` and read at the middle of
    that window. The time axis is counted from the end of the write pulse.
    """
    step_s = read_duration_s / read_points
    baseline_s = baseline_points * step_s
    middle_s = 0.5 * acquisition_s
    before = (np.arange(baseline_points) * step_s + middle_s) - baseline_s - write_duration_s
    after = np.arange(read_points) * step_s + middle_s
    return RelaxationSchedule(read_time_s=np.concatenate([before, after]),
                              write_start_s=baseline_s,
                              total_s=baseline_s + write_duration_s + read_duration_s)


@dataclass(frozen=True)
class PointRelaxation:
    """Relaxation parameters at a set of points (flat arrays)."""

    relaxation_time_s: np.ndarray  # at the temperature asked for
    relaxing_pm_per_v2: np.ndarray
    irreversible_pm_per_v2: np.ndarray


class StrainRelaxation:
    """Stretched-exponential relaxation of the pulse-written strain, per grain."""

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("relaxation_time_300k_s", 0.2, "s", 1.0e-3, 1.0e3,
                  "relaxation time τ of the written strain at 300 K (τ ≈ a²/D: a 20 nm "
                  "contact, D ≈ 2e-15 m²/s)"),
        Parameter("relaxation_time_spread", 0.3, "1", 0.0, 2.0,
                  "grain-to-grain spread of ln τ (uniform, ±)"),
        Parameter("relaxation_activation_energy_ev", 0.26, "eV", 0.0, 2.0,
                  "activation energy of τ"),
        Parameter("relaxation_stretch_exponent", 0.6, "1", 0.3, 1.0,
                  "stretch exponent β of exp(−(t/τ)^β)"),
        Parameter("relaxation_strain_pm_per_v2", 10.0, "pm/V²", 0.0, 1000.0,
                  "reversible (relaxing) response per volt of pulse and of AC drive"),
        Parameter("relaxation_irreversible_pm_per_v2", 4.0, "pm/V²", 0.0, 1000.0,
                  "irreversible response per volt of pulse above V_c and of AC drive"),
    )

    def __init__(self, parameters: Mapping[str, float] | None = None,
                 seed: int | Sequence[int] = 0) -> None:
        self.parameters = model_values(self.PARAMETERS, parameters, "esm_relaxation")
        self._seed = tuple(np.atleast_1d(seed).tolist())

    def at(self, grain_id: np.ndarray, orientation_factor: np.ndarray,
           temperature_k: float) -> PointRelaxation:
        p = self.parameters
        spread = p["relaxation_time_spread"] * grain_uniform(self._seed, grain_id, _GRAIN_STREAM)
        barrier = p["relaxation_activation_energy_ev"] / BOLTZMANN_EV_PER_K
        arrhenius = math.exp(barrier * (1.0 / temperature_k - 1.0 / REFERENCE_TEMPERATURE_K))
        orientation = np.asarray(orientation_factor, dtype=float).ravel()
        return PointRelaxation(
            relaxation_time_s=p["relaxation_time_300k_s"] * np.exp(spread) * arrhenius,
            relaxing_pm_per_v2=p["relaxation_strain_pm_per_v2"] * orientation,
            irreversible_pm_per_v2=p["relaxation_irreversible_pm_per_v2"] * orientation)

    def decay(self, elapsed_s: np.ndarray, relaxation_time_s: float) -> np.ndarray:
        """exp(−(t/τ)^β) for t ≥ 0; 0 before the pulse has ended (t < 0 has no pulse)."""
        t = np.maximum(np.asarray(elapsed_s, dtype=float), 0.0)
        return np.exp(-(t / relaxation_time_s) ** self.parameters["relaxation_stretch_exponent"])

    @staticmethod
    def pulse_parts_pm(relaxation: PointRelaxation, write_bias_v: float, threshold_v: float,
                       u_ac_v: float) -> tuple[float, float]:
        """(ΔR, R_irr) a pulse writes at one point, pm before the sensitivity."""
        relaxing = float(relaxation.relaxing_pm_per_v2[0]) * write_bias_v * u_ac_v
        excess_v = max(0.0, abs(write_bias_v) - threshold_v)
        irreversible = float(relaxation.irreversible_pm_per_v2[0]) * math.copysign(
            excess_v, write_bias_v) * u_ac_v
        return relaxing, irreversible
