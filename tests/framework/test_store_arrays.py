"""Arrays streamed to HDF5 during a real run come back through ArrayFiller, live and replayed."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import bluesky.plans as bp
import numpy as np
import pytest
from bluesky import RunEngine
from ophyd_async.core import init_devices

from vegard.instruments.array_detector import ArrayStreamingDetector
from vegard.store import ArrayFiller, RunWriter, find_run, replay

ROW = (6, 5)  # (n_pixels, n_bins) of one band-excitation line


class BandExcitationLine(ArrayStreamingDetector):
    """Emits a distinct complex BE line and a real amplitude map per trigger."""

    def __init__(self, directory_provider, name: str = "") -> None:
        self.lines: list[np.ndarray] = []
        super().__init__(
            directory_provider,
            {"response": (ROW, np.complex64), "amplitude": (ROW[:1], np.float32)},
            name=name,
        )

    async def acquire(self) -> dict[str, Any]:
        rng = np.random.default_rng(len(self.lines))
        line = (rng.normal(size=ROW) + 1j * rng.normal(size=ROW)).astype(np.complex64)
        self.lines.append(line)
        return {"response": line, "amplitude": np.abs(line).max(axis=1)}


class ArrayCollector:
    """What an analysis callback would do: gather arrays per stream_datum."""

    def __init__(self) -> None:
        self.arrays: dict[str, list[np.ndarray]] = {}

    def __call__(self, stream_datum: Mapping[str, Any], arrays: dict[str, np.ndarray]) -> None:
        for key, value in arrays.items():
            self.arrays.setdefault(key, []).append(value)


@pytest.fixture
def recorded(RE: RunEngine, tmp_path: Path):
    """A 4-line run in tmp_path/data, with the arrays an ArrayFiller handed out live."""
    data_dir = tmp_path / "data"
    writer = RunWriter(data_dir)
    with init_devices():
        be = BandExcitationLine(writer.arrays_directory)
    live = ArrayCollector()
    RE.subscribe(writer)
    RE.subscribe(ArrayFiller(on_arrays=live))
    uid = RE(bp.count([be], num=4)).run_start_uids[0]
    return data_dir, uid, be, live


def test_arrays_replayed_from_the_store_equal_what_was_acquired(recorded) -> None:
    data_dir, uid, be, _ = recorded
    run = find_run(data_dir, uid[:8])
    assert [p.name for p in (run / "arrays").iterdir()] == ["be.h5"]

    replayed = ArrayCollector()
    result = replay(run, [ArrayFiller(run, on_arrays=replayed)])

    assert result.complete
    assert [a.shape for a in replayed.arrays["be-response"]] == [(1, *ROW)] * 4
    stacked = np.concatenate(replayed.arrays["be-response"])
    assert stacked.dtype == np.complex64
    np.testing.assert_array_equal(stacked, np.stack(be.lines))
    np.testing.assert_array_equal(
        np.concatenate(replayed.arrays["be-amplitude"]),
        np.stack([np.abs(line).max(axis=1) for line in be.lines]),
    )


def test_live_and_replayed_arrays_are_the_same(recorded) -> None:
    data_dir, uid, _, live = recorded
    replayed = ArrayCollector()
    replay(find_run(data_dir, uid), [ArrayFiller(on_arrays=replayed)])
    assert live.arrays.keys() == replayed.arrays.keys() == {"be-response", "be-amplitude"}
    for key, arrays in live.arrays.items():
        assert len(arrays) == 4
        for a, b in zip(arrays, replayed.arrays[key], strict=True):
            np.testing.assert_array_equal(a, b)


def test_arrays_are_found_after_the_data_dir_moved(recorded, tmp_path: Path) -> None:
    data_dir, uid, be, _ = recorded
    moved = tmp_path / "archive" / "data"
    shutil.move(data_dir, moved)
    run = find_run(moved, uid)

    with pytest.raises(FileNotFoundError, match=r"be\.h5 is not at"):
        replay(run, [ArrayFiller(on_arrays=ArrayCollector())])

    replayed = ArrayCollector()
    replay(run, [ArrayFiller(run, on_arrays=replayed)])
    np.testing.assert_array_equal(
        np.concatenate(replayed.arrays["be-response"]), np.stack(be.lines)
    )


def test_arrays_for_reads_an_index_range_on_request(recorded) -> None:
    data_dir, uid, be, _ = recorded
    run = find_run(data_dir, uid)
    with ArrayFiller(run) as filler:
        datums = []
        replay(run, [filler, lambda name, doc: name == "stream_datum" and datums.append(doc)])
        response = next(d for d in datums if filler.arrays_for(d).keys() == {"be-response"})
        wide = {**response, "indices": {"start": 1, "stop": 3}}
        np.testing.assert_array_equal(
            filler.arrays_for(wide)["be-response"], np.stack(be.lines[1:3])
        )
        too_far = {**response, "indices": {"start": 3, "stop": 5}}
        with pytest.raises(IndexError, match="has 4 rows"):
            filler.arrays_for(too_far)
