"""What the point-spectroscopy protocols (BE voltage, FORC, time relaxation, tr-KPFM, c-AFM)
share: their checks against the profile's AFM limits (peak tip bias, grid within the
scanner) before anything is sent, the BE read-out of their grid, the simulator's truth at
each analysed point, and their summary lines."""

from __future__ import annotations

from pathlib import Path

from vegard.config.errors import ConfigError
from vegard.registry import Bench


def check_tip_bias(bench: Bench, path: Path, peaks: list[tuple[str, float]]) -> None:
    """Each (fields, peak tip voltage) within the profile's `maximum_bias_v`."""
    afm = bench.settings["afm"]
    for fields, peak_v in peaks:
        if peak_v > afm.maximum_bias_v:
            raise ConfigError(
                f"{path}: {fields} = {peak_v:g} V is not valid: allowed: ≤ "
                f"{afm.maximum_bias_v:g} V ({bench.where('afm', 'maximum_bias_v')})")


def check_grid(grid, bench: Bench, path: Path) -> None:
    """The grid (a `SpectroscopyGrid`) within the scanner's range."""
    half_range_nm = bench.settings["afm"].scan_range_nm / 2
    for axis, center, size in zip("xy", grid.center_nm, grid.size_nm, strict=True):
        reach_nm = abs(center) + size / 2
        if reach_nm > half_range_nm:
            raise ConfigError(
                f"{path}: grid {axis}: |center| + size/2 = {reach_nm:g} nm is not valid: "
                f"allowed: ≤ {half_range_nm:g} nm (scanner range of profile {bench.profile!r})")


def scan_area(grid):
    from vegard.instruments.afm_driver import ScanArea

    return ScanArea(*grid.center_nm, *grid.size_nm, *grid.points)


def readout_of(protocol):
    """The plan's grid and BE read-out from the protocol's grid and excitation."""
    from vegard.plans.spectroscopy_grid import BeReadoutGrid

    drive = protocol.excitation
    return BeReadoutGrid(
        area=scan_area(protocol.grid),
        band_hz=drive.band_hz, bins=drive.bins, chirp_duration_s=drive.chirp_duration_s,
        averages=drive.averages, drive_amplitude_v=drive.drive_amplitude_v)


def nearest_truth(per_point: dict, records: dict, names: tuple[str, ...]):
    """The truth of the last record taken nearest each analysed point, NaN where the point
    was not measured: {name: (points,)}."""
    import numpy as np

    x = np.array([np.nan if v is None else v for v in per_point["x_nm"]])
    y = np.array([np.nan if v is None else v for v in per_point["y_nm"]])
    distance = np.hypot(x[:, None] - records["sample_x_nm"][None, :],
                        y[:, None] - records["sample_y_nm"][None, :])
    nearest = distance.shape[1] - 1 - np.argmin(np.where(
        np.isfinite(distance), distance, np.inf)[:, ::-1], axis=1)
    measured = np.isfinite(x)
    return {name: np.where(measured, records[name][nearest], np.nan) for name in names}


def compare(per_point: dict, truth: dict, relative: tuple[str, ...] = ()) -> dict:
    """Truth per point, its mean, and the analysis's rms error (relative for `relative`)."""
    import numpy as np

    result: dict = {"per_point": {
        name: [None if not np.isfinite(v) else float(v) for v in values]
        for name, values in truth.items()}}
    for name, values in truth.items():
        finite = values[np.isfinite(values)]
        result[f"{name}_mean"] = float(finite.mean()) if finite.size else None
        measured = np.array([np.nan if v is None else v for v in per_point.get(name, [])])
        if measured.size != values.size:
            continue
        error = measured - values
        if name in relative:
            error = error / values
        error = error[np.isfinite(error)]
        key = f"{name}_rms_relative_error" if name in relative else f"{name}_rms_error"
        result[key] = float(np.sqrt(np.mean(error**2))) if error.size else None
    return result


def summary_line(label: str, value, unit: str) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"  {label:<34} {value:.4g} {unit}".rstrip()
    return None


def grid_summary_lines(analysis: dict, rows, fitted_label: str = "points fitted") -> list[str]:
    """Points fitted out of points, then a line per (key, label, unit) the analysis gave."""
    lines = []
    if isinstance(analysis.get("points"), int):
        lines.append(f"  {fitted_label:<34} {analysis.get('points_fitted', 0)}"
                     f"/{analysis['points']}")
    for key, label, unit in rows:
        line = summary_line(label, analysis.get(key), unit)
        if line:
            lines.append(line)
    return lines


def no_canned_readings(protocol, bench: Bench):
    """`vegard check`: the plan decides on nothing it reads."""
    from vegard.plan_check import CannedReadings

    return CannedReadings()
