"""Live (and replayed) hysteresis-loop maps of a `be_voltage_spectroscopy` run.

One event per grid point carries, for every step of its sweep, the SHO fit of the in-field
and the out-of-field spectrum (the device fits them with `fit_sho`). The out-of-field
response A·e^{iφ} of the steps, averaged over the cycles after the first (the first starts
from the virgin state), is the point's loop; at the end all loops are fitted at once
(`fit_loops`: projection on the principal axis, 9-parameter model), giving maps of the
coercive voltages, imprint, switchable response, loop area and r². Only documents go in, so
the live run and `vegard replay` agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .esm_map import json_float
from .loop_fit import LoopFitResult, fit_loops, project_loops
from .point_grid_analysis import PointGridAnalysis, finite_mean, json_values
from .run_metadata import BeSpectroscopyMetadata

FIELDS = ("in_field", "out_of_field")
MAP_QUANTITIES = {
    "coercive_voltage_negative_v": "coercive_voltage_negative_v",
    "coercive_voltage_positive_v": "coercive_voltage_positive_v",
    "imprint_v": "imprint_v",
    "switchable_response_pm": "switchable_response",
    "loop_area_pm_v": "loop_area",
    "r_squared": "r_squared",
}
"""Analysis name (units in it) → `LoopFitResult` field."""


def cycle_mean_response(amplitude_pm: np.ndarray, phase_rad: np.ndarray, cycles: int
                        ) -> np.ndarray:
    """One cycle of complex responses A·e^{iφ} (S,), the mean over cycles 2..n (all if one).

    A step whose spectrum could not be fitted (NaN) counts as no response (0): it happens
    where the switched fraction passes through zero and the resonance is lost in the noise.
    """
    z = np.asarray(amplitude_pm, dtype=float) * np.exp(1j * np.asarray(phase_rad, dtype=float))
    z = np.where(np.isfinite(z), z, 0.0).reshape(cycles, -1)
    return z[1:].mean(axis=0) if cycles > 1 else z[0]


def loop_maps(fit: LoopFitResult, points_x: int, points_y: int) -> dict[str, np.ndarray]:
    """The fitted quantities as (points_y, points_x) maps, NaN where no loop was found."""
    found = fit.is_loop & np.isfinite(fit.r_squared)
    return {
        name: np.where(found, getattr(fit, field), np.nan).reshape(points_y, points_x)
        for name, field in MAP_QUANTITIES.items()
    }


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _median(values: np.ndarray) -> float | None:
    finite = _finite(values)
    return json_float(np.median(finite)) if finite.size else None


class BeSpectroscopyMapAnalysis(PointGridAnalysis):
    """Loops gathered point by point; fitted, mapped, summarised and drawn at the stop."""

    metadata_type = BeSpectroscopyMetadata

    def allocate(self, meta: BeSpectroscopyMetadata) -> None:
        steps = len(meta.dc_bias_v)
        self.responses = {f: np.full((meta.points, steps), np.nan, complex) for f in FIELDS}

    def take(self, index, data, prefix) -> None:
        for field in FIELDS:
            self.responses[field][index] = cycle_mean_response(
                data[f"{prefix}-{field}_amplitude_pm"], data[f"{prefix}-{field}_phase_rad"],
                self._meta.cycles)

    def stop(self, doc):
        meta = self._meta
        if meta is None:
            self.result = self.no_points_result(doc)
            return
        measured = self.measured()
        dc_v = np.asarray(meta.dc_bias_v)
        out_of_field = np.where(measured[:, None], self.responses["out_of_field"], np.nan)
        fit = fit_loops(dc_v, out_of_field)
        maps = loop_maps(fit, meta.points_x, meta.points_y)
        found = np.isfinite(maps["r_squared"]).ravel()
        self.result = {
            "points": int(measured.size),
            "points_measured": int(measured.sum()),
            "points_fitted": int(found.sum()),
            **{f"{name}_mean": finite_mean(values) for name, values in maps.items()},
            "coercive_voltage_error_median_v": _median(np.concatenate([
                fit.coercive_voltage_negative_error_v[found],
                fit.coercive_voltage_positive_error_v[found]])),
            "per_point": {
                "x_nm": json_values(self.positions_nm[:, 0]),
                "y_nm": json_values(self.positions_nm[:, 1]),
                **{name: json_values(values) for name, values in maps.items()},
            },
            "figures": [],
            "maps_file": None,
            "exit_status": doc.get("exit_status"),
        }
        if self.figures_directory_for is not None and measured.any():
            self._save(fit, maps, dc_v)

    def _save(self, fit: LoopFitResult, maps: dict[str, np.ndarray], dc_v: np.ndarray) -> None:
        from .be_spectroscopy_figures import spectroscopy_figure

        meta = self._meta
        directory = Path(self.figures_directory_for(self._uid))
        extent_nm = meta.extent_nm()
        in_field, _ = project_loops(dc_v, self.responses["in_field"])
        figure = self._figures.draw(
            spectroscopy_figure, directory / "be_spectroscopy.png", dc_v,
            fit.projected_loops, fit.model(dc_v), in_field, maps, extent_nm)
        maps_path = directory / "be_spectroscopy_maps.npz"
        np.savez_compressed(
            maps_path, dc_bias_v=dc_v, out_of_field_loops=fit.projected_loops,
            in_field_loops=in_field, positions_nm=self.positions_nm,
            extent_nm=np.asarray(extent_nm), **maps)
        drawn = [str(path) for path in self._figures.finished()]
        self.result.update(figures=[p for p in [str(figure)] if p in drawn],
                           maps_file=str(maps_path))
