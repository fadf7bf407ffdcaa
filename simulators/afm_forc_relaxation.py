"""FORC and time-relaxation spectroscopy on the simulated BE AFM: settings, acquisitions,
truth, and their wire commands.

The AFM model (`afm_model.AtomicForceMicroscope`) owns one `ForcRelaxationModes`; it uses
the model's tip, band excitation, sample and detection gain, and keeps its own ionic state
per sample position (the FORC sites, the pulses written for relaxation), so a point measured
again continues from where it was left. Physics in `esm_forc` and `esm_relaxation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .afm_model import BIAS_LIMIT_V, MAX_LINE_VALUES, AfmSettingError, _check
from .esm_forc import IonicInjection, forc_sweep
from .esm_relaxation import StrainRelaxation, relaxation_schedule
from .esm_sample import resonance_spectra

FORC_STEPS_LIMITS = (8, 1024)
FORC_CYCLES_LIMITS = (1, 64)
CYCLES_PER_FORC_LIMITS = (1, 16)
WRITE_DURATION_LIMITS_S = (1e-4, 100.0)
READ_DURATION_LIMITS_S = (1e-3, 1e4)
READ_POINTS_LIMITS = (2, 4096)
BASELINE_POINTS_LIMITS = (0, 256)
FORC_TRUTH = ("sample_x_nm", "sample_y_nm", "grain_id", "threshold_v", "area_slope_pm",
              "temperature_k")
"""Per FORC sweep: where, the grain's V_c and κ (detection included) and the temperature."""
RELAXATION_TRUTH = ("sample_x_nm", "sample_y_nm", "grain_id", "relaxation_time_s",
                    "stretch_exponent", "relaxing_response_pm", "irreversible_response_pm",
                    "threshold_v", "write_bias_v", "temperature_k")
"""Per relaxation: where, τ at the temperature measured, β, ΔR and the irreversible step
this pulse wrote (detection included), V_c, the pulse and the temperature."""


@dataclass(frozen=True)
class ForcSweepSetting:
    """`BE:FORC`: peaks from start to end over the FORC cycles, each cycle repeated."""

    peak_start_v: float = 1.0
    peak_end_v: float = 4.0
    forc_cycles: int = 4
    steps_per_cycle: int = 32
    cycles_per_forc: int = 2
    read_bias_v: float = 0.0

    @property
    def steps(self) -> int:
        return self.forc_cycles * self.steps_per_cycle * self.cycles_per_forc


@dataclass(frozen=True)
class RelaxationSetting:
    """`BE:RELAX`: baseline reads, one write pulse, reads spread over the relaxation."""

    write_bias_v: float = 4.0
    write_duration_s: float = 0.1
    read_duration_s: float = 1.0
    read_points: int = 32
    baseline_points: int = 4
    read_bias_v: float = 0.0

    @property
    def reads(self) -> int:
        return self.baseline_points + self.read_points


def _position_key(x_nm: float, y_nm: float) -> tuple[float, float]:
    return round(float(x_nm), 1), round(float(y_nm), 1)


class ForcRelaxationModes:
    """The two modes' state on one AFM; `afm` is the `AtomicForceMicroscope`."""

    def __init__(self, afm: Any, parameters: dict[str, float], seed) -> None:
        self.afm = afm
        names = {p.name for p in (*IonicInjection.PARAMETERS, *StrainRelaxation.PARAMETERS)}
        chosen = {k: v for k, v in parameters.items() if k in names}
        self.injection = IonicInjection(
            {k: v for k, v in chosen.items() if k.startswith("injection_")}, seed=seed)
        self.relaxation = StrainRelaxation(
            {k: v for k, v in chosen.items() if k.startswith("relaxation_")}, seed=seed)
        self.forc = ForcSweepSetting()
        self.relax = RelaxationSetting()
        self._sites: dict[tuple[float, float], np.ndarray] = {}
        self._irreversible_pm: dict[tuple[float, float], float] = {}
        self._pulses: dict[tuple[float, float], list[tuple[float, float, float]]] = {}
        self._forc_truth: list[dict[str, float]] = []
        self._relaxation_truth: list[dict[str, float]] = []

    def reset(self) -> None:
        self.forc, self.relax = ForcSweepSetting(), RelaxationSetting()

    # ------------------------------------------------------------------ settings

    def set_forc(self, peak_start_v: float, peak_end_v: float, forc_cycles: int,
                 steps_per_cycle: int, cycles_per_forc: int, read_bias_v: float) -> None:
        _check("FORC first peak", peak_start_v, 0.0, BIAS_LIMIT_V, "V")
        _check("FORC last peak", peak_end_v, 0.0, BIAS_LIMIT_V, "V")
        _check("FORC read bias", read_bias_v, -BIAS_LIMIT_V, BIAS_LIMIT_V, "V")
        _check("FORC steps per cycle", steps_per_cycle, *FORC_STEPS_LIMITS, "")
        _check("FORC cycles", forc_cycles, *FORC_CYCLES_LIMITS, "")
        _check("cycles per FORC", cycles_per_forc, *CYCLES_PER_FORC_LIMITS, "")
        if steps_per_cycle % 4:
            raise AfmSettingError(
                f"FORC steps per cycle = {steps_per_cycle} not valid: a multiple of 4")
        if min(peak_start_v, peak_end_v) <= 0:
            raise AfmSettingError("FORC peaks must be above 0 V")
        with self.afm._lock:
            self.forc = ForcSweepSetting(peak_start_v, peak_end_v, int(forc_cycles),
                                         int(steps_per_cycle), int(cycles_per_forc),
                                         read_bias_v)

    def set_relaxation(self, write_bias_v: float, write_duration_s: float,
                       read_duration_s: float, read_points: int, baseline_points: int,
                       read_bias_v: float) -> None:
        _check("write bias", write_bias_v, -BIAS_LIMIT_V, BIAS_LIMIT_V, "V")
        _check("write duration", write_duration_s, *WRITE_DURATION_LIMITS_S, "s")
        _check("read duration", read_duration_s, *READ_DURATION_LIMITS_S, "s")
        _check("read points", read_points, *READ_POINTS_LIMITS, "")
        _check("baseline points", baseline_points, *BASELINE_POINTS_LIMITS, "")
        _check("relaxation read bias", read_bias_v, -BIAS_LIMIT_V, BIAS_LIMIT_V, "V")
        with self.afm._lock:
            self.relax = RelaxationSetting(write_bias_v, write_duration_s, read_duration_s,
                                           int(read_points), int(baseline_points), read_bias_v)

    # ------------------------------------------------------------------ durations

    def forc_duration_s(self) -> float:
        """Two steps (write, read) per DC step, one spectrum each."""
        return 2 * self.forc.steps * self.afm.sweep_step_duration_s()

    def _schedule(self):
        r = self.relax
        return relaxation_schedule(r.baseline_points, r.read_points, r.read_duration_s,
                                   r.write_duration_s, self.afm.sweep_step_duration_s())

    def relaxation_duration_s(self) -> float:
        return self._schedule().total_s

    def relaxation_read_times_s(self) -> np.ndarray:
        """Read times from the end of the pulse (baseline reads negative)."""
        return self._schedule().read_time_s

    # ------------------------------------------------------------------ acquisitions

    def _at_tip(self):
        afm = self.afm
        afm.check_can_acquire()
        sx, sy = afm._sample_positions(np.array([afm.tip_x_nm]), np.array([afm.tip_y_nm]))
        local = afm.sample.properties(sx, sy)
        scale = afm._detection_gain * local["sensitivity"]
        return sx, sy, local, scale

    def _spectra(self, amplitude_pm: np.ndarray, local, scale) -> np.ndarray:
        excitation = self.afm.excitation
        gain = amplitude_pm * (scale * np.exp(1j * local["response_phase_rad"]))[:, None]
        return resonance_spectra(
            gain, local["resonance_frequency_hz"], local["quality_factor"],
            excitation.frequencies_hz(), excitation.chirp_duration_s, excitation.averages,
            self.afm.parameters["noise_pm_per_rthz"], self.afm._rng)[0]

    def acquire_forc(self) -> np.ndarray:
        """Spectra of the FORC sweep at the tip: complex64 (steps, 2, bins) in pm,
        [:, 0] in-field (write bias), [:, 1] out-of-field (read bias)."""
        afm = self.afm
        with afm._lock:
            forc, bins = self.forc, afm.excitation.bins
            if 2 * forc.steps * bins > MAX_LINE_VALUES:
                raise AfmSettingError(
                    f"FORC sweep of {2 * forc.steps * bins} values exceeds {MAX_LINE_VALUES};"
                    " use fewer steps or bins")
            sx, sy, local, scale = self._at_tip()
            waveform = forc_sweep(forc.peak_start_v, forc.peak_end_v, forc.forc_cycles,
                                  forc.steps_per_cycle, forc.cycles_per_forc, forc.read_bias_v)
            temperature_k = afm.temperature_k()
            injection = self.injection.at(local["grain_id"], local["orientation_factor"])
            key = _position_key(sx[0], sy[0])
            sites = self._sites.get(key, self.injection.virgin_sites(1))
            theta, self._sites[key] = self.injection.states(
                injection, waveform.bias_v, afm.sweep_step_duration_s(), temperature_k, sites)
            amplitude = self.injection.step_amplitudes_pm(
                injection, theta, waveform.bias_v, afm.bias_ac_v,
                local["electrostatic_pm_per_v2"], local["contact_potential_v"])
            spectra = self._spectra(amplitude, local, scale)
            afm.last_topography_nm = afm._topography(sx, sy)
            self._forc_truth.append({
                "sample_x_nm": float(sx[0]), "sample_y_nm": float(sy[0]),
                "grain_id": float(local["grain_id"][0]),
                "threshold_v": float(injection.threshold_v[0]),
                "area_slope_pm": float(
                    self.injection.area_slope_pm(injection, afm.bias_ac_v)[0] * scale[0]),
                "temperature_k": temperature_k,
            })
            return np.ascontiguousarray(spectra.reshape(forc.steps, 2, bins),
                                        dtype=np.complex64)

    def acquire_relaxation(self) -> np.ndarray:
        """Spectra of the reads of a write/read sequence at the tip that has just ended:
        complex64 (baseline + reads, bins) in pm, at the times of `BE:RTAX?`."""
        afm = self.afm
        with afm._lock:
            relax = self.relax
            step_s = relax.read_duration_s / relax.read_points
            if afm.sweep_step_duration_s() > step_s * (1 + 1e-9):
                raise AfmSettingError(
                    f"read step {step_s:g} s is shorter than one spectrum "
                    f"({afm.sweep_step_duration_s():g} s: chirp × averages)")
            sx, sy, local, scale = self._at_tip()
            temperature_k = afm.temperature_k()
            points = self.relaxation.at(local["grain_id"], local["orientation_factor"],
                                        temperature_k)
            threshold_v = float(self.injection.at(
                local["grain_id"], local["orientation_factor"]).threshold_v[0])
            relaxing, irreversible = self.relaxation.pulse_parts_pm(
                points, relax.write_bias_v, threshold_v, afm.bias_ac_v)
            key = _position_key(sx[0], sy[0])
            pulse_end_s = afm.clock.now() - relax.read_duration_s
            read_times = self.relaxation_read_times_s()
            absolute_s = pulse_end_s + read_times
            before = self._irreversible_pm.get(key, 0.0)
            pulses = [*self._pulses.get(key, []),
                      (pulse_end_s, relaxing, float(points.relaxation_time_s[0]))]
            vegard = np.where(read_times < 0, before, before + irreversible)
            for end_s, height_pm, tau_s in pulses:
                vegard = vegard + height_pm * np.where(
                    absolute_s >= end_s, self.relaxation.decay(absolute_s - end_s, tau_s), 0.0)
            self._pulses[key] = pulses
            self._irreversible_pm[key] = before + irreversible
            electrostatic = local["electrostatic_pm_per_v2"][0] * (
                relax.read_bias_v - local["contact_potential_v"][0]) * afm.bias_ac_v
            spectra = self._spectra((vegard + electrostatic)[None, :], local, scale)
            afm.last_topography_nm = afm._topography(sx, sy)
            self._relaxation_truth.append({
                "sample_x_nm": float(sx[0]), "sample_y_nm": float(sy[0]),
                "grain_id": float(local["grain_id"][0]),
                "relaxation_time_s": float(points.relaxation_time_s[0]),
                "stretch_exponent": self.relaxation.parameters["relaxation_stretch_exponent"],
                "relaxing_response_pm": relaxing * float(scale[0]),
                "irreversible_response_pm": irreversible * float(scale[0]),
                "threshold_v": threshold_v, "write_bias_v": relax.write_bias_v,
                "temperature_k": temperature_k,
            })
            return np.ascontiguousarray(spectra, dtype=np.complex64)

    # ------------------------------------------------------------------ truth

    def forc_truth(self) -> dict[str, np.ndarray]:
        with self.afm._lock:
            return _columns(self._forc_truth, FORC_TRUTH)

    def relaxation_truth(self) -> dict[str, np.ndarray]:
        with self.afm._lock:
            return _columns(self._relaxation_truth, RELAXATION_TRUTH)

    def truth_arrays(self) -> dict[str, np.ndarray]:
        return {**{f"forc.{k}": v for k, v in self.forc_truth().items()},
                **{f"relaxation.{k}": v for k, v in self.relaxation_truth().items()}}

    def ground_truth(self) -> dict[str, Any]:
        """Scalars: the parameters behind the sweeps taken and the means over them."""
        truth: dict[str, Any] = {}
        forc, relaxation = self.forc_truth(), self.relaxation_truth()
        if forc:
            truth["forc_spectroscopy"] = {
                "sweeps": int(forc["threshold_v"].size),
                "injection_threshold_v": self.injection.parameters["injection_threshold_v"],
                "threshold_v_mean": float(forc["threshold_v"].mean()),
                "area_slope_pm_mean": float(forc["area_slope_pm"].mean()),
            }
        if relaxation:
            truth["time_relaxation_spectroscopy"] = {
                "pulses": int(relaxation["relaxation_time_s"].size),
                "relaxation_time_300k_s": self.relaxation.parameters["relaxation_time_300k_s"],
                "stretch_exponent": self.relaxation.parameters["relaxation_stretch_exponent"],
                **{f"{name}_mean": float(relaxation[name].mean()) for name in (
                    "relaxation_time_s", "relaxing_response_pm", "irreversible_response_pm")},
            }
        return truth


def _columns(records: list[dict[str, float]], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not records:
        return {}
    return {name: np.array([record[name] for record in records]) for name in names}


# ---------------------------------------------------------------------- wire commands


def register_commands(emulator) -> None:
    """The FORC and relaxation commands on an `AfmControllerEmulator` (its table lists them)."""
    from .afm_controller_emulator import _block, _format
    from .scpi_server import ILLEGAL_PARAMETER_VALUE, ScpiError, parse_floats

    modes: ForcRelaxationModes = emulator.model.forc_relaxation

    def counts(values: list[float], positions: tuple[int, ...]) -> list:
        if not all(float(values[i]).is_integer() for i in positions):
            raise ScpiError(ILLEGAL_PARAMETER_VALUE,
                            f"arguments {[i + 1 for i in positions]} must be whole numbers")
        return [int(v) if i in positions else v for i, v in enumerate(values)]

    emulator.register("BE:FORC", emulator._setting(
        lambda a: modes.set_forc(*counts(parse_floats(a, 6), (2, 3, 4)))))
    emulator.register("BE:FORC?", lambda _: _format((
        modes.forc.peak_start_v, modes.forc.peak_end_v, modes.forc.forc_cycles,
        modes.forc.steps_per_cycle, modes.forc.cycles_per_forc, modes.forc.read_bias_v)))
    emulator.register("BE:FTIME?", lambda _: _format((modes.forc_duration_s(),)))
    emulator.register("BE:FSPEC?", lambda _: emulator._acquire(
        modes.forc_duration_s(), modes.acquire_forc))
    emulator.register("BE:RELAX", emulator._setting(
        lambda a: modes.set_relaxation(*counts(parse_floats(a, 6), (3, 4)))))
    emulator.register("BE:RELAX?", lambda _: _format((
        modes.relax.write_bias_v, modes.relax.write_duration_s, modes.relax.read_duration_s,
        modes.relax.read_points, modes.relax.baseline_points, modes.relax.read_bias_v)))
    emulator.register("BE:RTIME?", lambda _: _format((modes.relaxation_duration_s(),)))
    emulator.register("BE:RTAX?", lambda _: _block(modes.relaxation_read_times_s()))
    emulator.register("BE:RSPEC?", lambda _: emulator._acquire(
        modes.relaxation_duration_s(), modes.acquire_relaxation))
