"""BE voltage spectroscopy end to end: `vegard dry-run` of the shipped protocol with a
threshold and imprint other than the defaults (`--set`) sweeps every grid point on the
simulated AFM, the live analysis recovers the coercive voltages the simulator switched at
(within 0.1 V rms over the grid), the tip ends unbiased and parked, and replay gives the
same analysis."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runs import vegard_json

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/be_voltage_spectroscopy.yaml"
THRESHOLD_V, IMPRINT_V = 2.2, -0.4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("store")
    summary, _ = vegard_json(
        "dry-run", str(PROTOCOL), "--data-dir", str(data_dir),
        "--set", f"afm.switching_threshold_v={THRESHOLD_V}",
        "--set", f"afm.switching_imprint_v={IMPRINT_V}")
    return data_dir, summary


def test_every_point_is_swept_and_the_tip_ends_unbiased(run) -> None:
    _, summary = run
    assert summary["exit_status"] == "success"
    analysis = summary["analysis"]
    assert analysis["points"] == analysis["points_measured"] == analysis["points_fitted"] == 16
    afm = summary["safe_state"]["afm"]
    assert afm["safe"] and not afm["bias_output_on"]
    assert afm["bias_dc_v"] == afm["bias_ac_v"] == 0.0 and afm["tip_parked"]
    # 16 points × 64 steps × 3 cycles × (write + read) × 4 averages × 4 ms, plus commands
    assert 98 < summary["instrument_time_s"] < 101
    assert all(Path(path).is_file() for path in analysis["figures"])
    assert Path(analysis["maps_file"]).is_file()


def test_coercive_voltages_are_recovered_within_a_tenth_of_a_volt_rms(run) -> None:
    _, summary = run
    analysis, truth = summary["analysis"], summary["ground_truth"]
    simulated = truth["afm"]["voltage_spectroscopy"]
    assert simulated["switching_threshold_v"] == THRESHOLD_V and simulated["sweeps"] == 16
    grid = truth["be_spectroscopy"]
    for name in ("coercive_voltage_negative_v", "coercive_voltage_positive_v", "imprint_v"):
        assert grid[f"{name}_rms_error"] < 0.1, name
        assert analysis[f"{name}_mean"] == pytest.approx(grid[f"{name}_mean"], abs=0.1)
    assert abs(grid["imprint_v_mean"] - IMPRINT_V) <= 0.2  # grain spread ± 0.2 V
    half_width = [(p - n) / 2 for n, p in zip(grid["per_point"]["coercive_voltage_negative_v"],
                                              grid["per_point"]["coercive_voltage_positive_v"],
                                              strict=True)]
    assert all(abs(w - THRESHOLD_V) <= 0.3 for w in half_width)  # grain spread ± 0.3 V
    assert grid["switchable_response_pm_rms_error"] < 0.05 * grid["switchable_response_pm_mean"]


def test_replay_gives_the_same_analysis(run) -> None:
    data_dir, summary = run
    replayed, _ = vegard_json("replay", summary["run_uids"][0], "--data-dir", str(data_dir))
    assert replayed["analysis"] == summary["analysis"]
