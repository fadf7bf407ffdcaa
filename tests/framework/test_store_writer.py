"""RunWriter records real RunEngine runs durably, document by document."""

from __future__ import annotations

import json
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from bluesky import RunEngine
from ophyd_async.core import Array1D, init_devices, soft_signal_rw

import vegard.store.writer as writer_module
from vegard.store import RunWriter, run_directory


@pytest.fixture
def bias(RE: RunEngine):
    with init_devices():
        bias_v = soft_signal_rw(float, 0.25)
    return bias_v


def lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "documents.jsonl").read_text().splitlines()]


def test_a_count_is_recorded_one_document_per_line(RE: RunEngine, bias, tmp_path: Path) -> None:
    RE.subscribe(RunWriter(tmp_path))
    uid = RE(bp.count([bias], num=3), protocol="esm_hysteresis", sample="LiCoO2-07").run_start_uids[
        0
    ]

    run = run_directory(tmp_path, uid)
    records = lines(run)
    assert [r["name"] for r in records] == [
        "start",
        "descriptor",
        "event",
        "event",
        "event",
        "stop",
    ]
    assert records[0]["doc"]["uid"] == uid
    assert [r["doc"]["data"]["bias_v"] for r in records if r["name"] == "event"] == [0.25] * 3
    summary = json.loads((run / "run.json").read_text())
    assert summary["uid"] == uid
    assert summary["plan_name"] == "count"
    assert (summary["protocol"], summary["sample"]) == ("esm_hysteresis", "LiCoO2-07")
    assert (summary["exit_status"], summary["num_events"]) == ("success", 3)
    assert (run / "arrays").is_dir()
    assert not list(run.glob(".*tmp"))


def test_documents_are_on_disk_while_the_run_is_still_going(
    RE: RunEngine, bias, tmp_path: Path
) -> None:
    writer = RunWriter(tmp_path)
    RE.subscribe(writer)
    seen: list[list[str]] = []

    @bpp.run_decorator()
    def plan():
        for _ in range(2):
            yield from bps.trigger_and_read([bias])
        run = run_directory(tmp_path, writer.open_runs[0])
        seen.append([r["name"] for r in lines(run)])

    RE(plan())
    assert seen == [["start", "descriptor", "event", "event"]]


def test_numpy_and_complex_values_are_written_as_plain_json(RE: RunEngine, tmp_path: Path) -> None:
    with init_devices():
        spectrum = soft_signal_rw(Array1D[np.float64], np.linspace(0.0, 1.0, 5))
    RE.subscribe(RunWriter(tmp_path))
    md = {
        "setpoint_v": np.float32(0.5),
        "impedance_ohm": np.complex64(3 + 4j),
        "grid": np.arange(3),
    }
    uid = RE(bp.count([spectrum]), **md).run_start_uids[0]

    records = lines(run_directory(tmp_path, uid))
    start = records[0]["doc"]
    assert (start["setpoint_v"], start["impedance_ohm"], start["grid"]) == (
        0.5,
        [3.0, 4.0],
        [0, 1, 2],
    )
    event = next(r["doc"] for r in records if r["name"] == "event")
    assert event["data"]["spectrum"] == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_each_run_gets_its_own_folder_and_arrays_directory(
    RE: RunEngine, bias, tmp_path: Path
) -> None:
    writer = RunWriter(tmp_path)
    RE.subscribe(writer)
    arrays: list[Path] = []

    @bpp.run_decorator()
    def plan():
        arrays.append(writer.arrays_directory())
        yield from bps.trigger_and_read([bias])

    uids = [RE(plan()).run_start_uids[0] for _ in range(2)]
    assert uids[0] != uids[1]
    assert arrays == [run_directory(tmp_path, uid) / "arrays" for uid in uids]
    assert all(len(lines(run_directory(tmp_path, uid))) == 4 for uid in uids)
    with pytest.raises(RuntimeError, match="no run is open"):
        writer.arrays_directory()


def test_fsync_happens_at_start_and_stop_not_per_document(
    RE: RunEngine, bias, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: list[int] = []
    real_fsync = writer_module.os.fsync
    monkeypatch.setattr(writer_module.os, "fsync", lambda fd: syncs.append(fd) or real_fsync(fd))

    RE.subscribe(RunWriter(tmp_path))
    RE(bp.count([bias], num=40))
    per_run = len(syncs)
    assert per_run < 10  # start (file, summary, folders) and stop, not 43 documents

    syncs.clear()
    RE.subscribe(RunWriter(tmp_path / "eager", fsync_interval_s=0.0))
    RE(bp.count([bias], num=40))
    assert len(syncs) >= 40


def test_a_start_uid_already_on_disk_is_refused(tmp_path: Path) -> None:
    start = {"uid": "0123", "time": 1.0}
    first = RunWriter(tmp_path)
    first("start", start)
    first.close()
    with pytest.raises(FileExistsError):
        RunWriter(tmp_path)("start", start)
