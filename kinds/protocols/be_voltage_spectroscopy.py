"""`be_voltage_spectroscopy`: BE hysteresis loops (DC-modulation sweeps) on a grid of points."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from vegard.config.models import ProtocolSettings
from vegard.registry import Bench, ProtocolKind

from .be_spectroscopy_settings import (
    DcSweep,
    SpectroscopyExcitation,
    SpectroscopyGrid,
    check_spectroscopy,
    settings_of,
)
from .esm_settings import AFM_DRIVER
from .point_spectroscopy_checks import (
    compare,
    grid_summary_lines,
    nearest_truth,
    no_canned_readings,
)

ROLE = "afm"
TRUTH_QUANTITIES = ("coercive_voltage_negative_v", "coercive_voltage_positive_v",
                    "switchable_response_pm")


class BeVoltageSpectroscopyProtocol(ProtocolSettings):
    protocol: Literal["be_voltage_spectroscopy"]
    grid: SpectroscopyGrid
    sweep: DcSweep
    excitation: SpectroscopyExcitation


def roles(protocol: BeVoltageSpectroscopyProtocol) -> dict[str, str]:
    return {ROLE: AFM_DRIVER}


def check(protocol: BeVoltageSpectroscopyProtocol, bench: Bench, path: Path) -> None:
    check_spectroscopy(protocol, bench, path)


def plan(protocol: BeVoltageSpectroscopyProtocol, devices, bench: Bench, md: dict[str, Any]):
    from vegard.plans.be_voltage_spectroscopy import be_voltage_spectroscopy

    return be_voltage_spectroscopy(devices[ROLE], settings_of(protocol), md=md)


def analyses(figures_for):
    from vegard.analysis.be_spectroscopy_map import BeSpectroscopyMapAnalysis

    return [BeSpectroscopyMapAnalysis(figures_for)]


def ground_truth(lab: Any, names: dict[str, str], analysis: dict[str, Any]) -> dict[str, Any]:
    """The simulator's truth at each analysed point (the last sweep taken nearest to it),
    and the analysis's rms errors against it over the points it fitted."""
    model = lab.models.get(names[ROLE])
    per_point = (analysis or {}).get("per_point") or {}
    if model is None or not per_point:
        return {}
    sweeps = model.sweep_truth()
    if not sweeps:
        return {}
    truth = nearest_truth(per_point, sweeps, TRUTH_QUANTITIES)
    truth["imprint_v"] = 0.5 * (truth["coercive_voltage_negative_v"]
                                + truth["coercive_voltage_positive_v"])
    result = compare(per_point, truth)
    return {"be_spectroscopy": result,
            "arrays": {f"be_spectroscopy.{name}": values for name, values in truth.items()}}


SUMMARY = (
    ("coercive_voltage_negative_v_mean", "V− (coercive, mean)", "V"),
    ("coercive_voltage_positive_v_mean", "V+ (coercive, mean)", "V"),
    ("imprint_v_mean", "imprint (mean)", "V"),
    ("switchable_response_pm_mean", "switchable response (mean)", "pm"),
    ("loop_area_pm_v_mean", "loop area (mean)", "pm·V"),
    ("r_squared_mean", "loop fit r² (mean)", ""),
)


def summary_lines(analysis: dict[str, Any]) -> list[str]:
    return grid_summary_lines(analysis, SUMMARY)


KIND = ProtocolKind(
    name="be_voltage_spectroscopy", model=BeVoltageSpectroscopyProtocol, roles=roles,
    check=check, plan=plan, analyses=analyses, summary_lines=summary_lines,
    ground_truth=ground_truth, canned_readings=no_canned_readings,
)
