"""What the tr-KPFM and c-AFM protocols share: the grid's and the peak bias's checks
against the profile's AFM limits, before anything is sent."""

from __future__ import annotations

from pathlib import Path

from vegard.config.errors import ConfigError
from vegard.registry import Bench

from .be_spectroscopy_settings import SpectroscopyGrid


def check_peak_bias(path: Path, bench: Bench, fields: str, peak_v: float) -> None:
    afm = bench.settings["afm"]
    if peak_v > afm.maximum_bias_v:
        raise ConfigError(
            f"{path}: {fields} = {peak_v:g} V is not valid: allowed: ≤ "
            f"{afm.maximum_bias_v:g} V ({bench.where('afm', 'maximum_bias_v')})")


def check_grid(path: Path, bench: Bench, grid: SpectroscopyGrid) -> None:
    half_range_nm = bench.settings["afm"].scan_range_nm / 2
    for axis, center, size in zip("xy", grid.center_nm, grid.size_nm, strict=True):
        reach_nm = abs(center) + size / 2
        if reach_nm > half_range_nm:
            raise ConfigError(
                f"{path}: grid {axis}: |center| + size/2 = {reach_nm:g} nm is not valid: "
                f"allowed: ≤ {half_range_nm:g} nm (scanner range of profile {bench.profile!r})")


def scan_area(grid: SpectroscopyGrid):
    from vegard.instruments.afm_driver import ScanArea

    return ScanArea(*grid.center_nm, *grid.size_nm, *grid.points)


def summary_line(label: str, value, unit: str) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"  {label:<34} {value:.4g} {unit}".rstrip()
    return None


def nearest_truth(per_point: dict, truth: dict, names) -> dict:
    """The truth of the last record taken nearest to each analysed point (NaN where none)."""
    import numpy as np

    x = np.array([np.nan if v is None else v for v in per_point["x_nm"]])
    y = np.array([np.nan if v is None else v for v in per_point["y_nm"]])
    distance = np.hypot(x[:, None] - truth["sample_x_nm"][None, :],
                        y[:, None] - truth["sample_y_nm"][None, :])
    nearest = distance.shape[1] - 1 - np.argmin(np.where(
        np.isfinite(distance), distance, np.inf)[:, ::-1], axis=1)
    measured = np.isfinite(x)
    return {name: np.where(measured, truth[name][nearest], np.nan) for name in names}
