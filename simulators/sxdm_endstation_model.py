"""The SXDM end-station's area detector: frames from the crystal, the cell and the motors.

An operando scanning X-ray nanodiffraction experiment: the LMNO crystal (`LmnoCrystal`)
sits in the cell the potentiostat drives (`LmnoCell`, a lab peer: its lithium content x at
the time of an acquisition sets the crystal's state), on the diffractometer whose motors
the simulated IOC serves (a lab peer: sample x/y, eta, phi, nu, delta and the X-ray
energy). The detector is a 512 × 512 Maxipix-like photon counter with 55 µm pixels.

Acquisition. The wire emulator (`maxipix.py`) decides when each frame starts (internal
timing, or position-compare triggers on a sample axis) and asks `acquire` for the frames.
Because a fly scan's frames are taken while the sample moves and the emulator answers
later (wall latency × clock speed-up makes "now" useless), every frame is computed at its
own past instrument time from the axes' recorded trajectories: positions and angles at
mid-exposure, x of the cell once per acquisition (it changes negligibly within one).

Motion blur. While the piezo moves, the beam sweeps v·exposure (0.3-0.5 µm in the dry run,
against an 80 nm beam and a ≈ 260 nm footprint). When a frame's travel exceeds
`BLUR_THRESHOLD_FWHM` of the beam FWHM, the footprint is sampled around the beam's
positions at the middle of m equal parts of the exposure (spaced about one FWHM, at most
`MAX_BLUR_SAMPLES`), taken from the real trajectory (ramps included): the frame's peak is
drawn around the mean G over the swept area and widened by its spread
(`nanodiffraction.frames(..., path_um=...)`). A line of 16 positions with a 64 × 160 ROI
costs a few ms.

Counts are clipped at 65535 (uint16, as the detector's counters read out).

Ground truth. For every frame: its start time, exposure, the mid-exposure sample position
and angles, x, and per phase the footprint-weighted mean reciprocal vector G (sample frame,
Å⁻¹, what the frame was drawn around) and weight (footprint-weighted strength × phase
fraction). `map_truth` turns the frames of one time window into per-pixel maps as the SXDM
analysis should find them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from vegard.clock import InstrumentClock
from vegard.diffraction_geometry import (
    HC_EV_ANGSTROM,
    DetectorRoi,
    DiffractometerGeometry,
    tilt_altitude_azimuth_deg,
)

from .lmno_crystal import MASK_FRACTION, PHASES, LmnoCrystal
from .nanodiffraction import NanoBeam, footprint_g, frames
from .parameters import Parameter, model_values

DETECTOR_PIXELS = (512, 512)
PIXEL_SIZE_M = 55e-6
SATURATION_COUNTS = 65535
"""The counters read out as uint16."""
POSITION_AXES = ("sample_x_um", "sample_y_um")
TRIGGER_AXES = (*POSITION_AXES, "eta_deg")
"""Axes the position-compare unit can watch (the piezo for fly lines, eta for a rocking
scan flown in eta)."""
ANGLE_AXES = ("eta_deg", "phi_deg", "nu_deg", "delta_deg", "energy_ev")
BLUR_THRESHOLD_FWHM = 0.25
"""Travel during one frame, in beam FWHMs, above which motion blur is modelled."""
BLUR_STEP_FWHM = 1.0
"""Spacing of the blur sub-positions, in beam FWHMs."""
MAX_BLUR_SAMPLES = 8
_PIXELS_PER_CHUNK = 2_000_000
"""Frames are computed in chunks of at most this many pixels (memory ≈ 16 bytes each)."""
_POSITION_DECIMALS = 4
"""map_truth groups frames by sample position rounded to 1e-4 µm."""

DETECTOR_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("detector_distance_m", 1.5, "m", 0.5, 3.0, "sample-to-detector distance"),
    Parameter("direct_beam_row", 255.5, "px", 0.0, 511.0,
              "detector row hit by the direct beam at nu = delta = 0"),
    Parameter("direct_beam_col", 255.5, "px", 0.0, 511.0,
              "detector column hit by the direct beam at nu = delta = 0"),
    Parameter("flux_ph_per_s", 1.0e9, "ph/s", 0.0, 1.0e13, "incident photon flux"),
    Parameter("readout_dead_time_s", 2.9e-4, "s", 0.0, 1.0,
              "dead time between frames (Maxipix readout, 290 µs)"),
)  # fmt: skip

FAULT_PARAMETERS: tuple[Parameter, ...] = (
    Parameter("fault_frame_missing_at_s", 0.0, "s", 0.0, 1e8,
              "fault injection, missed trigger: the first fly line armed at or after this "
              "instrument time since the lab started delivers one frame fewer (0 = off)"),
    Parameter("fault_frame_saturated_at_s", 0.0, "s", 0.0, 1e8,
              "fault injection, burst: one frame of the first fly line armed at or after this "
              "instrument time since the lab started has many pixels at the counter maximum "
              "(0 = off)"),
)  # fmt: skip
LINE_FAULTS = {"frame_missing": "fault_frame_missing_at_s",
               "frame_saturated": "fault_frame_saturated_at_s"}
"""Physics fault kind → the parameter scheduling it. They hit fly lines only (a trigger
axis in `POSITION_AXES`), not peak-search rocking scans flown in eta."""
BURST_FRACTION = 0.05
"""Share of a frame's pixels a burst saturates."""


class Trajectories(Protocol):
    """Where the diffractometer's axes were (a `SimulatedDiffractometer`)."""

    def positions_at(self, axis: str, times_s: Iterable[float]) -> Sequence[float]: ...

    def crossing_time_s(
        self, axis: str, position: float, after_s: float, direction: int
    ) -> float | None: ...

    def is_moving(self, axis: str) -> bool: ...

    def move_end_s(self, axis: str) -> float: ...


class LithiumSource(Protocol):
    """The cell (an `LmnoCell`): its lithium content at the clock's present."""

    def lithium_content(self) -> float: ...


class SxdmEndStation:
    """Crystal, beam and detector; frames at past instrument times, with their truth."""

    PARAMETERS: tuple[Parameter, ...] = (
        *LmnoCrystal.PARAMETERS,
        *NanoBeam.PARAMETERS,
        *DETECTOR_PARAMETERS,
        *FAULT_PARAMETERS,
    )

    def __init__(
        self,
        clock: InstrumentClock,
        parameters: Mapping[str, float] | None = None,
        seed: int | Sequence[int] = 0,
        potentiostat: LithiumSource | None = None,
        diffractometer: Trajectories | None = None,
    ) -> None:
        values = model_values(self.PARAMETERS, parameters, "area_detector")
        self.parameters = values
        self.clock = clock
        self.potentiostat = potentiostat
        self.diffractometer = diffractometer
        seeds = [int(s) for s in np.atleast_1d(seed)]
        crystal_names = {p.name for p in LmnoCrystal.PARAMETERS}
        beam_names = {p.name for p in NanoBeam.PARAMETERS}
        self.crystal = LmnoCrystal({k: v for k, v in values.items() if k in crystal_names},
                                   seed=seeds)
        self.beam = NanoBeam({k: v for k, v in values.items() if k in beam_names})
        self._rng = np.random.default_rng([*seeds, 0x5D])
        self._lock = threading.RLock()
        self._truth: list[dict[str, np.ndarray]] = []
        self._frame_count = 0
        self._built_s = clock.now()
        """Fault schedules count from here (the lab builds its models when it starts)."""
        self._fault_due_s = {kind: self._built_s + values[name]
                             for kind, name in LINE_FAULTS.items() if values[name] > 0}
        self._fired: list[dict[str, Any]] = []
        self._armed = False

    # ------------------------------------------------------------------ detector

    @property
    def pixels(self) -> tuple[int, int]:
        return DETECTOR_PIXELS

    @property
    def pixel_size_m(self) -> float:
        return PIXEL_SIZE_M

    @property
    def readout_dead_time_s(self) -> float:
        return self.parameters["readout_dead_time_s"]

    def geometry(self, energy_ev: float) -> DiffractometerGeometry:
        p = self.parameters
        return DiffractometerGeometry(
            distance_m=p["detector_distance_m"], pixel_size_m=PIXEL_SIZE_M,
            pixels=DETECTOR_PIXELS, center_row=p["direct_beam_row"],
            center_col=p["direct_beam_col"], energy_ev=float(energy_ev),
        )  # fmt: skip

    def lithium_content(self) -> float:
        """x of the cell now (1, pristine, when the lab has no potentiostat)."""
        return 1.0 if self.potentiostat is None else float(self.potentiostat.lithium_content())

    # ------------------------------------------------------------------ state, faults

    def set_armed(self, armed: bool) -> None:
        """The emulator reports arming and disarming (the detector's safe state)."""
        with self._lock:
            self._armed = bool(armed)

    def safe_state(self) -> dict[str, Any]:
        """Safe = not armed: no acquisition is waiting for triggers or running."""
        with self._lock:
            return {"safe": not self._armed, "armed": self._armed}

    def fired_faults(self) -> list[dict[str, Any]]:
        """The physics faults that acted on a line (instrument time since the lab started)."""
        with self._lock:
            return [dict(fault) for fault in self._fired]

    def acquire_line(
        self, start_times_s: Sequence[float], exposure_s: float, roi: DetectorRoi, *,
        armed_s: float, axis: str,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(frames, their start times) an acquisition delivers: `acquire`, plus the physics
        fault scheduled for the first fly line armed at or after its time, if any."""
        starts = np.asarray(start_times_s, dtype=float).reshape(-1)
        with self._lock:
            kinds = [kind for kind, due_s in self._fault_due_s.items()
                     if axis in POSITION_AXES and armed_s >= due_s]
            for kind in kinds:
                del self._fault_due_s[kind]
        record = {"instrument_time_s": armed_s - self._built_s, "axis": axis,
                  "triggers": int(starts.size)}
        if "frame_missing" in kinds and starts.size:
            missed = starts.size // 2
            starts = np.delete(starts, missed)
            self._record({**record, "kind": "frame_missing", "frame_index": missed,
                          "frames_delivered": int(starts.size)})
        counts = self.acquire(starts, exposure_s, roi)
        if "frame_saturated" in kinds and counts.shape[0]:
            index = counts.shape[0] // 2
            pixels = self._burst(counts[index])
            self._record({**record, "kind": "frame_saturated", "frame_index": index,
                          "saturated_pixels": pixels})
        return counts, starts

    def _burst(self, frame: np.ndarray) -> int:
        """Saturate a disc of about `BURST_FRACTION` of the frame's pixels; how many."""
        rows, cols = frame.shape
        radius = max(2.0, math.sqrt(BURST_FRACTION * rows * cols / math.pi))
        row0, col0 = self._rng.uniform(0, rows), self._rng.uniform(0, cols)
        rr, cc = np.ogrid[:rows, :cols]
        disc = (rr - row0) ** 2 + (cc - col0) ** 2 <= radius**2
        frame[disc] = SATURATION_COUNTS
        return int(disc.sum())

    def _record(self, fault: dict[str, Any]) -> None:
        with self._lock:
            self._fired.append(fault)

    # ------------------------------------------------------------------ triggers

    def find_triggers(
        self,
        axis: str,
        first: float,
        step: float,
        count: int,
        after_s: float,
        found: Sequence[float] = (),
    ) -> list[float]:
        """Start times of position-compare triggers at first + i·step, passed in the
        direction of `step`, each after the previous one (the first after `after_s`).

        Extends `found` (triggers already known) with those passed since, up to now.
        """
        if axis not in TRIGGER_AXES:
            raise ValueError(f"no position compare on {axis!r}; allowed {TRIGGER_AXES}")
        trajectories = self._trajectories()
        direction = 1 if step > 0 else -1
        times = list(found)
        while len(times) < count:
            after = times[-1] if times else after_s
            crossing = trajectories.crossing_time_s(
                axis, first + len(times) * step, after, direction)
            if crossing is None:
                break
            times.append(crossing)
        return times

    def axis_moving(self, axis: str) -> bool:
        return self._trajectories().is_moving(axis)

    def move_end_s(self, axis: str) -> float:
        return self._trajectories().move_end_s(axis)

    def _trajectories(self) -> Trajectories:
        if self.diffractometer is None:
            raise RuntimeError("the end-station has no diffractometer to follow")
        return self.diffractometer

    # ------------------------------------------------------------------ frames

    def acquire(
        self, start_times_s: Sequence[float] | np.ndarray, exposure_s: float, roi: DetectorRoi
    ) -> np.ndarray:
        """Frames starting at these instrument times: uint16, shape (n, rows, cols).

        Each frame is computed from the sample position and angles at its mid-exposure
        (motion blur from the trajectory over the exposure); x is the cell's now.
        """
        starts = np.asarray(start_times_s, dtype=float).reshape(-1)
        n = starts.size
        out = np.zeros((n, roi.n_rows, roi.n_cols), dtype=np.uint16)
        if n == 0:
            return out
        trajectories = self._trajectories()
        middle = starts + exposure_s / 2.0
        x_li = self.lithium_content()
        xy = np.column_stack([trajectories.positions_at(a, middle) for a in POSITION_AXES])
        angles = np.column_stack([trajectories.positions_at(a, middle) for a in ANGLE_AXES])
        travel = (np.column_stack([trajectories.positions_at(a, starts + exposure_s)
                                   for a in POSITION_AXES])
                  - np.column_stack([trajectories.positions_at(a, starts)
                                     for a in POSITION_AXES]))
        truth = {
            "frame_time_s": starts,
            "exposure_s": np.full(n, float(exposure_s)),
            "x_um": xy[:, 0],
            "y_um": xy[:, 1],
            "travel_x_um": travel[:, 0],
            "travel_y_um": travel[:, 1],
            **{axis: angles[:, i] for i, axis in enumerate(ANGLE_AXES)},
            "x_li": np.full(n, x_li),
            "roi": np.tile(np.array([roi.row_start, roi.col_start, roi.n_rows, roi.n_cols]),
                           (n, 1)),
        }
        g = {phase: np.full((n, 3), np.nan) for phase in PHASES}
        weight = {phase: np.zeros(n) for phase in PHASES}
        photons_per_frame = self.parameters["flux_ph_per_s"]
        fwhm = self.beam.parameters["beam_fwhm_um"]
        chunk = max(1, _PIXELS_PER_CHUNK // (roi.n_rows * roi.n_cols))
        with self._lock:
            for group in _groups(angles):
                eta, phi, nu, delta, energy = angles[group[0]]
                geometry = self.geometry(energy)
                for part in np.array_split(group, math.ceil(group.size / chunk)):
                    path = self._blur_path(trajectories, starts[part], exposure_s,
                                           xy[part], travel[part], fwhm)
                    footprint = footprint_g(self.crystal, x_li, xy[part], eta, beam=self.beam,
                                            phi_deg=phi, path_um=path)
                    counts = frames(self.crystal, x_li, xy[part], [eta], geometry, roi, nu,
                                    delta, exposure_s, photons_per_frame, self._rng,
                                    beam=self.beam, phi_deg=phi, path_um=path,
                                    footprint=footprint)
                    np.minimum(counts[:, 0], SATURATION_COUNTS, out=counts[:, 0])
                    out[part] = counts[:, 0]
                    for phase in PHASES:
                        g[phase][part] = footprint[phase].g
                        weight[phase][part] = footprint[phase].weight
            for phase in PHASES:
                truth[f"g_{phase}_inv_angstrom"] = g[phase]
                truth[f"weight_{phase}"] = weight[phase]
            self._truth.append(truth)
            self._frame_count += n
        return out

    def _blur_path(
        self,
        trajectories: Trajectories,
        starts: np.ndarray,
        exposure_s: float,
        xy: np.ndarray,
        travel: np.ndarray,
        fwhm: float,
    ) -> np.ndarray | None:
        """(n, m, 2) offsets of the beam from the mid-exposure points, or None (no blur)."""
        longest = float(np.hypot(travel[:, 0], travel[:, 1]).max())
        if longest <= BLUR_THRESHOLD_FWHM * fwhm:
            return None
        m = int(min(MAX_BLUR_SAMPLES, max(2, math.ceil(longest / (BLUR_STEP_FWHM * fwhm)))))
        times = starts[:, None] + exposure_s * (np.arange(m) + 0.5) / m  # (n, m)
        sub = np.stack([np.asarray(trajectories.positions_at(a, times.ravel())).reshape(times.shape)
                        for a in POSITION_AXES], axis=-1)
        return sub - xy[:, None, :]

    # ------------------------------------------------------------------ truth

    def truth_arrays(self) -> dict[str, np.ndarray]:
        """Per-frame truth of every frame acquired so far, in acquisition order."""
        with self._lock:
            records = list(self._truth)
        if not records:
            return {}
        return {key: np.concatenate([record[key] for record in records])
                for key in records[0]}

    def ground_truth(self) -> dict[str, Any]:
        with self._lock:
            last = self._truth[-1] if self._truth else None
            summary: dict[str, Any] = {
                "parameters": dict(self.parameters),
                "acquisitions": len(self._truth),
                "frames": self._frame_count,
            }
        if last is not None:
            summary["last_acquisition"] = {
                "frames": int(last["frame_time_s"].size),
                "first_frame_time_s": float(last["frame_time_s"][0]),
                "last_frame_time_s": float(last["frame_time_s"][-1]),
                "exposure_s": float(last["exposure_s"][0]),
                "x_li": float(last["x_li"][0]),
            }
        return summary

    def map_truth(self, start_s: float, end_s: float) -> dict[str, Any]:
        """Per-pixel truth of the frames that started in [start_s, end_s].

        Frames are grouped by sample position (rounded to 1e-4 µm) on the sorted unique x
        and y; maps have shape (len(y_um), len(x_um)). The phase in view is the one whose
        intensity-weighted mean d is nearest the d whose Bragg peak sits on the direct-beam
        pixel at the frames' delta (λ / 2 sin(delta/2)). Keys: x_um, y_um, phase,
        d400_angstrom (2π/|mean G| over the pixel's frames), tilt_altitude_deg and
        tilt_azimuth_deg (of the pixel's mean G from the intensity-weighted mean G over the
        mask), intensity (mean weight of the phase; 0 where no frame), mask (intensity ≥
        20 % of the maximum), d400_mean_angstrom (intensity-weighted over the mask), x_li_mean,
        potential_window_s (first frame start, last frame end), frames (per pixel).
        Unmasked values are NaN.
        """
        truth = self.truth_arrays()
        if not truth:
            raise ValueError("no frames acquired yet")
        selected = (truth["frame_time_s"] >= start_s) & (truth["frame_time_s"] <= end_s)
        if not selected.any():
            raise ValueError(f"no frames started between {start_s!r} and {end_s!r}")
        t = {key: value[selected] for key, value in truth.items()}
        x = np.round(t["x_um"], _POSITION_DECIMALS)
        y = np.round(t["y_um"], _POSITION_DECIMALS)
        x_um, column = np.unique(x, return_inverse=True)
        y_um, row = np.unique(y, return_inverse=True)
        shape = (y_um.size, x_um.size)

        wavelength = HC_EV_ANGSTROM / float(t["energy_ev"].mean())
        d_in_view = wavelength / (2.0 * math.sin(math.radians(float(t["delta_deg"].mean()))
                                                 / 2.0))
        mean_d = {}
        for phase in PHASES:
            w = t[f"weight_{phase}"]
            if w.sum() > 0:
                lit = w > 0
                d = 2.0 * math.pi / np.linalg.norm(t[f"g_{phase}_inv_angstrom"][lit], axis=-1)
                mean_d[phase] = float((w[lit] * d).sum() / w[lit].sum())
        if not mean_d:
            raise ValueError("the frames of this window saw no crystal")
        phase = min(mean_d, key=lambda k: abs(mean_d[k] - d_in_view))

        w = t[f"weight_{phase}"]
        g = np.nan_to_num(t[f"g_{phase}_inv_angstrom"])
        frames_per_pixel = np.zeros(shape, dtype=int)
        np.add.at(frames_per_pixel, (row, column), 1)
        weight_sum = np.zeros(shape)
        np.add.at(weight_sum, (row, column), w)
        g_sum = np.zeros((*shape, 3))
        np.add.at(g_sum, (row, column), w[:, None] * g)
        intensity = np.where(frames_per_pixel > 0, weight_sum / np.maximum(frames_per_pixel, 1),
                             0.0)
        lit = weight_sum > 0
        g_pixel = np.full((*shape, 3), np.nan)
        g_pixel[lit] = g_sum[lit] / weight_sum[lit, None]
        peak = intensity.max()
        mask = (intensity >= MASK_FRACTION * peak) & lit if peak > 0 else np.zeros(shape, bool)
        d400 = np.full(shape, np.nan)
        d400[lit] = 2.0 * math.pi / np.linalg.norm(g_pixel[lit], axis=-1)
        altitude, azimuth = np.full(shape, np.nan), np.full(shape, np.nan)
        d_mean = math.nan
        if mask.any():
            weights = intensity[mask]
            mean_g = (weights[:, None] * g_pixel[mask]).sum(axis=0) / weights.sum()
            altitude[mask], azimuth[mask] = tilt_altitude_azimuth_deg(g_pixel[mask], mean_g)
            d_mean = float((weights * d400[mask]).sum() / weights.sum())
        return {
            "x_um": x_um,
            "y_um": y_um,
            "phase": phase,
            "d400_angstrom": np.where(mask, d400, np.nan),
            "tilt_altitude_deg": altitude,
            "tilt_azimuth_deg": azimuth,
            "intensity": intensity,
            "mask": mask,
            "d400_mean_angstrom": d_mean,
            "x_li_mean": float(t["x_li"].mean()),
            "potential_window_s": (float(t["frame_time_s"].min()),
                                   float((t["frame_time_s"] + t["exposure_s"]).max())),
            "frames": frames_per_pixel,
        }


def _groups(angles: np.ndarray) -> list[np.ndarray]:
    """Indices of frames sharing eta, phi, nu, delta and energy (to 1e-6), in order."""
    keys = np.round(angles, 6)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [np.flatnonzero(inverse == label) for label in np.argsort(first)]
