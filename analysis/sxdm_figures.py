"""Figures of an operando SXDM run (PNG, no screen needed).

* per map: integrated intensity, d400, Δd = d − d̄ (10⁻³ Å), the tilt map (hue = azimuth,
  saturation = altitude / largest altitude, masked-out pixels grey), the pole figure (tilt
  altitude as radius, azimuth as angle, points in the tilt map's colours) and the d400
  histogram of the masked-in pixels;
* the charge curve: potential against time with the maps' time spans marked, the plateaus as
  dashed lines, and below the mean d400 of each map against the same time axis.

Drawn with matplotlib's object-oriented API (`Figure`, no pyplot state), so the analysis's
worker thread can draw while the main thread runs the acquisition. Maps are (ny, nx), row 0
at y_um[0], drawn with `origin="lower"` over the raster's pixel-centre coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .esm_figures import robust_limits
from .sxdm_maps import SxdmMaps

_MISSING_COLOUR = "0.85"
_MASKED_RGB = (0.6, 0.6, 0.6)


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(figure, path: Path, dpi: int = 100) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path


def map_extent_um(x_um: Sequence[float], y_um: Sequence[float]) -> tuple[float, ...]:
    """imshow extent (left, right, bottom, top) of pixel centres x_um, y_um (edges half a
    step outside the first and last centres)."""
    def edges(values: np.ndarray) -> tuple[float, float]:
        values = np.asarray(values, dtype=float)
        step = (values[-1] - values[0]) / (values.size - 1) if values.size > 1 else 1.0
        return float(values[0] - step / 2), float(values[-1] + step / 2)

    return (*edges(np.asarray(x_um)), *edges(np.asarray(y_um)))


def tilt_colours(
    altitude_deg: np.ndarray, azimuth_deg: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, float]:
    """RGB (..., 3): hue = azimuth, saturation = altitude / max altitude (over the mask),
    value 1; grey outside the mask. Also returns the max altitude used (degrees)."""
    from matplotlib.colors import hsv_to_rgb

    altitude = np.asarray(altitude_deg, dtype=float)
    azimuth = np.asarray(azimuth_deg, dtype=float)
    mask = np.asarray(mask, dtype=bool) & np.isfinite(altitude) & np.isfinite(azimuth)
    top = float(np.max(altitude[mask])) if mask.any() else 0.0
    hsv = np.ones((*altitude.shape, 3))
    hsv[..., 0] = np.where(mask, (np.nan_to_num(azimuth) % 360.0) / 360.0, 0.0)
    hsv[..., 1] = np.where(mask, np.nan_to_num(altitude) / top, 0.0) if top > 0 else 0.0
    rgb = hsv_to_rgb(np.clip(hsv, 0.0, 1.0))
    rgb[~mask] = _MASKED_RGB
    return rgb, top


def _map_panel(figure, axes, values, extent, title, unit, colormap, limits):
    import matplotlib

    colours = matplotlib.colormaps[colormap].with_extremes(bad=_MISSING_COLOUR)
    low, high = limits if limits is not None else (None, None)
    image = axes.imshow(np.ma.masked_invalid(np.asarray(values, dtype=float)), origin="lower",
                        extent=extent, cmap=colours, vmin=low, vmax=high,
                        interpolation="nearest")
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("x (µm)")
    axes.set_ylabel("y (µm)")
    figure.colorbar(image, ax=axes, label=unit, shrink=0.85)


def _label(value: float | None, unit: str, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f} {unit}"


def sxdm_map_figure(
    path: Path,
    maps: SxdmMaps,
    x_um: Sequence[float],
    y_um: Sequence[float],
    *,
    map_index: int,
    potential_v: float | None = None,
    charge_mah: float | None = None,
) -> Path:
    """The six panels of one map (module docstring); title with map index and potential."""
    extent = map_extent_um(x_um, y_um)
    mask = np.asarray(maps.mask, dtype=bool)
    d = np.where(mask, maps.d_angstrom, np.nan)
    delta_d = (d - maps.d_mean_angstrom) * 1e3
    figure = _figure(figsize=(15.0, 9.0), layout="constrained")
    axes = figure.subplots(2, 3)
    _map_panel(figure, axes[0, 0], maps.intensity, extent, "integrated intensity", "counts",
               "magma", robust_limits(maps.intensity))
    _map_panel(figure, axes[0, 1], d, extent, "d400 (masked in)", "Å", "viridis",
               robust_limits(d))
    _map_panel(figure, axes[0, 2], delta_d, extent,
               f"Δd = d − d̄, d̄ = {_label(maps.d_mean_angstrom, 'Å', 5)}", "10⁻³ Å", "RdBu_r",
               robust_limits(delta_d, symmetric=True))

    rgb, top = tilt_colours(maps.tilt_altitude_deg, maps.tilt_azimuth_deg, mask)
    tilt_axes = axes[1, 0]
    tilt_axes.imshow(rgb, origin="lower", extent=extent, interpolation="nearest")
    tilt_axes.set_title(f"tilt: hue = azimuth, saturation = altitude / {top:.3f}°",
                        fontsize=10)
    tilt_axes.set_xlabel("x (µm)")
    tilt_axes.set_ylabel("y (µm)")

    axes[1, 1].remove()
    pole = figure.add_subplot(2, 3, 5, projection="polar")
    if top > 0:
        # the colour key under the points: hue by angle, saturation by radius
        from matplotlib.colors import hsv_to_rgb

        theta = np.linspace(0.0, 2.0 * math.pi, 73)
        radius = np.linspace(0.0, top, 13)
        hsv = np.ones((radius.size - 1, theta.size - 1, 3))
        hsv[..., 0] = (0.5 * (theta[:-1] + theta[1:]) / (2 * math.pi))[None, :]
        hsv[..., 1] = (0.5 * (radius[:-1] + radius[1:]) / top)[:, None]
        hsv[..., 2] = 1.0
        key = hsv_to_rgb(hsv)
        key = 0.65 + 0.35 * key  # pale, so the points stand out
        pole.pcolormesh(theta, radius, key, shading="flat", rasterized=True)
        pole.scatter(np.radians(maps.tilt_azimuth_deg[mask]), maps.tilt_altitude_deg[mask],
                     c=rgb[mask], s=14, edgecolors="k", linewidths=0.3)
        pole.set_rmax(top)
        pole.grid(alpha=0.4)
    pole.set_title("pole figure: altitude (°) as radius, azimuth as angle", fontsize=10)

    histogram_axes = axes[1, 2]
    values = maps.d_angstrom[mask]
    values = values[np.isfinite(values)]
    if values.size:
        histogram_axes.hist(values, bins=min(40, max(5, values.size // 4)), color="tab:blue")
        histogram_axes.axvline(maps.d_mean_angstrom, color="k", lw=1.0, ls="--", label="d̄")
        histogram_axes.legend(loc="best", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    histogram_axes.xaxis.set_major_locator(MaxNLocator(4))
    histogram_axes.set_xlabel("d400 (Å)")
    histogram_axes.set_ylabel("pixels")
    histogram_axes.set_title(f"d400 of {int(mask.sum())} masked-in pixels, microstrain "
                             f"{maps.microstrain:.1e}", fontsize=10)
    figure.suptitle(f"map {map_index}: {_label(potential_v, 'V', 3)}, "
                    f"{_label(charge_mah, 'mAh', 4)}")
    return _save(figure, path)


def charge_curve_figure(
    path: Path,
    *,
    time_s: Sequence[float],
    potential_v: Sequence[float],
    map_index: Sequence[int],
    map_time_span_s: Sequence[Sequence[float | None]],
    map_potential_v: Sequence[float | None],
    map_d400_angstrom: Sequence[float | None],
    plateaus_v: Sequence[float] = (),
) -> Path:
    """Potential against time (h) with the map spans shaded and the plateaus dashed; below,
    each map's mean d400 at its mid time."""
    def floats(values) -> np.ndarray:
        return np.asarray([math.nan if v is None else v for v in values], dtype=float)

    times = np.asarray(time_s, dtype=float)
    spans = np.asarray([[math.nan if v is None else v for v in span]
                        for span in map_time_span_s], dtype=float).reshape(-1, 2)
    known = np.concatenate((times, spans.ravel()))
    known = known[np.isfinite(known)]
    origin_s = float(known.min()) if known.size else 0.0
    figure = _figure(figsize=(8.0, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    if times.size:
        top.plot((times - origin_s) / 3600.0, potential_v, lw=1.2, color="tab:blue",
                 label="cell potential")
    for v in plateaus_v:
        top.axhline(v, color="0.5", lw=0.8, ls="--")
    if len(plateaus_v):
        top.plot([], [], color="0.5", lw=0.8, ls="--",
                 label="plateaus " + ", ".join(f"{v:.3f}" for v in plateaus_v) + " V")
    mid_h = (spans.mean(axis=1) - origin_s) / 3600.0
    for (first, last), index in zip(spans, map_index, strict=True):
        if np.isfinite([first, last]).all():
            top.axvspan((first - origin_s) / 3600.0, (last - origin_s) / 3600.0,
                        color="tab:orange", alpha=0.25, lw=0)
            bottom.axvspan((first - origin_s) / 3600.0, (last - origin_s) / 3600.0,
                           color="tab:orange", alpha=0.15, lw=0)
            top.annotate(str(index), ((0.5 * (first + last) - origin_s) / 3600.0, 1.0),
                         xycoords=("data", "axes fraction"), ha="center", va="bottom",
                         fontsize=8)
    top.plot(mid_h, floats(map_potential_v), "o", color="tab:orange", label="maps")
    top.set_ylabel("potential vs Li⁺/Li (V)")
    top.legend(loc="lower right", fontsize=9)
    top.grid(alpha=0.3)
    bottom.plot(mid_h, floats(map_d400_angstrom), "o-", color="tab:red")
    bottom.set_ylabel("mean d400 (Å)")
    bottom.set_xlabel("instrument time (h)")
    bottom.grid(alpha=0.3)
    return _save(figure, path)
