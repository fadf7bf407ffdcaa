"""`eels_grain_boundary`: vibrational STEM-EELS line scans across a grain boundary (aloof
spectrum, vibrational, valence-loss and core-loss passes, drift re-registered between)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from vegard.config.models import ProtocolSettings
from vegard.registry import Bench, ProtocolKind

from .eels_settings import (
    STEM_DRIVER,
    AloofSpectrum,
    LineAnalysisSettings,
    LineScan,
    Registration,
    SaturationGuard,
    SpectrometerPass,
    check_stem,
)

ROLE = "stem"
PASSES = ("vibrational", "valence_loss", "core_loss")


class EelsGrainBoundaryProtocol(ProtocolSettings):
    protocol: Literal["eels_grain_boundary"]
    line: LineScan
    aloof: AloofSpectrum
    vibrational: SpectrometerPass
    valence_loss: SpectrometerPass
    core_loss: SpectrometerPass
    registration: Registration = Registration()
    saturation: SaturationGuard = SaturationGuard()
    analysis: LineAnalysisSettings = LineAnalysisSettings()

    def passes(self) -> dict[str, SpectrometerPass]:
        return {name: getattr(self, name) for name in PASSES}


def roles(protocol: EelsGrainBoundaryProtocol) -> dict[str, str]:
    return {ROLE: STEM_DRIVER}


def check(protocol: EelsGrainBoundaryProtocol, bench: Bench, path: Path) -> None:
    check_stem(protocol, bench, ROLE, bench.settings[ROLE].camera_channels, path)


def settings_of(protocol: EelsGrainBoundaryProtocol):
    from vegard.plans.eels_grain_boundary import EelsLineScanSettings, EelsPass

    line, aloof = protocol.line, protocol.aloof
    return EelsLineScanSettings(
        field_of_view_nm=line.field_of_view_nm, start_nm=line.start_nm, end_nm=line.end_nm,
        pixels=line.pixels, flyback_ms=line.flyback_ms,
        aloof_position_nm=aloof.position_nm, aloof_exposure_ms=aloof.exposure_ms,
        aloof_spectra=aloof.spectra,
        passes=[EelsPass(name, p.dispersion_mev_per_channel, p.energy_offset_mev,
                         p.exposure_ms, p.frames) for name, p in protocol.passes().items()],
        registration_exposure_ms=(protocol.registration.exposure_ms
                                  if protocol.registration.enabled else None),
        saturation_action=protocol.saturation.action,  # type: ignore[arg-type]
        saturation_headroom=protocol.saturation.headroom,
    )


def plan(protocol: EelsGrainBoundaryProtocol, devices, bench: Bench, md: dict[str, Any]):
    from vegard.plans.eels_grain_boundary import eels_grain_boundary

    return eels_grain_boundary(devices[ROLE], settings_of(protocol), md=md)


def analyses(figures_for):
    from vegard.analysis.eels_line import EelsLineAnalysis

    return [EelsLineAnalysis(figures_for)]


def ground_truth(lab: Any, names: dict[str, str], analysis: dict[str, Any]) -> dict[str, Any]:
    """The specimen's true boundary shift and Li:Co change, what they imply, and the shift
    the analysis can measure: the true LDO centre averaged over the pixels of the regions
    it pooled (a graded boundary seen through 1 nm pixels shows less than its peak)."""
    model = lab.models.get(names[ROLE])
    if model is None:
        return {}
    parameters = model.specimen.parameters
    shift_mev = float(parameters["ldo_boundary_shift_mev"])
    centre_mev = float(parameters["ldo_centre_mev"])
    truth = {
        "ldo_boundary_shift_mev": shift_mev,
        "ldo_centre_bulk_mev": centre_mev,
        "activation_energy_change_fraction": 2.0 * shift_mev / centre_mev,
        "li_to_co_boundary_change_fraction": float(parameters["li_to_co_boundary_change"]),
        "boundary_position_nm": float(parameters["boundary_position_nm"]),
        "boundary_width_nm": float(parameters["boundary_width_nm"]),
    }
    pooled = _region_mean_shift_mev(model.truth_arrays(), analysis)
    if pooled is not None:
        truth["ldo_boundary_shift_region_mean_mev"] = pooled
    return truth


def _region_mean_shift_mev(arrays: dict[str, Any], analysis: dict[str, Any]) -> float | None:
    """Boundary − mean(grains) of the true per-pixel LDO centre of the vibrational pass
    (the longest fine-dispersion line), over the analysis's own region labels."""
    import numpy as np

    regions = (analysis.get("profiles") or {}).get("region")
    if not regions:
        return None
    best, best_exposure = None, -1.0
    for key, line_scan in arrays.items():
        if not key.endswith(".line_scan") or not np.all(line_scan):
            continue
        prefix = key.removesuffix(".line_scan")
        dispersion = float(np.max(arrays[f"{prefix}.dispersion_mev_per_channel"]))
        exposure = float(np.max(arrays[f"{prefix}.exposure_ms"]))
        if dispersion <= 1.0 and exposure > best_exposure and \
                len(arrays[f"{prefix}.ldo_centre_mev"]) == len(regions):
            best, best_exposure = prefix, exposure
    if best is None:
        return None
    labels = np.array([-1 if r is None else r for r in regions])
    centre = np.asarray(arrays[f"{best}.ldo_centre_mev"], dtype=float)
    grains = [np.nanmean(centre[labels == g]) for g in (0, 2) if np.any(labels == g)]
    if not grains or not np.any(labels == 1):
        return None
    return float(np.nanmean(centre[labels == 1]) - np.mean(grains))


def summary_lines(analysis: dict[str, Any]) -> list[str]:
    def number(key: str) -> float | None:
        value = analysis.get(key)
        return float(value) if isinstance(value, int | float) else None

    lines = []
    shift, stderr = number("ldo_boundary_shift_mev"), number("ldo_boundary_shift_stderr_mev")
    if shift is not None:
        spread = f" ± {stderr:.2f}" if stderr is not None else ""
        lines.append(f"  LDO phonon shift at the boundary  {shift:+.2f}{spread} meV")
    change = number("activation_energy_change_fraction")
    if change is not None:
        lines.append(f"  ΔE_A/E_A = 2Δω/ω                  {100 * change:+.1f} %")
    li_co = number("li_to_co_boundary_change_fraction")
    if li_co is not None:
        lines.append(f"  Li:Co change at the boundary       {100 * li_co:+.1f} %")
    paper = analysis.get("paper") or {}
    paper_shift = paper.get("ldo_boundary_shift_mev") if isinstance(paper, dict) else None
    if isinstance(paper_shift, int | float):
        lines.append(f"  paper's pipeline: shift            {paper_shift:+.2f} meV")
    return lines


def canned_readings(protocol: EelsGrainBoundaryProtocol, bench: Bench):
    """`vegard check`: a flat HAADF line (no drift) and an unsaturated test spectrum."""
    import numpy as np

    from vegard.plan_check import CannedReadings

    name = bench.names[ROLE]
    return CannedReadings({
        f"{name}.camera.haadf_line_counts": np.ones(protocol.line.pixels),
        f"{name}.camera.peak_counts": 1.0e5,
        f"{name}.camera.saturation_counts": 8.0e6,
    })


KIND = ProtocolKind(
    name="eels_grain_boundary", model=EelsGrainBoundaryProtocol, roles=roles, check=check,
    plan=plan, analyses=analyses, summary_lines=summary_lines, ground_truth=ground_truth,
    canned_readings=canned_readings,
)
