"""The LMNO crystal: paper d-spacings, multi-point nucleation, edges last, tilt bounds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vegard.simulators.lmno_crystal import LmnoCrystal

STEP_UM = 0.05
AXIS_UM = np.arange(-3.0, 3.0 + 1e-9, STEP_UM)
GRID = (AXIS_UM, AXIS_UM)
ONSET_X = 0.6
PLATEAU1_X = (1.0, 0.95, 0.85, 0.75, 0.65, ONSET_X, 0.57, 0.54, 0.51, 0.5)
PLATEAU2_X = (0.48, 0.45, 0.4, 0.35, 0.3, 0.2, 0.1)


@pytest.fixture(scope="module")
def crystal() -> LmnoCrystal:
    return LmnoCrystal(seed=0)


def field_maps(crystal: LmnoCrystal, x_li: float) -> dict[str, np.ndarray]:
    gx, gy = np.meshgrid(AXIS_UM, AXIS_UM)
    return crystal.maps(x_li, np.stack((gx, gy), axis=-1))


def depth_from_outline_um(inside: np.ndarray) -> np.ndarray:
    return ndimage.distance_transform_edt(inside) * STEP_UM


def test_parameters_declare_units_and_ranges() -> None:
    names = [p.name for p in LmnoCrystal.PARAMETERS]
    assert len(names) == len(set(names))
    for parameter in LmnoCrystal.PARAMETERS:
        assert parameter.unit, parameter.name
        assert parameter.minimum <= parameter.default <= parameter.maximum, parameter.name
    with pytest.raises(ValueError, match="unknown"):
        LmnoCrystal({"no_such_thing": 1.0})
    with pytest.raises(ValueError, match="out of range"):
        LmnoCrystal({"crystal_size_um": 9.0})


def test_crystal_is_a_few_micrometres_inside_the_field(crystal: LmnoCrystal) -> None:
    inside = field_maps(crystal, 1.0)["inside"]
    area_um2 = inside.sum() * STEP_UM**2
    assert 5.0 < area_um2 < 12.0
    assert not inside[0].any() and not inside[-1].any()
    assert not inside[:, 0].any() and not inside[:, -1].any()


def test_mean_d400_follows_the_paper_through_both_plateaus(crystal: LmnoCrystal) -> None:
    assert crystal.d400_mean_angstrom(1.0) == pytest.approx(2.0409, abs=1e-4)
    assert crystal.d400_mean_angstrom(ONSET_X, "li1") == pytest.approx(2.0332, abs=1e-4)
    assert crystal.d400_mean_angstrom(0.5, "li05") == pytest.approx(2.0184, abs=1e-4)
    assert crystal.d400_mean_angstrom(0.0) == pytest.approx(2.0, abs=1e-4)
    xs = np.linspace(1.0, 0.0, 41)
    means = np.array([crystal.d400_mean_angstrom(x) for x in xs])
    assert np.all(np.diff(means) <= 1e-6)
    # The Li1 -> Li0.5 step is about 1.1 % (2.0409 -> 2.0184 Å).
    assert 0.009 < 1 - means[20] / means[0] < 0.013
    # The Li0.5 phase's mean stays put early in plateau 2 while its map changes.
    assert crystal.d400_mean_angstrom(0.45, "li05") == pytest.approx(2.0184, abs=3e-4)


def test_phases_follow_the_lever_rule_and_the_detected_phase(crystal: LmnoCrystal) -> None:
    for x in (1.0, 0.7, 0.58, 0.55, 0.5, 0.25, 0.0):
        fractions = crystal.phase_fractions(x)
        assert sum(fractions.values()) == pytest.approx(1.0)
        state = field_maps(crystal, x)
        lithium = np.average(state["li_content"], weights=state["strength"])
        assert lithium == pytest.approx(x, abs=0.01)
    assert crystal.phase_fractions(0.55)["li05"] == pytest.approx(0.5, abs=0.02)
    assert crystal.dominant_phase(0.8) == "li1"
    assert crystal.dominant_phase(0.45) == "li05"
    assert crystal.dominant_phase(0.1) == "li0"


def test_plateau1_solid_solution_has_a_static_defect_templated_pattern(
    crystal: LmnoCrystal,
) -> None:
    early = crystal.ground_truth_maps(0.9, GRID, "li1")
    late = crystal.ground_truth_maps(0.65, GRID, "li1")
    mask = early["mask"] & late["mask"]
    li = late["li_content"][mask]
    assert li.mean() == pytest.approx(0.65, abs=0.005)
    assert 0.005 < li.std() < 0.02
    assert 0.01 < li.max() - li.min() < 0.08
    a = early["d400_angstrom"][mask] - np.mean(early["d400_angstrom"][mask])
    b = late["d400_angstrom"][mask] - np.mean(late["d400_angstrom"][mask])
    assert np.corrcoef(a, b)[0, 1] > 0.95
    spread = np.ptp(late["d400_angstrom"][mask])
    assert 0.001 < spread < 0.004


def test_li05_nucleates_at_several_surface_points_and_edges_transform_last(
    crystal: LmnoCrystal,
) -> None:
    early = field_maps(crystal, 0.575)
    inside = early["inside"]
    depth = depth_from_outline_um(inside)
    nuclei = (early["li05_fraction"] > 0.5) & inside
    labels, count = ndimage.label(nuclei)
    print(f"Li0.5 regions at x = 0.575: {count}")
    assert count >= 3
    for region in range(1, count + 1):
        assert depth[labels == region].max() > 0.4  # away from the outline, not at an edge

    late = field_maps(crystal, 0.51)
    remaining = (late["li1_fraction"] > 0.5) & inside
    transformed = (late["li05_fraction"] > 0.5) & inside
    assert 0 < remaining.sum() < 0.4 * inside.sum()
    near_edge = depth < 0.4
    print(f"untransformed Li1 within 0.4 µm of the outline at x = 0.51: "
          f"{near_edge[remaining].mean():.0%}")
    assert near_edge[remaining].mean() > 0.7
    assert depth[remaining].mean() < 0.5 * depth[transformed].mean()


def test_li0_grows_as_a_shell_in_plateau2(crystal: LmnoCrystal) -> None:
    state = field_maps(crystal, 0.3)
    inside = state["inside"]
    depth = depth_from_outline_um(inside)
    shell = (state["li0_fraction"] > 0.5) & inside
    core = (state["li05_fraction"] > 0.5) & inside
    assert depth[shell].mean() < 0.5 * depth[core].mean()
    _, count = ndimage.label(core)
    assert count == 1


@pytest.mark.parametrize(
    ("xs", "phase", "largest_deg", "at_least_deg"),
    [((1.0,), "li1", 0.1, 0.03), (PLATEAU1_X, None, 0.08, 0.05),
     (PLATEAU2_X, "li05", 0.25, 0.15)],
)
def test_tilt_domains_stay_within_the_paper_bounds(
    crystal: LmnoCrystal, xs: tuple[float, ...], phase: str | None, largest_deg: float,
    at_least_deg: float,
) -> None:
    largest = []
    for x in xs:
        truth = crystal.ground_truth_maps(x, GRID, phase)
        largest.append(np.nanmax(truth["tilt_altitude_deg"]))
        assert np.nanmax(np.abs(truth["tilt_x_deg"])) < largest_deg
    print(f"largest tilt altitude per x {dict(zip(xs, np.round(largest, 3), strict=True))}")
    assert max(largest) <= largest_deg
    assert max(largest) >= at_least_deg


def test_tilt_domains_reorient_during_charge(crystal: LmnoCrystal) -> None:
    pristine = crystal.ground_truth_maps(1.0, GRID, "li1")
    charged = crystal.ground_truth_maps(0.62, GRID, "li1")
    mask = pristine["mask"] & charged["mask"]
    turned = np.abs(((charged["tilt_azimuth_deg"] - pristine["tilt_azimuth_deg"])[mask] + 180)
                    % 360 - 180)
    assert np.median(turned) > 10.0


def test_ground_truth_maps_shape_keys_and_mask(crystal: LmnoCrystal) -> None:
    x_um = np.linspace(-3, 3, 75)
    y_um = np.linspace(-3, 3, 60)
    truth = crystal.ground_truth_maps(0.8, (x_um, y_um))
    for key in ("d400_angstrom", "tilt_x_deg", "tilt_y_deg", "tilt_altitude_deg",
                "tilt_azimuth_deg", "intensity", "mask", "li_content"):
        assert truth[key].shape == (60, 75), key
    assert truth["phase"] == "li1"
    mask = truth["mask"]
    assert np.all(truth["intensity"][mask] >= 0.2 * truth["intensity"].max())
    assert np.all(np.isnan(truth["d400_angstrom"][~mask]))
    assert np.all(np.isfinite(truth["d400_angstrom"][mask]))


def test_deterministic_from_the_seed() -> None:
    points = np.random.default_rng(5).uniform(-2.5, 2.5, (200, 2))
    a = LmnoCrystal(seed=4).maps(0.55, points)
    b = LmnoCrystal(seed=4).maps(0.55, points)
    c = LmnoCrystal(seed=5).maps(0.55, points)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["li1_d400_angstrom"], c["li1_d400_angstrom"])
