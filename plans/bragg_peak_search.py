"""Find the Bragg peak before a map: a rocking scan flown in eta with a tall detector ROI.

During a charge the (400) peak walks: the lattice contracts by ~1 % and a new phase
takes over, moving the peak by a few tenths of a degree in eta and ~150 detector rows
in 2θ, more than a map's rocking range and ROI hold. So before each map, at a few
sample positions spread over the crystal, eta is flown through a wide range while the
detector takes a frame per eta step (position-compare on eta) in a ROI tall along 2θ.
The brightest voxel of the summed rocking volume picks the peak (the phase holding
most of the scattering there); the intensity-weighted mean Q around it gives d, and
from it the symmetric setting for the map: delta = 2θ and eta centre = the angle at
which that mean Q meets the Ewald sphere. The frames are not recorded; the result is
(an `alignment` event, written by the caller).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import bluesky.plan_stubs as bps
import numpy as np
from scipy.ndimage import label, uniform_filter

from vegard.diffraction_geometry import (
    DetectorRoi,
    DiffractometerGeometry,
    bragg_angles,
    bragg_eta_deg,
    pixel_q,
    rocking_angles_deg,
)
from vegard.instruments.area_detector_device import AreaDetector, SearchSettings
from vegard.instruments.area_detector_driver import PositionTrigger

from .retakes import mv_retrying

if TYPE_CHECKING:  # Channel Access is loaded only by a session that uses it
    from vegard.instruments.diffractometer_device import Diffractometer

PEAK_REGION_FRACTION = 0.2
"""Voxels of the smoothed search volume above this fraction of its maximum, connected
around the brightest one, make up the peak whose mean Q is taken."""


@dataclass(frozen=True)
class PeakSearchSettings:
    positions_um: tuple[tuple[float, float], ...]
    half_range_deg: float
    step_deg: float
    exposure_s: float
    roi: DetectorRoi


@dataclass(frozen=True)
class BraggPeak:
    """Where the peak was found and the symmetric setting that centres it."""

    d_angstrom: float
    eta_center_deg: float
    delta_deg: float
    counts: float
    """Counts in the peak region (summed over the search positions)."""


def peak_from_volume(
    counts: np.ndarray,
    geometry: DiffractometerGeometry,
    eta_deg: np.ndarray,
    phi_deg: float,
    nu_deg: float,
    delta_deg: float,
    roi: DetectorRoi,
) -> BraggPeak:
    """The brightest peak of a rocking volume (n_eta, rows, cols) and its centring setting."""
    volume = np.asarray(counts, dtype=np.float64)
    smooth = uniform_filter(volume, size=3, mode="constant")
    if smooth.max() <= 0:
        raise RuntimeError("peak search: no counts in the search volume (beam off the crystal?)")
    brightest = np.unravel_index(np.argmax(smooth), smooth.shape)
    region = _connected_region(smooth >= PEAK_REGION_FRACTION * smooth[brightest], brightest)
    weights = np.where(region, volume, 0.0)
    q = pixel_q(geometry, eta_deg, phi_deg, nu_deg, delta_deg, roi.rows, roi.cols)
    q_mean = np.tensordot(weights, q, axes=3) / weights.sum()
    d = 2.0 * math.pi / float(np.linalg.norm(q_mean))
    eta_center = bragg_eta_deg(geometry, q_mean, phi_deg, eta_near_deg=float(eta_deg.mean()))
    return BraggPeak(d, eta_center, 2.0 * float(bragg_angles(d, geometry.energy_ev)),
                     float(weights.sum()))


def _connected_region(above: np.ndarray, seed: tuple[int, ...]) -> np.ndarray:
    labels, _ = label(above)
    return labels == labels[seed]


def find_bragg_peak(
    diffractometer: Diffractometer,
    detector: AreaDetector,
    geometry: DiffractometerGeometry,
    settings: PeakSearchSettings,
    *,
    eta_center_deg: float,
    delta_deg: float,
    nu_deg: float = 0.0,
    phi_deg: float = 0.0,
):
    """Fly eta at each search position, sum the frames, return the `BraggPeak` (a plan)."""
    points = round(2 * settings.half_range_deg / settings.step_deg) + 1
    etas = rocking_angles_deg(eta_center_deg, points, settings.step_deg)
    run_up = settings.step_deg
    total = np.zeros((points, *settings.roi.shape))
    yield from mv_retrying(diffractometer.delta_deg, delta_deg, diffractometer.nu_deg, nu_deg)
    for x_um, y_um in settings.positions_um:
        yield from mv_retrying(diffractometer.sample_x_um, x_um, diffractometer.sample_y_um, y_um,
                               diffractometer.eta_deg, float(etas[0] - run_up))
        trigger = PositionTrigger("eta_deg", float(etas[0]), settings.step_deg, points)
        yield from bps.mv(detector.search,
                          SearchSettings(settings.roi, settings.exposure_s, trigger))
        yield from bps.mv(diffractometer.eta_deg, float(etas[-1] + run_up))
        yield from bps.trigger(detector.search, wait=True)
        counts = yield from bps.rd(detector.search.counts)
        total += np.asarray(counts).reshape(points, *settings.roi.shape)
    energy_ev = yield from bps.rd(diffractometer.energy_ev)
    geometry = replace(geometry, energy_ev=float(energy_ev))
    return peak_from_volume(total, geometry, etas, phi_deg, nu_deg, delta_deg, settings.roi)


def spread_positions_um(x_um: Sequence[float], y_um: Sequence[float]) -> tuple[
        tuple[float, float], ...]:
    """The map centre and four points halfway to its corners: where to search the peak."""
    cx, cy = float(np.mean(x_um)), float(np.mean(y_um))
    hx, hy = (max(x_um) - min(x_um)) / 4.0, (max(y_um) - min(y_um)) / 4.0
    return ((cx, cy), (cx - hx, cy - hy), (cx + hx, cy - hy), (cx - hx, cy + hy),
            (cx + hx, cy + hy))
