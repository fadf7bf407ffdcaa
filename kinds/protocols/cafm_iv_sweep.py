"""`cafm_iv_sweep`: hysteretic c-AFM I–V sweeps on a grid; switching thresholds, loop area."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from vegard.config.models import ProtocolSettings, StrictModel
from vegard.registry import Bench, ProtocolKind

from .be_spectroscopy_settings import SpectroscopyGrid
from .esm_settings import AFM_DRIVER
from .point_spectroscopy_checks import (
    check_grid,
    check_tip_bias,
    grid_summary_lines,
    nearest_truth,
    no_canned_readings,
    scan_area,
)

ROLE = "afm"


class IvTriangle(StrictModel):
    """The bipolar triangle 0 → +A → 0 → −A → 0 at a constant |dV/dt|."""

    amplitude_v: float = Field(gt=0, le=10)
    offset_v: float = Field(0.0, ge=-10, le=10)
    points_per_cycle: int = Field(128, ge=16, le=8192)
    cycles: int = Field(2, ge=1, le=64)
    sweep_rate_v_per_s: float = Field(gt=0, le=1e4)

    @field_validator("points_per_cycle")
    @classmethod
    def _quarters(cls, points: int) -> int:
        if points % 4:
            raise ValueError(f"{points} is not a multiple of 4 (four equal ramps per cycle)")
        return points

    @model_validator(mode="after")
    def _reach(self):
        if abs(self.offset_v) + self.amplitude_v > 10:
            raise ValueError(f"|offset_v| + amplitude_v = {abs(self.offset_v) + self.amplitude_v:g}"
                             " V is not valid: allowed ≤ 10 V (controller)")
        return self


class CurrentAmplifier(StrictModel):
    full_scale_a: float = Field(1e-8, ge=1e-12, le=1e-5)


class CafmIvSweepProtocol(ProtocolSettings):
    protocol: Literal["cafm_iv_sweep"]
    grid: SpectroscopyGrid
    sweep: IvTriangle
    amplifier: CurrentAmplifier = CurrentAmplifier()


def roles(protocol: CafmIvSweepProtocol) -> dict[str, str]:
    return {ROLE: AFM_DRIVER}


def check(protocol: CafmIvSweepProtocol, bench: Bench, path: Path) -> None:
    sweep = protocol.sweep
    check_tip_bias(bench, path, [("|sweep.offset_v| + sweep.amplitude_v",
                                  abs(sweep.offset_v) + sweep.amplitude_v)])
    check_grid(protocol.grid, bench, path)


def settings_of(protocol: CafmIvSweepProtocol):
    from vegard.instruments.afm_readout_driver import IvSweepSettings
    from vegard.plans.cafm_iv_sweep import CafmIvSettings

    s = protocol.sweep
    return CafmIvSettings(
        area=scan_area(protocol.grid),
        sweep=IvSweepSettings(s.amplitude_v, s.offset_v, s.points_per_cycle, s.cycles,
                              s.sweep_rate_v_per_s),
        current_range_a=protocol.amplifier.full_scale_a)


def plan(protocol: CafmIvSweepProtocol, devices, bench: Bench, md: dict[str, Any]):
    from vegard.plans.cafm_iv_sweep import cafm_iv_sweep

    return cafm_iv_sweep(devices[ROLE], settings_of(protocol), md=md)


def analyses(figures_for):
    from vegard.analysis.cafm_iv_map import CafmIvAnalysis

    return [CafmIvAnalysis(figures_for)]


TRUTH = ("switching_threshold_v", "on_conductance_s", "off_conductance_s",
         "stray_capacitance_f")


def ground_truth(lab: Any, names: dict[str, str], analysis: dict[str, Any]) -> dict[str, Any]:
    """The simulator's V_th and conductances at each analysed point, and the errors of the
    set and reset thresholds the analysis found (V)."""
    import numpy as np

    model = lab.models.get(names[ROLE])
    per_point = (analysis or {}).get("per_point") or {}
    if model is None or not per_point:
        return {}
    sweeps = model.readouts.cafm.truth()
    if not sweeps:
        return {}
    truth = nearest_truth(per_point, sweeps, TRUTH)
    result: dict[str, Any] = {"per_point": {
        name: [None if not np.isfinite(v) else float(v) for v in values]
        for name, values in truth.items()}}
    for name in TRUTH:
        result[f"{name}_mean"] = float(np.nanmean(truth[name]))
    for found, sign in (("set_threshold_v", 1.0), ("reset_threshold_v", -1.0)):
        measured = np.array([np.nan if v is None else v for v in per_point[found]], dtype=float)
        error = measured - sign * truth["switching_threshold_v"]
        error = error[np.isfinite(error)]
        result[f"{found}_max_error_v"] = float(np.max(np.abs(error))) if error.size else None
    return {"cafm_iv": result,
            "arrays": {f"cafm_iv.{name}": values for name, values in truth.items()}}


SUMMARY = (
    ("set_threshold_v_mean", "set threshold (mean)", "V"),
    ("reset_threshold_v_mean", "reset threshold (mean)", "V"),
    ("loop_area_na_v_mean", "I-V loop area (mean)", "nA·V"),
    ("lobe_area_na_v_mean", "I-V lobe area, C·dV/dt removed", "nA·V"),
    ("switched_conductance_ns_mean", "switched conductance ΔG (mean)", "nS"),
    ("stray_capacitance_pf_mean", "stray capacitance (mean)", "pF"),
    ("sweep_step_v", "sweep step", "V"),
    ("saturated_samples", "samples at amplifier full scale", ""),
)


def summary_lines(analysis: dict[str, Any]) -> list[str]:
    return grid_summary_lines(analysis, SUMMARY, "points with a threshold")


KIND = ProtocolKind(
    name="cafm_iv_sweep", model=CafmIvSweepProtocol, roles=roles, check=check, plan=plan,
    analyses=analyses, summary_lines=summary_lines, ground_truth=ground_truth,
    canned_readings=no_canned_readings,
)
