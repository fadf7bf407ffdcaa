"""The `vegard` command end to end on the simulators (the issue's "done when" lines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from variants import profile_variant, protocol_variant

from vegard.cli import main

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/temperature_steps.yaml"
SIM_PROFILE = REPOSITORY / "configs/profiles/sim.yaml"


def vegard_json(capsys, *arguments: str) -> tuple[int, dict]:
    code = main([*arguments, "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(lines[-1])


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One dry run of the shipped protocol, shared by the checks below."""
    data_dir = tmp_path_factory.mktemp("store")
    capture = subprocess.run(
        [sys.executable, "-m", "vegard.cli", "dry-run", str(PROTOCOL), "--json",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert capture.returncode == 0, capture.stderr
    return data_dir, json.loads(capture.stdout.strip().splitlines()[-1]), capture.stderr


def test_dry_run_reports_settled_temperature_and_settling_time_per_step(dry_run):
    _, summary, progress = dry_run
    for key in ("protocol", "run_uids", "instrument_time_s", "wall_time_s", "analysis",
                "ground_truth"):
        assert key in summary
    analysis = summary["analysis"]
    steps = analysis["steps"]
    assert len(steps) >= 3
    assert all(200.0 <= s["setpoint_k"] <= 400.0 for s in steps)
    tolerance_k = analysis["settle_tolerance_k"]
    for step in steps:
        assert abs(step["settled_temperature_k"] - step["setpoint_k"]) <= tolerance_k
        assert step["hold_peak_deviation_k"] <= tolerance_k
        assert step["settling_time_s"] > 0
    # instrument time ran ahead of wall time, and the summary says so separately
    assert summary["instrument_time_s"] > 50 * summary["wall_time_s"]
    assert summary["ground_truth"]["temperature_stage"]["target_setpoint_k"] == 295.0
    assert "point 3/3" in progress and "ETA" in progress
    figure = Path(analysis["figures"][0])
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_prints_the_same_analysis(dry_run, capsys):
    data_dir, live, _ = dry_run
    uid = live["run_uids"][0]
    code, replayed = vegard_json(capsys, "replay", uid[:8], "--data-dir", str(data_dir))
    assert code == 0
    assert replayed["analysis"] == live["analysis"]
    assert replayed["run_uids"] == [uid]


def test_runs_lists_the_dry_run(dry_run, capsys):
    data_dir, live, _ = dry_run
    code, listing = vegard_json(capsys, "runs", "--data-dir", str(data_dir))
    assert code == 0
    (run,) = [r for r in listing["runs"] if r["uid"] == live["run_uids"][0]]
    assert run["status"] == "success"
    assert run["sample"] == "Cu2Mo6S8 crystal on the VT stage"
    assert run["protocol"].endswith("temperature_steps.yaml")


BAD_PROTOCOLS = {
    "500 K": ("[250, 300, 350]", "[250, 500, 350]", "temperatures_k[1] = 500"),
    "negative ramp": ("ramp_rate_k_per_min: 10", "ramp_rate_k_per_min: -5",
                      "ramp_rate_k_per_min = -5"),
    "missing field": ("  settle_tolerance_k: 0.1\n", "", "settle_tolerance_k is missing"),
}


@pytest.mark.parametrize("case", BAD_PROTOCOLS)
def test_bad_protocol_is_refused_before_any_command_reaches_the_instrument(
    case, lab, tmp_path, capsys
):
    old, new, expected = BAD_PROTOCOLS[case]
    protocol = tmp_path / "bad.yaml"
    protocol.write_text(PROTOCOL.read_text().replace(old, new))
    profile = tmp_path / "lab.yaml"
    profile.write_text(
        "profile: test-lab\nclock:\n  speedup: 2000\ndevices:\n  temperature_stage:\n"
        f"    driver: lakeshore336\n    address: {lab.addresses['temperature_stage']}\n"
    )
    code = main(["run", str(protocol), "--profile", str(profile), "--data-dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2
    assert str(protocol) in error and expected in error
    assert lab.command_log("temperature_stage") == []
    assert not (tmp_path / "runs").exists()


def test_protocol_outside_the_profile_stage_range_is_refused(tmp_path, capsys):
    profile = profile_variant(SIM_PROFILE, tmp_path / "narrow.yaml",
                              devices={"temperature_stage": {"maximum_temperature_k": 320}})
    code = main(["dry-run", str(PROTOCOL), "--profile", str(profile),
                 "--data-dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2
    assert "temperatures_k[2] = 350" in error and "≤ 320 K" in error


def test_sim_params_lists_every_parameter_with_unit_and_range(capsys):
    code, listing = vegard_json(capsys, "sim", "params", "--profile", str(SIM_PROFILE))
    assert code == 0
    rows = {f"{r['instrument']}.{r['name']}": r for r in listing["parameters"]}
    mass = rows["temperature_stage.thermal_mass_j_per_k"]
    assert mass["unit"] == "J/K" and mass["minimum"] < mass["value"] < mass["maximum"]
    assert all(r["unit"] is not None and r["minimum"] <= r["maximum"] for r in rows.values())


def test_set_overrides_reach_the_simulator_and_bad_ones_are_refused(tmp_path, capsys):
    code, summary = vegard_json(
        capsys, "dry-run", str(PROTOCOL), "--quiet", "--data-dir", str(tmp_path),
        "--set", "temperature_stage.thermal_mass_j_per_k=40",
    )
    assert code == 0
    parameters = summary["ground_truth"]["temperature_stage"]["parameters"]
    assert parameters["thermal_mass_j_per_k"] == 40.0
    code = main(["dry-run", str(PROTOCOL), "--data-dir", str(tmp_path),
                 "--set", "temperature_stage.thermal_mass_j_per_k=-1"])
    error = capsys.readouterr().err
    assert code == 2
    assert "temperature_stage.thermal_mass_j_per_k = -1" in error and "J/K" in error


def test_replay_of_an_unknown_uid_is_refused(tmp_path, capsys):
    code = main(["replay", "0000dead", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "no run with uid starting '0000dead'" in capsys.readouterr().err


def test_errors_are_one_line_without_traceback(tmp_path):
    capture = subprocess.run(
        [sys.executable, "-m", "vegard.cli", "dry-run", str(tmp_path / "absent.yaml")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert capture.returncode == 2
    assert capture.stderr.strip().count("\n") == 0
    assert "Traceback" not in capture.stderr and "absent.yaml: no such file" in capture.stderr


def test_run_against_simulators_served_by_another_process(tmp_path):
    """`vegard sim serve` in a process; `vegard run` follows its clock over the wire."""
    served_profile = tmp_path / "serve.yaml"
    served_profile.write_text(SIM_PROFILE.read_text()
                              .replace("control_port: 53399", "control_port: 0")
                              .replace("temperature_stage: 53336", "temperature_stage: 0")
                              .replace("afm: 53337", "afm: 0")
                              .replace("potentiostat: 53338", "potentiostat: 0"))
    server = subprocess.Popen(
        [sys.executable, "-m", "vegard.cli", "sim", "serve", "--profile", str(served_profile)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        addresses = {}
        while "control" not in addresses:  # one line per instrument, the control port last
            name, address = server.stdout.readline().split()
            addresses[name] = address
        client_profile = tmp_path / "client.yaml"
        client_profile.write_text(
            f"profile: served\nclock:\n  follow: {addresses['control']}\ndevices:\n"
            f"  temperature_stage:\n    driver: lakeshore336\n"
            f"    address: {addresses['temperature_stage']}\n"
        )
        protocol = protocol_variant(PROTOCOL, tmp_path / "short.yaml",
                                    temperature_stage={"temperatures_k": [310]})
        capture = subprocess.run(
            [sys.executable, "-m", "vegard.cli", "run", str(protocol), "--profile",
             str(client_profile), "--json", "--data-dir", str(tmp_path / "store")],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert capture.returncode == 0, capture.stderr
    summary = json.loads(capture.stdout.strip().splitlines()[-1])
    assert summary["clock"] == "paced x1000"  # taken from the served lab, not the profile
    (step,) = summary["analysis"]["steps"]
    assert abs(step["settled_temperature_k"] - 310.0) <= 0.1
    assert "ground_truth" not in summary
