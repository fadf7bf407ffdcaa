"""A real `vegard dry-run` of an ESM map, SIGKILLed mid-map, loses at most the line in flight.

The crash test in test_store_crash.py kills a synthetic run; this one kills the whole
stack (simulators, drivers, RunEngine, run store) while scan lines are being recorded,
and then reads the run back through the CLI the way a user would after a crash.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from crash_helpers import arrays_by_seq_num, document_names, sigkill_when

from vegard.cli import main
from vegard.store import load_documents

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/esm_room_temperature.yaml"
EVENTS_BEFORE_KILL = 3
PIXELS_PER_LINE = 32
LINES = 48
"""Many more lines than we wait for, so the map is still running when the kill comes."""
START_TIMEOUT_S = 45.0
SPECTRA_KEY = "afm-spectra"


def small_protocol(tmp_path: Path) -> Path:
    """The room-temperature ESM protocol with shorter scan lines: same kind, same steps."""
    protocol = yaml.safe_load(PROTOCOL.read_text())
    protocol["map"]["pixels"] = [PIXELS_PER_LINE, LINES]
    path = tmp_path / "esm_small.yaml"
    path.write_text(yaml.safe_dump(protocol))
    return path


def primary_events_in(data_dir: Path) -> int:
    """Complete `event` lines of the primary stream in the (only) run's document log."""
    logs = list((data_dir / "runs").glob("*/documents.jsonl"))
    if not logs:
        return 0
    primary: set[str] = set()
    count = 0
    with logs[0].open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # being written right now
            if raw.startswith(b'{"name":"descriptor"'):
                doc = json.loads(raw)["doc"]
                if doc["name"] == "primary":
                    primary.add(doc["uid"])
            elif raw.startswith(b'{"name":"event",'):
                count += json.loads(raw)["doc"]["descriptor"] in primary
    return count


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """Data directory and run folder of a dry run killed after ≥ 3 scan lines were recorded."""
    tmp_path = tmp_path_factory.mktemp("sigkill")
    data_dir = tmp_path / "data"
    with subprocess.Popen(
        [sys.executable, "-m", "vegard.cli", "dry-run", str(small_protocol(tmp_path)),
         "--quiet", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as child:
        waited = sigkill_when(
            child, lambda: primary_events_in(data_dir) >= EVENTS_BEFORE_KILL, START_TIMEOUT_S
        )
    (run_path,) = (data_dir / "runs").iterdir()
    return data_dir, run_path, waited


def primary_events(run_path: Path) -> list[dict]:
    descriptors = {doc["uid"]: doc["name"] for name, doc in load_documents(run_path)
                   if name == "descriptor"}
    return [doc for name, doc in load_documents(run_path)
            if name == "event" and descriptors[doc["descriptor"]] == "primary"]


def test_killed_dry_run_is_listed_as_incomplete(killed_run, capsys) -> None:
    data_dir, run_path, _ = killed_run
    assert "stop" not in document_names(run_path)
    assert main(["runs", "--json", "--data-dir", str(data_dir)]) == 0
    (listed,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["runs"]
    assert listed["uid"] == run_path.name
    assert listed["status"] == "incomplete"
    assert Path(listed["protocol"]).name == "esm_small.yaml"
    # every recorded event counts, the temperature monitor's as well as the scan lines
    events = document_names(run_path).count("event")
    assert listed["num_events"] == events >= EVENTS_BEFORE_KILL


def test_replay_of_the_killed_run_analyses_every_recorded_line(killed_run, capsys) -> None:
    data_dir, run_path, _ = killed_run
    recorded = len(primary_events(run_path))
    assert main(["replay", run_path.name[:8], "--json", "--data-dir", str(data_dir)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["complete"], summary["exit_status"]) == (False, "incomplete")
    analysis = summary["analysis"]
    assert analysis["pixels"] == PIXELS_PER_LINE * LINES
    assert analysis["lines_recorded"] == recorded >= EVENTS_BEFORE_KILL
    assert analysis["pixels_fitted"] == recorded * PIXELS_PER_LINE
    assert isinstance(analysis["a_f_mean_pm"], float)


def test_every_recorded_line_has_its_spectra_and_at_most_one_line_is_lost(killed_run) -> None:
    _, run_path, waited = killed_run
    events = primary_events(run_path)
    rows = arrays_by_seq_num(run_path, SPECTRA_KEY)
    missing = [event["seq_num"] for event in events if event["seq_num"] not in rows]
    assert not missing, f"events without readable spectra: {missing}"
    assert len(rows) >= len(events)
    for event in events:
        spectra = rows[event["seq_num"]]
        assert spectra.shape == (PIXELS_PER_LINE, 3, 64)  # pixels, excitations, bins
        assert np.all(np.isfinite(spectra)) and np.any(spectra != 0)

    (h5_path,) = (run_path / "arrays").glob("*.h5")
    with h5py.File(h5_path, "r", swmr=True) as f:
        written = f[f"/data/{SPECTRA_KEY}"].shape[0]
    # Lines are written to HDF5 (and flushed) before their event is emitted: the kill can
    # fall between the two for one line only.
    assert len(events) <= written <= len(events) + 1
    print(f"events recorded {len(events)}, HDF5 rows {written}, "
          f"lost {written - len(events)}, kill after {waited:.1f} s")
