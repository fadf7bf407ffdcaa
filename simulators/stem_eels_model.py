"""A monochromated STEM with a vibrational EELS spectrometer (Nion HERMES-like): the
instrument state, its acquisitions and their ground truth.

State: probe position (fractions of the field of view, (0.5, 0.5) the centre), field of view
(nm), beam blanked or not (power-on: blanked), monochromator slit (meV of energy it passes:
sets the ZLP FWHM and, proportionally, the probe current), defocus C10 (nm: widens the
probe), spectrometer dispersion (meV/ch) and energy offset (meV at the centre of channel 0),
camera exposure (ms) and frames summed per spectrum, and the line scan (start, end as
fractions, pixels, flyback ms).

Acquisitions: a point spectrum at the probe, or a camera-synchronised line scan: pixel i of
n sits at start + i/(n−1)·(end − start), the probe dwells frames × (exposure + camera
read-out) on each, then flies back; the reply is the sum-projected spectra (pixels ×
channels) and the HAADF signal of each pixel (electrons scattered onto the annular
detector), each the sum of its frames. Frames are how a vibrational spectrum gets more
counts than one exposure below the ZLP's saturation allows: the camera clips per frame, so
the sum clips at frames × saturation. A pixel's frames are computed as one exposure of
their summed electrons at their mean time (drifts within one pixel's dwell are ignored).
Durations are instrument seconds, `point_duration_s` and `line_duration_s`, for the
emulator to sleep on the clock; the model computes the data for a given start time, so the
drifts are those of the time each pixel was exposed. With the beam blanked nothing
reaches the specimen: the camera and HAADF read zero and no dose is given.

Scan frame and specimen: scan position (nm) = (fraction − 0.5)·field of view; the specimen
drifts in that frame at `specimen_drift_nm_per_min` in a seeded direction, so it sits at
scan − drift(t). The specimen varies along x only (`stem_eels_specimen`), so a drift along
y changes nothing but the dose map; drift along x moves the edge and the boundary between
passes, and the HAADF line (vacuum edge step, boundary thinning) re-registers them.

Dose: every electron on the specimen is recorded where it landed (specimen frame, cells of
a quarter of `damage_spread_nm`), each spreading as a 2-D Gaussian of σ = that spread; the
dose at a point (e/nm²) is their sum; a pixel of n frames takes n times one frame's. Pixels
of a scan see the dose of everything before them, their own half (mid-exposure) and that
of earlier pixels of the same line. An
unblanked probe left parked keeps dosing its position (blank the beam when idle). Above
the budget Li is lost (`BeamDamage`): the Li K edge and the LDO peak weaken there.

Truth: each acquisition records, per pixel, the specimen values at the position exposed
(`truth()` the latest, `truth_arrays()` all of them); `exposure_ms` is per frame, `frames`
how many were summed, `electrons` and `haadf_expected` those of all the frames.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vegard.clock import InstrumentClock

from .parameters import Parameter, model_values
from .stem_eels_specimen import GrainBoundarySpecimen
from .stem_eels_spectra import (
    BeamDamage,
    EnergyAxis,
    EnergyDrift,
    PixelConditions,
    SpectrumFormation,
)

ELEMENTARY_CHARGE_C = 1.602176634e-19
DEFAULT_MONO_SLIT_MEV = 7.6
"""Power-on slit: with the 2.5 meV intrinsic width, an 8.0 meV ZLP."""
MAX_PIXELS = 2048
MAX_SPECTRUM_VALUES = 2**21
"""Largest line (pixels × channels) one acquisition may return (8 MB of float32; 1024 pixels
of 2048 channels)."""

FRACTION_LIMITS = (0.0, 1.0)
FIELD_OF_VIEW_LIMITS_NM = (1.0, 20_000.0)
SLIT_LIMITS_MEV = (1.0, 300.0)
DISPERSION_LIMITS_MEV = (0.01, 2000.0)
OFFSET_LIMITS_MEV = (-10_000.0, 2_000_000.0)
EXPOSURE_LIMITS_MS = (0.1, 60_000.0)
FRAMES_LIMITS = (1, 1000)
"""Exposures summed per spectrum (Nion Swift: frames summed per spectrum)."""
DEFOCUS_LIMITS_NM = (-10_000.0, 10_000.0)
FLYBACK_LIMITS_MS = (0.0, 10_000.0)

INSTRUMENT_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("beam_current_pa", 20.0, "pA", 0.01, 2000.0,
              "probe current at the power-on slit (7.6 meV); proportional to the slit width"),
    Parameter("convergence_semiangle_mrad", 35.0, "mrad", 1.0, 100.0,
              "probe convergence semi-angle α (defocus widens the probe by 2αC10)"),
    Parameter("probe_fwhm_nm", 0.1, "nm", 0.01, 20.0,
              "probe diameter (FWHM) in focus"),
    Parameter("camera_channels", 2048, "channels", 64, 8192,
              "channels of a sum-projected spectrum"),
    Parameter("camera_readout_ms", 2.0, "ms", 0.0, 1000.0,
              "camera read-out after each exposure (the probe stays, dosing)"),
    Parameter("haadf_fraction_per_t_over_lambda", 0.05, "1", 0.0, 0.5,
              "fraction of the beam scattered onto the HAADF detector per unit t/λ"),
    Parameter("specimen_drift_nm_per_min", 0.3, "nm/min", 0.0, 100.0,
              "specimen drift speed in the scan frame (direction seeded)"),
)


class StemSettingError(ValueError):
    """A setting the microscope does not accept; the message names it and its range."""


@dataclass
class LineScan:
    """A scan one pixel high: start and end (fractions of the field of view), pixels."""

    start_x: float = 0.25
    start_y: float = 0.5
    end_x: float = 0.75
    end_y: float = 0.5
    pixels: int = 64
    flyback_ms: float = 10.0

    def fractions(self) -> tuple[np.ndarray, np.ndarray]:
        """Fractional x, y of every pixel: start to end inclusive."""
        return (np.linspace(self.start_x, self.end_x, self.pixels),
                np.linspace(self.start_y, self.end_y, self.pixels))


@dataclass
class StemSettings:
    """What the microscope is set to (power-on values)."""

    probe_x: float = 0.5
    probe_y: float = 0.5
    field_of_view_nm: float = 400.0
    beam_blanked: bool = True
    mono_slit_mev: float = DEFAULT_MONO_SLIT_MEV
    defocus_c10_nm: float = 0.0
    dispersion_mev_per_channel: float = 0.4
    energy_offset_mev: float = -50.0
    exposure_ms: float = 100.0
    frames: int = 1
    """Exposures of `exposure_ms` summed into each spectrum."""
    line: LineScan = field(default_factory=LineScan)


class DoseMap:
    """Electrons deposited on the specimen, binned to cells of σ/4; dose is their Gaussians."""

    def __init__(self, spread_nm: float) -> None:
        self.spread_nm = spread_nm
        self._cell_nm = spread_nm / 4.0
        self._cells = np.zeros((0, 2), dtype=np.int64)
        self._electrons = np.zeros(0)

    @property
    def total_electrons(self) -> float:
        return float(self._electrons.sum())

    def deposit(self, x_nm: np.ndarray, y_nm: np.ndarray, electrons: np.ndarray) -> None:
        cells = np.stack([np.rint(np.ravel(x_nm) / self._cell_nm),
                          np.rint(np.ravel(y_nm) / self._cell_nm)], axis=-1).astype(np.int64)
        every = np.concatenate([self._cells, cells])
        weights = np.concatenate([self._electrons, np.ravel(electrons).astype(float)])
        unique, inverse = np.unique(every, axis=0, return_inverse=True)
        self._cells = unique
        self._electrons = np.bincount(inverse.reshape(-1), weights=weights,
                                      minlength=len(unique))

    def dose(self, x_nm: np.ndarray, y_nm: np.ndarray) -> np.ndarray:
        """Accumulated dose (e/nm²) at each point."""
        x, y = np.ravel(x_nm).astype(float), np.ravel(y_nm).astype(float)
        result = np.zeros(x.size)
        if not self._electrons.size or not x.size:
            return result
        reach = 6.0 * self.spread_nm
        centres = self._cells * self._cell_nm
        near = ((centres[:, 0] > x.min() - reach) & (centres[:, 0] < x.max() + reach)
                & (centres[:, 1] > y.min() - reach) & (centres[:, 1] < y.max() + reach))
        centres, electrons = centres[near], self._electrons[near]
        chunk = max(1, 4_000_000 // max(1, electrons.size))
        for first in range(0, x.size, chunk):
            part = slice(first, first + chunk)
            kernel = gaussian_dose(x[part, None] - centres[None, :, 0],
                                   y[part, None] - centres[None, :, 1], self.spread_nm)
            result[part] = kernel @ electrons
        return result


def gaussian_dose(dx_nm: np.ndarray, dy_nm: np.ndarray, spread_nm: float) -> np.ndarray:
    """Dose (e/nm²) per electron at offset (dx, dy) from where it landed."""
    return np.exp(-0.5 * (dx_nm**2 + dy_nm**2) / spread_nm**2) / (2.0 * math.pi * spread_nm**2)


class MonochromatedStem:
    """The microscope, its specimen and spectrometer; acquisitions with their truth."""

    PARAMETERS: tuple[Parameter, ...] = (
        *GrainBoundarySpecimen.PARAMETERS,
        *SpectrumFormation.PARAMETERS,
        *EnergyDrift.PARAMETERS,
        *BeamDamage.PARAMETERS,
        *INSTRUMENT_PARAMETERS,
    )

    def __init__(
        self,
        clock: InstrumentClock,
        parameters: Mapping[str, float] | None = None,
        seed: int | Sequence[int] = 0,
    ) -> None:
        values = model_values(self.PARAMETERS, parameters, "stem")
        self.parameters = values
        self.clock = clock
        self.specimen = GrainBoundarySpecimen(_subset(values, GrainBoundarySpecimen.PARAMETERS))
        self.spectra = SpectrumFormation(_subset(values, SpectrumFormation.PARAMETERS))
        self.damage = BeamDamage(values)
        self._rng = np.random.default_rng(seed)
        self.energy_drift = EnergyDrift(values, phase_rad=float(self._rng.uniform(0, 2 * math.pi)))
        direction = float(self._rng.uniform(0, 2 * math.pi))
        speed_nm_per_s = values["specimen_drift_nm_per_min"] / 60.0
        self._drift_velocity_nm_per_s = speed_nm_per_s * np.array(
            [math.cos(direction), math.sin(direction)])
        self._lock = threading.RLock()
        self._built_s = clock.now()
        self._dose = DoseMap(values["damage_spread_nm"])
        self._dosed_until_s = self._built_s
        self._records: list[dict[str, np.ndarray]] = []
        self.settings = StemSettings()
        self.last_haadf = np.zeros(0, dtype=np.float32)

    # ------------------------------------------------------------------ settings

    def reset(self) -> None:
        """Power-on settings, beam blanked. The specimen keeps its dose (damage is physical)."""
        with self._lock:
            self._accrue_idle_dose()
            self.settings = StemSettings()

    def set_probe_position(self, x: float, y: float) -> None:
        _check("probe x", x, *FRACTION_LIMITS, "of the field of view")
        _check("probe y", y, *FRACTION_LIMITS, "of the field of view")
        with self._lock:
            self._accrue_idle_dose()
            self.settings.probe_x, self.settings.probe_y = float(x), float(y)

    def set_field_of_view(self, field_of_view_nm: float) -> None:
        _check("field of view", field_of_view_nm, *FIELD_OF_VIEW_LIMITS_NM, "nm")
        with self._lock:
            self._accrue_idle_dose()
            self.settings.field_of_view_nm = float(field_of_view_nm)

    def set_beam_blanked(self, blanked: bool) -> None:
        with self._lock:
            self._accrue_idle_dose()
            self.settings.beam_blanked = bool(blanked)

    def set_mono_slit(self, slit_mev: float) -> None:
        _check("monochromator slit", slit_mev, *SLIT_LIMITS_MEV, "meV")
        with self._lock:
            self._accrue_idle_dose()
            self.settings.mono_slit_mev = float(slit_mev)

    def set_defocus(self, c10_nm: float) -> None:
        _check("defocus C10", c10_nm, *DEFOCUS_LIMITS_NM, "nm")
        with self._lock:
            self.settings.defocus_c10_nm = float(c10_nm)

    def set_dispersion(self, mev_per_channel: float) -> None:
        _check("dispersion", mev_per_channel, *DISPERSION_LIMITS_MEV, "meV/channel")
        with self._lock:
            self.settings.dispersion_mev_per_channel = float(mev_per_channel)

    def set_energy_offset(self, offset_mev: float) -> None:
        _check("energy offset", offset_mev, *OFFSET_LIMITS_MEV, "meV")
        with self._lock:
            self.settings.energy_offset_mev = float(offset_mev)

    def set_exposure(self, exposure_ms: float) -> None:
        _check("exposure", exposure_ms, *EXPOSURE_LIMITS_MS, "ms")
        with self._lock:
            self.settings.exposure_ms = float(exposure_ms)

    def set_frames(self, frames: int) -> None:
        _check("frames", frames, *FRAMES_LIMITS, "exposures per spectrum")
        with self._lock:
            self.settings.frames = int(frames)

    def set_line(self, start_x: float, start_y: float, end_x: float, end_y: float,
                 pixels: int) -> None:
        for name, value in (("start x", start_x), ("start y", start_y), ("end x", end_x),
                            ("end y", end_y)):
            _check(f"line {name}", value, *FRACTION_LIMITS, "of the field of view")
        _check("line pixels", pixels, 1, self.max_line_pixels(), "")
        with self._lock:
            line = self.settings.line
            line.start_x, line.start_y, line.end_x, line.end_y = (
                float(start_x), float(start_y), float(end_x), float(end_y))
            line.pixels = int(pixels)

    def set_flyback(self, flyback_ms: float) -> None:
        _check("flyback", flyback_ms, *FLYBACK_LIMITS_MS, "ms")
        with self._lock:
            self.settings.line.flyback_ms = float(flyback_ms)

    # ------------------------------------------------------------------ derived state

    @property
    def channels(self) -> int:
        return int(self.parameters["camera_channels"])

    @property
    def saturation_counts(self) -> float:
        return self.spectra.parameters["camera_saturation_counts"]

    def max_line_pixels(self) -> int:
        return min(MAX_PIXELS, MAX_SPECTRUM_VALUES // self.channels)

    def energy_axis(self) -> EnergyAxis:
        s = self.settings
        return EnergyAxis(s.energy_offset_mev, s.dispersion_mev_per_channel, self.channels)

    def zlp_fwhm_mev(self) -> float:
        return self.spectra.zlp_fwhm_mev(self.settings.mono_slit_mev)

    def beam_current_pa(self) -> float:
        """Probe current: ∝ the slit width (the source's energy spread ≫ any slit)."""
        return (self.parameters["beam_current_pa"] * self.settings.mono_slit_mev
                / DEFAULT_MONO_SLIT_MEV)

    def probe_fwhm_nm(self) -> float:
        alpha_rad = self.parameters["convergence_semiangle_mrad"] * 1e-3
        return math.hypot(self.parameters["probe_fwhm_nm"],
                          2.0 * alpha_rad * self.settings.defocus_c10_nm)

    def point_duration_s(self) -> float:
        """Instrument time of a point spectrum: exposure and read-out, once per frame."""
        s = self.settings
        return s.frames * (s.exposure_ms + self.parameters["camera_readout_ms"]) / 1000.0

    def mid_exposure_s(self) -> float:
        """From the start of a pixel's dwell to the mean time of its frames' exposures."""
        s = self.settings
        frame_ms = s.exposure_ms + self.parameters["camera_readout_ms"]
        return (s.frames - 1) * frame_ms / 2000.0 + s.exposure_ms / 2000.0

    def line_duration_s(self) -> float:
        """Instrument time of a line scan: every pixel's frames (exposure and read-out each),
        then flyback."""
        line = self.settings.line
        return line.pixels * self.point_duration_s() + line.flyback_ms / 1000.0

    def specimen_drift_nm(self, time_s: float | np.ndarray) -> np.ndarray:
        """(…, 2): how far the specimen has moved in the scan frame at `time_s`."""
        elapsed = np.asarray(time_s, dtype=float) - self._built_s
        return elapsed[..., None] * self._drift_velocity_nm_per_s

    def energy_shift_mev(self, time_s: float | np.ndarray) -> np.ndarray:
        """Where the ZLP sits at `time_s` (meV)."""
        return self.energy_drift.shift_mev(np.asarray(time_s, dtype=float) - self._built_s)

    def scan_position_nm(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fov = self.settings.field_of_view_nm
        return (np.asarray(x) - 0.5) * fov, (np.asarray(y) - 0.5) * fov

    def dose_at(self, x_nm: np.ndarray, y_nm: np.ndarray) -> np.ndarray:
        """Accumulated dose (e/nm²) at specimen-frame positions, up to now."""
        with self._lock:
            self._accrue_idle_dose()
            return self._dose.dose(np.asarray(x_nm), np.asarray(y_nm))

    # ------------------------------------------------------------------ acquisition

    def acquire_point(self, started_s: float | None = None) -> np.ndarray:
        """Sum-projected spectrum at the probe (channels,), float32 counts."""
        with self._lock:
            start = self.clock.now() if started_s is None else float(started_s)
            s = self.settings
            x, y = self.scan_position_nm(np.array([s.probe_x]), np.array([s.probe_y]))
            mid = np.array([start + self.mid_exposure_s()])
            spectra = self._measure(x, y, mid, start, "point")
            self._dosed_until_s = max(self._dosed_until_s, start + self.point_duration_s())
            return spectra[0]

    def acquire_line(self, started_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(spectra (pixels, channels), HAADF (pixels,)), float32, of one line scan. The probe
        goes back to its parked position afterwards."""
        with self._lock:
            start = self.clock.now() if started_s is None else float(started_s)
            s = self.settings
            fx, fy = s.line.fractions()
            x, y = self.scan_position_nm(fx, fy)
            mid = (start + np.arange(s.line.pixels) * self.point_duration_s()
                   + self.mid_exposure_s())
            spectra = self._measure(x, y, mid, start, "line")
            self._dosed_until_s = max(self._dosed_until_s, start + self.line_duration_s())
            return spectra, self.last_haadf.copy()

    def _measure(self, scan_x: np.ndarray, scan_y: np.ndarray, mid_s: np.ndarray,
                 start_s: float, kind: str) -> np.ndarray:
        p, s = self.parameters, self.settings
        self._accrue_idle_dose(start_s)
        drift = self.specimen_drift_nm(mid_s)
        x, y = scan_x - drift[:, 0], scan_y - drift[:, 1]
        on = 0.0 if s.beam_blanked else 1.0
        per_ms = on * self.beam_current_pa() * 1e-12 / ELEMENTARY_CHARGE_C / 1000.0
        incident = np.full(x.size, per_ms * s.exposure_ms * s.frames)
        dwelling = np.full(x.size, per_ms * (s.exposure_ms + p["camera_readout_ms"]) * s.frames)
        dose = self._dose.dose(x, y) + self._dose_within(x, y, dwelling)
        probe_fwhm = self.probe_fwhm_nm()
        profile = self.specimen.profile(x, probe_fwhm)
        remaining = self.damage.lithium_remaining(dose)
        li_to_co = profile["li_to_co"] * remaining
        tau = profile["thickness_t_over_lambda"]
        haadf_fraction = p["haadf_fraction_per_t_over_lambda"] * tau * profile["grain_contrast"]
        shift = self.energy_shift_mev(mid_s)
        conditions = PixelConditions(
            electrons=incident * (1.0 - haadf_fraction),
            thickness_t_over_lambda=tau,
            impact_parameter_nm=profile["impact_parameter_nm"],
            in_vacuum=profile["in_vacuum"],
            grain_contrast=profile["grain_contrast"],
            ldo_centre_mev=profile["ldo_centre_mev"],
            lithium_relative=li_to_co / self.specimen.parameters["li_to_co_bulk"],
            li_to_co=li_to_co,
            energy_shift_mev=shift,
        )
        resolution = self.zlp_fwhm_mev()
        cutoff = self.specimen.parameters["polariton_cutoff_impact_nm"]
        axis = self.energy_axis()
        expected = self.spectra.expected_counts(axis, conditions, resolution, cutoff)
        counts, saturated = self.spectra.detect(expected, self._rng, s.frames)
        haadf_expected = incident * haadf_fraction
        self.last_haadf = self._rng.poisson(haadf_expected).astype(np.float32)
        if on:
            self._dose.deposit(x, y, dwelling)
        unscattered = conditions.electrons * np.exp(-tau)
        truth = self.specimen.truth(x, probe_fwhm)
        pixels = x.size
        self._records.append({
            **truth,
            "line_scan": np.full(pixels, kind == "line"),
            "time_s": mid_s,
            "scan_x_nm": np.asarray(scan_x, dtype=float),
            "scan_y_nm": np.asarray(scan_y, dtype=float),
            "position_y_nm": y,
            "drift_x_nm": drift[:, 0],
            "drift_y_nm": drift[:, 1],
            "li_to_co": np.where(profile["in_vacuum"], np.nan, li_to_co),
            "li_to_co_pristine": truth["li_to_co"],
            "li_remaining_fraction": remaining,
            "dose_e_per_nm2": dose,
            "electrons": incident,
            "ldo_counts_expected": unscattered * self.spectra.ldo_probability(conditions),
            "zlp_shift_mev": shift,
            "zlp_fwhm_mev": np.full(pixels, resolution),
            "probe_fwhm_nm": np.full(pixels, probe_fwhm),
            "exposure_ms": np.full(pixels, s.exposure_ms),
            "frames": np.full(pixels, s.frames),
            "energy_offset_mev": np.full(pixels, s.energy_offset_mev),
            "dispersion_mev_per_channel": np.full(pixels, s.dispersion_mev_per_channel),
            "haadf_expected": haadf_expected,
            "saturated_channels": saturated,
        })
        return counts

    def _dose_within(self, x: np.ndarray, y: np.ndarray, electrons: np.ndarray) -> np.ndarray:
        """Dose at each pixel's mid-exposure from the earlier pixels of the same scan and
        the first half of its own dwell."""
        spread = self._dose.spread_nm
        dose = np.zeros(x.size)
        for first in range(0, x.size, 256):
            rows = slice(first, first + 256)
            kernel = gaussian_dose(x[rows, None] - x[None, :], y[rows, None] - y[None, :], spread)
            later = np.arange(x.size)[None, :] >= np.arange(x.size)[rows, None]
            kernel[later] = 0.0
            dose[rows] = kernel @ electrons
        return dose + 0.5 * gaussian_dose(0.0, 0.0, spread) * electrons

    def _accrue_idle_dose(self, until_s: float | None = None) -> None:
        """The parked, unblanked probe doses its spot (along the drift path) until now."""
        until = self.clock.now() if until_s is None else until_s
        since = self._dosed_until_s
        if until <= since:
            return
        self._dosed_until_s = until
        s = self.settings
        if s.beam_blanked:
            return
        electrons = self.beam_current_pa() * 1e-12 / ELEMENTARY_CHARGE_C * (until - since)
        travel = float(np.linalg.norm(self._drift_velocity_nm_per_s)) * (until - since)
        steps = int(min(1000, max(1, math.ceil(travel / (self._dose.spread_nm / 2)))))
        times = since + (np.arange(steps) + 0.5) * (until - since) / steps
        x, y = self.scan_position_nm(np.array([s.probe_x]), np.array([s.probe_y]))
        drift = self.specimen_drift_nm(times)
        self._dose.deposit(x - drift[:, 0], y - drift[:, 1], np.full(steps, electrons / steps))

    # ------------------------------------------------------------------ truth

    def truth(self) -> dict[str, np.ndarray]:
        """Per-pixel truth of the latest acquisition (empty before the first)."""
        with self._lock:
            return dict(self._records[-1]) if self._records else {}

    def truth_arrays(self) -> dict[str, np.ndarray]:
        """Every acquisition's truth as `acq<i>.<quantity>` (one value per pixel)."""
        with self._lock:
            return {f"acq{index}.{name}": values for index, record in enumerate(self._records)
                    for name, values in record.items()}

    def safe_state(self) -> dict[str, Any]:
        """Safe when the beam is blanked: nothing doses the specimen unattended."""
        with self._lock:
            return {"safe": self.settings.beam_blanked,
                    "beam_blanked": self.settings.beam_blanked,
                    "probe_position": [self.settings.probe_x, self.settings.probe_y]}

    def ground_truth(self) -> dict[str, Any]:
        with self._lock:
            self._accrue_idle_dose()
            now = self.clock.now()
            drift = self.specimen_drift_nm(now)
            spec = self.specimen.parameters
            doses = [float(np.max(r["dose_e_per_nm2"], initial=0.0, where=~r["in_vacuum"]))
                     for r in self._records]
            budget = self.damage.budget_e_per_nm2
            return {
                **self.specimen.ground_truth(),
                "acquisitions": len(self._records),
                "beam_blanked": self.settings.beam_blanked,
                "beam_current_pa": self.beam_current_pa(),
                "zlp_fwhm_mev": self.zlp_fwhm_mev(),
                "zlp_shift_mev_now": float(self.energy_shift_mev(now)),
                "specimen_drift_nm": [float(drift[0]), float(drift[1])],
                "vacuum_edge_scan_x_nm": spec["vacuum_edge_position_nm"] + float(drift[0]),
                "boundary_scan_x_nm": spec["boundary_position_nm"] + float(drift[0]),
                "electrons_delivered": self._dose.total_electrons,
                "max_specimen_dose_acquired_e_per_nm2": max(doses) if doses else 0.0,
                "dose_budget_e_per_nm2": budget,
                "dose_budget_exceeded": bool(doses and max(doses) > budget),
            }


def _subset(values: Mapping[str, float], parameters: Sequence[Parameter]) -> dict[str, float]:
    names = {parameter.name for parameter in parameters}
    return {key: value for key, value in values.items() if key in names}


def _check(name: str, value: float, low: float, high: float, unit: str) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        unit_text = f" {unit}" if unit else ""
        raise StemSettingError(
            f"{name} = {value:g} not valid: allowed {low:g} … {high:g}{unit_text}")
