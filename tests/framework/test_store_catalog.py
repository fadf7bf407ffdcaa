"""The catalog reads how runs ended from their document logs, crash damage included."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
import pytest
from bluesky import RunEngine
from bluesky.utils import RequestAbort
from ophyd_async.core import init_devices, soft_signal_rw

from vegard.store import (
    CorruptRunError,
    RunWriter,
    TruncatedRunWarning,
    find_run,
    list_runs,
    load_documents,
    run_directory,
)
from vegard.store.jsonable import dumps


@pytest.fixture
def bias(RE: RunEngine):
    with init_devices():
        bias_v = soft_signal_rw(float, 0.25)
    return bias_v


@pytest.fixture
def recorded(RE: RunEngine, bias, tmp_path: Path) -> tuple[str, list[tuple[str, dict]]]:
    """One finished 4-point count in tmp_path, and the documents the RunEngine emitted."""
    live: list[tuple[str, dict]] = []
    RE.subscribe(RunWriter(tmp_path))
    RE.subscribe(lambda name, doc: live.append((name, json.loads(dumps(doc)))))
    uid = RE(bp.count([bias], num=4)).run_start_uids[0]
    return uid, live


def documents_file(data_dir: Path, uid: str) -> Path:
    return run_directory(data_dir, uid) / "documents.jsonl"


def test_list_runs_reports_how_each_run_ended_newest_first(
    RE: RunEngine, bias, tmp_path: Path
) -> None:
    RE.subscribe(RunWriter(tmp_path))

    def failing():
        yield from bps.trigger_and_read([bias])
        raise RuntimeError("potentiostat compliance exceeded")

    def aborted():
        yield from bps.trigger_and_read([bias])
        raise RequestAbort()

    ok = RE(bp.count([bias], num=2), protocol="cv_sweep", sample="NMC-3").run_start_uids[0]
    with pytest.raises(RuntimeError):
        RE(bpp.run_wrapper(failing()))
    RE(bpp.run_wrapper(aborted()))  # the RunEngine reports an abort without raising

    runs = list_runs(tmp_path)
    assert [run.status for run in runs] == ["abort", "fail", "success"]
    assert runs[0].start_time > runs[1].start_time > runs[2].start_time
    success = runs[2]
    assert (success.uid, success.protocol, success.sample) == (ok, "cv_sweep", "NMC-3")
    assert (success.plan_name, success.num_events) == ("count", 2)
    assert success.path == run_directory(tmp_path, ok)
    assert "compliance exceeded" in runs[1].reason
    assert runs[1].num_events == 1


def test_a_run_without_stop_is_incomplete_even_if_run_json_says_otherwise(
    recorded, tmp_path: Path
) -> None:
    uid, _ = recorded
    path = documents_file(tmp_path, uid)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    assert json.loads((path.parent / "run.json").read_text())["exit_status"] == "success"

    (run,) = list_runs(tmp_path)
    assert run.status == "incomplete"
    assert run.num_events == 4


def test_a_half_written_event_is_not_counted(recorded, tmp_path: Path) -> None:
    uid, _ = recorded
    path = documents_file(tmp_path, uid)
    complete_lines = path.read_text().splitlines(keepends=True)[:-2]  # drop stop and event 4
    last_event = path.read_text().splitlines(keepends=True)[-2]
    path.write_text("".join(complete_lines) + last_event[:30])

    (run,) = list_runs(tmp_path)
    assert (run.status, run.num_events) == ("incomplete", 3)


def test_load_documents_round_trips_what_the_run_engine_emitted(recorded, tmp_path: Path) -> None:
    uid, live = recorded
    assert list(load_documents(run_directory(tmp_path, uid))) == live


def test_a_truncated_last_line_is_skipped_with_a_warning(recorded, tmp_path: Path) -> None:
    uid, live = recorded
    path = documents_file(tmp_path, uid)
    path.write_bytes(path.read_bytes()[:-40])  # killed while writing the stop document

    with pytest.warns(TruncatedRunWarning, match=r"documents\.jsonl:7"):
        loaded = list(load_documents(path.parent))
    assert loaded == live[:-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (run,) = list_runs(tmp_path)
    assert run.status == "incomplete"


def test_a_garbled_line_in_the_middle_is_an_error_naming_file_and_line(
    recorded, tmp_path: Path
) -> None:
    uid, _ = recorded
    path = documents_file(tmp_path, uid)
    text = path.read_text().splitlines(keepends=True)
    text[2] = text[2][:25] + "\n"
    path.write_text("".join(text))

    with pytest.raises(CorruptRunError, match=re.escape(f"{path}:3: ")):
        list(load_documents(path.parent))


def test_find_run_needs_a_unique_prefix(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for uid in ("abc123", "abc456", "def789"):
        (runs / uid).mkdir(parents=True)

    assert find_run(tmp_path, "def") == runs / "def789"
    assert find_run(tmp_path, "abc123") == runs / "abc123"
    with pytest.raises(LookupError, match=re.escape(f"no run with uid starting 'xyz' in {runs}")):
        find_run(tmp_path, "xyz")
    with pytest.raises(LookupError, match=r"2 runs have a uid starting 'abc'.*abc123, abc456"):
        find_run(tmp_path, "abc")


def test_an_empty_data_dir_has_no_runs(tmp_path: Path) -> None:
    assert list_runs(tmp_path) == []
