"""Live (and replayed) relaxation maps of a `time_relaxation_spectroscopy` run.

One event per grid point carries the SHO fit of every read (baseline reads before the write
pulse, relaxation reads after it) and the reads' times from the end of the pulse. At the
stop every curve is projected on its principal axis in the complex plane (signed so that the
relaxing part has the sign of the write pulse), all curves are fitted at once with a
stretched exponential R∞ + ΔR·exp(−(t/τ)^β) (`fit_stretched_exponentials`), and the
irreversible part is R∞ less the baseline before the pulse. Only documents go in, so the
live run and `vegard replay` agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .esm_map import json_float
from .forc_relaxation_metadata import RelaxationMetadata
from .point_grid_analysis import PointGridAnalysis, finite_mean, json_values
from .stretched_exponential_fit import fit_stretched_exponentials

QUANTITIES = ("relaxation_time_s", "stretch_exponent", "relaxing_response_pm",
              "irreversible_response_pm", "r_squared")


def project_curves(time_s: np.ndarray, responses: np.ndarray, write_bias_v: float
                   ) -> np.ndarray:
    """Real curves (points, reads) from complex ones: the component along each curve's
    principal axis (a line through the origin), signed so that the early reads after the
    pulse minus the late ones have the sign of the write bias."""
    z = np.asarray(responses)
    z = np.where(np.isfinite(z), z, 0.0)
    dx = z.real - z.real.mean(axis=1, keepdims=True)
    dy = z.imag - z.imag.mean(axis=1, keepdims=True)
    angle = 0.5 * np.arctan2(2.0 * np.mean(dx * dy, axis=1),
                             np.mean(dx * dx, axis=1) - np.mean(dy * dy, axis=1))
    projected = z.real * np.cos(angle)[:, None] + z.imag * np.sin(angle)[:, None]
    after = np.flatnonzero(np.asarray(time_s) > 0)
    edge = max(1, after.size // 8)
    decay = projected[:, after[:edge]].mean(axis=1) - projected[:, after[-edge:]].mean(axis=1)
    flip = decay * np.sign(write_bias_v or 1.0) < 0
    return np.where(flip[:, None], -projected, projected)


class RelaxationMapAnalysis(PointGridAnalysis):
    """Relaxation curves gathered point by point; fitted, mapped and drawn at the stop."""

    metadata_type = RelaxationMetadata

    def allocate(self, meta: RelaxationMetadata) -> None:
        reads = meta.baseline_points + meta.read_points
        self.responses = np.full((meta.points, reads), np.nan, complex)
        self.time_s = np.full(reads, np.nan)

    def take(self, index, data, prefix) -> None:
        amplitude = np.asarray(data[f"{prefix}-amplitude_pm"], dtype=float)
        phase = np.asarray(data[f"{prefix}-phase_rad"], dtype=float)
        self.responses[index] = amplitude * np.exp(1j * phase)
        self.time_s = np.asarray(data[f"{prefix}-read_time_s"], dtype=float)

    def stop(self, doc):
        meta = self._meta
        measured = self.measured()
        if meta is None or not measured.any():
            self.result = self.no_points_result(doc, points_fitted=0)
            return
        curves = project_curves(self.time_s, self.responses, meta.write_bias_v)
        curves = np.where(measured[:, None], curves, np.nan)
        fit = fit_stretched_exponentials(self.time_s, curves)
        before = curves[:, self.time_s < 0]
        baseline = np.full(curves.shape[0], np.nan)  # NaN where not measured / no baseline
        if before.shape[1]:
            baseline[measured] = before[measured].mean(axis=1)
        values = {
            "relaxation_time_s": fit.relaxation_time_s,
            "stretch_exponent": fit.stretch_exponent,
            "relaxing_response_pm": fit.amplitude,
            "irreversible_response_pm": fit.offset - baseline,
            "r_squared": fit.r_squared,
        }
        fitted = measured & np.isfinite(fit.relaxation_time_s) & fit.converged
        values = {name: np.where(fitted, v, np.nan) for name, v in values.items()}
        shape = (meta.points_y, meta.points_x)
        self.result = {
            "points": int(measured.size),
            "points_measured": int(measured.sum()),
            "points_fitted": int(fitted.sum()),
            **{f"{name}_mean": finite_mean(v) for name, v in values.items()},
            "relaxation_time_error_median_s": json_float(np.nanmedian(
                np.where(fitted, fit.relaxation_time_error_s, np.nan))) if fitted.any()
            else None,
            "per_point": {
                "x_nm": json_values(self.positions_nm[:, 0]),
                "y_nm": json_values(self.positions_nm[:, 1]),
                **{name: json_values(v) for name, v in values.items()},
            },
            "figures": [],
            "maps_file": None,
            "exit_status": doc.get("exit_status"),
        }
        if self.figures_directory_for is not None:
            maps = {name: v.reshape(shape) for name, v in values.items()}
            self._save(curves, fit.model(self.time_s), maps)

    def _save(self, curves, models, maps) -> None:
        from .forc_relaxation_figures import relaxation_figure

        meta = self._meta
        directory = Path(self.figures_directory_for(self._uid))
        figure = self._figures.draw(
            relaxation_figure, directory / "time_relaxation.png", self.time_s, curves, models,
            maps, meta.extent_nm(), meta.write_bias_v, meta.write_duration_s, meta.read_bias_v)
        maps_path = directory / "time_relaxation_maps.npz"
        np.savez_compressed(maps_path, read_time_s=self.time_s, curves_pm=curves,
                            fitted_pm=models, positions_nm=self.positions_nm,
                            extent_nm=np.asarray(meta.extent_nm()), **maps)
        drawn = [str(path) for path in self._figures.finished()]
        self.result.update(figures=[p for p in [str(figure)] if p in drawn],
                           maps_file=str(maps_path))
