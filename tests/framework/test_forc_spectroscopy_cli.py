"""FORC spectroscopy end to end: `vegard dry-run` of the shipped protocol with a threshold,
spread and injection strain other than the defaults (`--set`) sweeps every grid point on the
simulated AFM; the live analysis recovers each point's threshold V_c within one FORC step
(0.5 V; in fact within 0.15 V) and finds no loop area below it, κ within 10 %; the tip ends
unbiased and parked, and replay gives the same analysis. A sweep lost on the wire three
times in a row fails the run with the tip unbiased (simulator truth) and the points before
it kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runs import vegard_json

from vegard.cli import main

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/forc_spectroscopy.yaml"
THRESHOLD_V, SPREAD_V, STRAIN_PM_PER_V = 2.3, 0.4, 30.0
FORC_STEP_V = 0.5
FIRST_SPECTRUM_OF_THIRD_POINT = 34
"""The wire line of the third point's `BE:FSPEC?` (the plan's commands are fixed)."""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("store")
    summary, _ = vegard_json(
        "dry-run", str(PROTOCOL), "--data-dir", str(data_dir),
        "--set", f"afm.injection_threshold_v={THRESHOLD_V}",
        "--set", f"afm.injection_threshold_spread_v={SPREAD_V}",
        "--set", f"afm.injection_strain_pm_per_v={STRAIN_PM_PER_V}")
    return data_dir, summary


def test_every_point_is_swept_and_the_tip_ends_unbiased(run) -> None:
    _, summary = run
    assert summary["exit_status"] == "success"
    analysis = summary["analysis"]
    assert analysis["points"] == analysis["points_measured"] == analysis["points_fitted"] == 16
    assert analysis["forc_step_v"] == pytest.approx(FORC_STEP_V)
    afm = summary["safe_state"]["afm"]
    assert afm["safe"] and not afm["bias_output_on"]
    assert afm["bias_dc_v"] == afm["bias_ac_v"] == 0.0 and afm["tip_parked"]
    # 16 points × 9 peaks × 2 cycles × 32 steps × (write + read) × 4 averages × 4 ms
    assert 294 < summary["instrument_time_s"] < 298
    assert all(Path(path).is_file() for path in analysis["figures"])
    assert Path(analysis["maps_file"]).is_file()


def test_thresholds_are_recovered_within_one_forc_step_and_no_area_below_them(run) -> None:
    _, summary = run
    analysis, truth = summary["analysis"], summary["ground_truth"]
    simulated = truth["afm"]["forc_spectroscopy"]
    assert simulated["injection_threshold_v"] == THRESHOLD_V and simulated["sweeps"] == 16
    grid = truth["forc"]
    measured = np.array(analysis["per_point"]["threshold_v"])
    true_v = np.array(grid["per_point"]["threshold_v"])
    assert np.ptp(true_v) > 0.3  # grains differ: a constant answer would not pass
    assert np.all(np.abs(measured - true_v) < FORC_STEP_V)
    assert grid["threshold_v_rms_error"] < 0.15
    low = np.array(analysis["per_point"]["threshold_bracket_low_v"])
    high = np.array(analysis["per_point"]["threshold_bracket_high_v"])
    assert np.all(high - low == pytest.approx(FORC_STEP_V))
    assert grid["area_slope_pm_rms_relative_error"] < 0.10
    peaks = np.array(analysis["peak_bias_v"])
    areas = np.array(analysis["per_point"]["loop_area_pm_v"])
    kappa = np.array(grid["per_point"]["area_slope_pm"])
    below = peaks[None, :] < true_v[:, None]
    # zero area below V_c: under a tenth of what one FORC step above it adds
    assert np.all(np.abs(areas[below]) < 0.1 * np.repeat(kappa, below.sum(axis=1)) * FORC_STEP_V)
    above = peaks[None, :] > true_v[:, None] + FORC_STEP_V
    assert np.all(areas[above] > 0.5 * np.repeat(kappa, above.sum(axis=1)) * FORC_STEP_V)


def test_replay_gives_the_same_analysis(run) -> None:
    data_dir, summary = run
    replayed, _ = vegard_json("replay", summary["run_uids"][0], "--data-dir", str(data_dir))
    assert replayed["analysis"] == summary["analysis"]


def test_a_sweep_lost_three_times_fails_the_run_with_the_tip_unbiased(tmp_path, capsys) -> None:
    protocol = tmp_path / "forc_small.yaml"
    protocol.write_text(PROTOCOL.read_text().replace("points: [4, 4]", "points: [2, 2]"))
    # in-process (the fault path needs no subprocess of its own; saves its start-up)
    code = main(["dry-run", str(protocol), "--json", "--data-dir", str(tmp_path / "store"),
                 "--set", f"afm.fault_timeout_at_command={FIRST_SPECTRUM_OF_THIRD_POINT}",
                 "--set", "afm.fault_repeat=3"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and summary["exit_status"] == "fail"
    fired = summary["faults_injected"]["afm"]
    assert [f["line"] for f in fired] == ["BE:FSPEC?"] * 3  # mid-sweep, each retake too
    assert "BE:FSPEC?" in summary["reason"]
    afm = summary["safe_state"]["afm"]
    assert afm["safe"] and not afm["bias_output_on"] and afm["bias_dc_v"] == 0.0
    assert afm["tip_parked"]
    assert summary["analysis"]["points_measured"] == 2  # the points before it are kept
