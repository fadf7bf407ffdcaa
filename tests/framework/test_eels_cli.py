"""STEM-EELS end to end: `vegard dry-run` of the shipped grain-boundary protocol takes every
pass on the simulated microscope, the live analysis reports the boundary shift with its
standard error and the simulator's truth beside it, the beam ends blanked, and replay
gives the same analysis. The shipped protocol's dose recovers the shift on the boundary
plane within 0.3 meV and the Li:Co change within 5 percentage points (over 20 seeds:
`benchmarks/eels_seeds.py`); here the profile's seed, and a second run with other truths."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runs import vegard_json
from variants import protocol_variant

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/eels_licoo2_grain_boundary.yaml"



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("store")
    return data_dir, vegard_json("dry-run", str(PROTOCOL), "--data-dir", str(data_dir))[0]


def test_every_pass_is_taken_and_the_beam_ends_blanked(run) -> None:
    _, summary = run
    analysis = summary["analysis"]
    assert summary["exit_status"] == "success"
    assert analysis["complete"] and not analysis["passes_missing"]
    assert analysis["aloof_spectra"] == 100 and analysis["registration_lines"] == 3
    assert summary["safe_state"]["stem"]["beam_blanked"] is True
    # instrument time: 61 pixels × (4 × 1 s + 1 s + 2 ms) plus 100 s aloof, tests, registration
    assert 400 < summary["instrument_time_s"] < 430


def test_the_analysis_reports_shift_activation_energy_and_li_to_co_beside_the_truth(run):
    _, summary = run
    analysis, truth = summary["analysis"], summary["ground_truth"]
    for key in ("ldo_boundary_shift_mev", "ldo_boundary_shift_stderr_mev",
                "activation_energy_change_fraction", "li_to_co_boundary_change_fraction"):
        assert isinstance(analysis[key], float), key
    assert truth["ldo_boundary_shift_mev"] == 1.8
    assert analysis["paper"]["ldo_centre_at_bound_fraction"] > 0.5  # the comparison ran
    assert truth["li_to_co_boundary_change_fraction"] == -0.27
    assert analysis["activation_energy_change_fraction"] == pytest.approx(
        2 * analysis["ldo_boundary_shift_mev"] / analysis["ldo_centre_grain_a_mev"], rel=0.05)
    shift, stderr = analysis["ldo_boundary_shift_mev"], analysis["ldo_boundary_shift_stderr_mev"]
    assert 0 < stderr < 0.3
    assert abs(shift - truth["ldo_boundary_shift_mev"]) < 0.3
    assert abs(analysis["li_to_co_boundary_change_fraction"] + 0.27) < 0.05
    # the pooled region shows less than the plane: the true LDO centre over its own pixels
    measurable = truth["ldo_boundary_shift_region_mean_mev"]
    assert 1.0 < measurable < truth["ldo_boundary_shift_mev"]
    assert abs(analysis["ldo_boundary_region_shift_mev"] - measurable) < 3 * stderr
    assert abs(analysis["boundary_position_nm"] - truth["boundary_position_nm"]) < 2.0
    assert all(Path(path).is_file() for path in analysis["figures"].values() if path)


def test_replay_gives_the_same_analysis(run) -> None:
    data_dir, summary = run
    replayed, _ = vegard_json("replay", summary["run_uids"][0], "--data-dir", str(data_dir))
    strip = lambda analysis: {k: v for k, v in analysis.items() if k != "figures"}  # noqa: E731
    assert strip(replayed["analysis"]) == strip(summary["analysis"])


def test_other_truths_are_recovered_and_no_shift_is_found_where_there_is_none(tmp_path):
    """Values other than the defaults, set as a user would (`--set`): a 3 meV shift with a
    40 % Li loss, then no shift at all, each within 2 stated errors (the issue's bound).

    Over 10 seeds (benchmarks/eels_seeds.py) the stated errors are honest (pull std ≈1.0 at
    3 meV, ≈0.8 at zero) but, with the Li-poor boundary's weaker LDO peak, ≈0.3 meV: a
    3 meV shift lands within 0.3 meV in 6 of 10 seeds, so that is not asserted here.
    Without the paper's per-pixel fits (a protocol choice), which take seconds a line."""
    protocol = protocol_variant(PROTOCOL, tmp_path / "robust_only.yaml",
                                analysis={"paper_pipeline": False})
    shifted, _ = vegard_json("dry-run", str(protocol), "--data-dir", str(tmp_path / "a"),
                             "--set", "stem.ldo_boundary_shift_mev=3.0",
                             "--set", "stem.li_to_co_boundary_change=-0.4")
    analysis, truth = shifted["analysis"], shifted["ground_truth"]
    assert truth["ldo_boundary_shift_mev"] == 3.0
    error = analysis["ldo_boundary_shift_mev"] - 3.0
    assert abs(error) < 2 * analysis["ldo_boundary_shift_stderr_mev"]
    assert abs(analysis["li_to_co_boundary_change_fraction"] + 0.4) < 0.05
    assert analysis["paper"] is None  # skipped as the protocol asked
    none, _ = vegard_json("dry-run", str(protocol), "--data-dir", str(tmp_path / "b"),
                          "--set", "stem.ldo_boundary_shift_mev=0")
    analysis = none["analysis"]
    assert none["ground_truth"]["ldo_boundary_shift_mev"] == 0.0
    assert abs(analysis["ldo_boundary_shift_mev"]) < 2 * analysis["ldo_boundary_shift_stderr_mev"]
    assert abs(analysis["ldo_boundary_shift_mev"]) < 0.6
