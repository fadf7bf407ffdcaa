"""`vegard dry-run` of the room-temperature ESM map, its recovery of the truth, and replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runs import dry_run
from variants import protocol_variant

from vegard.cli import main

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/esm_room_temperature.yaml"



def maps_and_truth(summary: dict) -> tuple[dict, dict]:
    maps = dict(np.load(summary["analysis"]["maps_file"]))
    truth = dict(np.load(summary["ground_truth_file"]))
    return maps, truth


@pytest.fixture(scope="module")
def room_temperature_map(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("store")
    summary, progress = dry_run(data_dir, PROTOCOL, timeout_s=300)
    return data_dir, summary, progress


def test_dry_run_reports_the_compensated_amplitudes_and_figures(room_temperature_map):
    _, summary, progress = room_temperature_map
    analysis = summary["analysis"]
    for key in ("a_f_mean_pm", "a_hf_mean_pm", "a_lf_mean_pm"):
        assert isinstance(analysis[key], float)
    assert analysis["pixels_fitted"] == analysis["pixels"] == 64 * 64
    for figure in analysis["figures"]:
        assert Path(figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["ground_truth"]["afm"]["vegard_strain_mean_pm"] > 0
    assert "point 64/64" in progress
    assert summary["ground_truth"]["afm"]["tip_bias_v"] == 0.0


def test_compensated_map_recovers_the_true_vegard_strain(room_temperature_map):
    _, summary, _ = room_temperature_map
    maps, truth = maps_and_truth(summary)
    d1 = truth["afm.frame0.vegard_strain_pm"]
    a_f = maps["a_f_pm"]
    assert a_f.shape == d1.shape == (64, 64)
    r = np.corrcoef(a_f.ravel(), d1.ravel())[0, 1]
    assert r >= 0.9
    assert abs(np.mean(a_f) / np.mean(d1) - 1) <= 0.10
    truth_mean = summary["ground_truth"]["afm"]["vegard_strain_mean_pm"]
    assert abs(summary["analysis"]["a_f_mean_pm"] / truth_mean - 1) <= 0.10
    # Ā_LF alone is biased by the electrostatic term by far more than the noise of a_f
    noise_pm = np.std(a_f - d1 * truth["afm.frame0.sensitivity"])
    bias_pm = np.mean(maps["a_lf_pm"] - d1)
    assert bias_pm > 10 * noise_pm


def test_replay_reproduces_the_analysis(room_temperature_map, capsys):
    data_dir, summary, _ = room_temperature_map
    uid = summary["run_uids"][0]
    code = main(["replay", uid[:8], "--data-dir", str(data_dir), "--json"])
    replayed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert replayed["analysis"] == summary["analysis"]


def small_protocol(tmp_path: Path) -> Path:
    return protocol_variant(PROTOCOL, tmp_path / "small.yaml", map={"pixels": [24, 16]},
                            excitation={"averages": 4})


def test_compensation_cancels_a_pure_electrostatic_sample(tmp_path):
    summary, _ = dry_run(tmp_path / "store", small_protocol(tmp_path),
                         "--set", "afm.vegard_coefficient=0", "--quiet", timeout_s=300)
    maps, _ = maps_and_truth(summary)
    a_f = maps["a_f_pm"]
    standard_error_pm = np.std(a_f) / np.sqrt(a_f.size)
    assert abs(np.mean(a_f)) < max(4 * standard_error_pm, 0.01)
    assert summary["analysis"]["a_hf_mean_pm"] > 2.0  # while the electrostatics are there


def test_bias_above_the_profile_limit_is_refused_before_anything_runs(tmp_path, capsys):
    protocol = protocol_variant(PROTOCOL, tmp_path / "hot.yaml",
                                excitation={"drive_amplitude_v": 9.5})
    code = main(["dry-run", str(protocol), "--data-dir", str(tmp_path / "store")])
    message = capsys.readouterr().err
    assert code == 2
    assert "excitation.drive_amplitude_v + excitation.dc_offset_v = 10.5 V" in message
    assert "allowed: ≤ 10 V" in message
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.jsonl"))
