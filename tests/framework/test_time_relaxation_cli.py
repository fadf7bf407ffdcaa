"""Time relaxation spectroscopy end to end: `vegard dry-run` of the shipped protocol with a
relaxation time, stretch exponent and threshold other than the defaults (`--set`) pulses and
reads every grid point on the simulated AFM; the live analysis recovers each point's τ (grain
dependent, Arrhenius, at the temperature measured) within 10 %, β within 0.05 and the
irreversible part the pulse left above V_c; the tip ends unbiased and parked, and replay
gives the same analysis. A sequence lost on the wire three times in a row fails the run
with the tip unbiased (simulator truth) and the points before it kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runs import vegard_json

from vegard.cli import main

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/time_relaxation_spectroscopy.yaml"
TAU_300K_S, BETA, THRESHOLD_V = 0.3, 0.75, 2.5
READS_OF_THIRD_POINT = 37
"""The wire line of the third point's `BE:RSPEC?` (the plan's commands are fixed)."""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("store")
    summary, _ = vegard_json(
        "dry-run", str(PROTOCOL), "--data-dir", str(data_dir),
        "--set", f"afm.relaxation_time_300k_s={TAU_300K_S}",
        "--set", f"afm.relaxation_stretch_exponent={BETA}",
        "--set", f"afm.injection_threshold_v={THRESHOLD_V}")
    return data_dir, summary


def test_every_point_is_pulsed_and_read_and_the_tip_ends_unbiased(run) -> None:
    _, summary = run
    assert summary["exit_status"] == "success"
    analysis = summary["analysis"]
    assert analysis["points"] == analysis["points_measured"] == analysis["points_fitted"] == 16
    afm = summary["safe_state"]["afm"]
    assert afm["safe"] and not afm["bias_output_on"]
    assert afm["bias_dc_v"] == afm["bias_ac_v"] == 0.0 and afm["tip_parked"]
    # 16 points × (4 baseline reads × 31.25 ms + 0.1 s pulse + 2 s of reads)
    assert 35.5 < summary["instrument_time_s"] < 37.0
    assert all(Path(path).is_file() for path in analysis["figures"])
    assert Path(analysis["maps_file"]).is_file()


def test_relaxation_time_and_stretch_are_recovered_per_point(run) -> None:
    _, summary = run
    analysis, truth = summary["analysis"], summary["ground_truth"]
    simulated = truth["afm"]["time_relaxation_spectroscopy"]
    assert simulated["relaxation_time_300k_s"] == TAU_300K_S and simulated["pulses"] == 16
    grid = truth["relaxation"]
    tau = np.array(analysis["per_point"]["relaxation_time_s"])
    true_tau = np.array(grid["per_point"]["relaxation_time_s"])
    assert np.ptp(true_tau) > 0.2 * true_tau.mean()  # grain dependent: one value would fail
    assert np.all(np.abs(tau / true_tau - 1) < 0.10)
    assert np.all(np.abs(np.array(analysis["per_point"]["stretch_exponent"]) - BETA) < 0.05)
    relaxing = np.array(analysis["per_point"]["relaxing_response_pm"])
    true_relaxing = np.array(grid["per_point"]["relaxing_response_pm"])
    assert np.all(np.abs(relaxing / true_relaxing - 1) < 0.10)
    # 4 V is above V_c = 2.5 ± 0.3 V: an irreversible part stays, recovered within 0.3 pm
    irreversible = np.array(analysis["per_point"]["irreversible_response_pm"])
    true_irreversible = np.array(grid["per_point"]["irreversible_response_pm"])
    assert np.all(true_irreversible > 1.0)
    assert np.all(np.abs(irreversible - true_irreversible) < 0.3)


def test_replay_gives_the_same_analysis(run) -> None:
    data_dir, summary = run
    replayed, _ = vegard_json("replay", summary["run_uids"][0], "--data-dir", str(data_dir))
    assert replayed["analysis"] == summary["analysis"]


def test_a_sequence_lost_three_times_fails_the_run_with_the_tip_unbiased(tmp_path,
                                                                       capsys) -> None:
    protocol = tmp_path / "relaxation_small.yaml"
    protocol.write_text(PROTOCOL.read_text().replace("points: [4, 4]", "points: [2, 2]"))
    # in-process (the fault path needs no subprocess of its own; saves its start-up)
    code = main(["dry-run", str(protocol), "--json", "--data-dir", str(tmp_path / "store"),
                 "--set", f"afm.fault_timeout_at_command={READS_OF_THIRD_POINT}",
                 "--set", "afm.fault_repeat=3"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and summary["exit_status"] == "fail"
    fired = summary["faults_injected"]["afm"]
    assert [f["line"] for f in fired] == ["BE:RSPEC?"] * 3  # mid-sequence, each retake too
    afm = summary["safe_state"]["afm"]
    assert afm["safe"] and not afm["bias_output_on"] and afm["bias_dc_v"] == 0.0
    assert afm["tip_parked"]
    assert summary["analysis"]["points_measured"] == 2
