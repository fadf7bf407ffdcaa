"""Load the arrays that StreamDatum documents point at, live or in replay.

Documents only say "rows ``[start, stop)`` of dataset D in file F". An
`ArrayFiller` listens to the same document stream as the analysis, remembers
stream resources and descriptors, and turns each ``stream_datum`` into
``{data_key: array}`` -- either on request (`arrays_for`) or by calling
``on_arrays(stream_datum, arrays)`` as each one arrives, so an analysis
callback written against it works unchanged on live and replayed runs.

Files are found by their ``file://`` uri; if that path is gone (the data
directory was moved or copied elsewhere) the same file name is looked up in
the run's ``arrays/`` folder, given as ``run_path``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlparse

import h5py
import numpy as np

from .layout import arrays_directory

__all__ = ["ArrayFiller", "ArraySlab", "ArraysCallback"]

HDF5_MIMETYPE = "application/x-hdf5"

ArraysCallback = Callable[[Mapping[str, Any], dict[str, np.ndarray]], None]


@dataclass(frozen=True)
class ArraySlab:
    """Rows [start, stop) along axis 0 of one HDF5 dataset: what a stream_datum points at."""

    data_key: str
    path: str
    dataset: str
    start: int
    stop: int


def uri_to_path(uri: str) -> Path:
    """Local path of a ``file://[localhost]/abs/path`` uri."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise ValueError(f"cannot open {uri!r}: only local file:// uris are supported")
    path = Path(parsed.path)
    return path if path.exists() else Path(unquote(parsed.path))


class ArrayFiller:
    """Bluesky callback resolving ``stream_datum`` documents to numpy arrays."""

    def __init__(
        self, run_path: Path | None = None, on_arrays: ArraysCallback | None = None
    ) -> None:
        self.run_path = None if run_path is None else Path(run_path)
        self.on_arrays = on_arrays
        self._resources: dict[str, Mapping[str, Any]] = {}
        self._descriptors: dict[str, Mapping[str, Any]] = {}
        self._files: dict[Path, h5py.File] = {}

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "descriptor":
            self._descriptors[doc["uid"]] = doc
        elif name == "stream_resource":
            self._resources[doc["uid"]] = doc
        elif name == "stream_datum" and self.on_arrays is not None:
            self.on_arrays(doc, self.arrays_for(doc))
        elif name == "stop":
            self.close()

    def arrays_for(self, stream_datum: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``{data_key: rows}`` for the datum's index range ``[start, stop)``.

        With the usual one collection per index the result has shape
        ``(stop - start, *row_shape)``; when a descriptor declares ``k``
        collections per index (shape ``[k, *row_shape]``), ``k`` rows per index.
        """
        slab = self.slab_for(stream_datum)
        dataset = self._file(Path(slab.path))[slab.dataset]
        return {slab.data_key: dataset[slab.start:slab.stop]}

    def slab_for(self, stream_datum: Mapping[str, Any]) -> ArraySlab:
        """Where the datum's rows are (file, dataset, rows along axis 0), without reading
        them: for readers in other processes (`analysis.sxdm_dask`)."""
        resource = self._resources.get(stream_datum["stream_resource"])
        if resource is None:
            raise LookupError(
                f"stream_datum {stream_datum['uid']} refers to unknown stream_resource "
                f"{stream_datum['stream_resource']}; feed the filler the whole run"
            )
        if resource["mimetype"] != HDF5_MIMETYPE:
            raise ValueError(f"cannot load {resource['mimetype']!r} data (only {HDF5_MIMETYPE})")
        dataset = self._file(self.resolve_path(resource))[resource["parameters"]["dataset"]]
        dataset.refresh()  # a live file may have grown since we opened it
        per_index = self._rows_per_index(stream_datum, resource["data_key"], dataset.ndim)
        start = stream_datum["indices"]["start"] * per_index
        stop = stream_datum["indices"]["stop"] * per_index
        if stop > dataset.shape[0]:
            raise IndexError(
                f"{dataset.file.filename}:{dataset.name} has {dataset.shape[0]} rows, "
                f"stream_datum {stream_datum['uid']} needs rows up to {stop}"
            )
        return ArraySlab(resource["data_key"], str(dataset.file.filename), dataset.name,
                         int(start), int(stop))

    def resolve_path(self, stream_resource: Mapping[str, Any]) -> Path:
        """The file behind a stream resource, here or in the run's moved ``arrays/``."""
        path = uri_to_path(stream_resource["uri"])
        if path.exists():
            return path
        if self.run_path is not None:
            moved = arrays_directory(self.run_path) / path.name
            if moved.exists():
                return moved
        where = f" nor in {arrays_directory(self.run_path)}" if self.run_path else ""
        raise FileNotFoundError(f"array file {path.name} is not at {path}{where}")

    def _rows_per_index(self, stream_datum: Mapping[str, Any], data_key: str, ndim: int) -> int:
        descriptor = self._descriptors.get(stream_datum.get("descriptor", ""))
        if descriptor is None:
            return 1
        shape = descriptor["data_keys"].get(data_key, {}).get("shape", [])
        if len(shape) == ndim and isinstance(shape[0], int) and shape[0] > 0:
            return shape[0]
        return 1

    def _file(self, path: Path) -> h5py.File:
        if path not in self._files:
            # swmr=True also opens files whose writer was killed (their
            # "open for write" flag was never cleared).
            self._files[path] = h5py.File(path, "r", swmr=True)
        return self._files[path]

    def close(self) -> None:
        """Close the HDF5 files opened so far (done automatically at ``stop``)."""
        for file in self._files.values():
            file.close()
        self._files.clear()

    def __enter__(self) -> ArrayFiller:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
