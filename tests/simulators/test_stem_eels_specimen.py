"""The LiCoO2 bicrystal along a STEM line: boundary profiles, the wedge, the aloof K0 decay."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import k0

from vegard.simulators.stem_eels_specimen import (
    ALOOF_REFERENCE_NM,
    GrainBoundarySpecimen,
    beam_beta,
    dipole_decay,
)

HBAR_EV_S = 6.582119569e-16
C_M_PER_S = 299_792_458.0


def test_boundary_profiles_peak_on_the_boundary_and_return_to_the_bulk() -> None:
    specimen = GrainBoundarySpecimen()
    profile = specimen.profile(np.array([-60.0, -1.5, 0.0, 1.5, 60.0]))
    assert profile["ldo_centre_mev"][2] == pytest.approx(48.5 + 1.8)
    assert profile["li_to_co"][2] == pytest.approx(1.0 * (1 - 0.27))
    # the boundary width is the full width at half maximum of the profile
    assert profile["ldo_centre_mev"][[1, 3]] == pytest.approx([48.5 + 0.9] * 2)
    assert profile["li_to_co"][[0, 4]] == pytest.approx([1.0, 1.0])
    assert profile["grain_contrast"][0] == pytest.approx(1.0)
    assert profile["grain_contrast"][4] == pytest.approx(0.9)


@pytest.mark.parametrize("shift_mev", [0.0, -1.2, 4.0])
def test_the_boundary_shift_may_be_zero_or_negative(shift_mev: float) -> None:
    specimen = GrainBoundarySpecimen({"ldo_boundary_shift_mev": shift_mev, "ldo_centre_mev": 49})
    assert specimen.profile(np.array([0.0]))["ldo_centre_mev"][0] == pytest.approx(49 + shift_mev)


def test_vacuum_the_wedge_and_the_boundary_thinning() -> None:
    specimen = GrainBoundarySpecimen()
    x = np.array([-185.0, -120.0, -70.0, 0.0, 400.0])
    truth = specimen.truth(x)
    assert truth["in_vacuum"].tolist() == [True, False, False, False, False]
    assert truth["impact_parameter_nm"][0] == pytest.approx(ALOOF_REFERENCE_NM)
    assert truth["impact_parameter_nm"][1:] == pytest.approx([0.0] * 4)
    assert truth["thickness_t_over_lambda"][:3] == pytest.approx([0.0, 0.05, 0.05 + 0.004 * 50])
    assert truth["thickness_t_over_lambda"][3] == pytest.approx((0.05 + 0.004 * 120) * 0.95)
    assert truth["thickness_t_over_lambda"][4] == pytest.approx(1.2)  # levelled off
    assert math.isnan(truth["ldo_centre_mev"][0]) and math.isnan(truth["li_to_co"][0])


def test_a_wider_probe_blurs_the_boundary_but_keeps_its_area() -> None:
    specimen = GrainBoundarySpecimen()
    x = np.linspace(-40, 40, 4001)
    sharp = specimen.profile(x)["boundary_weight"]
    blurred = specimen.profile(x, probe_fwhm_nm=4.0)["boundary_weight"]
    assert blurred.max() == pytest.approx(3.0 / 5.0, rel=1e-3)
    assert np.trapezoid(blurred, x) == pytest.approx(np.trapezoid(sharp, x), rel=1e-6)


def test_beam_speed_at_60_kv() -> None:
    assert beam_beta(60.0) == pytest.approx(0.446, abs=0.001)


def test_aloof_signal_decays_as_k0_of_twice_omega_b_over_v() -> None:
    energy_mev = 34.0
    omega = energy_mev * 1e-3 / HBAR_EV_S
    v = beam_beta(60.0) * C_M_PER_S
    b_nm = np.array([20.0, 65.0, 200.0, 1000.0, 3000.0])
    expected = k0(2 * omega * b_nm * 1e-9 / v) / k0(2 * omega * 65e-9 / v)
    got = dipole_decay(b_nm, energy_mev, 60.0, cutoff_nm=1e-6)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got[1] == pytest.approx(1.0)
    # decay length v/2ω ≈ 1.3 µm at 34 meV: still strong at 65 nm, exponential far out
    assert v / (2 * omega) == pytest.approx(1.29e-6, rel=0.02)
    assert got[3] / got[4] > 5.0 and got[0] / got[1] < 1.6
    # higher-energy modes fall off faster
    assert dipole_decay(1000.0, 74.0, 60.0, 1e-6) < dipole_decay(1000.0, 34.0, 60.0, 1e-6)


def test_the_k0_divergence_is_cut_off_on_the_specimen() -> None:
    on_specimen = dipole_decay(0.0, 34.0, 60.0, cutoff_nm=5.0)
    assert np.isfinite(on_specimen) and 1.0 < on_specimen < 3.0


def test_out_of_range_parameters_are_refused_naming_parameter_and_range() -> None:
    with pytest.raises(ValueError, match=r"li_to_co_boundary_change = -2 is out of range: "
                                         r"allowed -0\.95 … 1"):
        GrainBoundarySpecimen({"li_to_co_boundary_change": -2})
    with pytest.raises(ValueError, match=r"vacuum_edge_position_nm .* must be below "
                                         r"boundary_position_nm"):
        GrainBoundarySpecimen({"vacuum_edge_position_nm": 10.0})
    with pytest.raises(ValueError, match="unknown"):
        GrainBoundarySpecimen({"ldo_center_mev": 49.0})


def test_ground_truth_summarises_bulk_and_boundary() -> None:
    truth = GrainBoundarySpecimen().ground_truth()
    assert truth["ldo_centre_boundary_mev"] - truth["ldo_centre_bulk_mev"] == pytest.approx(1.8)
    assert truth["li_to_co_boundary"] / truth["li_to_co_bulk"] == pytest.approx(0.73)
