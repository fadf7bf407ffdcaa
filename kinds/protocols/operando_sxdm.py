"""`operando_sxdm`: map a battery crystal by SXDM while its cell charges; checks against the
profile, the plan, the beamline estimate and the simulator truth of each map."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np

from vegard.config.errors import ConfigError
from vegard.diffraction_geometry import DiffractometerGeometry, bragg_angles, centred_roi
from vegard.instruments.potentiostat_device import c_rate_current_a
from vegard.plans.bragg_peak_search import PeakSearchSettings, spread_positions_um
from vegard.plans.operando_sxdm import ChargeSettings, operando_sxdm
from vegard.plans.rocking_map import RockingMapSettings, raster_axis_um
from vegard.registry import Bench, ProtocolKind

from .sxdm_estimate import BYTES_PER_COUNT, estimate_operando_sxdm
from .sxdm_settings import OperandoSxdmProtocol

ROLES = {"potentiostat": "scpi_potentiostat", "diffractometer": "epics_motors",
         "area_detector": "maxipix"}
ENERGY_EV = 10_000.0
"""Photon energy the first peak search assumes (the diffractometer's energy axis is read
before the Q conversion of every search and map)."""


def charge_current_a(protocol: OperandoSxdmProtocol) -> float:
    cell = protocol.cell
    return c_rate_current_a(cell.c_rate, active_mass_mg=cell.active_mass_mg,
                            capacity_mah_per_g=cell.capacity_mah_per_g)


def check_operando_sxdm(protocol: OperandoSxdmProtocol, bench: Bench, path: Path) -> None:
    """Everything that would move hardware beyond the profile's limits is refused here."""
    potentiostat = bench.settings["potentiostat"]
    diffractometer = bench.settings["diffractometer"]
    detector = bench.settings["area_detector"]
    where = f"(profile {bench.profile!r})"
    current_a = charge_current_a(protocol)
    if current_a > potentiostat.maximum_current_a:
        raise ConfigError(
            f"{path}: cell.c_rate = {protocol.cell.c_rate:g} gives {current_a:g} A, which is not "
            f"valid: allowed: ≤ {potentiostat.maximum_current_a:g} A "
            f"({bench.where('potentiostat', 'maximum_current_a')})")
    if protocol.cell.voltage_limit_v > potentiostat.maximum_voltage_v:
        raise ConfigError(
            f"{path}: cell.voltage_limit_v = {protocol.cell.voltage_limit_v:g} V is not valid: "
            f"allowed: ≤ {potentiostat.maximum_voltage_v:g} V "
            f"({bench.where('potentiostat', 'maximum_voltage_v')})")
    for field, exposure in (("detector.exposure_s", protocol.detector.exposure_s),
                            ("peak_search.exposure_s", protocol.peak_search.exposure_s)):
        if exposure > detector.maximum_exposure_s:
            raise ConfigError(
                f"{path}: {field} = {exposure:g} s is not valid: allowed: ≤ "
                f"{detector.maximum_exposure_s:g} s per frame (dose budget, "
                f"{bench.where('area_detector', 'maximum_exposure_s')})")
    for field, (rows, cols) in (("detector.roi_pixels", protocol.detector.roi_pixels),
                                ("peak_search.roi_pixels", protocol.peak_search.roi_pixels)):
        if rows > detector.pixels[0] or cols > detector.pixels[1]:
            raise ConfigError(
                f"{path}: {field} = [{rows}, {cols}] is not valid: allowed: ≤ "
                f"[{detector.pixels[0]}, {detector.pixels[1]}] (detector size {where})")
    half_range_um = diffractometer.sample_range_um / 2
    for axis, center, size in zip("xy", protocol.map.center_um, protocol.map.size_um,
                                  strict=True):
        reach_um = abs(center) + size / 2
        if reach_um > half_range_um:
            raise ConfigError(
                f"{path}: map {axis}: |center| + size/2 = {reach_um:g} µm is not valid: "
                f"allowed: ≤ {half_range_um:g} µm (sample piezo range {where})")
    check_full_map(protocol, bench, path)
    shortest_d = geometry_of(bench).wavelength_angstrom / 2
    if protocol.start_d400_angstrom < shortest_d:
        raise ConfigError(
            f"{path}: start_d400_angstrom = {protocol.start_d400_angstrom:g} Å is not valid: "
            f"allowed: ≥ λ/2 = {shortest_d:.4g} Å at "
            f"{ENERGY_EV:g} eV (no Bragg reflection otherwise)")


def check_full_map(protocol: OperandoSxdmProtocol, bench: Bench, path: Path) -> None:
    """`full_map` (`--full-map`) names a map the series takes, in an estimate-only protocol."""
    number = protocol.full_map
    if number is None:
        return
    field = f"{path}: full_map (--full-map) = {number!r}"
    if protocol.dry_run != "estimate":
        raise ConfigError(f"{field} is not valid: allowed only with dry_run: estimate (this "
                          f"protocol has dry_run: {protocol.dry_run}; every map is simulated)")
    estimate = estimate_operando_sxdm(protocol, bench.settings["area_detector"])
    last = min(protocol.maps.count, estimate["maps"])
    if not 1 <= number <= last:
        raise ConfigError(
            f"{field} is not valid: allowed: 1 … {last} (maps.count = {protocol.maps.count}; "
            f"the {estimate['charge_duration_h']:.3g} h charge lasts for {estimate['maps']} "
            f"maps of {estimate['map_duration_min']:.1f} min)")


def full_map_start_s(protocol: OperandoSxdmProtocol, estimate: dict[str, Any]) -> float:
    """When map `full_map` starts after the charge does: its predecessors' map periods."""
    period_s = max(estimate["map_duration_min"] * 60.0, protocol.maps.interval_s)
    return (int(protocol.full_map or 1) - 1) * period_s


def geometry_of(bench: Bench) -> DiffractometerGeometry:
    detector = bench.settings["area_detector"]
    row, col = detector.direct_beam_pixel
    return DiffractometerGeometry(
        distance_m=detector.distance_m, pixel_size_m=detector.pixel_size_m,
        pixels=tuple(detector.pixels), center_row=row, center_col=col, energy_ev=ENERGY_EV)


def map_settings_of(protocol: OperandoSxdmProtocol, bench: Bench) -> RockingMapSettings:
    raster = protocol.map
    (cx, cy), (sx, sy), (nx, ny) = raster.center_um, raster.size_um, raster.pixels
    rows, cols = protocol.detector.roi_pixels
    return RockingMapSettings(
        x_um=raster_axis_um(cx, sx, nx),
        y_um=raster_axis_um(cy, sy, ny),
        rocking_points=protocol.rocking.points,
        rocking_step_deg=protocol.rocking.step_deg,
        exposure_s=protocol.detector.exposure_s,
        roi=centred_roi(geometry_of(bench), rows, cols),
    )


def plan_operando_sxdm(protocol: OperandoSxdmProtocol, devices: dict[str, Any],
                       bench: Bench, md: dict[str, Any]):
    detector_settings = bench.settings["area_detector"]
    estimate = estimate_operando_sxdm(protocol, detector_settings)
    md = {**md, "sxdm_estimate": estimate}
    first_map, delay_s, max_maps = 0, 0.0, protocol.maps.count
    if protocol.dry_run == "estimate" and md.get("dry_run"):
        if protocol.full_map is None:
            return _estimate_only(devices, md)
        # one map at full size, at its place in the charge; the others stay estimated
        first_map, delay_s, max_maps = protocol.full_map - 1, full_map_start_s(
            protocol, estimate), 1
        md = {**md, "sxdm_full_map": protocol.full_map}
    geometry = geometry_of(bench)
    settings = map_settings_of(protocol, bench)
    search = protocol.peak_search
    theta = float(bragg_angles(protocol.start_d400_angstrom, geometry.energy_ev))
    return operando_sxdm(
        devices["potentiostat"], devices["diffractometer"], devices["area_detector"],
        charge=ChargeSettings(
            charge_current_a(protocol), protocol.cell.voltage_limit_v,
            expected_capacity_mah=protocol.cell.active_mass_mg
            * protocol.cell.capacity_mah_per_g / 1000.0,
        ),
        map_settings=settings,
        search=PeakSearchSettings(
            positions_um=spread_positions_um(settings.x_um, settings.y_um),
            half_range_deg=search.half_range_deg, step_deg=search.step_deg,
            exposure_s=search.exposure_s,
            roi=centred_roi(geometry, *search.roi_pixels)),
        geometry=geometry,
        first_eta_center_deg=theta,
        first_delta_deg=2 * theta,
        max_maps=max_maps,
        map_interval_s=protocol.maps.interval_s,
        first_map_index=first_map,
        first_map_delay_s=delay_s,
        md=md,
    )


def _estimate_only(devices: dict[str, Any], md: dict[str, Any]):
    """A dry run that reads every device once (they answer) and records the estimate."""

    @bpp.run_decorator(md={**md, "plan_name": "operando_sxdm_estimate"})
    def inner():
        yield from bps.trigger_and_read([devices["potentiostat"], devices["diffractometer"]],
                                        name="baseline")

    return (yield from inner())


class EstimateReport:
    """Puts the start document's `sxdm_estimate` into the result (live and replay), and for
    a `full_map` dry run the simulated map's frames as stored: their bytes (uint16, as the
    estimate counts them) and the HDF5 files' size on disk (compressed)."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self._full_map: int | None = None
        self._frame_keys: dict[str, tuple[int, int]] = {}  # key → (frames, pixels) per line
        self._resources: dict[str, str] = {}  # stream resource uid → data key
        self._files: set[str] = set()
        self._bytes = 0
        self._frames = 0

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start" and "sxdm_estimate" in doc:
            self.result = {"estimate": doc["sxdm_estimate"]}
            self._full_map = doc.get("sxdm_full_map")
        elif self._full_map is None:
            return
        elif name == "descriptor" and doc.get("name") == "primary":
            for key, spec in doc["data_keys"].items():
                shape = spec.get("shape") or []
                if spec.get("external") == "STREAM:" and len(shape) == 4:  # 1 × nx × R × C
                    self._frame_keys[key] = (shape[1], shape[2] * shape[3])
        elif name == "stream_resource" and doc.get("data_key") in self._frame_keys:
            self._resources[doc["uid"]] = doc["data_key"]
            self._files.add(doc["uri"].removeprefix("file://localhost"))
        elif name == "stream_datum" and doc.get("stream_resource") in self._resources:
            frames, pixels = self._frame_keys[self._resources[doc["stream_resource"]]]
            lines = doc["indices"]["stop"] - doc["indices"]["start"]
            self._frames += lines * frames
            self._bytes += lines * frames * pixels * BYTES_PER_COUNT
        elif name == "stop" and self.result is not None:
            on_disk = sum(Path(f).stat().st_size for f in self._files if Path(f).is_file())
            self.result["full_map"] = {"map_number": self._full_map, "frames": self._frames,
                                       "data_volume_gb": self._bytes / 1e9,
                                       "stored_gb": on_disk / 1e9}


def ground_truth_maps(lab: Any, names: dict[str, str], analysis: dict[str, Any]
                      ) -> dict[str, Any]:
    """Simulator truth for each analysed map (its time span), and per-pixel truth arrays."""
    model = lab.models.get(names["area_detector"])
    maps = analysis.get("maps") or []
    if model is None or not maps:
        return {}
    summaries, arrays = [], {}
    for entry in maps:
        start_s, end_s = entry["time_span_s"]
        truth = model.map_truth(start_s, end_s)
        index = entry["map_index"]
        summaries.append({
            "map_index": index,
            "d400_mean_angstrom": _finite(truth["d400_mean_angstrom"]),
            "phase": truth["phase"],
            "lithium_content": _finite(truth["x_li_mean"]),
        })
        for key in ("x_um", "y_um", "d400_angstrom", "tilt_altitude_deg", "tilt_azimuth_deg",
                    "intensity", "mask"):
            arrays[f"{names['area_detector']}.map{index}.{key}"] = np.asarray(truth[key])
    return {"maps": summaries, "arrays": arrays}


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def summary_lines(analysis: dict[str, Any]) -> list[str]:
    """Per map of an operando SXDM run: potential, d400, microstrain, tilt; and the estimate."""
    lines = []
    for entry in analysis.get("maps") or []:
        if not isinstance(entry, dict) or "d400_mean_angstrom" not in entry:
            continue
        values = [entry.get(key) for key in ("potential_v", "d400_mean_angstrom",
                                             "microstrain", "tilt_altitude_max_deg")]
        if not all(isinstance(v, (int, float)) for v in values):
            lines.append(f"  map {entry.get('map_index')}: not analysed")
            continue
        potential, d400, microstrain, tilt = values
        lines.append(f"  map {entry['map_index']:>2}  U = {potential:.3f} V  d400 = {d400:.4f} Å"
                     f"  microstrain {microstrain:.1e}  tilt ≤ {tilt:.3f}°")
    plateaus = (analysis.get("charge") or {}).get("plateaus_v")
    if plateaus and "full_map" not in analysis:  # one map's charge shows no plateaus
        lines.append("  plateaus      " + ", ".join(f"{v:.3f} V" for v in plateaus))
    estimate = analysis.get("estimate")
    if isinstance(estimate, dict):
        lines.append(
            f"  at the beamline: {estimate['maps']} maps of "
            f"{estimate['map_duration_min']:.1f} min, {estimate['duration_h']:.1f} h, "
            f"{estimate['frames']:,} frames, "
            f"{estimate['data_volume_gb']:.1f} GB, dose {estimate['dose_mgy']:.3g} MGy "
            f"({estimate['exposure_per_frame_s'] * 1e3:g} ms per frame)")
        lines.extend(full_map_lines(analysis, estimate))
    return lines


def full_map_lines(analysis: dict[str, Any], estimate: dict[str, Any]) -> list[str]:
    """The simulated full-size map next to the estimate of one map."""
    full = analysis.get("full_map")
    simulated = [m for m in analysis.get("maps") or [] if isinstance(m, dict)]
    if not isinstance(full, dict) or not simulated:
        return []
    span_s = simulated[0].get("frame_span_s")
    lines = [f"  full map {full['map_number']} simulated: {full['frames']:,} frames "
             f"(estimate {estimate['frames_per_map']:,})"]
    if isinstance(span_s, (int, float)):
        lines.append(f"    frames span {span_s:.1f} s, estimate {estimate['frame_span_s']:.1f} s "
                     f"({100 * (span_s / estimate['frame_span_s'] - 1):+.3f} %)")
    lines.append(f"    data {full['data_volume_gb']:.4g} GB, estimate "
                 f"{estimate['data_volume_per_map_gb']:.4g} GB; stored "
                 f"{full['stored_gb']:.3g} GB on disk (compressed)")
    return lines


def analyses(figures_for):
    from vegard.analysis.sxdm_operando import SxdmOperandoAnalysis

    return [SxdmOperandoAnalysis(figures_for), EstimateReport()]


def canned_readings(protocol: OperandoSxdmProtocol, bench: Bench):
    """`vegard check`: one Bragg peak mid-search; the cell never reaches its limit."""
    from vegard.canned_readings import search_volume_counts
    from vegard.plan_check import CannedReadings

    search = protocol.peak_search
    points = round(2 * search.half_range_deg / search.step_deg) + 1  # as find_bragg_peak
    cell = protocol.cell
    return CannedReadings(reads={
        "area_detector.search.counts": search_volume_counts(points, *search.roi_pixels),
        "diffractometer.energy_ev": ENERGY_EV,
        "potentiostat.limit_reached": False,
        "potentiostat.charge_mah": cell.active_mass_mg * cell.capacity_mah_per_g / 1000.0,
    })


KIND = ProtocolKind(
    name="operando_sxdm",
    model=OperandoSxdmProtocol,
    roles=lambda protocol: ROLES,
    check=check_operando_sxdm,
    plan=plan_operando_sxdm,
    analyses=analyses,
    summary_lines=summary_lines,
    ground_truth=ground_truth_maps,
    canned_readings=canned_readings,
)
