"""The electron dose a STEM acquisition leaves, estimated the same way before a run (the
protocol's checks) and before each unblanking (the camera device)."""

from __future__ import annotations

ELEMENTARY_CHARGE_C = 1.602176634e-19


def electrons_per_pixel(probe_current_pa: float, dwell_ms: float, frames: int = 1) -> float:
    """Electrons the probe delivers while it dwells on one pixel: `dwell_ms` (exposure +
    read-out) per frame, for each of the `frames` summed into its spectrum."""
    return probe_current_pa * 1e-12 / ELEMENTARY_CHARGE_C * dwell_ms * 1e-3 * frames


def peak_dose_e_per_nm2(electrons: float, spacing_nm: float, footprint_nm: float) -> float:
    """Dose (e/nm²) at the most exposed point of one acquisition, each pixel's electrons
    counted over a square of the probe's damage footprint w (for a Gaussian spread σ,
    w = √(2π)σ gives its peak): N / w² for a point spectrum (spacing 0) or pixels farther
    apart than w; closer pixels overlap along the line, N / (w · spacing)."""
    overlap_nm = footprint_nm if spacing_nm <= 0 else min(spacing_nm, footprint_nm)
    return electrons / (footprint_nm * overlap_nm)
