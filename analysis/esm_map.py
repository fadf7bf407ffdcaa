"""Live (and replayed) assembly of a `three_excitation_map` run into ESM maps.

One event per scan line carries topography and, per excitation, the SHO fit of every pixel of
the line. The maps fill in as lines arrive; at the end the three amplitudes are compensated
(a_f = Ā_LF − A_HF, see `esm_compensation`), summarised, drawn and saved. Only documents go
in, so the live run and `vegard replay` (arrays read back from JSON as lists) agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from event_model import DocumentRouter

from .esm_compensation import CompensatedMaps, compensate, region_mean, region_std
from .figure_process import FigureDrawer
from .run_metadata import EsmMapMetadata

LF_DC_PLUS = "lf_dc_plus"
LF_DC_MINUS = "lf_dc_minus"
HF_LF = "hf_lf"
COMPENSATION_EXCITATIONS = (LF_DC_PLUS, LF_DC_MINUS, HF_LF)
FIT_QUANTITIES = ("amplitude_pm", "resonance_frequency_hz", "quality_factor", "phase_rad",
                  "r_squared")


def level_lines(topography_nm: np.ndarray) -> np.ndarray:
    """Per-line median offset removal (each scan line shifted to median 0), for display.

    The slow axis drifts from line to line (thermal drift, feedback set point); the median is
    not pulled by grains or spikes the way a mean or a plane fit is. NaN lines stay NaN.
    """
    topography_nm = np.asarray(topography_nm, dtype=float)
    finite_per_line = np.isfinite(topography_nm).any(axis=1, keepdims=True)
    filled = np.where(finite_per_line, topography_nm, 0.0)
    return topography_nm - np.nanmedian(filled, axis=1, keepdims=True)


def _line(values: Any, pixels_x: int, dtype: type) -> np.ndarray:
    line = np.asarray(values, dtype=dtype)
    if line.shape != (pixels_x,):
        raise ValueError(f"expected a line of {pixels_x} pixels, got shape {line.shape}")
    return line


class EsmMapAssembler:
    """The maps of one scan, shape (pixels_y, pixels_x), NaN (converged False) until filled."""

    def __init__(
        self, pixels_x: int, pixels_y: int, excitations: Sequence[str], prefix: str = "afm"
    ) -> None:
        self.pixels_x, self.pixels_y = int(pixels_x), int(pixels_y)
        self.excitations = tuple(excitations)
        self.prefix = prefix
        shape = (self.pixels_y, self.pixels_x)
        self.topography_nm = np.full(shape, np.nan)
        self.fits = {
            e: {q: np.full(shape, np.nan) for q in FIT_QUANTITIES} for e in self.excitations
        }
        self.converged = {e: np.zeros(shape, dtype=bool) for e in self.excitations}
        self.row_recorded = np.zeros(self.pixels_y, dtype=bool)

    def add_row(self, row: int, data_by_key: Mapping[str, Any]) -> None:
        """Fill scan line `row` from an event's `data` (keys `{prefix}-{excitation}_{quantity}`)."""
        row = int(row)
        if not 0 <= row < self.pixels_y:
            raise ValueError(f"row {row} outside 0..{self.pixels_y - 1}")
        p, n = self.prefix, self.pixels_x
        self.topography_nm[row] = _line(data_by_key[f"{p}-topography_nm"], n, float)
        for e in self.excitations:
            for quantity, values in self.fits[e].items():
                values[row] = _line(data_by_key[f"{p}-{e}_{quantity}"], n, float)
            self.converged[e][row] = _line(data_by_key[f"{p}-{e}_converged"], n, bool)
        self.row_recorded[row] = True

    @property
    def rows_done(self) -> int:
        """Distinct scan lines received so far."""
        return int(self.row_recorded.sum())

    def fitted(self, excitations: Sequence[str] = COMPENSATION_EXCITATIONS) -> np.ndarray:
        """Pixels where every one of `excitations` converged with a finite amplitude."""
        mask = np.ones((self.pixels_y, self.pixels_x), dtype=bool)
        for e in excitations:
            mask &= self.converged[e] & np.isfinite(self.fits[e]["amplitude_pm"])
        return mask

    def _amplitude_where_converged(self, excitation: str) -> np.ndarray:
        mask = self.fitted((excitation,))
        return np.where(mask, self.fits[excitation]["amplitude_pm"], np.nan)

    def compensated(self) -> CompensatedMaps:
        """Ā_LF and a_f, using each amplitude only where its own fit converged (else NaN)."""
        return compensate(*(self._amplitude_where_converged(e) for e in COMPENSATION_EXCITATIONS))

    def excitation_mean(self, quantity: str) -> np.ndarray:
        """Per-pixel mean of a fit quantity over the excitations whose fit converged (else NaN);
        the contact resonance is one resonance, seen by all three drives."""
        total = np.zeros((self.pixels_y, self.pixels_x))
        count = np.zeros((self.pixels_y, self.pixels_x))
        for e in self.excitations:
            values = self.fits[e][quantity]
            use = self.converged[e] & np.isfinite(values)
            total += np.where(use, values, 0.0)
            count += use
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / count, np.nan)

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """Every raw map by name, units in the name (`lf_dc_plus_amplitude_pm`, ...)."""
        maps = {"topography_nm": self.topography_nm}
        for e in self.excitations:
            maps.update({f"{e}_{q}": values for q, values in self.fits[e].items()})
            maps[f"{e}_converged"] = self.converged[e]
        return maps


def json_float(value: float | None) -> float | None:
    """Plain float for JSON; NaN, inf and None → None."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def region_amplitudes(assembler: EsmMapAssembler, mask: np.ndarray) -> dict[str, float | None]:
    """Means over `mask` of the compensated amplitudes (pm) and of f0 (Hz) and Q."""
    maps = assembler.compensated()
    return {
        "a_f_pm": json_float(region_mean(maps.a_f_pm, mask)),
        "a_hf_pm": json_float(region_mean(maps.a_hf_pm, mask)),
        "a_lf_pm": json_float(region_mean(maps.a_lf_pm, mask)),
        "a_lf_plus_pm": json_float(region_mean(maps.a_lf_plus_pm, mask)),
        "a_lf_minus_pm": json_float(region_mean(maps.a_lf_minus_pm, mask)),
        "resonance_frequency_hz": json_float(
            region_mean(assembler.excitation_mean("resonance_frequency_hz"), mask)
        ),
        "quality_factor": json_float(
            region_mean(assembler.excitation_mean("quality_factor"), mask)
        ),
    }


def summarise_map(assembler: EsmMapAssembler) -> dict[str, Any]:
    """Means over the pixels where all three fits converged; plain, JSON-safe numbers."""
    fitted = assembler.fitted()
    maps = assembler.compensated()
    r_squared = np.concatenate(
        [assembler.fits[e]["r_squared"][fitted] for e in COMPENSATION_EXCITATIONS]
    )
    r_squared = r_squared[np.isfinite(r_squared)]
    levelled_nm = level_lines(assembler.topography_nm)
    levelled_nm = levelled_nm[np.isfinite(levelled_nm)]
    topography_rms_nm = (
        np.sqrt(np.mean((levelled_nm - levelled_nm.mean()) ** 2)) if levelled_nm.size else np.nan
    )
    means = region_amplitudes(assembler, fitted)
    return {
        "a_f_mean_pm": means["a_f_pm"],
        "a_hf_mean_pm": means["a_hf_pm"],
        "a_lf_mean_pm": means["a_lf_pm"],
        "a_lf_plus_mean_pm": means["a_lf_plus_pm"],
        "a_lf_minus_mean_pm": means["a_lf_minus_pm"],
        "a_f_std_pm": json_float(region_std(maps.a_f_pm, fitted)),
        "resonance_frequency_mean_hz": means["resonance_frequency_hz"],
        "quality_factor_mean": means["quality_factor"],
        "fit_r_squared_median": json_float(np.median(r_squared) if r_squared.size else np.nan),
        "pixels": assembler.pixels_x * assembler.pixels_y,
        "pixels_fitted": int(fitted.sum()),
        "lines_recorded": assembler.rows_done,
        "topography_rms_nm": json_float(topography_rms_nm),
    }


def save_maps(path: Path, assembler: EsmMapAssembler, extent_nm: Sequence[float]) -> Path:
    """All maps (raw, compensated, levelled topography, masks, pixel centres) in one .npz."""
    x_left, x_right, y_bottom, y_top = extent_nm
    step_x = (x_right - x_left) / assembler.pixels_x
    step_y = (y_top - y_bottom) / assembler.pixels_y
    compensated = assembler.compensated()
    arrays = dict(assembler.maps)
    arrays.update(
        a_lf_plus_pm=compensated.a_lf_plus_pm,
        a_lf_minus_pm=compensated.a_lf_minus_pm,
        a_lf_pm=compensated.a_lf_pm,
        a_hf_pm=compensated.a_hf_pm,
        a_f_pm=compensated.a_f_pm,
        topography_levelled_nm=level_lines(assembler.topography_nm),
        resonance_frequency_hz=assembler.excitation_mean("resonance_frequency_hz"),
        quality_factor=assembler.excitation_mean("quality_factor"),
        fitted=assembler.fitted(),
        row_recorded=assembler.row_recorded,
        x_nm=x_left + step_x * (np.arange(assembler.pixels_x) + 0.5),
        y_nm=y_bottom + step_y * (np.arange(assembler.pixels_y) + 0.5),
        extent_nm=np.asarray(extent_nm, dtype=float),
        excitations=np.asarray(assembler.excitations),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


class EsmMapAnalysis(DocumentRouter):
    """Maps filled live, line by line; compensated summary, figures and maps file at the end.

    Events are grouped by `{device}-map_index` (absent → 0), one `EsmMapAssembler` each, so a
    run holding several maps (a temperature series) keeps them apart. `.result` is the summary
    of the lowest-indexed map; with more than one map, `result["maps"]` lists them all.
    """

    def __init__(self, figures_directory_for: Callable[[str], Path] | None = None) -> None:
        """`figures_directory_for(run_uid)` says where figures and maps go (none if not given)."""
        super().__init__()
        self.figures_directory_for = figures_directory_for
        self._figures = FigureDrawer()
        self.result: dict[str, Any] | None = None
        self.latest: dict[str, Any] | None = None
        self.assemblers: dict[int, EsmMapAssembler] = {}
        self._stream_of: dict[str, str] = {}
        self._esm_map: EsmMapMetadata | None = None

    def start(self, doc):
        self._esm_map = EsmMapMetadata.of(doc)
        self._uid = doc["uid"]

    def descriptor(self, doc):
        self._stream_of[doc["uid"]] = doc.get("name", "primary")

    def assembler_for(self, map_index: int) -> EsmMapAssembler:
        """The maps of scan `map_index`, created on first use."""
        if map_index not in self.assemblers:
            m = self._esm_map
            self.assemblers[map_index] = EsmMapAssembler(
                m.pixels_x, m.pixels_y, m.excitations, prefix=m.device)
        return self.assemblers[map_index]

    def event(self, doc):
        if self._esm_map is None or self._stream_of.get(doc["descriptor"]) != self._esm_map.stream:
            return
        prefix = self._esm_map.device
        data = doc["data"]
        map_index = int(data.get(f"{prefix}-map_index", 0))
        assembler = self.assembler_for(map_index)
        assembler.add_row(data[f"{prefix}-row"], data)
        fitted = assembler.fitted()
        self.latest = {
            "map_index": map_index,
            "rows_done": assembler.rows_done,
            "pixels_y": assembler.pixels_y,
            "pixels_fitted": int(fitted.sum()),
            "a_f_mean_pm": json_float(region_mean(assembler.compensated().a_f_pm, fitted)),
        }

    def stop(self, doc):
        summaries = [
            {"map_index": index, **self._finish_map(index)} for index in sorted(self.assemblers)
        ]
        if not summaries:
            m = self._esm_map
            empty = EsmMapAssembler(
                m.pixels_x if m else 0, m.pixels_y if m else 0,
                m.excitations if m else COMPENSATION_EXCITATIONS,
            )
            summaries = [
                {"map_index": 0, **summarise_map(empty), "figures": [], "maps_file": None}
            ]
        drawn = [str(path) for path in self._figures.finished()]
        for summary in summaries:
            summary["figures"] = [path for path in summary["figures"] if path in drawn]
        first = {k: v for k, v in summaries[0].items() if k != "map_index"}
        self.result = {**first, "exit_status": doc.get("exit_status")}
        if len(summaries) > 1:
            self.result["maps"] = summaries

    def _finish_map(self, map_index: int) -> dict[str, Any]:
        assembler = self.assemblers[map_index]
        summary = summarise_map(assembler)
        summary.update(figures=[], maps_file=None)
        if self.figures_directory_for is None or assembler.rows_done == 0:
            return summary
        from .esm_figures import esm_map_figure, resonance_map_figure

        directory = Path(self.figures_directory_for(self._uid))
        suffix = "" if map_index == 0 else f"_map{map_index}"
        extent_nm = self._esm_map.extent_nm()
        maps = assembler.compensated()
        figures = [
            self._figures.draw(
                esm_map_figure,
                directory / f"esm_map{suffix}.png",
                level_lines(assembler.topography_nm),
                maps.a_lf_pm,
                maps.a_hf_pm,
                maps.a_f_pm,
                extent_nm,
            ),
            self._figures.draw(
                resonance_map_figure,
                directory / f"esm_resonance{suffix}.png",
                assembler.excitation_mean("resonance_frequency_hz"),
                assembler.excitation_mean("quality_factor"),
                extent_nm,
            ),
        ]
        maps_path = save_maps(directory / f"esm_maps{suffix}.npz", assembler, extent_nm)
        summary.update(figures=[str(p) for p in figures], maps_file=str(maps_path))
        return summary
