"""ESM map figures (PNG, no screen needed): the paper's Fig. 2 panels and the contact resonance.

Maps are (pixels_y, pixels_x) with row 0 at the lowest y, drawn with `origin="lower"`; colour
limits come from percentiles so a few failed or spiky pixels do not wash out the contrast, and
NaN pixels (no fit, rows not recorded) are drawn grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .figures import _pyplot

_LOW_PERCENTILE = 2.0
_HIGH_PERCENTILE = 98.0
_MISSING_COLOUR = "0.85"


def robust_limits(values: np.ndarray, symmetric: bool = False) -> tuple[float, float] | None:
    """Colour limits at the 2nd/98th percentiles of the finite values (±max |.| if symmetric)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None
    low, high = np.percentile(finite, [_LOW_PERCENTILE, _HIGH_PERCENTILE])
    if symmetric:
        half_range = max(abs(low), abs(high)) or 1.0
        return -float(half_range), float(half_range)
    if high <= low:
        return float(low) - 0.5, float(high) + 0.5
    return float(low), float(high)


def _map_panel(figure, axes, values, extent_nm, title, unit, colormap, symmetric=False):
    import matplotlib

    colours = matplotlib.colormaps[colormap].with_extremes(bad=_MISSING_COLOUR)
    limits = robust_limits(values, symmetric=symmetric) or (None, None)
    image = axes.imshow(
        np.ma.masked_invalid(np.asarray(values, dtype=float)),
        origin="lower",
        extent=tuple(extent_nm),
        cmap=colours,
        vmin=limits[0],
        vmax=limits[1],
        interpolation="nearest",
    )
    axes.set_title(title)
    axes.set_xlabel("x (nm)")
    axes.set_ylabel("y (nm)")
    figure.colorbar(image, ax=axes, label=unit, shrink=0.85)


def _save(figure, plt, path: Path) -> Path:
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def esm_map_figure(
    path: Path,
    topography_nm: np.ndarray,
    a_lf_pm: np.ndarray,
    a_hf_pm: np.ndarray,
    a_f_pm: np.ndarray,
    extent_nm: Sequence[float],
) -> Path:
    """2×2 panels like the paper's Fig. 2: topography, Ā_LF, A_HF and a_f (diverging, 0 centred).

    `extent_nm` is (x_left, x_right, y_bottom, y_top) of the scanned area.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(9.5, 8.0))
    _map_panel(figure, axes[0, 0], topography_nm, extent_nm, "topography", "height (nm)", "copper")
    _map_panel(figure, axes[0, 1], a_lf_pm, extent_nm, "Ā_LF = (A_LF+ + A_LF−)/2", "pm", "viridis")
    _map_panel(figure, axes[1, 0], a_hf_pm, extent_nm, "A_HF (electrostatic)", "pm", "viridis")
    _map_panel(
        figure, axes[1, 1], a_f_pm, extent_nm, "a_f = Ā_LF − A_HF", "pm", "RdBu_r", symmetric=True
    )
    return _save(figure, plt, path)


def resonance_map_figure(
    path: Path, f0_hz: np.ndarray, q: np.ndarray, extent_nm: Sequence[float]
) -> Path:
    """Contact resonance frequency (kHz) and quality factor side by side: where the tip
    contact (stiffness, damping) changes, amplitudes change too, so read them together."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10.0, 4.2))
    f0_khz = np.asarray(f0_hz, dtype=float) / 1e3
    _map_panel(figure, axes[0], f0_khz, extent_nm, "contact resonance f0", "kHz", "plasma")
    _map_panel(figure, axes[1], q, extent_nm, "quality factor Q", "Q", "cividis")
    return _save(figure, plt, path)
