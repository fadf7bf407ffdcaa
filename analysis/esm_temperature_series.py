"""Live (and replayed) analysis of an ESM temperature series: one run, one map per temperature.

Each map is assembled as in `esm_map`. Its averaging region is the largest grain of its own
topography (the grain moves a little between temperatures, the segmentation follows it) or a
disk given in the protocol. Region means of A_HF, Ā_LF and a_f per temperature give the
Arrhenius plots (ESM paper, Figs. 3-4): E_A = −2R·∂ ln a_f/∂(1/T) is the activation energy of
the diffusion coefficient, while Ā_LF, still holding the electrostatic part, shows a much
smaller apparent one. From a_f at 300 K and D(300 K) of the material follow the concentration
swing Δc/c (Eq. 4) and an order-of-magnitude total resistance of the tip/sample contact.

Only documents go in, so the live run and `vegard replay` give the same `.result`. Live, each
finished map (all lines in, or the next map begun) updates `.latest` and, with a figures
directory, re-draws the Arrhenius plot so it grows while the series runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from event_model import DocumentRouter

from .arrhenius import ActivationEnergy, activation_energy_from_sqrt_d
from .esm_compensation import region_std
from .esm_map import EsmMapAssembler, json_float, region_amplitudes
from .figure_process import FigureDrawer
from .grains import disk_mask, largest_grain_mask, level_topography
from .image_registration import image_shift_px
from .run_metadata import EsmMapMetadata, EsmSeriesMetadata

FARADAY_C_PER_MOL = 96485.33212
GAS_CONSTANT_J_PER_MOL_K = 8.314462618
REFERENCE_TEMPERATURE_K = 300.0
LARGEST_GRAIN_ERODE_PX = 2
MINIMUM_REGISTRATION_QUALITY = 0.5
ARRHENIUS_FIGURE = "esm_series_arrhenius.png"
R_TOTAL_ASSUMPTION = (
    "Order of magnitude only. Each drive cycle moves the charge z·F·(Δc/c)·c_ion·V in and out "
    "of a hemisphere of radius L_D = sqrt(D/(2πf)) under the tip (D at 300 K), so the current "
    "amplitude is I ≈ 2πf·z·F·(Δc/c)·c_ion·V with V = (2/3)π·L_D³, and R_total = U_ac / I. "
    "Δc/c is from Eq. 4 with a_f(300 K) read off the Arrhenius line of ln a_f against 1/T "
    "(so 300 K need not be a setpoint); geometry factors of order one and the phase between "
    "current and voltage are ignored."
)


# ---------------------------------------------------------------- physics (ESM paper Eqs. 1-4)


def diffusion_length_m(diffusion_coefficient_m2_per_s: float, drive_frequency_hz: float) -> float:
    """L_D = sqrt(D / (2π f)): how far ions move in one drive period (Eq. 1)."""
    return math.sqrt(diffusion_coefficient_m2_per_s / (2 * math.pi * drive_frequency_hz))


def diffusion_coefficient_m2_per_s(
    temperature_k: float, d_300k_cm2_per_s: float, activation_energy_kj_mol: float
) -> float:
    """D(T) = D(300 K)·exp(−E_A/R·(1/T − 1/300 K)), in m²/s (the material gives cm²/s)."""
    exponent = -activation_energy_kj_mol * 1e3 / GAS_CONSTANT_J_PER_MOL_K * (
        1.0 / temperature_k - 1.0 / REFERENCE_TEMPERATURE_K
    )
    return d_300k_cm2_per_s * 1e-4 * math.exp(exponent)


def concentration_swing(
    a_f_pm: float, poisson_ratio: float, vegard_coefficient: float, diffusion_length_m_: float
) -> float:
    """Δc/c = d1 / (2(1+ν)·β·L_D) with d1 = a_f (Eq. 4): the strain amplitude is the Vegard
    strain of the concentration change, integrated over the strained depth L_D."""
    return a_f_pm * 1e-12 / (2 * (1 + poisson_ratio) * vegard_coefficient * diffusion_length_m_)


@dataclass(frozen=True)
class ResistanceEstimate:
    """The total tip/sample resistance from the charge moved per cycle (`R_TOTAL_ASSUMPTION`)."""

    probed_volume_m3: float
    current_a: float
    r_total_ohm: float


def total_resistance(
    u_ac_v: float,
    drive_frequency_hz: float,
    delta_c_over_c: float,
    mobile_ion_concentration_mol_per_m3: float,
    ion_charge_number: float,
    diffusion_length_m_: float,
) -> ResistanceEstimate:
    """R = U_ac / I, I = 2πf·z·F·(Δc/c)·c_ion·V, V the hemisphere of radius L_D."""
    volume_m3 = 2.0 / 3.0 * math.pi * diffusion_length_m_**3
    charge_c = (ion_charge_number * FARADAY_C_PER_MOL * delta_c_over_c
                * mobile_ion_concentration_mol_per_m3 * volume_m3)
    current_a = 2 * math.pi * drive_frequency_hz * charge_c
    r_total_ohm = u_ac_v / current_a if current_a > 0 else math.nan
    return ResistanceEstimate(volume_m3, current_a, r_total_ohm)


# ------------------------------------------------------------------------------ per-map data


def _key(setpoint_k: float) -> str:
    return f"{setpoint_k:g}"


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _suffix(data: Mapping[str, Any], suffix: str) -> Any:
    """The value of the one key ending with `-suffix` (devices name their keys themselves)."""
    for key, value in data.items():
        if key.endswith(f"-{suffix}"):
            return value
    return None


@dataclass
class _MapRecord:
    """What the documents said about one map besides its lines: row → the reading of that
    row's last take (a line re-taken after a temperature excursion replaces its reading,
    as it replaces its data)."""

    sample_temperatures_k: dict[int, float]
    setpoints_k: dict[int, float]


class EsmTemperatureSeriesAnalysis(DocumentRouter):
    """Per-temperature region means, Arrhenius fits, Δc/c and R_total; figures at the end.

    `.latest` (live): progress of the current map (map_index, rows_done, pixels_y) and the
    Arrhenius estimate of the maps finished so far (maps_finished, temperatures_k, a_f_pm,
    activation_energy_kj_mol, activation_energy_stderr_kj_mol).

    `.result` (at stop; plain JSON, NaN → None). Only complete maps (every line in) count:
      maps_recorded, maps_incomplete (map indices), temperatures_k (mean measured sample
      temperature per map, K), setpoints_k; activation_energy_kj_mol (+ _stderr_) from a_f,
      apparent_activation_energy_lf_kj_mol (+ _stderr_) from Ā_LF, arrhenius_fit_a_f and
      arrhenius_fit_a_lf (slope_k, intercept of ln(y/pm), their standard errors, points);
      a_f_pm_, a_hf_pm_, a_lf_pm_, a_f_std_pm_, region_pixels_by_temperature_k (keyed by
      setpoint "%g"); a_hf_variation ((max − min)/mean); a_f_300k_pm and its source;
      diffusion_length_300k_nm, delta_c_over_c_300k, delta_c_over_c_by_temperature_k,
      probed_volume_m3, r_total_ohm (Ω) with r_total_assumption; region;
      scan_offsets_nm_by_temperature_k ([x, y] from drift tracking); maps (one summary per
      map, also the incomplete ones); monitor_points; exit_status; figures; maps_file.
    """

    def __init__(self, figures_directory_for: Callable[[str], Path] | None = None) -> None:
        """`figures_directory_for(run_uid)` says where figures and maps go (none if not given)."""
        super().__init__()
        self.figures_directory_for = figures_directory_for
        self.result: dict[str, Any] | None = None
        self.latest: dict[str, Any] | None = None
        self.assemblers: dict[int, EsmMapAssembler] = {}
        self._records: dict[int, _MapRecord] = {}
        self._tracking: dict[int, dict[str, float | None]] = {}
        self._monitor: dict[str, list[float]] = {"time_s": [], "temperature_k": [],
                                                 "heater_percent": []}
        self._first_line_time_s: dict[int, float] = {}
        self._stream_of: dict[str, str] = {}
        self._finished: set[int] = set()
        self._current_map: int | None = None
        self._figures = FigureDrawer()
        self._live: dict[str, Any] = {}

    # ------------------------------------------------------------------------- documents

    def start(self, doc):
        self._uid = doc["uid"]
        self._esm_map = EsmMapMetadata.of(doc)
        self._series = EsmSeriesMetadata.of_optional(doc) or EsmSeriesMetadata(temperatures_k=[])
        self._material = dict(self._series.material)
        self._region = self._series.region.model_dump()
        self._stage = doc.get("temperature_stage", "temperature_stage")
        self._monitor_stream = doc.get("monitor_stream", "temperature_monitor")
        self._tracking_stream = self._series.tracking_stream
        self._prefix = self._esm_map.device

    def descriptor(self, doc):
        self._stream_of[doc["uid"]] = doc.get("name", "primary")

    def event(self, doc):
        stream = self._stream_of.get(doc["descriptor"])
        data = doc["data"]
        if stream == self._esm_map.stream:
            self._map_line(doc)
        elif stream == self._tracking_stream:
            index = int(_suffix(data, "map_index") or 0)
            self._tracking[index] = {
                "offset_x_nm": _suffix(data, "offset_x_nm"),
                "offset_y_nm": _suffix(data, "offset_y_nm"),
                "peak_quality": _suffix(data, "peak_quality"),
            }
        elif stream == self._monitor_stream:
            key = f"{self._stage}-temperature_k"
            if key in data:
                self._monitor["time_s"].append(float(doc["timestamps"].get(key, doc["time"])))
                self._monitor["temperature_k"].append(float(data[key]))
                heater = data.get(f"{self._stage}-heater_output_percent")
                self._monitor["heater_percent"].append(math.nan if heater is None else heater)

    def stop(self, doc):
        self.result = self._final_result(doc.get("exit_status"))

    def figures_drawn(self) -> list[Path]:
        """Wait for the figures asked for so far (they are drawn in another process)."""
        return self._figures.finished()

    # ------------------------------------------------------------------------- live

    def _map_line(self, doc) -> None:
        p, data = self._prefix, doc["data"]
        index = int(data.get(f"{p}-map_index", 0))
        if self._current_map is not None and index != self._current_map:
            self._map_finished(self._current_map)
        self._current_map = index
        if index not in self.assemblers:
            m = self._esm_map
            self.assemblers[index] = EsmMapAssembler(
                m.pixels_x, m.pixels_y, m.excitations, prefix=p
            )
            self._records[index] = _MapRecord({}, {})
            stamps = doc.get("timestamps") or {}  # instrument time, as on the monitor stream
            self._first_line_time_s[index] = float(
                stamps.get(f"{self._stage}-temperature_k", doc["time"])
            )
        assembler = self.assemblers[index]
        assembler.add_row(data[f"{p}-row"], data)
        self._finished.discard(index)
        record = self._records[index]
        for values, name in ((record.sample_temperatures_k, "sample_temperature_k"),
                             (record.setpoints_k, "setpoint_k")):
            value = data.get(f"{self._stage}-{name}")
            if value is not None:
                values[int(data[f"{p}-row"])] = float(value)
        if assembler.rows_done == assembler.pixels_y:
            self._map_finished(index)
        self.latest = {
            "map_index": index,
            "rows_done": assembler.rows_done,
            "pixels_y": assembler.pixels_y,
            **self._live,
        }

    def _map_finished(self, index: int) -> None:
        """Once per finished map: new Arrhenius estimate, and the live figure re-drawn."""
        if index in self._finished:
            return
        self._finished.add(index)
        summaries, _ = self._summaries()
        series, energy_f, energy_lf = self._series_numbers(summaries)
        self._live = {
            "maps_finished": series["maps_recorded"],
            "temperatures_k": series["temperatures_k"],
            "a_f_pm": [s["a_f_pm"] for s in summaries if s["complete"]],
            "activation_energy_kj_mol": series["activation_energy_kj_mol"],
            "activation_energy_stderr_kj_mol": series["activation_energy_stderr_kj_mol"],
        }
        if self.figures_directory_for is not None:
            self._arrhenius_figure(summaries, series, energy_f, energy_lf)

    # ------------------------------------------------------------------------- analysis

    def _setpoint_k(self, index: int) -> float:
        setpoints = self._series.temperatures_k
        if 0 <= index < len(setpoints):
            return float(setpoints[index])
        return _mean(list(self._records[index].setpoints_k.values()))

    def _extent_nm(self, index: int) -> tuple[float, float, float, float]:
        """Where map `index` was scanned: the protocol's area moved by the tracking offset."""
        x_left, x_right, y_bottom, y_top = self._esm_map.extent_nm()
        offset = self._tracking.get(index, {})
        dx = offset.get("offset_x_nm") or 0.0
        dy = offset.get("offset_y_nm") or 0.0
        return (x_left + dx, x_right + dx, y_bottom + dy, y_top + dy)

    def _complete(self, index: int) -> bool:
        assembler = self.assemblers[index]
        return assembler.rows_done == assembler.pixels_y

    def _region_mask(self, index: int, shift_px: tuple[float, float] | None) -> np.ndarray:
        """Largest grain of this map's own topography, or the protocol's disk. The disk is
        given in the frame of the first map; drift tracking keeps the sample still in the
        image, and a residual shift measured against the first map (if trusted) moves it."""
        assembler = self.assemblers[index]
        if self._region["kind"] == "largest_grain":
            return largest_grain_mask(assembler.topography_nm, erode_px=LARGEST_GRAIN_ERODE_PX)
        x_left, x_right, y_bottom, y_top = self._esm_map.extent_nm()
        center_x_nm, center_y_nm = (float(v) for v in self._region["center_nm"])
        if shift_px is not None:
            center_y_nm += shift_px[0] * (y_top - y_bottom) / assembler.pixels_y
            center_x_nm += shift_px[1] * (x_right - x_left) / assembler.pixels_x
        return disk_mask(
            (assembler.pixels_y, assembler.pixels_x), (x_left, x_right, y_bottom, y_top),
            (center_x_nm, center_y_nm), float(self._region["radius_nm"]),
        )

    def _summaries(self) -> tuple[list[dict[str, Any]], dict[int, np.ndarray]]:
        """One summary per map with lines, in map order, and each map's region mask."""
        complete = [i for i in sorted(self.assemblers) if self._complete(i)]
        reference = complete[0] if complete else None
        summaries, masks = [], {}
        for index in sorted(self.assemblers):
            summary, masks[index] = self._summarise(index, reference)
            summaries.append(summary)
        return summaries, masks

    def _residual_shift(self, index: int, reference: int | None):
        if reference is None or index == reference or not self._complete(index):
            return None, None
        dy, dx, quality = image_shift_px(
            self.assemblers[reference].topography_nm, self.assemblers[index].topography_nm
        )
        return (dy, dx), quality

    def _summarise(
        self, index: int, reference: int | None
    ) -> tuple[dict[str, Any], np.ndarray]:
        assembler = self.assemblers[index]
        sample_temperatures_k = list(self._records[index].sample_temperatures_k.values())
        shift_px, quality = self._residual_shift(index, reference)
        trusted = quality is not None and quality >= MINIMUM_REGISTRATION_QUALITY
        mask = self._region_mask(index, shift_px if trusted else None)
        use = mask & assembler.fitted()
        maps = assembler.compensated()
        extent = self._extent_nm(index)
        step_x = (extent[1] - extent[0]) / assembler.pixels_x
        step_y = (extent[3] - extent[2]) / assembler.pixels_y
        a_f_std = region_std(maps.a_f_pm, use)
        tracking = self._tracking.get(index, {})
        summary = {
            "map_index": index,
            "setpoint_k": json_float(self._setpoint_k(index)),
            "temperature_k": json_float(_mean(sample_temperatures_k)),
            "temperature_std_k": json_float(
                np.std(sample_temperatures_k) if sample_temperatures_k else math.nan
            ),
            "lines_recorded": assembler.rows_done,
            "complete": self._complete(index),
            "region_pixels": int(use.sum()),
            **region_amplitudes(assembler, use),
            "a_f_std_pm": json_float(a_f_std),
            "a_f_stderr_pm": json_float(a_f_std / math.sqrt(use.sum()) if use.sum() else math.nan),
            "scan_offset_nm": (
                [json_float(tracking.get("offset_x_nm")), json_float(tracking.get("offset_y_nm"))]
                if tracking else None
            ),
            "tracking_peak_quality": json_float(tracking.get("peak_quality")),
            "residual_shift_nm": (
                None if shift_px is None
                else [json_float(shift_px[1] * step_x), json_float(shift_px[0] * step_y)]
            ),
            "residual_shift_quality": json_float(quality),
        }
        return summary, mask

    def _series_numbers(
        self, summaries: list[dict[str, Any]]
    ) -> tuple[dict[str, Any], ActivationEnergy, ActivationEnergy]:
        """Arrhenius fits over the complete maps, Δc/c and R_total (plain JSON numbers), and
        the E_A of a_f and of Ā_LF with their fits."""
        used = [s for s in summaries if s["complete"]]
        temperatures = [
            s["temperature_k"] if s["temperature_k"] is not None else s["setpoint_k"]
            for s in used
        ]

        def amplitudes(key: str) -> list[float]:
            return [math.nan if s[key] is None else s[key] for s in used]

        energy_f = activation_energy_from_sqrt_d(
            [math.nan if t is None else t for t in temperatures], amplitudes("a_f_pm"))
        energy_lf = activation_energy_from_sqrt_d(
            [math.nan if t is None else t for t in temperatures], amplitudes("a_lf_pm"))
        a_hf = np.array(amplitudes("a_hf_pm"), dtype=float)
        a_hf = a_hf[np.isfinite(a_hf)]
        numbers = {
            "maps_recorded": len(used),
            "temperatures_k": temperatures,
            "activation_energy_kj_mol": json_float(energy_f.kj_mol),
            "activation_energy_stderr_kj_mol": json_float(energy_f.stderr_kj_mol),
            "apparent_activation_energy_lf_kj_mol": json_float(energy_lf.kj_mol),
            "apparent_activation_energy_lf_stderr_kj_mol": json_float(energy_lf.stderr_kj_mol),
            "arrhenius_fit_a_f": energy_f.fit.as_dict(),
            "arrhenius_fit_a_lf": energy_lf.fit.as_dict(),
            "a_hf_variation": json_float(
                np.ptp(a_hf) / np.mean(a_hf) if a_hf.size and np.mean(a_hf) != 0 else math.nan
            ),
        }
        numbers.update(self._concentration_and_resistance(used, energy_f))
        return numbers, energy_f, energy_lf

    def _a_f_at_300k(self, used, energy_f: ActivationEnergy) -> tuple[float, str | None]:
        if energy_f.fit.usable:
            return energy_f.fit.y_at(REFERENCE_TEMPERATURE_K), "arrhenius_fit"
        near = [s for s in used if s["a_f_pm"] is not None and s["temperature_k"] is not None
                and abs(s["temperature_k"] - REFERENCE_TEMPERATURE_K) <= 10.0]
        if len(near) == 1:
            return near[0]["a_f_pm"], "measured_map_within_10_k"
        return math.nan, None

    def _concentration_and_resistance(self, used, energy_f: ActivationEnergy) -> dict[str, Any]:
        material = self._material
        a_f_300k_pm, source = self._a_f_at_300k(used, energy_f)
        numbers: dict[str, Any] = {
            "a_f_300k_pm": json_float(a_f_300k_pm),
            "a_f_300k_source": source,
            "delta_c_over_c_300k": None,
            "diffusion_length_300k_nm": None,
            "probed_volume_m3": None,
            "r_total_ohm": None,
            "r_total_assumption": R_TOTAL_ASSUMPTION,
            "delta_c_over_c_by_temperature_k": {},
            "activation_energy_for_d_source": None,
        }
        needed = ("poisson_ratio", "vegard_coefficient", "diffusion_coefficient_300k_cm2_per_s")
        frequency_hz = self._series.drive_frequency_hz
        if frequency_hz is None or any(material.get(k) is None for k in needed):
            return numbers
        nu, beta = float(material["poisson_ratio"]), float(material["vegard_coefficient"])
        d_300k = float(material["diffusion_coefficient_300k_cm2_per_s"])
        length_300k_m = diffusion_length_m(d_300k * 1e-4, float(frequency_hz))
        numbers["diffusion_length_300k_nm"] = json_float(length_300k_m * 1e9)
        energy_for_d = material.get("activation_energy_for_d_kj_mol")
        if energy_for_d is not None:
            numbers["activation_energy_for_d_source"] = "material"
        elif np.isfinite(energy_f.kj_mol):
            energy_for_d = energy_f.kj_mol
            numbers["activation_energy_for_d_source"] = "measured_a_f"
        if energy_for_d is not None:
            numbers["delta_c_over_c_by_temperature_k"] = {
                _key(s["setpoint_k"]): json_float(concentration_swing(
                    s["a_f_pm"], nu, beta,
                    diffusion_length_m(
                        diffusion_coefficient_m2_per_s(
                            s["temperature_k"] or s["setpoint_k"], d_300k, float(energy_for_d)
                        ),
                        float(frequency_hz),
                    ),
                ))
                for s in used if s["a_f_pm"] is not None and s["setpoint_k"] is not None
            }
        if not np.isfinite(a_f_300k_pm):
            return numbers
        delta_c_over_c = concentration_swing(a_f_300k_pm, nu, beta, length_300k_m)
        numbers["delta_c_over_c_300k"] = json_float(delta_c_over_c)
        c_ion = material.get("mobile_ion_concentration_mol_per_m3")
        if c_ion is None:
            return numbers
        estimate = total_resistance(
            self._esm_map.u_ac_v, float(frequency_hz), delta_c_over_c, float(c_ion),
            float(material.get("ion_charge_number", 1)), length_300k_m,
        )
        numbers["probed_volume_m3"] = json_float(estimate.probed_volume_m3)
        numbers["r_total_ohm"] = json_float(estimate.r_total_ohm)
        return numbers

    def _final_result(self, exit_status: str | None) -> dict[str, Any]:
        summaries, masks = self._summaries()
        series, energy_f, energy_lf = self._series_numbers(summaries)
        used = [s for s in summaries if s["complete"]]

        def by_temperature(key: str) -> dict[str, Any]:
            return {_key(s["setpoint_k"]): s[key] for s in used if s["setpoint_k"] is not None}

        region = dict(self._region)
        if region["kind"] == "largest_grain":
            region["erode_px"] = LARGEST_GRAIN_ERODE_PX
        else:
            region["follows_residual_drift_above_quality"] = MINIMUM_REGISTRATION_QUALITY
        result = {
            **series,
            "setpoints_k": [s["setpoint_k"] for s in used],
            "region": region,
            "region_pixels_by_temperature_k": by_temperature("region_pixels"),
            "a_f_pm_by_temperature_k": by_temperature("a_f_pm"),
            "a_hf_pm_by_temperature_k": by_temperature("a_hf_pm"),
            "a_lf_pm_by_temperature_k": by_temperature("a_lf_pm"),
            "a_f_std_pm_by_temperature_k": by_temperature("a_f_std_pm"),
            "scan_offsets_nm_by_temperature_k": {
                _key(s["setpoint_k"]): s["scan_offset_nm"] for s in summaries
                if s["scan_offset_nm"] is not None and s["setpoint_k"] is not None
            },
            "maps_incomplete": [s["map_index"] for s in summaries if not s["complete"]],
            "maps": summaries,
            "monitor_points": len(self._monitor["time_s"]),
            "exit_status": exit_status,
            "figures": [],
            "maps_file": None,
        }
        if self.figures_directory_for is not None and summaries:
            result.update(self._write_figures(summaries, masks, series, energy_f, energy_lf))
        return result

    # ------------------------------------------------------------------------- files

    def _directory(self) -> Path:
        return Path(self.figures_directory_for(self._uid))

    def _display_topography(self, index: int) -> np.ndarray:
        """Levelled as for the segmentation (line offsets, plane), missing rows left NaN."""
        topography_nm = self.assemblers[index].topography_nm
        levelled = level_topography(topography_nm)
        return np.where(np.isfinite(topography_nm), levelled, np.nan)

    def _arrhenius_figure(self, summaries, series, energy_f, energy_lf) -> Path:
        from .esm_series_figures import arrhenius_figure

        used = [s for s in summaries if s["complete"]]
        return self._figures.draw(
            arrhenius_figure,
            self._directory() / ARRHENIUS_FIGURE,
            series["temperatures_k"],
            [s["a_f_pm"] for s in used],
            [s["a_lf_pm"] for s in used],
            energy_f,
            energy_lf,
        )

    def _write_figures(self, summaries, masks, series, energy_f, energy_lf) -> dict[str, Any]:
        from .esm_series_figures import amplitudes_figure, series_maps_figure

        directory = self._directory()
        figures = [self._arrhenius_figure(summaries, series, energy_f, energy_lf)]
        shown = [s for s in summaries if s["lines_recorded"] > 0]
        indices = [s["map_index"] for s in shown]
        compensated = {i: self.assemblers[i].compensated() for i in indices}
        labels = [s["temperature_k"] or s["setpoint_k"] or math.nan for s in shown]
        extent = self._esm_map.extent_nm()  # image frame of the first map
        used = [s for s in summaries if s["complete"]]
        first = used[0]["map_index"] if used else indices[0]
        figures.append(self._figures.draw(
            amplitudes_figure,
            directory / "esm_series_amplitudes.png",
            series["temperatures_k"],
            [s["a_hf_pm"] for s in used], [s["a_lf_pm"] for s in used],
            [s["a_f_pm"] for s in used],
            compensated[first].a_f_pm, masks[first], extent,
            labels[indices.index(first)],
        ))
        figures.append(self._figures.draw(
            series_maps_figure,
            directory / "esm_series_maps.png", labels,
            {
                "topography (nm)": [self._display_topography(i) for i in indices],
                "Ā_LF (pm)": [compensated[i].a_lf_pm for i in indices],
                "A_HF (pm)": [compensated[i].a_hf_pm for i in indices],
                "a_f (pm)": [compensated[i].a_f_pm for i in indices],
            },
            [masks[i] for i in indices], extent,
        ))
        if len(self._monitor["time_s"]) > 1:
            from .figures import temperature_trace_figure

            figures.append(self._figures.draw(
                temperature_trace_figure,
                directory / "esm_series_temperature.png",
                times_s=np.asarray(self._monitor["time_s"]),
                temperatures_k=np.asarray(self._monitor["temperature_k"]),
                heater_output_percent=np.asarray(self._monitor["heater_percent"]),
                setpoints_k=[s["setpoint_k"] for s in shown if s["setpoint_k"] is not None],
                step_times_s=[self._first_line_time_s[s["map_index"]] for s in shown
                              if s["setpoint_k"] is not None],
            ))
        maps_file = directory / "esm_series_maps.npz"
        np.savez_compressed(
            maps_file,
            map_index=np.asarray(indices),
            setpoint_k=np.asarray([s["setpoint_k"] or math.nan for s in shown], dtype=float),
            temperature_k=np.asarray(labels, dtype=float),
            topography_nm=np.stack([self.assemblers[i].topography_nm for i in indices]),
            a_lf_pm=np.stack([compensated[i].a_lf_pm for i in indices]),
            a_hf_pm=np.stack([compensated[i].a_hf_pm for i in indices]),
            a_f_pm=np.stack([compensated[i].a_f_pm for i in indices]),
            fitted=np.stack([self.assemblers[i].fitted() for i in indices]),
            region_mask=np.stack([masks[i] for i in indices]),
            extent_nm=np.asarray([self._extent_nm(i) for i in indices], dtype=float),
        )
        drawn = self._figures.finished()
        return {"figures": [str(p) for p in figures if p in drawn], "maps_file": str(maps_file)}
