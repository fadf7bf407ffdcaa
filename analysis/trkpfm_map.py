"""Live (and replayed) tr-KPFM relaxation analysis of a `trkpfm_relaxation` run.

One event per grid point carries CPD(t) through the bias step. At the stop each record is
fitted after the step (from `fit_start_s`, past the KPFM loop's lag) with A + B·exp(−t/τ),
and D = d²/τ is given in m²/s and cm²/s; maps of τ, D, A and B, the curves with their fits
and the waveform are drawn. Only documents go in, so the live run and `vegard replay` agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .afm_readout_metadata import TrKpfmMetadata
from .exponential_relaxation import diffusion_coefficient_m2_per_s, fit_exponential_relaxation
from .point_grid_analysis import PointGridAnalysis, finite_mean, json_values

QUANTITIES = ("relaxation_time_s", "relaxation_time_error_s", "diffusion_coefficient_m2_per_s",
              "diffusion_coefficient_cm2_per_s", "cpd_offset_v", "cpd_amplitude_v",
              "r_squared")
CM2_PER_M2 = 1e4


def fit_records(meta: TrKpfmMetadata, records: np.ndarray) -> dict[str, np.ndarray]:
    """Per record (points, samples): τ, its error, D, A, B, r²; NaN where no fit."""
    t = meta.time_since_step_s()
    window = t >= meta.fit_start_s
    out = {name: np.full(records.shape[0], np.nan) for name in QUANTITIES}
    for index, record in enumerate(records):
        if not np.isfinite(record).any():
            continue
        fit = fit_exponential_relaxation(t[window], record[window])
        if fit is None:
            continue
        d = diffusion_coefficient_m2_per_s(meta.interelectrode_distance_um,
                                           fit.relaxation_time_s)
        for name, value in (("relaxation_time_s", fit.relaxation_time_s),
                            ("relaxation_time_error_s", fit.relaxation_time_error_s),
                            ("diffusion_coefficient_m2_per_s", d),
                            ("diffusion_coefficient_cm2_per_s", d * CM2_PER_M2),
                            ("cpd_offset_v", fit.offset_v), ("cpd_amplitude_v", fit.amplitude_v),
                            ("r_squared", fit.r_squared)):
            out[name][index] = value
    return out


class TrKpfmRelaxationAnalysis(PointGridAnalysis):
    """CPD records gathered point by point; fitted, mapped, summarised and drawn at the stop."""

    metadata_type = TrKpfmMetadata

    def allocate(self, meta: TrKpfmMetadata) -> None:
        self.records = np.full((meta.points, meta.samples), np.nan)

    def take(self, index, data, prefix) -> None:
        self.records[index] = np.asarray(data[f"{prefix}-cpd_v"], dtype=float)

    def stop(self, doc):
        meta = self._meta
        if meta is None:
            self.result = self.no_points_result(doc)
            return
        measured = self.measured()
        fits = fit_records(meta, np.where(measured[:, None], self.records, np.nan))
        self.result = {
            "points": int(measured.size),
            "points_measured": int(measured.sum()),
            "points_fitted": int(np.isfinite(fits["relaxation_time_s"]).sum()),
            "interelectrode_distance_um": meta.interelectrode_distance_um,
            **{f"{name}_mean": finite_mean(values) for name, values in fits.items()},
            "per_point": {"x_nm": json_values(self.positions_nm[:, 0]),
                          "y_nm": json_values(self.positions_nm[:, 1]),
                          **{name: json_values(values) for name, values in fits.items()}},
            "figures": [],
            "maps_file": None,
            "exit_status": doc.get("exit_status"),
        }
        if self.figures_directory_for is not None and measured.any():
            self._save(fits)

    def _save(self, fits: dict[str, np.ndarray]) -> None:
        from .trkpfm_figures import trkpfm_figure

        meta = self._meta
        directory = Path(self.figures_directory_for(self._uid))
        maps = {name: values.reshape(meta.points_y, meta.points_x)
                for name, values in fits.items()}
        t = meta.time_since_step_s()
        figure = self._figures.draw(
            trkpfm_figure, directory / "trkpfm_relaxation.png", t, self.records, fits,
            maps, meta.extent_nm(), meta.baseline_v, meta.step_bias_v, meta.fit_start_s)
        maps_path = directory / "trkpfm_maps.npz"
        np.savez_compressed(maps_path, time_since_step_s=t, cpd_v=self.records,
                            positions_nm=self.positions_nm, **maps)
        drawn = [str(path) for path in self._figures.finished()]
        self.result.update(figures=[p for p in [str(figure)] if p in drawn],
                           maps_file=str(maps_path))
