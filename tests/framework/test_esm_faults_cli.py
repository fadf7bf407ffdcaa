"""Faults injected from the command line (`--set`) into a small ESM temperature series.

Each case is a real `vegard dry-run` subprocess; the outcome is judged from its JSON
summary, where `safe_state` is what the simulators know (not what a driver reported) and
`faults_injected` proves the fault happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/esm_temperature_series.yaml"
LINES = 16
MID_FIRST_MAP_S = 100.0
"""Instrument time after the lab started that falls inside the first map: on the virtual
clock settling to 300 K takes 91 s and a 16-line map 92-105 s (the same on any machine)."""
LONG_MAP_LINES = 32
"""The first map then runs from 92 s to 143 s."""


def small_series(tmp_path: Path, temperatures: str = "[300, 325]", lines: int = LINES) -> Path:
    text = (PROTOCOL.read_text()
            .replace("[250, 275, 300, 325, 350, 375, 400]", temperatures)
            .replace("pixels: [64, 64]", f"pixels: [{lines}, {lines}]")
            .replace("averages: 20", "averages: 4")
            .replace("  enabled: true", "  enabled: false"))
    path = tmp_path / "series.yaml"
    path.write_text(text)
    return path


def dry_run(tmp_path: Path, *settings: str, protocol: Path | None = None
            ) -> tuple[int, dict, str]:
    protocol = protocol or small_series(tmp_path)
    command = [sys.executable, "-m", "vegard.cli", "dry-run", str(protocol),
               "--json", "--data-dir", str(tmp_path / "store")]
    for setting in settings:
        command += ["--set", setting]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def primary_rows(summary: dict) -> list[int]:
    documents = Path(summary["data_dir"]) / "runs" / summary["run_uids"][0] / "documents.jsonl"
    rows = []
    for line in documents.read_text().splitlines():
        entry = json.loads(line)
        if entry["name"] == "event" and "afm-row" in entry["doc"]["data"]:
            rows.append(int(entry["doc"]["data"]["afm-row"]))
    return rows


def assert_all_safe(summary: dict) -> None:
    assert summary["safe_state"]["afm"]["safe"], summary["safe_state"]
    assert summary["safe_state"]["afm"]["tip_parked"]
    assert summary["safe_state"]["temperature_stage"]["safe"], summary["safe_state"]


def test_a_short_heater_runaway_pauses_the_map_and_it_resumes_complete(tmp_path):
    protocol = small_series(tmp_path, "[300, 310]", LONG_MAP_LINES)
    code, summary, stderr = dry_run(
        tmp_path, f"temperature_stage.fault_heater_runaway_at_s={MID_FIRST_MAP_S}",
        "temperature_stage.fault_heater_runaway_s=60", protocol=protocol)
    assert code == 0, stderr[-2000:]
    assert summary["exit_status"] == "success"
    assert summary["faults_injected"]["temperature_stage"][0]["kind"] == "heater_runaway"
    assert "map paused" in stderr and "map resumed" in stderr
    rows = primary_rows(summary)
    assert sorted(set(rows)) == list(range(LONG_MAP_LINES))  # every line of both maps
    # a line the excursion interrupted was taken again (at most one is interrupted)
    assert 2 * LONG_MAP_LINES <= len(rows) <= 2 * LONG_MAP_LINES + 1
    assert ("taking it again" in stderr) == (len(rows) == 2 * LONG_MAP_LINES + 1)
    assert summary["analysis"]["temperatures_k"] == pytest.approx([300.0, 310.0], abs=0.1)
    assert_all_safe(summary)


def test_a_heater_runaway_past_the_rated_maximum_fails_with_the_heater_off(tmp_path):
    protocol = small_series(tmp_path, "[300, 310]", LONG_MAP_LINES)
    code, summary, _ = dry_run(
        tmp_path, f"temperature_stage.fault_heater_runaway_at_s={MID_FIRST_MAP_S}",
        protocol=protocol)
    assert code == 1
    assert summary["exit_status"] == "fail"
    assert "heater runaway" in summary["reason"] and "rated maximum 400 K" in summary["reason"]
    assert summary["safe_state"]["temperature_stage"]["heater_off"]
    assert not summary["safe_state"]["temperature_stage"]["heater_runaway"]
    assert_all_safe(summary)
    assert len(primary_rows(summary)) >= 1  # lines before the runaway are kept


@pytest.mark.parametrize("kind", ["timeout", "drop", "malformed"])
def test_a_scan_line_lost_on_the_wire_is_taken_again_and_nothing_is_lost(tmp_path, kind):
    code, summary, stderr = dry_run(tmp_path, f"afm.fault_{kind}_at_s={MID_FIRST_MAP_S}")
    assert code == 0, stderr[-2000:]
    (fired,) = summary["faults_injected"]["afm"]
    assert fired["kind"] == kind
    rows = primary_rows(summary)
    assert sorted(rows) == sorted(list(range(LINES)) * 2)  # each line of both maps, once
    assert_all_safe(summary)
