"""Live (and replayed) FORC maps of a `forc_spectroscopy` run.

One event per grid point carries the SHO fit of the in-field and the out-of-field spectrum of
every step of its FORC sweep (the device fits them). At the stop, every point's sweep is cut
into its FORC cycles, projected and integrated (`forc_loops`), and the threshold V_c and the
slope κ come from the hinge fit of loop area against peak bias (`fit_threshold`; resolution
one FORC step). Only documents go in, so the live run and `vegard replay` agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .esm_map import json_float
from .forc_loops import fit_threshold, forc_loops
from .forc_relaxation_metadata import ForcMetadata
from .point_grid_analysis import PointGridAnalysis, finite_mean, json_values

FIELDS = ("in_field", "out_of_field")


class ForcMapAnalysis(PointGridAnalysis):
    """FORC sweeps gathered point by point; areas, thresholds, maps and figures at the stop."""

    metadata_type = ForcMetadata

    def allocate(self, meta: ForcMetadata) -> None:
        steps = len(meta.dc_bias_v)
        self.responses = {f: np.full((meta.points, steps), np.nan, complex) for f in FIELDS}

    def take(self, index, data, prefix) -> None:
        for field in FIELDS:
            amplitude = np.asarray(data[f"{prefix}-{field}_amplitude_pm"], dtype=float)
            phase = np.asarray(data[f"{prefix}-{field}_phase_rad"], dtype=float)
            self.responses[field][index] = amplitude * np.exp(1j * phase)

    def stop(self, doc):
        meta = self._meta
        if meta is None:
            self.result = self.no_points_result(doc)
            return
        measured = self.measured()
        peaks = np.asarray(meta.peak_v)
        loops = {field: forc_loops(meta.dc_bias_v, self.responses[field], len(peaks),
                                   meta.cycles_per_forc) for field in FIELDS}
        out_of_field = loops["out_of_field"]
        areas = np.where(measured[:, None], out_of_field.areas_pm_v, np.nan)
        threshold = fit_threshold(peaks, np.where(measured[:, None], areas, 0.0))
        threshold_v = np.where(measured, threshold.threshold_v, np.nan)
        slope = np.where(measured, threshold.area_slope_pm, np.nan)
        found = np.isfinite(threshold_v)
        below = np.where(peaks[None, :] <= threshold_v[:, None], areas, np.nan)
        shape = (meta.points_y, meta.points_x)
        self.result = {
            "points": int(measured.size),
            "points_measured": int(measured.sum()),
            "points_fitted": int(found.sum()),
            "peak_bias_v": json_values(peaks),
            "forc_step_v": json_float(threshold.forc_step_v),
            "threshold_v_mean": finite_mean(threshold_v),
            "area_slope_pm_mean": finite_mean(slope),
            "loop_area_pm_v_mean": json_values(np.nanmean(areas, axis=0) if measured.any()
                                           else np.full(peaks.size, np.nan)),
            "area_below_threshold_max_abs_pm_v": json_float(
                np.nanmax(np.abs(below)) if np.isfinite(below).any() else None),
            "per_point": {
                "x_nm": json_values(self.positions_nm[:, 0]),
                "y_nm": json_values(self.positions_nm[:, 1]),
                "threshold_v": json_values(threshold_v),
                "area_slope_pm": json_values(slope),
                "threshold_bracket_low_v": json_values(threshold.bracket_low_v),
                "threshold_bracket_high_v": json_values(threshold.bracket_high_v),
                "loop_area_pm_v": [json_values(row) for row in areas],
            },
            "figures": [],
            "maps_file": None,
            "exit_status": doc.get("exit_status"),
        }
        if self.figures_directory_for is not None and measured.any():
            maps = {"threshold_v": threshold_v.reshape(shape),
                    "area_slope_pm": slope.reshape(shape),
                    "loop_area_last_peak_pm_v": areas[:, -1].reshape(shape)}
            self._save(loops, areas, threshold_v, slope, maps)

    def _save(self, loops, areas, threshold_v, slope, maps) -> None:
        from .forc_relaxation_figures import forc_figure

        meta = self._meta
        directory = Path(self.figures_directory_for(self._uid))
        figure = self._figures.draw(
            forc_figure, directory / "forc_spectroscopy.png",
            np.asarray(meta.dc_bias_v), meta.step_duration_s, np.asarray(meta.peak_v),
            loops["out_of_field"].dc_bias_v, loops["out_of_field"].loops,
            loops["in_field"].loops, areas, threshold_v, slope, maps, meta.extent_nm())
        maps_path = directory / "forc_spectroscopy_maps.npz"
        np.savez_compressed(
            maps_path, peak_bias_v=np.asarray(meta.peak_v),
            dc_bias_v=loops["out_of_field"].dc_bias_v,
            out_of_field_loops=loops["out_of_field"].loops,
            in_field_loops=loops["in_field"].loops, loop_area_pm_v=areas,
            positions_nm=self.positions_nm, extent_nm=np.asarray(meta.extent_nm()), **maps)
        drawn = [str(path) for path in self._figures.finished()]
        self.result.update(figures=[p for p in [str(figure)] if p in drawn],
                           maps_file=str(maps_path))
