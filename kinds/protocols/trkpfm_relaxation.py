"""`trkpfm_relaxation`: CPD(t) through a lateral bias step on a grid; τ and D = d²/τ."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

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
MAX_SAMPLES = 200_000


class KpfmBiasStep(StrictModel):
    """The lateral bias step (the review's Ca-BFO: 5 V, ~10 s, 20 ms resolution)."""

    step_bias_v: float = Field(ge=-10, le=10)
    baseline_v: float = Field(0.0, ge=-10, le=10)
    before_s: float = Field(1.0, ge=0, le=3600)
    after_s: float = Field(gt=0, le=3600)
    sample_interval_s: float = Field(0.02, ge=1e-3, le=10)

    @model_validator(mode="after")
    def _record(self):
        samples = (self.before_s + self.after_s) / self.sample_interval_s
        if samples > MAX_SAMPLES:
            raise ValueError(f"(before_s + after_s) / sample_interval_s = {samples:g} samples "
                             f"is too many: allowed ≤ {MAX_SAMPLES}")
        if self.after_s < 10 * self.sample_interval_s:
            raise ValueError(f"after_s = {self.after_s:g} s is too short: allowed ≥ 10 × "
                             f"sample_interval_s = {10 * self.sample_interval_s:g} s")
        if self.step_bias_v == self.baseline_v:
            raise ValueError(f"step_bias_v = {self.step_bias_v:g} V equals baseline_v: no step")
        return self


class KpfmFit(StrictModel):
    """How CPD(t) = A + B·exp(−t/τ) is fitted and turned into D = d²/τ."""

    interelectrode_distance_um: float = Field(gt=0, le=10_000)
    fit_start_s: float = Field(0.1, ge=0, le=3600)


class TrKpfmRelaxationProtocol(ProtocolSettings):
    protocol: Literal["trkpfm_relaxation"]
    grid: SpectroscopyGrid
    step: KpfmBiasStep
    analysis: KpfmFit

    @model_validator(mode="after")
    def _fit_window(self):
        if self.analysis.fit_start_s >= 0.5 * self.step.after_s:
            raise ValueError(
                f"analysis.fit_start_s = {self.analysis.fit_start_s:g} s is not valid: "
                f"allowed: < step.after_s / 2 = {0.5 * self.step.after_s:g} s")
        return self


def roles(protocol: TrKpfmRelaxationProtocol) -> dict[str, str]:
    return {ROLE: AFM_DRIVER}


def check(protocol: TrKpfmRelaxationProtocol, bench: Bench, path: Path) -> None:
    step = protocol.step
    check_tip_bias(bench, path, [("max(|step.step_bias_v|, |step.baseline_v|)",
                                  max(abs(step.step_bias_v), abs(step.baseline_v)))])
    check_grid(protocol.grid, bench, path)


def settings_of(protocol: TrKpfmRelaxationProtocol):
    from vegard.instruments.afm_readout_driver import KpfmStepSettings
    from vegard.plans.trkpfm_relaxation import TrKpfmSettings

    s = protocol.step
    return TrKpfmSettings(
        area=scan_area(protocol.grid),
        step=KpfmStepSettings(s.step_bias_v, s.before_s, s.after_s, s.sample_interval_s,
                              s.baseline_v),
        interelectrode_distance_um=protocol.analysis.interelectrode_distance_um,
        fit_start_s=protocol.analysis.fit_start_s)


def plan(protocol: TrKpfmRelaxationProtocol, devices, bench: Bench, md: dict[str, Any]):
    from vegard.plans.trkpfm_relaxation import trkpfm_relaxation

    return trkpfm_relaxation(devices[ROLE], settings_of(protocol), md=md)


def analyses(figures_for):
    from vegard.analysis.trkpfm_map import TrKpfmRelaxationAnalysis

    return [TrKpfmRelaxationAnalysis(figures_for)]


TRUTH = ("relaxation_time_s", "diffusion_coefficient_m2_per_s", "cpd_offset_v",
         "cpd_amplitude_v")


def ground_truth(lab: Any, names: dict[str, str], analysis: dict[str, Any]) -> dict[str, Any]:
    """The simulator's τ, D, A, B at each analysed point and the analysis's relative errors."""
    import numpy as np

    model = lab.models.get(names[ROLE])
    per_point = (analysis or {}).get("per_point") or {}
    if model is None or not per_point:
        return {}
    records = model.readouts.kpfm.truth()
    if not records:
        return {}
    truth = nearest_truth(per_point, records, TRUTH)
    result: dict[str, Any] = {"per_point": {
        name: [None if not np.isfinite(v) else float(v) for v in values]
        for name, values in truth.items()}}
    for name in TRUTH:
        measured = np.array([np.nan if v is None else v for v in per_point[name]], dtype=float)
        result[f"{name}_mean"] = float(np.nanmean(truth[name]))
        relative = (measured - truth[name]) / np.abs(truth[name])
        relative = relative[np.isfinite(relative)]
        result[f"{name}_max_relative_error"] = (
            float(np.max(np.abs(relative))) if relative.size else None)
    return {"trkpfm": result,
            "arrays": {f"trkpfm.{name}": values for name, values in truth.items()}}


SUMMARY = (
    ("relaxation_time_s_mean", "relaxation time τ (mean)", "s"),
    ("diffusion_coefficient_m2_per_s_mean", "D = d²/τ (mean)", "m²/s"),
    ("diffusion_coefficient_cm2_per_s_mean", "D = d²/τ (mean)", "cm²/s"),
    ("cpd_amplitude_v_mean", "relaxing CPD B (mean)", "V"),
    ("r_squared_mean", "fit r² (mean)", ""),
)


def summary_lines(analysis: dict[str, Any]) -> list[str]:
    return grid_summary_lines(analysis, SUMMARY)


KIND = ProtocolKind(
    name="trkpfm_relaxation", model=TrKpfmRelaxationProtocol, roles=roles, check=check,
    plan=plan, analyses=analyses, summary_lines=summary_lines, ground_truth=ground_truth,
    canned_readings=no_canned_readings,
)
