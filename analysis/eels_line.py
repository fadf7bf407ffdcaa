"""Live (and replayed) analysis of a vibrational STEM-EELS line scan across a grain boundary.

One run (`EelsLineMetadata` under `eels_line` in the start document): point spectra in vacuum
(stream `aloof`, summed), a HAADF line before each pass (`registration`, counted only), and
one event per spectrometer pass along the line (`vibrational`, `valence_loss`, `core_loss`),
whose spectra, energy axis and HAADF line are in HDF5 (StreamResource/StreamDatum, read with
`ArrayFiller`). The line each pass actually scanned (after drift re-registration) is read
from its descriptor's configuration of `<detector>-probe` (or its event, if the plan reads
the probe there); pixel i of n sits at start + i/(n−1)·(end − start), in the scan frame
(nm = (fraction − 0.5)·field of view). Positions along the line are the scan-frame positions
projected on the line's direction: for a line along x, the x of each pixel.

At `stop`: the robust pipeline (vibrational pass + aloof; t/λ from the valence pass, Li:Co
from the core-loss pass) and the paper's pipeline on the same data, figures in a child
process, and `.result` (plain JSON). A run that ended early gives what its passes allow,
with a warning per missing piece; nothing here raises on missing data.

Two choices made here rather than in the pipelines (`eels_robust_pipeline`, `eels_paper_pipeline`):

* Li:Co uses a pre-edge background window just below the Li K onset (`core_background_
  window_ev`, 50–54 eV), not the pipelines' default 43–45 eV: on the simulated specimen's
  plasmon tail a power law fitted at 43–45 eV and extrapolated 10–25 eV gives a Li:Co
  change of the wrong sign; 4 eV below the onset it is within a few percent. So the core
  pass is not handed to the pipelines; its Li:Co profile places the boundary for them.
* Vibrational channels above `VIBRATIONAL_UPPER_MEV` are dropped before fitting: every
  window of both pipelines ends at 120 meV, and the fits then cost a third.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from event_model import DocumentRouter

from vegard.store.arrays import ArrayFiller

from . import eels_preprocessing as pre
from .eels_boundary import (
    boundary_regions,
    fit_boundary_profile,
    on_plane,
    pooled_weight_contrast,
)
from .eels_paper_pipeline import PAPER_PHONON_PEAKS, PaperEelsResult, paper_pipeline
from .eels_robust_pipeline import RobustEelsResult, robust_pipeline
from .esm_map import json_float
from .figure_process import FigureDrawer
from .image_registration import line_shift_px
from .run_metadata import EelsLineMetadata

ALOOF = "aloof"
REGISTRATION = "registration"
VIBRATIONAL = "vibrational"
VALENCE = "valence_loss"
CORE = "core_loss"
PASSES = (VIBRATIONAL, VALENCE, CORE)
VIBRATIONAL_UPPER_MEV = 160.0
"""Highest vibrational loss kept for the fits (both pipelines' windows end at 120 meV)."""
CORE_BACKGROUND_WINDOW_EV = (50.0, 54.0)
"""Pre-edge power-law window for Li:Co: the 4 eV below the Li K onset (55 eV)."""
FIGURE_FILES = {"spectra": "eels_spectra.png", "profiles": "eels_profiles.png",
                "paper_ldo": "eels_paper_ldo.png"}
PROFILE_NAMES = ("position_nm", "region", "ldo_centre_mev", "ldo_centre_stderr_mev",
                 "polaritonic", "phononic", "t_over_lambda", "li_to_co")
ROBUST_KEYS = (
    "boundary_position_nm", "boundary_width_nm", "boundary_source",
    "ldo_boundary_shift_mev", "ldo_boundary_shift_stderr_mev",
    "ldo_boundary_shift_significance", "ldo_boundary_region_shift_mev",
    "ldo_boundary_region_shift_stderr_mev", "boundary_pooled_weight",
    "ldo_boundary_shift_per_pixel_mev",
    "ldo_boundary_shift_per_pixel_stderr_mev", "ldo_boundary_shift_bootstrap_stderr_mev",
    "ldo_boundary_shift_aloof_stderr_mev",
    "activation_energy_change_fraction", "activation_energy_change_stderr_fraction",
    "reduced_chi_square", "pooled_reduced_chi_square",
    "li_to_co_boundary_change_fraction", "li_to_co_boundary_change_stderr_fraction",
    "li_to_co_boundary_region_change_fraction",
    "ldo_centre_grain_a_mev", "ldo_centre_grain_a_stderr_mev", "ldo_centre_boundary_mev",
    "ldo_centre_boundary_stderr_mev", "ldo_centre_grain_b_mev", "ldo_centre_grain_b_stderr_mev",
    "ldo_centre_at_bound_pixels",
)


def _floats(values: Any) -> list[float | None]:
    return [json_float(v) for v in np.asarray(values, dtype=float).ravel()]


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class LineGeometry:
    """The line one pass scanned, in the scan frame (nm from the field of view's centre)."""

    start_nm: tuple[float, float]
    end_nm: tuple[float, float]
    pixels: int
    source: str
    """"configuration", "event" or "planned" (start document: no read-back found)."""

    def pixel_positions_nm(self) -> np.ndarray:
        """(pixels, 2) scan-frame x, y of every pixel, start to end inclusive."""
        t = np.linspace(0.0, 1.0, self.pixels)[:, None]
        start, end = np.asarray(self.start_nm, float), np.asarray(self.end_nm, float)
        return start + t * (end - start)

    def positions_nm(self) -> np.ndarray:
        """(pixels,) scan-frame positions projected on the line's direction."""
        direction = np.subtract(self.end_nm, self.start_nm)
        length = float(np.hypot(*direction))
        unit = direction / length if length > 0 else np.array([1.0, 0.0])
        return self.pixel_positions_nm() @ unit


def _probe_value(name: str, data: Mapping[str, Any], configuration: Mapping[str, Any],
                 detector: str) -> tuple[Any, str] | None:
    """`<detector>-probe-<name>` from the event, else the probe's configuration, else any
    configured object's (a plan may read the probe under another object)."""
    key = f"{detector}-probe-{name}"
    if key in data:
        return data[key], "event"
    probe = configuration.get(f"{detector}-probe", {}).get("data", {})
    if key in probe:
        return probe[key], "configuration"
    for entry in configuration.values():
        if key in entry.get("data", {}):
            return entry["data"][key], "configuration"
    return None


def line_geometry(descriptor: Mapping[str, Any], data: Mapping[str, Any],
                  metadata: EelsLineMetadata, pixels: int) -> tuple[LineGeometry, list[str]]:
    """The line a pass scanned (fractions of the field of view → nm), with notes where the
    documents lack it (then the planned line of the start document is used)."""
    configuration = descriptor.get("configuration") or {}
    det = metadata.detector
    found = {name: _probe_value(name, data, configuration, det) for name in (
        "line_start_fraction", "line_end_fraction", "field_of_view_nm", "line_pixels")}
    notes = []
    stream = descriptor.get("name", "?")
    if found["line_start_fraction"] is None or found["line_end_fraction"] is None:
        notes.append(f"{stream}: no {det}-probe-line_start_fraction/-line_end_fraction in "
                     "its descriptor's configuration or event: the planned line is used")
        return LineGeometry(tuple(metadata.start_nm), tuple(metadata.end_nm), pixels,
                            "planned"), notes
    fov = (float(found["field_of_view_nm"][0]) if found["field_of_view_nm"] is not None
           else metadata.field_of_view_nm)
    start = (np.asarray(found["line_start_fraction"][0], float).ravel() - 0.5) * fov
    end = (np.asarray(found["line_end_fraction"][0], float).ravel() - 0.5) * fov
    if found["line_pixels"] is not None and int(found["line_pixels"][0]) != pixels:
        notes.append(f"{stream}: {pixels} spectra but {det}-probe-line_pixels = "
                     f"{int(found['line_pixels'][0])}: positions spread over the spectra")
    return LineGeometry((float(start[0]), float(start[1])), (float(end[0]), float(end[1])),
                        pixels, found["line_start_fraction"][1]), notes


# ----------------------------------------------------------------------------- recorded data


@dataclass(frozen=True)
class PassData:
    """One pass along the line: counts (pixels × channels), energy axis (meV), geometry."""

    name: str
    energy_mev: np.ndarray
    spectra: np.ndarray
    haadf_counts: np.ndarray | None
    geometry: LineGeometry
    saturated_pixels: int

    @property
    def pixels(self) -> int:
        return int(self.spectra.shape[0])


@dataclass(frozen=True)
class AloofData:
    """The aloof point spectra, summed (channels,), and how many there were."""

    energy_mev: np.ndarray
    counts: np.ndarray
    spectra: int
    saturated_spectra: int


@dataclass(frozen=True)
class LineAnalysis:
    """`result` (JSON) and the pipeline results the figures are drawn from."""

    result: dict[str, Any]
    robust: RobustEelsResult | None
    paper: PaperEelsResult | None
    energy_mev: np.ndarray | None
    vibrational_counts: np.ndarray | None
    aloof_counts: np.ndarray | None


# ----------------------------------------------------------------------------- the analysis


def empty_result() -> dict[str, Any]:
    """Every key of `.result`, None until computed (the schema does not depend on the run)."""
    return {
        "complete": False, "passes_recorded": [], "passes_missing": [], "aloof_spectra": 0,
        "registration_lines": 0,
        **dict.fromkeys(ROBUST_KEYS),
        "t_over_lambda_mean": None,
        "profiles": {name: [] for name in PROFILE_NAMES},
        "paper": None, "warnings": [], "figures": dict.fromkeys(FIGURE_FILES),
        "exit_status": None,
    }


def _aligned(pass_data: PassData | None, reference: PassData,
             warnings: list[str]) -> tuple[PassData | None, np.ndarray | None]:
    """A pass usable with the reference line, and where its pixels lie in the reference
    pass's frame (nm), or (None, None) with a warning.

    The plan re-registers each line on a short HAADF line, so pixel i of every pass should
    see the same spot; what the short line could not resolve (0.8 px at 1 ms) and drift
    within a pass remain. Each pass's own HAADF, recorded with its spectra at full dwell,
    gives that residual to a few hundredths of a pixel."""
    if pass_data is None or pass_data is reference:
        return pass_data, None if pass_data is None else reference.geometry.positions_nm()
    x = reference.geometry.positions_nm()
    if pass_data.pixels != reference.pixels:
        warnings.append(f"{pass_data.name}: {pass_data.pixels} pixels, the {reference.name} "
                        f"pass {reference.pixels}: not used")
        return None, None
    spacing = float(np.median(np.abs(np.diff(x)))) if x.size > 1 else 1.0
    if (pass_data.haadf_counts is None or reference.haadf_counts is None
            or not np.all(np.isfinite(pass_data.haadf_counts))):
        warnings.append(f"{pass_data.name}: no HAADF to register it on the {reference.name} "
                        "pass: matched pixel by pixel")
        return pass_data, x
    shift_px = line_shift_px(reference.haadf_counts, pass_data.haadf_counts)
    if abs(shift_px) > 0.1:
        warnings.append(f"{pass_data.name}: its HAADF sits {shift_px:+.2f} px "
                        f"({shift_px * spacing:+.2f} nm) from the {reference.name} pass's: "
                        "its profiles are placed accordingly")
    return pass_data, x - shift_px * spacing


def analyse_line(
    aloof: AloofData | None,
    passes: Mapping[str, PassData],
    *,
    run_paper: bool = True,
    core_background_window_ev: tuple[float, float] = CORE_BACKGROUND_WINDOW_EV,
) -> LineAnalysis:
    """Both pipelines on what was recorded; missing pieces become warnings."""
    result = empty_result()
    warnings: list[str] = result["warnings"]
    vib = passes.get(VIBRATIONAL)
    reference = vib or passes.get(VALENCE) or passes.get(CORE)
    if reference is None:
        warnings.append("no pass along the line was recorded: nothing to analyse")
        return LineAnalysis(result, None, None, None, None, None)
    x = reference.geometry.positions_nm()
    valence, valence_x = _aligned(passes.get(VALENCE), reference, warnings)
    core, core_x = _aligned(passes.get(CORE), reference, warnings)
    for p in passes.values():
        if p.saturated_pixels:
            warnings.append(f"{p.name}: {p.saturated_pixels} of {p.pixels} spectra have "
                            "saturated channels")

    valence_ev = None if valence is None else (valence.energy_mev / 1000.0, valence.spectra)
    tau = None if valence_ev is None else _on(x, valence_x, pre.thickness_log_ratio(*valence_ev))
    edges = None
    position = width = covariance = None
    source = None
    if core is not None:
        edges = pre.core_loss_edge_intensities(core.energy_mev / 1000.0, core.spectra,
                                               background_windows_ev=(core_background_window_ev,))
        found = fit_boundary_profile(core_x, pre.li_to_co_relative(edges))
        position, width, covariance = found.position_nm, found.width_nm, found.covariance
        source = "li_to_co"

    robust = paper = None
    energy = counts = aloof_counts = None
    if vib is not None and aloof is None:
        warnings.append("no aloof spectrum: the LDO fits need its polaritons; no LDO profile")
    elif vib is not None and aloof is not None:
        keep = vib.energy_mev <= VIBRATIONAL_UPPER_MEV
        energy, counts = vib.energy_mev[keep], vib.spectra[:, keep]
        aloof_counts = _aloof_on(aloof, vib, keep, warnings)
    if aloof_counts is not None:
        try:
            robust = robust_pipeline(energy, counts, x, aloof_counts,
                                     boundary_position_nm=position, boundary_width_nm=width,
                                     boundary_covariance=covariance)
        except Exception as error:  # a fit that fails must not take the run's result with it
            warnings.append(f"robust pipeline failed: {type(error).__name__}: {error}")
        if run_paper:
            where = robust.boundary_position_nm if robust is not None else position
            try:
                paper = paper_pipeline(energy, counts, x, aloof_counts,
                                       boundary_position_nm=where)
            except Exception as error:
                warnings.append(f"paper pipeline failed: {type(error).__name__}: {error}")

    labels = None
    if robust is not None:
        summary = robust.summary()
        warnings.extend(summary.pop("warnings"))
        result.update({k: v for k, v in summary.items() if k in result})
        labels = robust.region
    elif position is not None:
        labels = boundary_regions(x, position, width)
        result.update(boundary_position_nm=json_float(position),
                      boundary_width_nm=json_float(width))
    if source is not None:
        result["boundary_source"] = source

    li_relative = None
    if edges is not None and position is not None:
        # The core pass's own pixels, labelled where they lie (see `_aligned`); the change
        # on the boundary plane, as the LDO shift (`eels_boundary`).
        core_labels = boundary_regions(core_x, position, width)
        grains = (core_labels == 0) | (core_labels == 2)
        li_relative = _on(x, core_x, pre.li_to_co_relative(edges, grains if grains.any() else None))
        pooled = pre.li_to_co_change(edges, core_labels)
        contrast = pooled_weight_contrast(core_x, core_labels, position, width, covariance)
        change, error = on_plane(*pooled, *contrast)
        result.update(li_to_co_boundary_change_fraction=json_float(change),
                      li_to_co_boundary_change_stderr_fraction=json_float(error),
                      li_to_co_boundary_region_change_fraction=json_float(pooled[0]))
    if tau is not None:
        result["t_over_lambda_mean"] = json_float(np.nanmean(tau))
    result["profiles"] = _profiles(x, labels, robust, tau, li_relative)
    if paper is not None:
        result["paper"] = _paper_summary(paper)
    return LineAnalysis(result, robust, paper, energy, counts, aloof_counts)


def _on(x: np.ndarray, positions: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    """A pass's per-pixel profile at the reference pixels (linear, ends held)."""
    if positions is None or np.array_equal(positions, x):
        return values
    return np.interp(x, positions, values)


def _aloof_on(aloof: AloofData, vib: PassData, keep: np.ndarray,
              warnings: list[str]) -> np.ndarray | None:
    """The summed aloof counts on the vibrational pass's channels, or None if its axis is
    not the same spectrometer setting (its zero is calibrated on its own ZLP anyway)."""
    if aloof.saturated_spectra:
        warnings.append(f"aloof: {aloof.saturated_spectra} of {aloof.spectra} spectra have "
                        "saturated channels")
    if aloof.counts.shape != vib.energy_mev.shape or not math.isclose(
            pre.channel_width(aloof.energy_mev), pre.channel_width(vib.energy_mev),
            rel_tol=1e-3):
        warnings.append("aloof: its energy axis is not the vibrational pass's (channels or "
                        "dispersion differ): no LDO profile")
        return None
    return aloof.counts[keep]


def _profiles(x, labels, robust, tau, li_relative) -> dict[str, list]:
    none = [None] * x.size

    def listed(values):
        return none if values is None else _floats(values)

    profiles = {"position_nm": _floats(x),
                "region": none if labels is None else [int(v) for v in labels]}
    if robust is not None:
        profiles.update(
            ldo_centre_mev=listed(robust.ldo_centre_mev),
            ldo_centre_stderr_mev=listed(robust.ldo_centre_stderr_mev),
            polaritonic=listed(robust.polaritonic_intensity_per_zlp),
            phononic=listed(robust.phononic_intensity_per_zlp))
    else:
        profiles.update(dict.fromkeys(("ldo_centre_mev", "ldo_centre_stderr_mev",
                                       "polaritonic", "phononic"), none))
    profiles.update(t_over_lambda=listed(tau), li_to_co=listed(li_relative))
    return profiles


def _paper_summary(paper: PaperEelsResult) -> dict[str, Any]:
    summary = paper.summary()
    pixels = int(paper.ldo_centre_at_bound.size)
    summary["ldo_centre_at_bound_fraction"] = json_float(
        np.count_nonzero(paper.ldo_centre_at_bound) / pixels if pixels else math.nan)
    summary["profiles"] = {
        "position_nm": _floats(paper.positions_nm),
        "ldo_centre_mev": _floats(paper.ldo_centre_mev),
        "ldo_centre_stderr_mev": _floats(paper.ldo_centre_stderr_mev),
        "ldo_centre_at_bound": [bool(v) for v in paper.ldo_centre_at_bound],
    }
    return summary


# ----------------------------------------------------------------------------- the callback


class EelsLineAnalysis(DocumentRouter):
    """LDO shift, Li:Co, t/λ and the polaritonic/phononic split of an `eels_line` run.

    `figures_for(run_uid)` is the folder for the figures (None: none drawn); `run_path_for(
    run_uid)` the run's folder, where array files are looked for if their stored paths moved.
    `run_paper` False skips the paper's pipeline (seconds per line); so does a start
    document whose protocol settings say `analysis: {paper_pipeline: false}`.

    `.result` (at stop; plain JSON, NaN → None; every key always present, see
    `empty_result`): the robust pipeline's summary (`ldo_boundary_shift_mev` with its stderr
    and significance, region LDO centres, `activation_energy_change_fraction`, boundary
    position, width and source), `li_to_co_boundary_change_fraction` (core-loss pass, see
    the module docstring), `t_over_lambda_mean`, `profiles` (per-pixel lists: position_nm,
    region 0 grain A / 1 boundary / 2 grain B / −1 between, ldo_centre_mev,
    ldo_centre_stderr_mev, polaritonic and phononic intensities per ZLP count, t_over_lambda,
    li_to_co relative to the grains), `paper` (its summary, `ldo_centre_at_bound_fraction`,
    its LDO profile), `complete`, `passes_recorded`, `passes_missing`, `aloof_spectra`,
    `registration_lines`, `warnings`, `figures` {spectra, profiles, paper_ldo: path or None},
    `exit_status`. Runs without `eels_line` in the start document are ignored.

    `.latest` (live): what has arrived so far (passes, aloof spectra).
    """

    def __init__(
        self,
        figures_for: Callable[[str], Path] | None = None,
        *,
        run_path_for: Callable[[str], Path] | None = None,
        run_paper: bool = True,
        core_background_window_ev: tuple[float, float] = CORE_BACKGROUND_WINDOW_EV,
    ) -> None:
        super().__init__()
        self.figures_for = figures_for
        self.run_path_for = run_path_for
        self.run_paper = run_paper
        self.core_background_window_ev = core_background_window_ev
        self._figures = FigureDrawer()
        self.result: dict[str, Any] | None = None
        self.latest: dict[str, Any] | None = None
        self.analysis: LineAnalysis | None = None
        self._active = False

    # ------------------------------------------------------------------------- documents

    def start(self, doc):
        self.result = self.latest = self.analysis = None
        self._active = EelsLineMetadata.KEY in doc
        if not self._active:
            return
        self._uid = doc["uid"]
        self._metadata = EelsLineMetadata.of(doc)
        chosen = ((doc.get("protocol_settings") or {}).get("analysis") or {})
        self._run_paper = self.run_paper and bool(chosen.get("paper_pipeline", True))
        det = self._metadata.detector
        self._keys = {f"{det}-camera-{k}": k for k in ("spectra", "energy_axis_mev",
                                                        "haadf_counts")}
        run_path = None if self.run_path_for is None else self.run_path_for(self._uid)
        self._filler = ArrayFiller(run_path)
        self._descriptors: dict[str, Mapping[str, Any]] = {}
        self._resource_key: dict[str, str] = {}
        self._pending: dict[str, list[Mapping[str, Any]]] = {}
        self._aloof_sum: np.ndarray | None = None
        self._aloof_axis: np.ndarray | None = None
        self._aloof_count = self._aloof_saturated = 0
        self._registrations = 0
        self._passes: dict[str, PassData] = {}
        self._pass_events: dict[str, int] = {}
        self._notes: list[str] = []

    def descriptor(self, doc):
        if self._active:
            self._descriptors[doc["uid"]] = doc
            self._filler("descriptor", doc)

    def stream_resource(self, doc):
        if self._active:
            self._resource_key[doc["uid"]] = doc["data_key"]
            self._filler("stream_resource", doc)

    def stream_datum(self, doc):
        if self._active and self._resource_key.get(doc["stream_resource"]) in self._keys:
            self._pending.setdefault(doc.get("descriptor") or "", []).append(doc)

    def event(self, doc):
        if not self._active:
            return
        descriptor = self._descriptors.get(doc["descriptor"], {})
        stream = descriptor.get("name")
        if stream == REGISTRATION:
            self._registrations += 1
        if stream not in (ALOOF, *PASSES):
            return
        arrays = self._arrays_of(doc, stream)
        if "spectra" not in arrays:
            self._notes.append(f"{stream}: event {doc.get('seq_num')} has no readable spectra")
            return
        saturated = np.asarray(doc["data"].get(
            f"{self._metadata.detector}-camera-saturated_channels", 0)).ravel()
        if stream == ALOOF:
            self._add_aloof(arrays, int(np.count_nonzero(saturated)))
        else:
            self._add_pass(stream, descriptor, doc, arrays, int(np.count_nonzero(saturated)))
        self.latest = {"passes_recorded": list(self._passes), "aloof_spectra": self._aloof_count,
                       "registration_lines": self._registrations, "last_stream": stream}

    def stop(self, doc):
        if not self._active:
            return
        self._filler.close()
        try:
            analysis = analyse_line(self._aloof(), self._passes, run_paper=self._run_paper,
                                    core_background_window_ev=self.core_background_window_ev)
        except Exception as error:  # the analysis of a recorded run must always report
            analysis = LineAnalysis(empty_result(), None, None, None, None, None)
            analysis.result["warnings"].append(
                f"analysis failed: {type(error).__name__}: {error}")
        result = analysis.result
        planned = [p for p in PASSES if p in self._metadata.passes] or list(PASSES)
        missing = [p for p in planned if p not in self._passes]
        result.update(
            passes_recorded=[p for p in PASSES if p in self._passes], passes_missing=missing,
            aloof_spectra=self._aloof_count, registration_lines=self._registrations,
            complete=not missing and self._aloof_count > 0, exit_status=doc.get("exit_status"))
        notes = [*self._notes, *(f"{p}: pass not recorded (the run ended before it?)"
                                 for p in missing)]
        if not self._aloof_count:
            notes.append("aloof: no spectrum recorded")
        result["warnings"] = [*notes, *result["warnings"]]
        if self.figures_for is not None:
            self._draw(analysis)
        self.analysis = analysis
        self.result = result

    # ------------------------------------------------------------------------- arrays

    def _arrays_of(self, doc, stream: str) -> dict[str, np.ndarray]:
        """The rows the stream_datums announced for this event (those naming its descriptor
        and any naming none), by short name: spectra, energy_axis_mev, haadf_counts."""
        pending = self._pending.pop(doc["descriptor"], []) + self._pending.pop("", [])
        arrays: dict[str, np.ndarray] = {}
        for datum in pending:
            try:
                for key, rows in self._filler.arrays_for(datum).items():
                    arrays[self._keys[key]] = np.asarray(rows)
            except (OSError, LookupError, ValueError) as error:
                self._notes.append(f"{stream}: arrays of event {doc.get('seq_num')} "
                                   f"unreadable: {type(error).__name__}: {error}")
        return arrays

    def _add_aloof(self, arrays: dict[str, np.ndarray], saturated: int) -> None:
        spectra = arrays["spectra"].reshape(-1, arrays["spectra"].shape[-1]).astype(float)
        axis = self._axis(arrays, ALOOF, spectra.shape[-1])
        if self._aloof_sum is not None and self._aloof_sum.shape != spectra.shape[-1:]:
            self._notes.append("aloof: a spectrum of another channel count left out")
            return
        total = spectra.sum(axis=0)
        self._aloof_sum = total if self._aloof_sum is None else self._aloof_sum + total
        self._aloof_axis = axis if self._aloof_axis is None else self._aloof_axis
        self._aloof_count += spectra.shape[0]
        self._aloof_saturated += min(saturated, spectra.shape[0])

    def _aloof(self) -> AloofData | None:
        if self._aloof_sum is None:
            return None
        return AloofData(self._aloof_axis, self._aloof_sum, self._aloof_count,
                         self._aloof_saturated)

    def _add_pass(self, stream: str, descriptor, doc, arrays, saturated: int) -> None:
        spectra = arrays["spectra"]
        spectra = spectra.reshape(-1, *spectra.shape[-2:])[-1].astype(float)
        pixels, channels = spectra.shape
        haadf = arrays.get("haadf_counts")
        haadf = None if haadf is None else np.asarray(haadf, float).reshape(-1, pixels)[-1]
        geometry, notes = line_geometry(descriptor, doc["data"], self._metadata, pixels)
        self._notes.extend(notes)
        events = self._pass_events[stream] = self._pass_events.get(stream, 0) + 1
        if events > 1:
            self._notes.append(f"{stream}: {events} events; the last one is analysed")
        self._passes[stream] = PassData(stream, self._axis(arrays, stream, channels), spectra,
                                        haadf, geometry, saturated)

    def _axis(self, arrays: dict[str, np.ndarray], stream: str, channels: int) -> np.ndarray:
        """The energy axis (meV) recorded with the spectra, else the start document's."""
        axis = arrays.get("energy_axis_mev")
        if axis is not None:
            return np.asarray(axis, float).reshape(-1, channels)[-1]
        settings = self._metadata.passes.get(VIBRATIONAL if stream == ALOOF else stream)
        if settings is None:
            raise LookupError(f"{stream}: no energy axis recorded and none in the start "
                              "document's passes")
        self._notes.append(f"{stream}: no energy axis recorded: the start document's used")
        return settings.energy_offset_mev + settings.dispersion_mev_per_channel * np.arange(
            channels)

    # ------------------------------------------------------------------------- figures

    def _draw(self, analysis: LineAnalysis) -> None:
        from .eels_figures import (
            eels_paper_ldo_figure,
            eels_profiles_figure,
            eels_spectra_figure,
            spectra_panel_data,
        )

        result, directory = analysis.result, Path(self.figures_for(self._uid))
        asked: dict[str, Path] = {}
        try:
            if analysis.robust is not None:
                panels = spectra_panel_data(analysis.robust, analysis.energy_mev,
                                            analysis.vibrational_counts, analysis.aloof_counts)
                asked["spectra"] = self._figures.draw(
                    eels_spectra_figure, directory / FIGURE_FILES["spectra"], panels)
            if any(v is not None for v in result["profiles"]["position_nm"]):
                asked["profiles"] = self._figures.draw(
                    eels_profiles_figure, directory / FIGURE_FILES["profiles"],
                    result["profiles"], _region_means(analysis.robust),
                    boundary_position_nm=result["boundary_position_nm"],
                    boundary_width_nm=result["boundary_width_nm"],
                    shift_mev=result["ldo_boundary_shift_mev"],
                    shift_stderr_mev=result["ldo_boundary_shift_stderr_mev"])
            if result["paper"] is not None:
                asked["paper_ldo"] = self._figures.draw(
                    eels_paper_ldo_figure, directory / FIGURE_FILES["paper_ldo"],
                    result["paper"]["profiles"], _paper_ldo_bounds(),
                    boundary_index=result["paper"]["boundary_index"],
                    shift_mev=result["paper"]["ldo_boundary_shift_mev"],
                    at_bound_fraction=result["paper"]["ldo_centre_at_bound_fraction"])
        except Exception as error:  # a figure must not take the run's result with it
            result["warnings"].append(f"figures: {type(error).__name__}: {error}")
        drawn = {str(path) for path in self._figures.finished()}
        result["figures"] = {name: (str(asked[name]) if name in asked
                                    and str(asked[name]) in drawn else None)
                             for name in FIGURE_FILES}


def _region_means(robust: RobustEelsResult | None) -> list[tuple[float | None, float | None]]:
    """(centre, stderr) of the pooled LDO fit per region: grain A, boundary, grain B."""
    if robust is None:
        return [(None, None)] * 3
    return [(json_float(c), json_float(e)) for c, e in
            zip(robust.region_ldo_centre_mev, robust.region_ldo_centre_stderr_mev, strict=True)]


def _paper_ldo_bounds() -> tuple[float, float]:
    """The paper's box of the LDO centre (meV)."""
    (_, _, lower, upper) = next(p for p in PAPER_PHONON_PEAKS if p[0] == "ldo")
    return float(lower[1]), float(upper[1])

