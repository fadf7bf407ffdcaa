"""`forc_spectroscopy`: first-order reversal curves (FORC) on a grid of points, loop area
against peak bias and the threshold V_c where it departs from zero."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from vegard.config.models import ProtocolSettings, StrictModel
from vegard.registry import Bench, ProtocolKind

from .be_spectroscopy_settings import SpectroscopyExcitation, SpectroscopyGrid
from .esm_settings import AFM_DRIVER
from .point_spectroscopy_checks import (
    check_grid,
    check_tip_bias,
    compare,
    grid_summary_lines,
    nearest_truth,
    no_canned_readings,
)

ROLE = "afm"


class ForcSweep(StrictModel):
    """Symmetric triangles 0 → +V_p → 0 → −V_p → 0 (DC modulation: each write step followed
    by a read step), V_p stepped evenly from `peak_start_v` to `peak_end_v`."""

    peak_start_v: float = Field(gt=0, le=10)
    peak_end_v: float = Field(gt=0, le=10)
    forc_cycles: int = Field(ge=3, le=64)
    """Peaks swept (at least 3: the threshold needs zero and growing areas)."""
    steps_per_cycle: int = Field(32, ge=8, le=1024)
    cycles_per_forc: int = Field(2, ge=2, le=16)
    """Each cycle run this often; the loop is the mean of the repeats after the first (the
    first of a new peak starts newly moved sites from where they were, so it is not a closed
    loop)."""
    read_bias_v: float = Field(0.0, ge=-10, le=10)

    @field_validator("steps_per_cycle")
    @classmethod
    def _quarters(cls, steps: int) -> int:
        if steps % 4:
            raise ValueError(f"{steps} is not a multiple of 4 (four equal ramps per cycle)")
        return steps

    @model_validator(mode="after")
    def _peaks_grow(self) -> ForcSweep:
        if not self.peak_end_v > self.peak_start_v:
            raise ValueError(f"peak_end_v = {self.peak_end_v:g} V must be above peak_start_v "
                             f"= {self.peak_start_v:g} V (peaks grow over the FORC cycles)")
        return self


class ForcSpectroscopyProtocol(ProtocolSettings):
    protocol: Literal["forc_spectroscopy"]
    grid: SpectroscopyGrid
    forc: ForcSweep
    excitation: SpectroscopyExcitation


def roles(protocol: ForcSpectroscopyProtocol) -> dict[str, str]:
    return {ROLE: AFM_DRIVER}


def check(protocol: ForcSpectroscopyProtocol, bench: Bench, path: Path) -> None:
    f, drive_v = protocol.forc, protocol.excitation.drive_amplitude_v
    check_tip_bias(bench, path, [
        ("forc.peak_end_v + excitation.drive_amplitude_v", f.peak_end_v + drive_v),
        ("|forc.read_bias_v| + excitation.drive_amplitude_v", abs(f.read_bias_v) + drive_v),
    ])
    check_grid(protocol.grid, bench, path)


def settings_of(protocol: ForcSpectroscopyProtocol):
    from vegard.instruments.forc_relaxation_settings import ForcSweepSettings
    from vegard.plans.forc_spectroscopy import ForcSpectroscopySettings

    from .point_spectroscopy_checks import readout_of

    f = protocol.forc
    return ForcSpectroscopySettings(
        readout=readout_of(protocol),
        forc=ForcSweepSettings(f.peak_start_v, f.peak_end_v, f.forc_cycles, f.steps_per_cycle,
                               f.cycles_per_forc, f.read_bias_v))


def plan(protocol: ForcSpectroscopyProtocol, devices, bench: Bench, md: dict[str, Any]):
    from vegard.plans.forc_spectroscopy import forc_spectroscopy

    return forc_spectroscopy(devices[ROLE], settings_of(protocol), md=md)


def analyses(figures_for):
    from vegard.analysis.forc_map import ForcMapAnalysis

    return [ForcMapAnalysis(figures_for)]


def ground_truth(lab: Any, names: dict[str, str], analysis: dict[str, Any]) -> dict[str, Any]:
    """The simulator's V_c and κ at each analysed point (its last FORC sweep nearest to it)
    and the analysis's rms errors against them."""
    model = lab.models.get(names[ROLE])
    per_point = (analysis or {}).get("per_point") or {}
    if model is None or not per_point:
        return {}
    records = model.forc_relaxation.forc_truth()
    if not records:
        return {}
    truth = nearest_truth(per_point, records, ("threshold_v", "area_slope_pm"))
    return {"forc": compare(per_point, truth, relative=("area_slope_pm",)),
            "arrays": {f"forc.{name}": values for name, values in truth.items()}}


SUMMARY = (
    ("threshold_v_mean", "V_c (FORC threshold, mean)", "V"),
    ("area_slope_pm_mean", "κ = d(area)/dV_p (mean)", "pm·V/V"),
    ("forc_step_v", "FORC step (V_c resolution)", "V"),
)


def summary_lines(analysis: dict[str, Any]) -> list[str]:
    return grid_summary_lines(analysis, SUMMARY, "points with a threshold")


KIND = ProtocolKind(
    name="forc_spectroscopy", model=ForcSpectroscopyProtocol, roles=roles, check=check,
    plan=plan, analyses=analyses, summary_lines=summary_lines, ground_truth=ground_truth,
    canned_readings=no_canned_readings,
)
