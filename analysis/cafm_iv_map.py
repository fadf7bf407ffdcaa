"""Live (and replayed) c-AFM I–V analysis of a `cafm_iv_sweep` run.

One event per grid point carries the current of every step of its sweep. At the stop each
point's cycle (mean over the cycles after the first) gives the set and reset thresholds, the
switched conductance ΔG, the stray capacitance C and the loop areas (`iv_threshold`); maps,
I–V curves and the waveform are drawn. Only documents go in, so live and replay agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .afm_readout_metadata import CafmIvMetadata
from .esm_map import json_float
from .iv_threshold import analyse_iv, branch_signal, cycle_mean
from .point_grid_analysis import PointGridAnalysis, finite_mean, json_values

NANO = 1e9
PICO = 1e12
QUANTITIES = ("set_threshold_v", "reset_threshold_v", "threshold_v",
              "switched_conductance_ns", "stray_capacitance_pf", "loop_area_na_v",
              "lobe_area_na_v")


def analyse_points(meta: CafmIvMetadata, currents_a: np.ndarray
                   ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per point the `QUANTITIES`, and the cycle-mean current and conduction current (A)."""
    v = np.asarray(meta.bias_v)
    out = {name: np.full(currents_a.shape[0], np.nan) for name in QUANTITIES}
    cycles = np.full((currents_a.shape[0], v.size), np.nan)
    conduction = np.full_like(cycles, np.nan)
    for index, current in enumerate(currents_a):
        if not np.all(np.isfinite(current)):
            continue
        cycles[index] = cycle_mean(current, meta.cycles)
        result = analyse_iv(v, cycles[index], meta.sweep_rate_v_per_s)
        conduction[index] = result.conduction_current_a
        for name, value in (
            ("set_threshold_v", result.set_threshold_v),
            ("reset_threshold_v", result.reset_threshold_v),
            ("threshold_v", 0.5 * (result.set_threshold_v - result.reset_threshold_v)),
            ("switched_conductance_ns", result.switched_conductance_s * NANO),
            ("stray_capacitance_pf", result.stray_capacitance_f * PICO),
            ("loop_area_na_v", result.loop_area_a_v * NANO),
            ("lobe_area_na_v", result.lobe_area_a_v * NANO),
        ):
            out[name][index] = value
    return out, cycles, conduction


class CafmIvAnalysis(PointGridAnalysis):
    """I–V sweeps gathered point by point; analysed, mapped, summarised and drawn at the stop."""

    metadata_type = CafmIvMetadata

    def allocate(self, meta: CafmIvMetadata) -> None:
        steps = len(meta.bias_v) * meta.cycles
        self.currents_a = np.full((meta.points, steps), np.nan)

    def take(self, index, data, prefix) -> None:
        self.currents_a[index] = np.asarray(data[f"{prefix}-current_a"], dtype=float)

    def stop(self, doc):
        meta = self._meta
        if meta is None:
            self.result = self.no_points_result(doc)
            return
        measured = self.measured()
        currents = np.where(measured[:, None], self.currents_a, np.nan)
        values, cycles, conduction = analyse_points(meta, currents)
        bias = np.asarray(meta.bias_v)
        saturated = np.abs(currents[measured]) >= meta.current_range_a * (1 - 1e-9)
        self.result = {
            "points": int(measured.size),
            "points_measured": int(measured.sum()),
            "points_fitted": int(np.isfinite(values["threshold_v"]).sum()),
            "sweep_step_v": json_float(float(np.min(np.abs(np.diff(bias))))),
            "saturated_samples": int(saturated.sum()),
            **{f"{name}_mean": finite_mean(v) for name, v in values.items()},
            "per_point": {"x_nm": json_values(self.positions_nm[:, 0]),
                          "y_nm": json_values(self.positions_nm[:, 1]),
                          **{name: json_values(v) for name, v in values.items()}},
            "figures": [],
            "maps_file": None,
            "exit_status": doc.get("exit_status"),
        }
        if self.figures_directory_for is not None and measured.any():
            self._save(values, cycles, conduction)

    def _save(self, values, cycles, conduction) -> None:
        from .cafm_figures import cafm_figure

        meta = self._meta
        directory = Path(self.figures_directory_for(self._uid))
        bias = np.asarray(meta.bias_v)
        maps = {name: v.reshape(meta.points_y, meta.points_x) for name, v in values.items()}
        signals = []
        for row in conduction:
            if np.all(np.isfinite(row)):
                signals.append([branch_signal(bias, row, polarity) for polarity in (1, -1)])
            else:
                signals.append(None)
        figure = self._figures.draw(
            cafm_figure, directory / "cafm_iv.png", bias, meta.cycles, meta.step_duration_s,
            cycles, signals, values["set_threshold_v"], values["reset_threshold_v"], maps,
            meta.extent_nm())
        maps_path = directory / "cafm_iv_maps.npz"
        np.savez_compressed(maps_path, bias_v=bias, cycle_current_a=cycles,
                            conduction_current_a=conduction, positions_nm=self.positions_nm,
                            **maps)
        drawn = [str(path) for path in self._figures.finished()]
        self.result.update(figures=[p for p in [str(figure)] if p in drawn],
                           maps_file=str(maps_path))
