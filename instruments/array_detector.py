"""Base class for step-scan devices whose data are arrays written to HDF5.

Where the file goes: the device takes a ``directory_provider: Callable[[], Path]``.
It is called when the first collection after `stage()` is written, not at
`stage()` itself, because standard bluesky plans (``bp.count``, ``bp.scan``)
stage detectors *before* ``open_run``, when the run's uid -- and so its
folder -- does not exist yet. The session passes a provider returning the
current run's ``arrays/`` folder (`RunWriter.arrays_directory`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from bluesky.protocols import StreamAsset, WritesStreamAssets
from event_model import DataKey
from ophyd_async.core import AsyncStatus, StandardReadable

from .hdf5_stream import ArraySpec, Hdf5StreamWriter, as_array_spec, stream_data_keys


class ArrayStreamingDetector(StandardReadable, WritesStreamAssets):
    """Base for step-scan devices whose data are arrays written to HDF5.

    Subclasses implement `acquire()`, returning one row per array name; the
    base class writes it on `trigger()` and hands bluesky the stream documents
    on `read`. Scalars read from child signals added with `add_readables` still
    go into the events as usual. Data keys are ``<device name>-<array name>``.
    Stage once per run (as ``bp.count``/``bp.scan`` do): each stage starts a
    new file.
    """

    def __init__(
        self,
        directory_provider: Callable[[], Path],
        arrays: Mapping[str, ArraySpec | tuple[Any, Any]],
        name: str = "",
    ) -> None:
        self._directory_provider = directory_provider
        self._array_specs = {suffix: as_array_spec(spec) for suffix, spec in arrays.items()}
        self._writer: Hdf5StreamWriter | None = None
        super().__init__(name=name)

    async def acquire(self) -> Mapping[str, Any]:
        """Take one collection from the instrument: ``{array name: row}``."""
        raise NotImplementedError

    def _data_key(self, suffix: str) -> str:
        return f"{self.name}-{suffix}" if self.name else suffix

    def _specs_by_key(self) -> dict[str, ArraySpec]:
        return {self._data_key(s): spec for s, spec in self._array_specs.items()}

    @AsyncStatus.wrap
    async def stage(self) -> None:
        self._close_writer()
        await super().stage()

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        self._close_writer()
        await super().unstage()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open_writer(self) -> Hdf5StreamWriter:
        if self._writer is None:
            self._writer = Hdf5StreamWriter(
                self._directory_provider(),
                self.name or "arrays",
                self._specs_by_key(),
                source=self.name or "hdf5_stream",
            )
        return self._writer

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        rows = await self.acquire()
        writer = self._open_writer()
        writer.append({self._data_key(suffix): row for suffix, row in rows.items()})

    async def describe(self) -> dict[str, DataKey]:
        return {
            **await super().describe(),
            **stream_data_keys(self._specs_by_key(), self.name or "hdf5_stream"),
        }

    async def collect_asset_docs(self, index: int | None = None) -> AsyncIterator[StreamAsset]:
        if self._writer is not None:
            for doc in self._writer.collect_stream_docs(index):
                yield doc

    async def get_index(self) -> int:
        return 0 if self._writer is None else self._writer.collections_written
