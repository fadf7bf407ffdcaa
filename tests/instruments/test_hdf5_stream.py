"""Hdf5StreamWriter and ArrayStreamingDetector, alone and inside a real RunEngine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bluesky.plans as bp
import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from ophyd_async.core import init_devices, soft_signal_rw

from vegard.instruments.array_detector import ArrayStreamingDetector
from vegard.instruments.hdf5_stream import (
    ArraySpec,
    Hdf5StreamWriter,
)

ROW = (4, 3)


def spectrum(n: int) -> np.ndarray:
    """A complex row that differs for every n, so mix-ups show."""
    grid = np.arange(np.prod(ROW)).reshape(ROW)
    return (grid + n + 1j * (grid - n)).astype(np.complex64)


class SpectrumSource(ArrayStreamingDetector):
    """One complex spectrum per trigger plus a scalar gain that goes into events."""

    def __init__(self, directory_provider, name: str = "") -> None:
        self.gain = soft_signal_rw(float, 2.5)
        self.add_readables([self.gain])
        self.acquired: list[np.ndarray] = []
        super().__init__(
            directory_provider,
            {"spectrum": (ROW, np.complex64), "amplitude": ((), np.float64)},
            name=name,
        )

    async def acquire(self) -> dict[str, Any]:
        row = spectrum(len(self.acquired))
        self.acquired.append(row)
        return {"spectrum": row, "amplitude": float(np.abs(row).sum())}


def test_rows_are_readable_while_the_writer_still_has_the_file_open(tmp_path: Path) -> None:
    writer = Hdf5StreamWriter(tmp_path, "det", {"det-spectrum": (ROW, np.complex64)})
    for n in range(3):
        writer.append({"det-spectrum": spectrum(n)})
    with h5py.File(writer.path, "r", swmr=True) as f:
        stored = f["/data/det-spectrum"][:]
    writer.close()
    assert stored.dtype == np.complex64
    np.testing.assert_array_equal(stored, np.stack([spectrum(n) for n in range(3)]))


def test_stream_documents_cover_each_row_once(tmp_path: Path) -> None:
    specs = {"det-spectrum": ArraySpec(ROW, np.complex64), "det-sum": ArraySpec((), "<f8")}
    with Hdf5StreamWriter(tmp_path, "det", specs) as writer:
        assert list(writer.collect_stream_docs()) == []
        writer.append({"det-spectrum": spectrum(0), "det-sum": 1.0})
        writer.append({"det-spectrum": spectrum(1), "det-sum": 2.0})
        first = list(writer.collect_stream_docs())
        writer.append({"det-spectrum": spectrum(2), "det-sum": 3.0})
        second = list(writer.collect_stream_docs())
        assert list(writer.collect_stream_docs()) == []

    assert [name for name, _ in first] == ["stream_resource"] * 2 + ["stream_datum"] * 2
    resources = {doc["data_key"]: doc for name, doc in first if name == "stream_resource"}
    spectrum_resource = resources["det-spectrum"]
    assert spectrum_resource["mimetype"] == "application/x-hdf5"
    assert spectrum_resource["uri"] == f"file://localhost{tmp_path.absolute()}/det.h5"
    assert spectrum_resource["parameters"]["dataset"] == "/data/det-spectrum"
    assert tuple(spectrum_resource["parameters"]["chunk_shape"])[1:] == ROW
    assert [doc["indices"] for name, doc in first if name == "stream_datum"] == [
        {"start": 0, "stop": 2}
    ] * 2
    assert [name for name, _ in second] == ["stream_datum"] * 2
    assert {doc["stream_resource"] for _, doc in second} == {r["uid"] for r in resources.values()}
    assert all(doc["indices"] == {"start": 2, "stop": 3} for _, doc in second)


def test_describe_marks_array_keys_as_external_streams(tmp_path: Path) -> None:
    with Hdf5StreamWriter(tmp_path, "det", {"det-spectrum": (ROW, np.complex64)}) as writer:
        key = writer.describe()["det-spectrum"]
    assert key["external"] == "STREAM:"
    assert key["shape"] == [1, *ROW]
    assert key["dtype_numpy"] == "<c8"


def test_append_refuses_rows_that_do_not_fit(tmp_path: Path) -> None:
    with Hdf5StreamWriter(tmp_path, "det", {"det-spectrum": (ROW, np.complex64)}) as writer:
        with pytest.raises(ValueError, match=r"row shape \(3, 4\)"):
            writer.append({"det-spectrum": np.zeros((3, 4), np.complex64)})
        with pytest.raises(ValueError, match="exactly the data keys"):
            writer.append({"other": np.zeros(ROW, np.complex64)})
        assert writer.collections_written == 0
    with Hdf5StreamWriter(tmp_path, "real", {"x": ((), np.float32)}) as writer:
        with pytest.raises(TypeError, match="complex128 as float32"):
            writer.append({"x": 1j})


def test_a_second_file_in_the_same_folder_does_not_overwrite_the_first(tmp_path: Path) -> None:
    with Hdf5StreamWriter(tmp_path, "det", {"x": ((), float)}) as first:
        first.append({"x": 1.0})
    with Hdf5StreamWriter(tmp_path, "det", {"x": ((), float)}) as second:
        pass
    assert (first.path.name, second.path.name) == ("det.h5", "det-1.h5")


def test_count_emits_stream_documents_before_each_event(RE: RunEngine, tmp_path: Path) -> None:
    started: list[str] = []
    calls: list[tuple[str, ...]] = []

    def directory_provider() -> Path:
        calls.append(tuple(started))
        return tmp_path / started[-1]

    with init_devices():
        det = SpectrumSource(directory_provider)
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    RE.subscribe(lambda name, doc: started.append(doc["uid"]), "start")
    RE(bp.count([det], num=3))

    names = [name for name, _ in docs]
    assert names == [
        "start",
        "descriptor",
        *["stream_resource"] * 2,
        *(["stream_datum"] * 2 + ["event"]) * 3,
        "stop",
    ]
    # The provider is asked once, after the run started (stage precedes open_run).
    assert calls == [(docs[0][1]["uid"],)]
    events = [doc for name, doc in docs if name == "event"]
    assert [event["data"] for event in events] == [{"det-gain": 2.5}] * 3
    descriptor = docs[1][1]
    assert descriptor["data_keys"]["det-spectrum"]["external"] == "STREAM:"
    datums = [doc for name, doc in docs if name == "stream_datum"]
    assert {d["descriptor"] for d in datums} == {descriptor["uid"]}
    resources = {doc["data_key"]: doc for name, doc in docs if name == "stream_resource"}
    spectrum_uid = resources["det-spectrum"]["uid"]
    assert [d["seq_nums"] for d in datums if d["stream_resource"] == spectrum_uid] == [
        {"start": n, "stop": n + 1} for n in (1, 2, 3)
    ]
    assert docs[-1][1]["exit_status"] == "success"
    with h5py.File(tmp_path / docs[0][1]["uid"] / "det.h5", "r") as f:
        np.testing.assert_array_equal(f["/data/det-spectrum"][:], np.stack(det.acquired))


def test_each_staging_writes_a_new_file(RE: RunEngine, tmp_path: Path) -> None:
    with init_devices():
        det = SpectrumSource(lambda: tmp_path)
    RE(bp.count([det], num=2))
    RE(bp.count([det], num=1))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["det-1.h5", "det.h5"]
    with h5py.File(tmp_path / "det-1.h5", "r") as f:
        np.testing.assert_array_equal(f["/data/det-spectrum"][:], det.acquired[2][None])
