"""A band-excitation AFM in contact mode over an ESM sample: the instrument's physics.

The controller state (scan frame, tip bias, band-excitation settings) lives
here; what the sample does under the tip is `EsmSample`. The scanner is closed
loop in its own frame; the sample moves in that frame by the thermal drift of
the temperature stage (when the lab has one), so the tip at scanner position
p probes sample position p − drift(T). Acquisitions take instrument time (the
emulator waits `be_line_duration_s` on the clock before answering), so the
stage keeps heating or cooling while a map is taken.

Ground truth: every BE line records, at the sample positions actually probed,
the true topography, Vegard strain d1, electrostatic amplitude, contact
potential, contact resonance and Q, gathered into one *frame* per map; every
voltage-spectroscopy sweep (`acquire_sweep`, physics in `esm_spectroscopy`) records
where it was taken and the coercive biases and switchable response it switched with.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vegard.clock import InstrumentClock

from .afm_readouts import READOUT_PARAMETERS, AfmReadouts
from .esm_forc import IonicInjection
from .esm_relaxation import StrainRelaxation
from .esm_sample import EXCITATIONS, EsmSample, resonance_spectra
from .esm_spectroscopy import IonicSwitching, dc_modulation_sweep
from .parameters import Parameter, model_values

BIAS_LIMIT_V = 10.0
SCANNER_HALF_RANGE_NM = 10_000.0
BAND_LIMITS_HZ = (10e3, 2e6)
BINS_LIMITS = (8, 1024)
CHIRP_LIMITS_S = (1e-4, 0.1)
AVERAGES_LIMITS = (1, 1000)
PIXELS_LIMITS = (1, 1024)
MAX_LINE_VALUES = 4_000_000
"""Largest scan line (pixels × excitations × bins) one reply may carry."""
SWEEP_STEPS_LIMITS = (8, 4096)
SWEEP_CYCLES_LIMITS = (1, 64)
SWEEP_TRUTH = ("sample_x_nm", "sample_y_nm", "grain_id", "coercive_voltage_negative_v",
               "coercive_voltage_positive_v", "switchable_response_pm", "temperature_k")
"""Per-sweep truth: where it was taken and what an ideal loop analysis would recover."""


class AfmSettingError(ValueError):
    """A setting outside what the controller accepts; the message names it and the range."""


class TemperatureSource(Protocol):
    """What the AFM needs from the temperature stage model it sits on."""

    def sample_temperature_k(self) -> float: ...

    def sample_drift_nm(self) -> tuple[float, float]: ...


@dataclass
class ScanFrame:
    """The raster: centre and size in scanner coordinates, and pixel counts."""

    center_x_nm: float = 0.0
    center_y_nm: float = 0.0
    width_nm: float = 800.0
    height_nm: float = 800.0
    pixels_x: int = 64
    pixels_y: int = 64

    def line_positions_nm(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Scanner x, y of the pixel centres of `row` (row 0 at the lowest y)."""
        x = self.center_x_nm + (np.arange(self.pixels_x) + 0.5 - self.pixels_x / 2) * (
            self.width_nm / self.pixels_x
        )
        y = self.center_y_nm + (row + 0.5 - self.pixels_y / 2) * (self.height_nm / self.pixels_y)
        return x, np.full_like(x, y)

    def key(self) -> tuple[float, ...]:
        return (self.center_x_nm, self.center_y_nm, self.width_nm, self.height_nm,
                self.pixels_x, self.pixels_y)


@dataclass
class BandExcitation:
    """Drive band, frequency bins, chirp length, averages, ±DC offset and excitation order."""

    band_low_hz: float = 80e3
    band_high_hz: float = 320e3
    bins: int = 64
    chirp_duration_s: float = 4e-3
    averages: int = 20
    dc_offset_v: float = 1.0
    sequence: tuple[str, ...] = EXCITATIONS

    def frequencies_hz(self) -> np.ndarray:
        return np.linspace(self.band_low_hz, self.band_high_hz, self.bins)

    def pixel_duration_s(self) -> float:
        return len(self.sequence) * self.averages * self.chirp_duration_s


@dataclass
class DcSweep:
    """The DC-modulation sweep of `BE:SWEEP`: triangle amplitude, offset, steps, read bias."""

    amplitude_v: float = 1.0
    offset_v: float = 0.0
    steps_per_cycle: int = 64
    cycles: int = 1
    read_bias_v: float = 0.0

    @property
    def steps(self) -> int:
        return self.steps_per_cycle * self.cycles


@dataclass
class TruthFrame:
    """Ground truth of one map at the positions probed, NaN where no line was taken."""

    scan: tuple[float, ...]
    pixels_x: int
    pixels_y: int
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    rows: set[int] = field(default_factory=set)
    temperatures_k: list[float] = field(default_factory=list)
    drifts_nm: list[tuple[float, float]] = field(default_factory=list)
    u_ac_v: float = 0.0
    detection_gain: float = 1.0

    def put(self, row: int, values: Mapping[str, np.ndarray]) -> None:
        for name, line in values.items():
            if name not in self.maps:
                self.maps[name] = np.full((self.pixels_y, self.pixels_x), np.nan)
            self.maps[name][row] = line
        self.rows.add(row)

    def summary(self) -> dict[str, Any]:
        def mean(name: str) -> float | None:
            values = self.maps.get(name)
            if values is None or not np.isfinite(values).any():
                return None
            return float(np.nanmean(values))

        drift = np.asarray(self.drifts_nm) if self.drifts_nm else np.zeros((1, 2))
        return {
            "lines": len(self.rows),
            "pixels": [self.pixels_x, self.pixels_y],
            "u_ac_v": self.u_ac_v,
            "detection_gain": self.detection_gain,
            "temperature_k": float(np.mean(self.temperatures_k)) if self.temperatures_k else None,
            "vegard_strain_mean_pm": mean("vegard_strain_pm"),
            "electrostatic_mean_pm": mean("electrostatic_pm"),
            "contact_potential_mean_v": mean("contact_potential_v"),
            "resonance_frequency_mean_hz": mean("resonance_frequency_hz"),
            "quality_factor_mean": mean("quality_factor"),
            "drift_x_nm": float(drift[:, 0].mean()),
            "drift_y_nm": float(drift[:, 1].mean()),
        }


class AtomicForceMicroscope:
    """Scanner, z feedback, tip bias and band-excitation response of a contact-mode AFM."""

    PARAMETERS: tuple[Parameter, ...] = (
        *EsmSample.PARAMETERS,
        *IonicSwitching.PARAMETERS,
        *READOUT_PARAMETERS,
        *IonicInjection.PARAMETERS,  # FORC spectroscopy (esm_forc)
        *StrainRelaxation.PARAMETERS,  # time relaxation spectroscopy (esm_relaxation)
        Parameter("noise_pm_per_rthz", 0.5, "pm/√Hz", 0.0, 1000.0,
                  "detection noise floor of the deflection signal"),
        Parameter("topography_noise_nm", 0.05, "nm", 0.0, 100.0,
                  "rms noise of the z-feedback height reading"),
        Parameter("line_overhead_s", 0.05, "s", 0.0, 60.0,
                  "flyback and settling time added to every scan line"),
        Parameter("laser_realignment_gain_spread", 0.01, "1", 0.0, 0.5,
                  "relative rms change of the detection gain at each new map (laser re-aligned)"),
        Parameter("sample_temperature_k", 300.0, "K", 1.0, 1000.0,
                  "sample temperature when the lab has no temperature stage"),
        Parameter("drift_switch", 1.0, "", 0.0, 1.0,
                  "1: the sample drifts with the stage temperature; 0: no drift"),
    )

    def __init__(
        self,
        clock: InstrumentClock,
        parameters: Mapping[str, float] | None = None,
        seed: int | Sequence[int] = 0,
        temperature_stage: TemperatureSource | None = None,
    ) -> None:
        values = model_values(self.PARAMETERS, parameters, "afm")
        self.parameters = values
        sample_names = {parameter.name for parameter in EsmSample.PARAMETERS}
        self.sample = EsmSample({k: v for k, v in values.items() if k in sample_names}, seed=seed)
        switching_names = {parameter.name for parameter in IonicSwitching.PARAMETERS}
        self.switching = IonicSwitching(
            {k: v for k, v in values.items() if k in switching_names}, seed=seed)
        self.sweep = DcSweep()
        self._ionic_state: dict[tuple[float, float], float] = {}
        self._sweep_truth: list[dict[str, float]] = []
        self.readouts = AfmReadouts(values, seed)
        """tr-KPFM (CPD) and c-AFM (current) readouts: `afm_readouts`."""
        self.clock = clock
        self.temperature_stage = temperature_stage
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self.scan = ScanFrame()
        self.excitation = BandExcitation()
        self.tip_x_nm = 0.0
        self.tip_y_nm = 0.0
        self.bias_dc_v = 0.0
        self.bias_ac_v = 0.0
        self.bias_output_on = False
        self.tip_withdrawn = True
        """Parked: tip lifted off the surface, scanner idle. Acquisitions engage it."""
        self.normal_force_nn = 10.0
        self.topography_line_rate_hz = 2.0
        self.last_topography_nm = np.zeros(0)
        self._frames: list[TruthFrame] = []
        self._detection_gain = 1.0
        # FORC and time relaxation spectroscopy (imported here: that module builds on this one)
        from .afm_forc_relaxation import ForcRelaxationModes
        self.forc_relaxation = ForcRelaxationModes(self, values, seed)

    # ------------------------------------------------------------------ settings

    def reset(self) -> None:
        """Power-on state: bias off and zero, default raster and band."""
        with self._lock:
            self.bias_output_on = False
            self.bias_dc_v = self.bias_ac_v = 0.0
            self.scan = ScanFrame()
            self.excitation = BandExcitation()
            self.tip_x_nm = self.tip_y_nm = 0.0
            self.sweep = DcSweep()
            self.readouts.reset()
            self.forc_relaxation.reset()

    def set_scan_center(self, x_nm: float, y_nm: float) -> None:
        for name, value in (("x", x_nm), ("y", y_nm)):
            _check(f"scan centre {name}", value,
                   -SCANNER_HALF_RANGE_NM, SCANNER_HALF_RANGE_NM, "nm")
        with self._lock:
            self.scan.center_x_nm, self.scan.center_y_nm = x_nm, y_nm

    def set_scan_size(self, width_nm: float, height_nm: float) -> None:
        for name, value in (("width", width_nm), ("height", height_nm)):
            _check(f"scan {name}", value, 1.0, 2 * SCANNER_HALF_RANGE_NM, "nm")
        with self._lock:
            self.scan.width_nm, self.scan.height_nm = width_nm, height_nm

    def set_pixels(self, pixels_x: int, pixels_y: int) -> None:
        for name, value in (("pixels x", pixels_x), ("pixels y", pixels_y)):
            _check(name, value, *PIXELS_LIMITS, "")
        with self._lock:
            self.scan.pixels_x, self.scan.pixels_y = int(pixels_x), int(pixels_y)

    def move_tip(self, x_nm: float, y_nm: float) -> None:
        for name, value in (("x", x_nm), ("y", y_nm)):
            _check(f"tip {name}", value, -SCANNER_HALF_RANGE_NM, SCANNER_HALF_RANGE_NM, "nm")
        with self._lock:
            self.tip_x_nm, self.tip_y_nm = x_nm, y_nm

    def set_bias_dc(self, volts: float) -> None:
        _check("tip DC bias", volts, -BIAS_LIMIT_V, BIAS_LIMIT_V, "V")
        with self._lock:
            self.bias_dc_v = volts

    def set_bias_ac(self, volts: float) -> None:
        _check("tip AC amplitude", volts, 0.0, BIAS_LIMIT_V, "V")
        with self._lock:
            self.bias_ac_v = volts

    def set_bias_output(self, on: bool) -> None:
        with self._lock:
            self.bias_output_on = bool(on)

    def set_normal_force(self, newtons_nn: float) -> None:
        _check("normal force setpoint", newtons_nn, 0.1, 1000.0, "nN")
        with self._lock:
            self.normal_force_nn = newtons_nn

    def set_topography_line_rate(self, rate_hz: float) -> None:
        _check("topography line rate", rate_hz, 0.01, 100.0, "Hz")
        with self._lock:
            self.topography_line_rate_hz = rate_hz

    def set_band(self, low_hz: float, high_hz: float) -> None:
        _check("band low edge", low_hz, *BAND_LIMITS_HZ, "Hz")
        _check("band high edge", high_hz, *BAND_LIMITS_HZ, "Hz")
        if not low_hz < high_hz:
            raise AfmSettingError(f"band low edge {low_hz:g} Hz must be below {high_hz:g} Hz")
        with self._lock:
            self.excitation.band_low_hz, self.excitation.band_high_hz = low_hz, high_hz

    def set_bins(self, bins: int) -> None:
        _check("frequency bins", bins, *BINS_LIMITS, "")
        with self._lock:
            self.excitation.bins = int(bins)

    def set_chirp_duration(self, seconds: float) -> None:
        _check("chirp duration", seconds, *CHIRP_LIMITS_S, "s")
        with self._lock:
            self.excitation.chirp_duration_s = seconds

    def set_averages(self, averages: int) -> None:
        _check("averages", averages, *AVERAGES_LIMITS, "")
        with self._lock:
            self.excitation.averages = int(averages)

    def set_dc_offset(self, volts: float) -> None:
        _check("±DC offset", volts, 0.0, BIAS_LIMIT_V, "V")
        with self._lock:
            self.excitation.dc_offset_v = volts

    def set_sweep(self, amplitude_v: float, offset_v: float, steps_per_cycle: int,
                  cycles: int, read_bias_v: float) -> None:
        """The DC sweep of the next `acquire_sweep`; its peak bias within the tip's limit."""
        _check("sweep amplitude", amplitude_v, 0.0, BIAS_LIMIT_V, "V")
        _check("sweep |offset| + amplitude", abs(offset_v) + amplitude_v, 0.0, BIAS_LIMIT_V, "V")
        _check("sweep read bias", read_bias_v, -BIAS_LIMIT_V, BIAS_LIMIT_V, "V")
        _check("sweep steps per cycle", steps_per_cycle, *SWEEP_STEPS_LIMITS, "")
        _check("sweep cycles", cycles, *SWEEP_CYCLES_LIMITS, "")
        if steps_per_cycle % 4:
            raise AfmSettingError(
                f"sweep steps per cycle = {steps_per_cycle} not valid: a multiple of 4")
        with self._lock:
            self.sweep = DcSweep(amplitude_v, offset_v, int(steps_per_cycle), int(cycles),
                                 read_bias_v)

    def set_sequence(self, excitations: Sequence[str]) -> None:
        unknown = [name for name in excitations if name not in EXCITATIONS]
        if unknown or not excitations:
            raise AfmSettingError(
                f"excitations {list(excitations)} not valid: allowed: {', '.join(EXCITATIONS)}"
            )
        with self._lock:
            self.excitation.sequence = tuple(excitations)

    # ------------------------------------------------------------------ acquisition

    def be_line_duration_s(self) -> float:
        """Instrument time one BE scan line takes: every pixel, excitation and average."""
        with self._lock:
            return (self.scan.pixels_x * self.excitation.pixel_duration_s()
                    + self.parameters["line_overhead_s"])

    def be_point_duration_s(self) -> float:
        with self._lock:
            return self.excitation.pixel_duration_s()

    def sweep_step_duration_s(self) -> float:
        """One spectrum (one excitation, every average) per in- or out-of-field step."""
        with self._lock:
            return self.excitation.chirp_duration_s * self.excitation.averages

    def sweep_duration_s(self) -> float:
        """Instrument time of a whole sweep: two steps (write, read) per DC step."""
        with self._lock:
            return 2 * self.sweep.steps * self.sweep_step_duration_s()

    def topography_line_duration_s(self) -> float:
        with self._lock:
            return 1.0 / self.topography_line_rate_hz

    def temperature_k(self) -> float:
        if self.temperature_stage is None:
            return self.parameters["sample_temperature_k"]
        return float(self.temperature_stage.sample_temperature_k())

    def drift_nm(self) -> tuple[float, float]:
        if self.temperature_stage is None or not self.parameters["drift_switch"]:
            return 0.0, 0.0
        dx, dy = self.temperature_stage.sample_drift_nm()
        return float(dx), float(dy)

    def check_can_acquire(self) -> None:
        """Acquisitions drive the tip: refused with the bias output off."""
        if not self.bias_output_on:
            raise AfmSettingError("tip bias output is off (BIAS:OUTP 1 first)")
        self.tip_withdrawn = False  # the controller approaches the surface first

    def park(self) -> None:
        """Lift the tip off the surface and stop scanning (the state to leave it in)."""
        with self._lock:
            self.tip_withdrawn = True

    def safe_state(self) -> dict[str, Any]:
        """Safe when the bias output is off at 0 V and the tip is parked off the surface."""
        with self._lock:
            unbiased = not self.bias_output_on and self.bias_dc_v == 0 and self.bias_ac_v == 0
            return {
                "safe": unbiased and self.tip_withdrawn,
                "bias_output_on": self.bias_output_on,
                "bias_dc_v": self.bias_dc_v,
                "bias_ac_v": self.bias_ac_v,
                "tip_parked": self.tip_withdrawn,
            }

    def _check_row(self, row: int) -> None:
        _check("row", row, 0, self.scan.pixels_y - 1, "")

    def acquire_be_line(self, row: int) -> np.ndarray:
        """Spectra of one scan line, complex64 (pixels, excitations, bins) in pm."""
        with self._lock:
            self._check_row(row)
            self.check_can_acquire()
            n_values = self.scan.pixels_x * len(self.excitation.sequence) * self.excitation.bins
            if n_values > MAX_LINE_VALUES:
                raise AfmSettingError(
                    f"scan line of {n_values} values exceeds {MAX_LINE_VALUES}; "
                    "use fewer pixels or bins")
            x_nm, y_nm = self.scan.line_positions_nm(row)
            spectra, topography = self._measure(x_nm, y_nm, row=row)
            self.last_topography_nm = topography
            return spectra

    def acquire_be_point(self) -> np.ndarray:
        """Spectra at the tip position, complex64 (excitations, bins) in pm."""
        with self._lock:
            self.check_can_acquire()
            spectra, topography = self._measure(
                np.array([self.tip_x_nm]), np.array([self.tip_y_nm]), row=None)
            self.last_topography_nm = topography
            return spectra[0]

    def acquire_sweep(self) -> np.ndarray:
        """Spectra of a DC-modulation sweep at the tip: complex64 (steps, 2, bins) in pm,
        [:, 0] in-field (write bias), [:, 1] out-of-field (read bias)."""
        with self._lock:
            self.check_can_acquire()
            sweep, excitation = self.sweep, self.excitation
            if 2 * sweep.steps * excitation.bins > MAX_LINE_VALUES:
                raise AfmSettingError(
                    f"sweep of {2 * sweep.steps * excitation.bins} values exceeds "
                    f"{MAX_LINE_VALUES}; use fewer steps or bins")
            waveform = dc_modulation_sweep(sweep.amplitude_v, sweep.offset_v,
                                           sweep.steps_per_cycle, sweep.cycles,
                                           sweep.read_bias_v)
            sx, sy = self._sample_positions(np.array([self.tip_x_nm]),
                                            np.array([self.tip_y_nm]))
            local = self.sample.properties(sx, sy)
            temperature_k = self.temperature_k()
            switching = self.switching.at(local["grain_id"], local["orientation_factor"])
            key = (round(float(sx[0]), 1), round(float(sy[0]), 1))
            theta = self.switching.states(
                switching, waveform.bias_v, self.sweep_step_duration_s(), temperature_k,
                np.array([self._ionic_state.get(key, 0.0)]))
            self._ionic_state[key] = float(theta[0, -1])
            amplitude = self.switching.step_amplitudes_pm(
                switching, theta, waveform.bias_v, self.bias_ac_v,
                local["electrostatic_pm_per_v2"], local["contact_potential_v"])
            scale = self._detection_gain * local["sensitivity"]
            gain = amplitude * (scale * np.exp(1j * local["response_phase_rad"]))[:, None]
            spectra = resonance_spectra(
                gain, local["resonance_frequency_hz"], local["quality_factor"],
                excitation.frequencies_hz(), excitation.chirp_duration_s, excitation.averages,
                self.parameters["noise_pm_per_rthz"], self._rng)
            self.last_topography_nm = self._topography(sx, sy)
            self._sweep_truth.append({
                "sample_x_nm": float(sx[0]), "sample_y_nm": float(sy[0]),
                "grain_id": float(local["grain_id"][0]),
                "coercive_voltage_negative_v": float(switching.coercive_voltage_negative_v[0]),
                "coercive_voltage_positive_v": float(switching.coercive_voltage_positive_v[0]),
                "switchable_response_pm": float(
                    2 * switching.switchable_strain_pm_per_v[0] * self.bias_ac_v * scale[0]),
                "temperature_k": temperature_k,
            })
            return np.ascontiguousarray(
                spectra[0].reshape(sweep.steps, 2, excitation.bins), dtype=np.complex64)

    def acquire_readout(self, mode: str) -> np.ndarray:
        """A tr-KPFM record (`"kpfm"`, CPD in V) or a c-AFM sweep (`"cafm"`, current in A)
        at the tip; the bias output then holds the waveform's last bias (`afm_readouts`)."""
        with self._lock:
            self.check_can_acquire()
            sx, sy = self._sample_positions(np.array([self.tip_x_nm]),
                                            np.array([self.tip_y_nm]))
            local = self.sample.properties(sx, sy)
            values, held_v = self.readouts.acquire(mode, local, float(sx[0]), float(sy[0]),
                                                   self.temperature_k())
            self.bias_dc_v = held_v
            self.last_topography_nm = self._topography(sx, sy)
            return values

    def acquire_topography_line(self, row: int) -> np.ndarray:
        """Heights (nm) of one topography-only line, as the z feedback records them."""
        with self._lock:
            self._check_row(row)
            self.tip_withdrawn = False
            x_nm, y_nm = self.scan.line_positions_nm(row)
            sx, sy = self._sample_positions(x_nm, y_nm)
            return self._topography(sx, sy)

    def _sample_positions(self, x_nm: np.ndarray, y_nm: np.ndarray):
        dx, dy = self.drift_nm()
        return x_nm - dx, y_nm - dy

    def _topography(self, sample_x_nm: np.ndarray, sample_y_nm: np.ndarray) -> np.ndarray:
        height = self.sample.properties(sample_x_nm, sample_y_nm)["height_nm"]
        noise = self.parameters["topography_noise_nm"] * self._rng.standard_normal(height.shape)
        return np.asarray(height + noise, dtype=np.float64)

    def _measure(self, x_nm: np.ndarray, y_nm: np.ndarray, row: int | None):
        excitation = self.excitation
        temperature_k = self.temperature_k()
        drift = self.drift_nm()
        sx, sy = x_nm - drift[0], y_nm - drift[1]
        frame = self._frame_for(row) if row is not None else None
        spectra = self._detection_gain * self.sample.response_spectra(
            sx, sy, temperature_k, excitation.sequence, self.bias_ac_v, excitation.dc_offset_v,
            excitation.frequencies_hz(), excitation.chirp_duration_s, excitation.averages,
            self.parameters["noise_pm_per_rthz"], self._rng,
        )
        topography = self._topography(sx, sy)
        if frame is not None:
            self._record_truth(frame, row, sx, sy, temperature_k, drift)
        return np.ascontiguousarray(spectra, dtype=np.complex64), topography

    def _frame_for(self, row: int) -> TruthFrame:
        """The truth frame this line belongs to; a new map starts a new frame.

        A new map is also where the operator re-aligns the laser on the cantilever
        (after every temperature change), so the detection gain changes slightly
        there; it multiplies all three excitations alike.
        """
        frame = self._frames[-1] if self._frames else None
        if frame is None or frame.scan != self.scan.key() or row in frame.rows:
            spread = self.parameters["laser_realignment_gain_spread"]
            self._detection_gain = float(max(1.0 + spread * self._rng.standard_normal(), 0.1))
            frame = TruthFrame(self.scan.key(), self.scan.pixels_x, self.scan.pixels_y,
                               u_ac_v=self.bias_ac_v, detection_gain=self._detection_gain)
            self._frames.append(frame)
        return frame

    def _record_truth(self, frame, row, sample_x_nm, sample_y_nm, temperature_k, drift) -> None:
        truth = self.sample.truth_maps(sample_x_nm, sample_y_nm, temperature_k, self.bias_ac_v)
        frame.put(row, {**truth, "sample_x_nm": sample_x_nm, "sample_y_nm": sample_y_nm})
        frame.temperatures_k.append(temperature_k)
        frame.drifts_nm.append(drift)

    # ------------------------------------------------------------------ truth

    @property
    def tip_bias_v(self) -> float:
        """The DC voltage actually on the tip now (0 with the output off)."""
        return self.bias_dc_v if self.bias_output_on else 0.0

    def truth_frames(self) -> list[TruthFrame]:
        with self._lock:
            return list(self._frames)

    def sweep_truth(self) -> dict[str, np.ndarray]:
        """Truth of every sweep taken, in order: `SWEEP_TRUTH` arrays of one value each."""
        with self._lock:
            return {name: np.array([record[name] for record in self._sweep_truth])
                    for name in SWEEP_TRUTH} if self._sweep_truth else {}

    def truth_arrays(self) -> dict[str, np.ndarray]:
        """Every frame's truth maps as `frame<i>.<quantity>` (shape lines × pixels), and the
        sweeps' truth as `sweeps.<quantity>` (one value per sweep)."""
        with self._lock:
            arrays = {
                f"frame{index}.{name}": values
                for index, frame in enumerate(self._frames)
                for name, values in frame.maps.items()
            }
            arrays.update({f"sweeps.{name}": values
                           for name, values in self.sweep_truth().items()})
            arrays.update(self.readouts.truth_arrays())
            arrays.update(self.forc_relaxation.truth_arrays())
            return arrays

    def ground_truth(self) -> dict[str, Any]:
        with self._lock:
            frames = [frame.summary() for frame in self._frames]
            latest = frames[-1] if frames else {}
            sweeps = self.sweep_truth()
            spectroscopy = {} if not sweeps else {"voltage_spectroscopy": {
                "sweeps": len(self._sweep_truth),
                "switching_threshold_v": self.switching.parameters["switching_threshold_v"],
                "switching_imprint_v": self.switching.parameters["switching_imprint_v"],
                **{f"{name}_mean": float(np.mean(sweeps[name])) for name in SWEEP_TRUTH[3:6]},
            }}
            return {
                **spectroscopy,
                **self.readouts.ground_truth(),
                **self.forc_relaxation.ground_truth(),
                **self.sample.ground_truth(),
                "vegard_strain_mean_pm": latest.get("vegard_strain_mean_pm"),
                "electrostatic_mean_pm": latest.get("electrostatic_mean_pm"),
                "frames": frames,
                "tip_bias_v": self.tip_bias_v,
                "tip_bias_dc_setting_v": self.bias_dc_v,
                "tip_bias_ac_v": self.bias_ac_v if self.bias_output_on else 0.0,
                "bias_output_on": self.bias_output_on,
                "temperature_k": self.temperature_k(),
                "drift_nm": list(self.drift_nm()),
            }


def _check(name: str, value: float, low: float, high: float, unit: str) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        unit_text = f" {unit}" if unit else ""
        raise AfmSettingError(
            f"{name} = {value:g} not valid: allowed {low:g} … {high:g}{unit_text}")
