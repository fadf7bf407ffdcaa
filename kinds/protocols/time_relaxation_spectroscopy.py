"""`time_relaxation_spectroscopy`: a write pulse at each point of a grid and the strain's
relaxation read after it, fitted with a stretched exponential (τ, β, irreversible part)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from vegard.config.errors import ConfigError
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
TRUTH_QUANTITIES = ("relaxation_time_s", "stretch_exponent", "relaxing_response_pm",
                    "irreversible_response_pm")


class WritePulse(StrictModel):
    """Baseline reads, one write pulse, then reads at evenly spaced steps over the
    relaxation, every read at `read_bias_v`."""

    write_bias_v: float = Field(ge=-10, le=10)
    write_duration_s: float = Field(gt=0, le=100)
    read_duration_s: float = Field(gt=0, le=1e4)
    read_points: int = Field(ge=8, le=4096)
    baseline_points: int = Field(4, ge=1, le=256)
    read_bias_v: float = Field(0.0, ge=-10, le=10)


class TimeRelaxationProtocol(ProtocolSettings):
    protocol: Literal["time_relaxation_spectroscopy"]
    grid: SpectroscopyGrid
    pulse: WritePulse
    excitation: SpectroscopyExcitation


def roles(protocol: TimeRelaxationProtocol) -> dict[str, str]:
    return {ROLE: AFM_DRIVER}


def check(protocol: TimeRelaxationProtocol, bench: Bench, path: Path) -> None:
    p, drive = protocol.pulse, protocol.excitation
    check_tip_bias(bench, path, [
        ("|pulse.write_bias_v| + excitation.drive_amplitude_v",
         abs(p.write_bias_v) + drive.drive_amplitude_v),
        ("|pulse.read_bias_v| + excitation.drive_amplitude_v",
         abs(p.read_bias_v) + drive.drive_amplitude_v),
    ])
    step_s = p.read_duration_s / p.read_points
    spectrum_s = drive.chirp_duration_s * drive.averages
    if spectrum_s > step_s:
        raise ConfigError(
            f"{path}: pulse.read_duration_s / pulse.read_points = {step_s:g} s is not valid: "
            f"allowed: ≥ {spectrum_s:g} s (one spectrum: excitation.chirp_duration_s × "
            "excitation.averages)")
    check_grid(protocol.grid, bench, path)


def settings_of(protocol: TimeRelaxationProtocol):
    from vegard.instruments.forc_relaxation_settings import RelaxationSettings
    from vegard.plans.time_relaxation_spectroscopy import TimeRelaxationSettings

    from .point_spectroscopy_checks import readout_of

    p = protocol.pulse
    return TimeRelaxationSettings(
        readout=readout_of(protocol),
        relaxation=RelaxationSettings(p.write_bias_v, p.write_duration_s, p.read_duration_s,
                                      p.read_points, p.baseline_points, p.read_bias_v))


def plan(protocol: TimeRelaxationProtocol, devices, bench: Bench, md: dict[str, Any]):
    from vegard.plans.time_relaxation_spectroscopy import time_relaxation_spectroscopy

    return time_relaxation_spectroscopy(devices[ROLE], settings_of(protocol), md=md)


def analyses(figures_for):
    from vegard.analysis.relaxation_map import RelaxationMapAnalysis

    return [RelaxationMapAnalysis(figures_for)]


def ground_truth(lab: Any, names: dict[str, str], analysis: dict[str, Any]) -> dict[str, Any]:
    """The simulator's τ (at the temperature measured), β, ΔR and irreversible step at each
    analysed point (its last pulse nearest to it), and the analysis's errors."""
    model = lab.models.get(names[ROLE])
    per_point = (analysis or {}).get("per_point") or {}
    if model is None or not per_point:
        return {}
    records = model.forc_relaxation.relaxation_truth()
    if not records:
        return {}
    truth = nearest_truth(per_point, records, TRUTH_QUANTITIES)
    return {"relaxation": compare(per_point, truth, relative=("relaxation_time_s",)),
            "arrays": {f"relaxation.{name}": values for name, values in truth.items()}}


SUMMARY = (
    ("relaxation_time_s_mean", "τ (relaxation time, mean)", "s"),
    ("stretch_exponent_mean", "β (stretch exponent, mean)", ""),
    ("relaxing_response_pm_mean", "ΔR (relaxing, mean)", "pm"),
    ("irreversible_response_pm_mean", "irreversible step (mean)", "pm"),
)


def summary_lines(analysis: dict[str, Any]) -> list[str]:
    return grid_summary_lines(analysis, SUMMARY)


KIND = ProtocolKind(
    name="time_relaxation_spectroscopy", model=TimeRelaxationProtocol, roles=roles,
    check=check, plan=plan, analyses=analyses, summary_lines=summary_lines,
    ground_truth=ground_truth, canned_readings=no_canned_readings,
)
