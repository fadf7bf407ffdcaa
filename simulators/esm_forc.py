"""Ion injection beyond a threshold bias: what FORC spectroscopy sees at one point.

The ionic state under the tip is a Preisach ensemble of sites: a site of threshold u is
pushed to +1 (ions injected, strain up) while the tip bias exceeds +u and to −1 while it is
below −u, and keeps its state in between. Thresholds start at the grain's V_c (nothing
moves below it: no hysteresis, no loop) and are spread log-uniformly from V_c to r·V_c
(density ∝ 1/u, `injection_threshold_ratio` = r). A symmetric cycle turning at ±V_p moves
every site with u < V_p, each enclosing a rectangle 2u wide and 2·S·U_ac/(u·ln r)·du high
in the (V, response) plane, so the loop area is the integral of 4·S·U_ac/ln r over
u ∈ [V_c, V_p]:

    area = κ·max(0, V_p − V_c),    κ = 4·S·U_ac·g·s / ln r   (pm·V per V of peak bias)

exactly linear in the peak bias (the law the review's FORC maps are read with), S the
switchable strain per volt of drive, g the grain's orientation factor and s the detection
sensitivity, up to r·V_c where every site has moved and the area saturates.

Kinetics. A site beyond its threshold moves towards ±1 at the rate 1/τ(T), τ Arrhenius:
τ = τ(300 K)·exp(E_a/k_B·(1/T − 1/300 K)), so a step short against τ switches only part of
the way and a fast sweep encloses less area than a slow one (the loop opens as the sweep
slows). At the defaults (τ ≈ 1 ms against 16 ms steps) the sweep is quasi-static.

Response of a step: the switched Vegard strain θ·S·g·U_ac, θ = mean site state (weights of
the log-uniform grid of `_SITES` thresholds), plus the in-field electrostatic first
harmonic c·(V_dc − V_cpd)·U_ac, signed (in-field loops tilt with V_dc; out-of-field ones,
read at 0 V, carry a constant offset and no area). V_c varies from grain to grain (uniform,
±spread, drawn from the grain id). Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .parameters import Parameter, model_values

BOLTZMANN_EV_PER_K = 8.617333262e-5
REFERENCE_TEMPERATURE_K = 300.0
_SITES = 512
"""Thresholds on the log-uniform grid: the area law holds to ln(r)/_SITES of κ·V_c."""
_GRAIN_STREAM = 11
"""Random stream of the per-grain threshold draw (apart from the BE switching's 1, 2)."""


@dataclass(frozen=True)
class ForcSweepWaveform:
    """The controller's FORC sweep in DC modulation: write, read, write, read, ..."""

    bias_v: np.ndarray  # (2·steps,) every write step followed by a read step
    dc_v: np.ndarray  # (steps,) the write biases
    peak_v: np.ndarray  # (forc_cycles,) the turning bias of each FORC cycle


def forc_sweep(peak_start_v: float, peak_end_v: float, forc_cycles: int,
               steps_per_cycle: int, cycles_per_forc: int, read_bias_v: float
               ) -> ForcSweepWaveform:
    """0 → +V_p → 0 → −V_p → 0 in `steps_per_cycle` steps (ramps without their end
    points), `cycles_per_forc` times per peak, peaks evenly from start to end; each write
    step followed by a read step at `read_bias_v` (the plans' `forc_waveform` builds the
    same write steps)."""
    quarter = steps_per_cycle // 4
    ramp = np.arange(quarter) / quarter
    unit = np.tile(np.concatenate([ramp, 1.0 - ramp, -ramp, ramp - 1.0]), cycles_per_forc)
    peaks = (np.linspace(peak_start_v, peak_end_v, forc_cycles) if forc_cycles > 1
             else np.array([float(peak_start_v)]))
    dc = (peaks[:, None] * unit[None, :]).ravel()
    bias = np.empty(2 * dc.size)
    bias[0::2], bias[1::2] = dc, read_bias_v
    return ForcSweepWaveform(bias_v=bias, dc_v=dc, peak_v=peaks)


@dataclass(frozen=True)
class PointInjection:
    """Injection parameters at a set of points (flat arrays)."""

    threshold_v: np.ndarray
    switchable_strain_pm_per_v: np.ndarray


def grain_uniform(seed: Sequence[int], grain_id: np.ndarray, stream: int) -> np.ndarray:
    """A uniform number in [−1, 1) per grain, the same for a grain wherever it is met."""
    ids = np.asarray(grain_id, dtype=np.int64).ravel()
    unique, inverse = np.unique(ids, return_inverse=True)
    values = np.array([np.random.default_rng((*seed, stream, int(g))).uniform(-1, 1)
                       for g in unique])
    return values[inverse] if unique.size else np.zeros(0)


class IonicInjection:
    """Threshold ion injection under the tip (Preisach sites, log-uniform thresholds)."""

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("injection_threshold_v", 3.0, "V", 0.2, 9.0,
                  "threshold bias V_c below which no ions move (FORC-IV on Ca-BFO: no "
                  "hysteresis below about 3 V)"),
        Parameter("injection_threshold_spread_v", 0.3, "V", 0.0, 3.0,
                  "grain-to-grain spread of V_c (uniform, ±)"),
        Parameter("injection_threshold_ratio", 4.0, "1", 1.05, 100.0,
                  "highest site threshold over V_c (thresholds log-uniform in between)"),
        Parameter("injection_strain_pm_per_v", 20.0, "pm/V", 0.0, 1000.0,
                  "Vegard response with every site injected, per volt of AC drive "
                  "(orientation factor 1)"),
        Parameter("injection_time_300k_s", 0.001, "s", 1.0e-6, 1.0e4,
                  "switching time τ of a site beyond its threshold at 300 K"),
        Parameter("injection_activation_energy_ev", 0.26, "eV", 0.0, 2.0,
                  "activation energy of τ (LiCoO2 from the √D scaling: 0.26 eV)"),
    )

    def __init__(self, parameters: Mapping[str, float] | None = None,
                 seed: int | Sequence[int] = 0) -> None:
        self.parameters = model_values(self.PARAMETERS, parameters, "esm_forc")
        p = self.parameters
        if p["injection_threshold_spread_v"] >= p["injection_threshold_v"]:
            raise ValueError(
                f"esm_forc: injection_threshold_spread_v = {p['injection_threshold_spread_v']:g}"
                f" V must stay below injection_threshold_v = {p['injection_threshold_v']:g} V")
        self._seed = tuple(np.atleast_1d(seed).tolist())
        log_ratio = math.log(p["injection_threshold_ratio"])
        edges = np.linspace(0.0, log_ratio, _SITES + 1)
        self._log_thresholds = 0.5 * (edges[:-1] + edges[1:])  # ln(u / V_c), equal weights

    def relaxation_time_s(self, temperature_k: float) -> float:
        p = self.parameters
        barrier = p["injection_activation_energy_ev"] / BOLTZMANN_EV_PER_K
        return p["injection_time_300k_s"] * math.exp(
            barrier * (1.0 / temperature_k - 1.0 / REFERENCE_TEMPERATURE_K))

    def at(self, grain_id: np.ndarray, orientation_factor: np.ndarray) -> PointInjection:
        """V_c and the switchable strain per volt at points of these grains."""
        p = self.parameters
        threshold = p["injection_threshold_v"] + p["injection_threshold_spread_v"] * (
            grain_uniform(self._seed, grain_id, _GRAIN_STREAM))
        return PointInjection(
            threshold_v=threshold,
            switchable_strain_pm_per_v=p["injection_strain_pm_per_v"] * np.asarray(
                orientation_factor, dtype=float).ravel())

    def area_slope_pm(self, injection: PointInjection, u_ac_v: float) -> np.ndarray:
        """κ (pm·V of loop area per V of peak bias) before the detection sensitivity."""
        log_ratio = math.log(self.parameters["injection_threshold_ratio"])
        return 4.0 * injection.switchable_strain_pm_per_v * u_ac_v / log_ratio

    def virgin_sites(self, points: int) -> np.ndarray:
        """Site states of a never-biased point: every site at 0."""
        return np.zeros((points, _SITES))

    def states(self, injection: PointInjection, bias_v: np.ndarray, step_duration_s: float,
               temperature_k: float, sites: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(θ after each step (points, steps), site states after the last step)."""
        keep = math.exp(-step_duration_s / self.relaxation_time_s(temperature_k))
        thresholds = injection.threshold_v[:, None] * np.exp(self._log_thresholds)[None, :]
        state = np.asarray(sites, dtype=float).copy()
        theta = np.empty((state.shape[0], np.size(bias_v)))
        for k, v in enumerate(np.asarray(bias_v, dtype=float)):  # over steps, not points
            target = np.where(v > thresholds, 1.0, np.where(-v > thresholds, -1.0, state))
            state = target + (state - target) * keep
            theta[:, k] = state.mean(axis=1)
        return theta, state

    @staticmethod
    def step_amplitudes_pm(injection: PointInjection, theta: np.ndarray, bias_v: np.ndarray,
                           u_ac_v: float, electrostatic_pm_per_v2, contact_potential_v
                           ) -> np.ndarray:
        """Signed amplitude of every step (points, steps), pm before the sensitivity."""
        vegard = theta * injection.switchable_strain_pm_per_v[:, None] * u_ac_v
        coupling = np.asarray(electrostatic_pm_per_v2, dtype=float).ravel()[:, None]
        cpd = np.asarray(contact_potential_v, dtype=float).ravel()[:, None]
        return vegard + coupling * (np.asarray(bias_v)[None, :] - cpd) * u_ac_v
