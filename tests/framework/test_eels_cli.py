"""STEM-EELS end to end: `vegard dry-run` of the shipped grain-boundary protocol takes every
pass on the simulated microscope, the live analysis reports the boundary shift with its
standard error and the simulator's truth beside it, the beam ends blanked, and replay
gives the same analysis. (Recovery to the Done-when tolerances is tested at higher dose in
tests/analysis/test_eels_line.py; at the shipped dose the pipeline is not yet there.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runs import vegard_json

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
    assert analysis["aloof_spectra"] == 4 and analysis["registration_lines"] == 3
    assert summary["safe_state"]["stem"]["beam_blanked"] is True
    # instrument time: 61 pixels × (1 s + 0.2 s + 2 ms) plus aloof, tests and registration
    assert 60 < summary["instrument_time_s"] < 120


def test_the_analysis_reports_shift_activation_energy_and_li_to_co_beside_the_truth(run):
    _, summary = run
    analysis, truth = summary["analysis"], summary["ground_truth"]
    for key in ("ldo_boundary_shift_mev", "ldo_boundary_shift_stderr_mev",
                "activation_energy_change_fraction", "li_to_co_boundary_change_fraction"):
        assert isinstance(analysis[key], float), key
    assert truth["ldo_boundary_shift_mev"] == 1.8
    assert truth["li_to_co_boundary_change_fraction"] == -0.27
    assert analysis["activation_energy_change_fraction"] == pytest.approx(
        2 * analysis["ldo_boundary_shift_mev"] / analysis["ldo_centre_grain_a_mev"], rel=0.05)
    shift, stderr = analysis["ldo_boundary_shift_mev"], analysis["ldo_boundary_shift_stderr_mev"]
    assert 0 < stderr < 2.0
    # against the shift the line can show: the true LDO centre over the pooled regions
    measurable = truth["ldo_boundary_shift_region_mean_mev"]
    assert 1.0 < measurable < truth["ldo_boundary_shift_mev"]
    assert abs(shift - measurable) < 3 * stderr
    assert analysis["li_to_co_boundary_change_fraction"] == pytest.approx(-0.27, abs=0.10)
    assert abs(analysis["boundary_position_nm"] - truth["boundary_position_nm"]) < 2.0
    assert all(Path(path).is_file() for path in analysis["figures"].values() if path)


def test_replay_gives_the_same_analysis(run) -> None:
    data_dir, summary = run
    replayed, _ = vegard_json("replay", summary["run_uids"][0], "--data-dir", str(data_dir))
    strip = lambda analysis: {k: v for k, v in analysis.items() if k != "figures"}  # noqa: E731
    assert strip(replayed["analysis"]) == strip(summary["analysis"])
