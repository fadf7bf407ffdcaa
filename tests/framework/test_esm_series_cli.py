"""The flagship ESM temperature series end to end: Arrhenius recovery, drift tracking, replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runs import dry_run

from vegard.cli import main

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/esm_temperature_series.yaml"
MAP_PIXEL_NM = 800.0 / 64



def short_series(tmp_path: Path, *, tracking: bool = True) -> Path:
    """Four temperatures, 32 × 32 pixels over the same 0.8 µm area, fewer averages."""
    text = (PROTOCOL.read_text()
            .replace("[250, 275, 300, 325, 350, 375, 400]", "[250, 300, 350, 400]")
            .replace("pixels: [64, 64]", "pixels: [32, 32]")
            .replace("averages: 20", "averages: 6"))
    if not tracking:
        text = text.replace("  enabled: true", "  enabled: false")
    path = tmp_path / ("series.yaml" if tracking else "untracked.yaml")
    path.write_text(text)
    return path


def registration_error_nm(summary: dict) -> list[float]:
    """Per map: mean distance between the sample points probed and those of the first map."""
    truth = np.load(summary["ground_truth_file"])
    frames = sorted({key.split(".")[1] for key in truth.files if key.startswith("afm.frame")},
                    key=lambda name: int(name.removeprefix("frame")))
    first_x, first_y = truth[f"afm.{frames[0]}.sample_x_nm"], truth[f"afm.{frames[0]}.sample_y_nm"]
    return [
        float(np.mean(np.hypot(truth[f"afm.{f}.sample_x_nm"] - first_x,
                               truth[f"afm.{f}.sample_y_nm"] - first_y)))
        for f in frames
    ]


@pytest.fixture(scope="module")
def flagship(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("store")
    summary, progress = dry_run(data_dir, PROTOCOL)
    return data_dir, summary, progress


def test_flagship_recovers_the_activation_energy_and_the_paper_orders_of_magnitude(flagship):
    _, summary, progress = flagship
    analysis = summary["analysis"]
    for key in ("activation_energy_kj_mol", "activation_energy_stderr_kj_mol",
                "apparent_activation_energy_lf_kj_mol", "a_f_pm_by_temperature_k",
                "a_hf_pm_by_temperature_k", "a_lf_pm_by_temperature_k",
                "delta_c_over_c_300k", "r_total_ohm", "figures"):
        assert key in analysis, key
    truth_kj_mol = summary["ground_truth"]["afm"]["activation_energy_kj_mol"]
    assert abs(analysis["activation_energy_kj_mol"] - truth_kj_mol) <= 2.0
    assert analysis["apparent_activation_energy_lf_kj_mol"] < 0.5 * truth_kj_mol
    a_hf = np.array(list(analysis["a_hf_pm_by_temperature_k"].values()))
    assert len(a_hf) == 7 and (a_hf.max() - a_hf.min()) / a_hf.mean() < 0.10
    assert 0.002 <= analysis["delta_c_over_c_300k"] <= 0.01
    assert 1e10 <= analysis["r_total_ohm"] <= 1e11
    a_f = analysis["a_f_pm_by_temperature_k"]
    assert 1.0 < a_f["250"] < 3.0 and 15.0 < a_f["400"] < 30.0
    for figure in analysis["figures"]:
        assert Path(figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "point 448/448" in progress
    assert summary["ground_truth"]["afm"]["tip_bias_v"] == 0.0


def test_flagship_maps_stay_on_the_reference_area(flagship):
    _, summary, _ = flagship
    errors_nm = registration_error_nm(summary)
    assert len(errors_nm) == 7
    assert max(errors_nm) <= 2 * MAP_PIXEL_NM
    drift = summary["ground_truth"]["afm"]["frames"][-1]
    assert abs(drift["drift_x_nm"]) > 100  # while the sample really moved


def test_replay_reproduces_the_series_analysis(flagship, capsys):
    data_dir, summary, _ = flagship
    code = main(["replay", summary["run_uids"][0], "--data-dir", str(data_dir), "--json"])
    replayed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert replayed["analysis"] == summary["analysis"]


def test_recovery_holds_for_other_simulator_physics(tmp_path):
    summary, _ = dry_run(
        tmp_path / "store", short_series(tmp_path), "--quiet",
        "--set", "afm.activation_energy_kj_mol=35",
        "--set", "afm.electrostatic_pm_per_v2=4.0",
        "--set", "afm.contact_potential_v=0.4",
    )
    analysis, truth = summary["analysis"], summary["ground_truth"]["afm"]
    assert truth["activation_energy_kj_mol"] == 35.0
    assert abs(analysis["activation_energy_kj_mol"] - 35.0) <= 2.0
    assert analysis["apparent_activation_energy_lf_kj_mol"] < 0.5 * 35.0
    a_hf = np.array(list(analysis["a_hf_pm_by_temperature_k"].values()))
    assert a_hf.mean() == pytest.approx(4.0 * 2.5**2, rel=0.15)  # the stronger electrostatics
    assert max(registration_error_nm(summary)) <= 2 * MAP_PIXEL_NM


def test_without_tracking_the_drift_misregisters_the_maps(tmp_path):
    summary, _ = dry_run(tmp_path / "store", short_series(tmp_path, tracking=False), "--quiet")
    errors_nm = registration_error_nm(summary)
    assert errors_nm[-1] > 10 * MAP_PIXEL_NM  # 150 K of drift: hundreds of nm
    assert summary["analysis"]["scan_offsets_nm_by_temperature_k"] in ({}, None) or all(
        offset == [0.0, 0.0]
        for offset in summary["analysis"]["scan_offsets_nm_by_temperature_k"].values()
    )


def test_sim_params_name_the_physics_a_scientist_changes(capsys):
    assert main(["sim", "params", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)["parameters"]
             if row["instrument"] == "afm"]
    for fragment in ("activation_energy_kj_mol", "electrostatic", "contact_potential_v"):
        assert any(fragment in name for name in names), fragment
