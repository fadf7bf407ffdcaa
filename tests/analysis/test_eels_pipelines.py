"""The paper's and the robust EELS pipelines on synthetic line scans with known truth.

The line: 41 pixels at 0.5 nm across a 3 nm (top-hat) boundary at x = 0, the LDO centre
48.5 meV in the grains (as in the simulator) and 48.5 + shift on the boundary. Dose "×k"
means k times the project's assumption (≈3·10⁴ LDO counts per grain pixel). Measured by a
Monte Carlo over 20–30 seeds (see the report): at ×30 the pooled shift of a true 1.8 meV
scatters by 0.13 meV (so 0.3 meV is ≈2.2σ); a zero shift at ×10 scatters by 0.035 meV with
honest stated errors (pull std 1.05).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from eels_synthetic import CORE_EV, VALENCE_EV, core_spectra, line_scan, valence_spectra

from vegard.analysis.eels_boundary import boundary_regions, estimate_boundary
from vegard.analysis.eels_paper_pipeline import paper_pipeline
from vegard.analysis.eels_robust_pipeline import robust_pipeline


def run_robust(scan, **kw):
    kw.setdefault("boundary_position_nm", 0.0)
    kw.setdefault("boundary_width_nm", 3.0)
    return robust_pipeline(scan.energy_mev, scan.spectra, scan.positions_nm,
                           scan.aloof_spectrum, **kw)


def test_paper_pipeline_runs_and_reports_its_inconsistencies():
    scan = line_scan(seed=0, pixels=31, ldo_bulk_mev=49.5)
    result = paper_pipeline(scan.energy_mev, scan.spectra, scan.positions_nm,
                            scan.aloof_spectrum, boundary_position_nm=0.0)
    text = "\n".join(result.warnings)
    assert "phonon_81 initial sigma 7 is above its upper bound" in text
    assert "ldo initial centre 49 is on its bound [49, 52]" in text
    assert "FWHM 7.4–16.4 meV, not the stated 8–20 meV" in text
    assert result.ldo_centre_mev.shape == (31,)
    assert np.all((result.ldo_centre_mev >= 49.0) & (result.ldo_centre_mev <= 52.0))
    on_bound = np.isclose(result.ldo_centre_mev, 49.0) | np.isclose(result.ldo_centre_mev, 52.0)
    np.testing.assert_array_equal(result.ldo_centre_at_bound, on_bound)
    assert result.aloof_peak_count in (2, 3, 4) and result.additional_peak_count in (3, 4, 5)
    assert result.boundary_index == 15
    assert np.all(result.polaritonic_intensity_per_zlp > 0)
    json.dumps(result.summary(), allow_nan=False)


def test_robust_pipeline_recovers_a_boundary_shift():
    """A Gaussian boundary (FWHM 3 nm): the pooled boundary pixels see ≈0.76 of the shift
    on the plane; the reported shift is the plane's, the region's is kept beside it."""
    scan = line_scan(seed=0, dose=30.0, drift_mev=0.15, shape="gaussian")
    result = run_robust(scan)
    assert abs(result.ldo_boundary_shift_mev - 1.8) < 0.3
    assert result.ldo_boundary_shift_significance > 3.0
    assert abs(result.ldo_boundary_shift_per_pixel_mev - 1.8) < 0.3
    labels = result.region
    weight = scan.boundary_weight
    seen = weight[labels == 1].mean() - weight[(labels == 0) | (labels == 2)].mean()
    assert result.boundary_pooled_weight == pytest.approx(seen, rel=1e-9)
    assert 0.7 < seen < 0.8
    assert result.ldo_boundary_region_shift_mev == pytest.approx(
        result.ldo_boundary_shift_mev * seen, rel=1e-9)
    assert result.ldo_boundary_shift_stderr_mev == pytest.approx(
        result.ldo_boundary_region_shift_stderr_mev / seen, rel=1e-9)
    grains = np.nanmean(result.region_ldo_centre_mev[[0, 2]])
    assert result.activation_energy_change_fraction == pytest.approx(
        2 * result.ldo_boundary_shift_mev / grains)
    np.testing.assert_array_equal(result.region, boundary_regions(scan.positions_nm, 0.0, 3.0))
    assert not result.ldo_centre_at_bound.any()
    json.dumps(result.summary(), allow_nan=False)
    json.dumps(result.profiles(), allow_nan=False)


def test_robust_pipeline_finds_no_shift_where_there_is_none():
    scan = line_scan(seed=1, dose=10.0, ldo_shift_mev=0.0, drift_mev=0.15)
    result = run_robust(scan)
    assert abs(result.ldo_boundary_shift_mev) < 2 * result.ldo_boundary_shift_stderr_mev
    assert result.ldo_boundary_shift_stderr_mev < 0.1
    assert 0.8 < result.reduced_chi_square < 1.2


def test_robust_pipeline_profiles_li_to_co_thickness_and_intensities():
    scan = line_scan(seed=2, dose=10.0, drift_mev=0.15, shape="gaussian")
    li_to_co = 1.0 - 0.27 * scan.boundary_weight
    core_counts, _, kappa = core_spectra(li_to_co, seed=2, scale=4e5, li_tail=True)
    tau = 0.5 + 0.004 * scan.positions_nm - 0.05 * scan.boundary_weight
    valence_counts, _ = valence_spectra(tau, seed=2)
    result = robust_pipeline(
        scan.energy_mev, scan.spectra, scan.positions_nm, scan.aloof_spectrum,
        core=(CORE_EV, core_counts), valence=(VALENCE_EV, valence_counts),
        li_tail_in_co_window=kappa, n_bootstrap=6)
    assert result.boundary_source == "li_to_co"
    assert abs(result.boundary_position_nm) < 0.5
    change, error = (result.li_to_co_boundary_change_fraction,
                     result.li_to_co_boundary_change_stderr_fraction)
    assert abs(change + 0.27) < 3 * error + 0.01
    np.testing.assert_allclose(result.t_over_lambda, tau, atol=0.01)
    np.testing.assert_allclose(result.li_to_co_relative, li_to_co, atol=0.03)
    assert abs(result.boundary_width_nm - 3.0) < 0.5
    phononic = result.phononic_intensity_per_zlp
    ratio = phononic[result.region == 1].mean() / phononic[result.region % 2 == 0].mean()
    stronger = 1.0 + 0.2 * scan.boundary_weight
    expected = stronger[result.region == 1].mean() / stronger[result.region % 2 == 0].mean()
    assert ratio == pytest.approx(expected, rel=0.03)
    polaritonic = result.polaritonic_intensity_per_zlp
    grain_b_over_a = polaritonic[result.region == 2].mean() / polaritonic[result.region == 0].mean()
    assert grain_b_over_a == pytest.approx(1 - 0.4 * 1.5 / 3.52, rel=0.03)
    assert np.isfinite(result.ldo_boundary_shift_bootstrap_stderr_mev)
    low, high = result.ldo_boundary_shift_bootstrap_interval_mev
    assert low <= high


def test_boundary_estimate_from_a_dip():
    x = np.linspace(-10, 10, 41)
    dip = 1.0 - 0.27 * np.exp(-4 * np.log(2) * (x - 1.3) ** 2 / 2.5**2) + 0.01 * x
    position, width = estimate_boundary(x, dip)
    assert position == pytest.approx(1.3, abs=0.1)
    assert width == pytest.approx(2.5, rel=0.1)


def test_robust_pipeline_needs_a_boundary_and_a_grain():
    scan = line_scan(seed=0, pixels=9)
    with pytest.raises(ValueError, match="boundary and in at least one grain"):
        run_robust(scan, boundary_width_nm=20.0)


def test_the_aloof_spectrum_noise_enters_the_shift_error():
    """The polariton shapes are fixed from the aloof spectrum in every line fit, so the
    fits' covariance cannot see its noise: the replicas of the aloof spectrum must. The
    same line with an aloof spectrum of 100× the counts states a much smaller aloof part
    (3.3× here, not the noise’s 10×: the noisier fits lean on bounds) and a smaller total
    error; without replicas the error
    does not see the aloof noise at all."""
    scan = line_scan(seed=3, dose=10.0, ldo_shift_mev=1.8, drift_mev=0.15)
    rich = dataclasses.replace(scan, aloof_spectrum=line_scan(
        seed=4, dose=1000.0, ldo_shift_mev=1.8, drift_mev=0.15).aloof_spectrum)
    noisy, clean = run_robust(scan), run_robust(rich)
    aloof_part = "ldo_boundary_shift_aloof_stderr_mev"
    assert getattr(noisy, aloof_part) > 2.5 * getattr(clean, aloof_part)
    assert noisy.ldo_boundary_shift_stderr_mev > clean.ldo_boundary_shift_stderr_mev
    without = run_robust(scan, aloof_replicas=0)
    assert np.isnan(without.ldo_boundary_shift_aloof_stderr_mev)
    assert without.ldo_boundary_shift_stderr_mev < noisy.ldo_boundary_shift_stderr_mev
