"""Peak search: from a wide rocking volume, the phase holding the peak and the setting that
centres it on the detector."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.diffraction_geometry import DiffractometerGeometry, bragg_angles, centred_roi
from vegard.plans.bragg_peak_search import peak_from_volume
from vegard.simulators.lmno_crystal import LmnoCrystal
from vegard.simulators.nanodiffraction import frames

GEOMETRY = DiffractometerGeometry(distance_m=1.5, center_row=255.5, center_col=255.5)
POINTS_UM = np.array([[0.0, 0.0], [-0.8, -0.8], [0.8, -0.8], [-0.8, 0.8], [0.8, 0.8]])


def search_volume(crystal, x_li, eta_center, delta, roi, half_range=0.3, step=0.025):
    etas = eta_center + step * (np.arange(round(2 * half_range / step) + 1) - half_range / step)
    counts = frames(crystal, x_li, POINTS_UM, etas, GEOMETRY, roi, 0.0, delta, 0.01, 1e9,
                    np.random.default_rng(5))
    return counts.sum(axis=0), etas


@pytest.mark.parametrize("x_li", [0.95, 0.45])
def test_search_recentres_on_the_dominant_phase(x_li) -> None:
    """Start from the pristine setting; the peak found is the phase that dominates now."""
    crystal = LmnoCrystal(seed=0)
    theta = float(bragg_angles(2.0409, GEOMETRY.energy_ev))
    roi = centred_roi(GEOMETRY, 400, 96)
    volume, etas = search_volume(crystal, x_li, theta, 2 * theta, roi)
    peak = peak_from_volume(volume, GEOMETRY, etas, 0.0, 0.0, 2 * theta, roi)
    phase = crystal.dominant_phase(x_li)
    d_truth = crystal.d400_mean_angstrom(x_li, phase)
    print(f"x = {x_li}: {phase} d = {d_truth:.4f} Å, found {peak.d_angstrom:.4f} Å, "
          f"eta centre {peak.eta_center_deg:.3f}°, delta {peak.delta_deg:.3f}°")
    # five 80 nm spots stand for the crystal: within a few 10⁻³ Å of its mean
    assert peak.d_angstrom == pytest.approx(d_truth, abs=3e-3)
    assert peak.delta_deg == pytest.approx(2 * bragg_angles(peak.d_angstrom, 10000.0))
    # Centring works: a map around the found setting sees the peak near the ROI centre.
    map_roi = centred_roi(GEOMETRY, 64, 160)
    volume, etas = search_volume(crystal, x_li, peak.eta_center_deg, peak.delta_deg, map_roi,
                                 half_range=0.232, step=0.016)
    rocking = volume.sum(axis=(1, 2))
    assert abs(np.argmax(rocking) - (etas.size - 1) / 2) <= 5
    rows = volume.sum(axis=(0, 2))
    assert abs(np.average(np.arange(64), weights=rows) - 31.5) < 8


def test_empty_volume_is_an_error() -> None:
    roi = centred_roi(GEOMETRY, 10, 10)
    with pytest.raises(RuntimeError, match="no counts"):
        peak_from_volume(np.zeros((5, 10, 10)), GEOMETRY, np.linspace(17, 18, 5), 0, 0, 35, roi)
