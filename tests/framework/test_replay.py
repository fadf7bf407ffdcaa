"""Replay pushes a stored run through callbacks exactly as the RunEngine did live."""

from __future__ import annotations

import json
from pathlib import Path

import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from bluesky.callbacks import CallbackBase
from ophyd_async.core import init_devices, soft_signal_rw

from vegard.store import RunWriter, replay, run_directory
from vegard.store.jsonable import dumps

pytestmark = pytest.mark.slow  # end-to-end on the simulators


class MeanBias(CallbackBase):
    """A stand-in for live analysis: averages a reading, reports at stop."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.mean: float | None = None

    def event(self, doc):
        self.values.append(doc["data"]["bias_v"])

    def stop(self, doc):
        self.mean = sum(self.values) / len(self.values)


@pytest.fixture
def recorded(RE: RunEngine, tmp_path: Path) -> tuple[Path, list[tuple[str, dict]], MeanBias]:
    with init_devices():
        bias_v = soft_signal_rw(float, 0.1)
    live: list[tuple[str, dict]] = []
    live_analysis = MeanBias()
    RE.subscribe(RunWriter(tmp_path))
    RE.subscribe(lambda name, doc: live.append((name, json.loads(dumps(doc)))))
    RE.subscribe(live_analysis)
    uid = RE(bp.scan([bias_v], bias_v, 0.0, 1.0, 5)).run_start_uids[0]
    return run_directory(tmp_path, uid), live, live_analysis


def test_replay_feeds_every_callback_the_documents_seen_live(recorded) -> None:
    run, live, live_analysis = recorded
    first: list[tuple[str, dict]] = []
    second: list[tuple[str, dict]] = []
    analysis = MeanBias()

    result = replay(
        run, [lambda n, d: first.append((n, d)), lambda n, d: second.append((n, d)), analysis]
    )

    assert first == live
    assert second == live
    assert (result.num_documents, result.complete) == (len(live), True)
    assert analysis.values == live_analysis.values == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert analysis.mean == live_analysis.mean


def test_a_killed_run_is_replayed_as_far_as_it_got(recorded) -> None:
    run, live, _ = recorded
    log = run / "documents.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:-2]))
    analysis = MeanBias()
    names: list[str] = []

    result = replay(run, [analysis, lambda n, d: names.append(n)])

    assert (result.num_documents, result.complete) == (len(live) - 2, False)
    assert "stop" not in names
    assert analysis.values == [0.0, 0.25, 0.5, 0.75]
    assert analysis.mean is None
