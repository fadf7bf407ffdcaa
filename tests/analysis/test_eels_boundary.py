"""The boundary's profile along an EELS line, its regions, and the share of its peak a
pooled region sees (analysis/eels_boundary.py)."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.analysis.eels_boundary import (
    boundary_regions,
    boundary_weight,
    fit_boundary_profile,
    on_plane,
    pooled_weight_contrast,
)

X_NM = np.arange(-30.0, 30.5, 1.0)


def li_to_co(position_nm, width_nm, noise, seed=0):
    rng = np.random.default_rng(seed)
    clean = 1.0 - 0.27 * boundary_weight(X_NM, position_nm, width_nm) + 0.001 * X_NM
    return clean + rng.normal(0.0, noise, X_NM.size)


@pytest.mark.parametrize(("position_nm", "width_nm"), [(0.0, 3.0), (-1.3, 2.4), (4.6, 6.0)])
def test_position_and_width_are_refined_off_the_grid(position_nm, width_nm):
    found = fit_boundary_profile(X_NM, li_to_co(position_nm, width_nm, noise=0.0))
    assert found.position_nm == pytest.approx(position_nm, abs=1e-4)
    assert found.width_nm == pytest.approx(width_nm, rel=1e-4)
    assert found.amplitude == pytest.approx(-0.27, rel=1e-4)


def test_stated_errors_of_position_and_width_match_their_scatter():
    fits = [fit_boundary_profile(X_NM, li_to_co(0.4, 3.0, noise=0.02, seed=s))
            for s in range(120)]
    positions = np.array([f.position_nm for f in fits])
    widths = np.array([f.width_nm for f in fits])
    stated = np.median([f.position_stderr_nm for f in fits])
    assert positions.std() == pytest.approx(stated, rel=0.25)
    assert widths.std() == pytest.approx(np.median([f.width_stderr_nm for f in fits]), rel=0.3)
    assert abs(positions.mean() - 0.4) < 3 * positions.std() / np.sqrt(positions.size)


def test_the_pooled_weight_is_the_mean_profile_over_the_boundary_pixels():
    labels = boundary_regions(X_NM, 0.0, 3.0)
    assert list(X_NM[labels == 1]) == [-1.0, 0.0, 1.0]
    contrast, error = pooled_weight_contrast(X_NM, labels, 0.0, 3.0)
    g = np.exp(-4 * np.log(2) / 9)
    grains = boundary_weight(X_NM, 0.0, 3.0)[(labels == 0) | (labels == 2)].mean()
    assert contrast == pytest.approx((1 + 2 * g) / 3 - grains)
    assert error == 0.0
    wider, _ = pooled_weight_contrast(X_NM, labels, 0.0, 4.0)
    assert wider > contrast  # a wider boundary fills its pixels more


def test_on_plane_divides_by_the_weight_and_adds_its_error():
    value, error = on_plane(1.2, 0.3, 0.8, 0.0)
    assert (value, error) == pytest.approx((1.5, 0.375))
    _, with_weight_error = on_plane(1.2, 0.3, 0.8, 0.08)
    assert with_weight_error == pytest.approx(np.hypot(0.375, 1.5 * 0.1))
    assert np.isnan(on_plane(1.0, 0.1, 0.0, 0.0)[0])
