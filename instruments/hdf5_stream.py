"""Large arrays into HDF5, described to bluesky as StreamResource/StreamDatum.

Detector frames and band-excitation spectra are too big to travel inside event
documents. A device appends each *collection* (one row per data key, e.g. one
BE line of shape ``(n_pixels, n_bins)`` complex64) to resizable, chunked
datasets in one HDF5 file per device per run, and the run's documents only say
"rows ``[start, stop)`` of dataset ``/data/<key>`` in that file".

Durability: the file is written in SWMR mode and flushed after every append, so
every row appended before a crash (even a SIGKILL) is readable afterwards. A
file left behind by a killed writer keeps its "open for write" flag, so read it
with ``h5py.File(path, "r", swmr=True)`` (plain ``"r"`` refuses it).

Document conventions follow ophyd-async's `StreamResourceDataProvider`: one
``stream_resource`` per data key (mimetype ``application/x-hdf5``, uri
``file://localhost/<absolute path>``, parameters ``dataset`` and
``chunk_shape``), DataKeys with ``external="STREAM:"`` and shape
``[1, *row_shape]`` (one collection per event; bluesky's consolidators
concatenate along the first axis), and ``stream_datum`` index ranges for what
was written since the previous call.

The ophyd-async device base that uses this writer is
`vegard.instruments.array_detector.ArrayStreamingDetector`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
from bluesky.protocols import StreamAsset
from event_model import ComposeStreamResource, ComposeStreamResourceBundle, DataKey

HDF5_MIMETYPE = "application/x-hdf5"
DATASET_GROUP = "/data"
_TARGET_CHUNK_BYTES = 1 << 18


@dataclass(frozen=True)
class ArraySpec:
    """Shape and dtype of one row (one collection) of a data key."""

    shape: tuple[int, ...]
    dtype: np.dtype
    compression: str | None = None
    """An HDF5 filter h5py always has ("lzf", "gzip"); mostly-empty detector frames
    shrink tens of times with the fast "lzf"."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        if any(n < 1 for n in self.shape):
            raise ValueError(f"row shape {self.shape} must have positive lengths")

    @property
    def row_nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def as_array_spec(value: ArraySpec | tuple[Any, Any]) -> ArraySpec:
    """Accept either an `ArraySpec` or a ``(shape, dtype)`` pair."""
    if isinstance(value, ArraySpec):
        return value
    shape, dtype = value
    return ArraySpec(shape, dtype)


def file_uri(path: Path) -> str:
    """``file://localhost/<absolute path>``, the form ophyd-async writes."""
    return f"file://localhost{Path(path).absolute().as_posix()}"


def dataset_path(data_key: str) -> str:
    return f"{DATASET_GROUP}/{data_key}"


def stream_data_keys(
    specs: Mapping[str, ArraySpec], source: str = "hdf5_stream"
) -> dict[str, DataKey]:
    """DataKeys announcing that these keys arrive as StreamDatum, not in events."""
    return {
        key: DataKey(
            source=f"{source}:{dataset_path(key)}",
            shape=[1, *spec.shape],
            dtype="array" if spec.shape else "number",
            dtype_numpy=spec.dtype.str,
            external="STREAM:",
        )
        for key, spec in specs.items()
    }


def _chunk_rows(spec: ArraySpec) -> int:
    """Rows per chunk: about 256 KiB (each flush rewrites a partial chunk), at least one row."""
    return max(1, _TARGET_CHUNK_BYTES // max(1, spec.row_nbytes))


def _unused_path(directory: Path, file_stem: str) -> Path:
    """``<stem>.h5``, or ``<stem>-1.h5``, ... so that no earlier file is overwritten."""
    for n in itertools.count():
        name = f"{file_stem}.h5" if n == 0 else f"{file_stem}-{n}.h5"
        if not (directory / name).exists():
            return directory / name
    raise AssertionError("unreachable")


class Hdf5StreamWriter:
    """Appends collections to one SWMR HDF5 file and emits the matching stream documents.

    One writer is one file: create it when the device starts writing for a run,
    `close()` it at unstage. Not thread-safe; call it from one task.
    """

    def __init__(
        self,
        directory: Path,
        file_stem: str,
        specs: Mapping[str, ArraySpec | tuple[Any, Any]],
        *,
        source: str = "hdf5_stream",
        swmr: bool = True,
    ) -> None:
        if not specs:
            raise ValueError("Hdf5StreamWriter needs at least one data key")
        self.specs = {key: as_array_spec(spec) for key, spec in specs.items()}
        for key in self.specs:
            if not key or "/" in key:
                raise ValueError(f"data key {key!r} cannot name an HDF5 dataset")
        self.source = source
        directory = Path(directory).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        self.path = _unused_path(directory, file_stem)
        self.uri = file_uri(self.path)
        self._file = h5py.File(self.path, "x", libver="latest")
        self._datasets = {
            key: self._file.create_dataset(
                dataset_path(key),
                shape=(0, *spec.shape),
                maxshape=(None, *spec.shape),
                chunks=(_chunk_rows(spec), *spec.shape),
                dtype=spec.dtype,
                compression=spec.compression,
            )
            for key, spec in self.specs.items()
        }
        # SWMR needs every dataset to exist first; afterwards a crash cannot
        # leave the file unreadable, only without the rows not yet flushed.
        if swmr:
            self._file.swmr_mode = True
        self._file.flush()
        self._written = 0
        self._emitted = 0
        self._bundles: dict[str, ComposeStreamResourceBundle] = {}

    @property
    def collections_written(self) -> int:
        """Rows appended (and flushed) to every dataset so far."""
        return self._written

    def describe(self) -> dict[str, DataKey]:
        return stream_data_keys(self.specs, self.source)

    def append(self, arrays: Mapping[str, Any]) -> int:
        """Append one collection (one row per data key), flush, return the new count."""
        if set(arrays) != set(self.specs):
            raise ValueError(
                f"append needs exactly the data keys {sorted(self.specs)}, got {sorted(arrays)}"
            )
        rows = {key: self._as_row(key, value) for key, value in arrays.items()}
        index = self._written
        for key, row in rows.items():
            dataset = self._datasets[key]
            dataset.resize(index + 1, axis=0)
            dataset[index] = row
        self._file.flush()
        self._written = index + 1
        return self._written

    def _as_row(self, key: str, value: Any) -> np.ndarray:
        spec = self.specs[key]
        row = np.asarray(value)
        if row.shape != spec.shape:
            raise ValueError(f"{key}: row shape {row.shape} does not match {spec.shape}")
        if not np.can_cast(row.dtype, spec.dtype, casting="same_kind"):
            raise TypeError(f"{key}: cannot store {row.dtype} as {spec.dtype}")
        return row.astype(spec.dtype, copy=False)

    def collect_stream_docs(self, index: int | None = None) -> Iterator[StreamAsset]:
        """StreamResources (first time only) and StreamDatums for rows up to ``index``.

        ``index`` defaults to everything written; bluesky passes one when it
        synchronises several detectors in a fly scan.
        """
        stop = self._written if index is None else index
        if stop > self._written:
            raise ValueError(f"index {stop} is beyond the {self._written} collections written")
        if stop <= self._emitted:
            return
        if not self._bundles:
            self._bundles = self._compose_resources()
            for bundle in self._bundles.values():
                yield "stream_resource", bundle.stream_resource_doc
        indices = {"start": self._emitted, "stop": stop}
        self._emitted = stop
        for bundle in self._bundles.values():
            yield "stream_datum", bundle.compose_stream_datum(indices)

    def _compose_resources(self) -> dict[str, ComposeStreamResourceBundle]:
        compose = ComposeStreamResource()
        return {
            key: compose(
                mimetype=HDF5_MIMETYPE,
                uri=self.uri,
                data_key=key,
                parameters={
                    "dataset": dataset_path(key),
                    "chunk_shape": self._datasets[key].chunks,
                },
            )
            for key in self.specs
        }

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> Hdf5StreamWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
