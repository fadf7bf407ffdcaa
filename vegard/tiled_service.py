"""Tiled over the run store: the server `vegard serve` starts, the live writer, the backfill.

The run store (document logs and HDF5 files) stays the record; Tiled is an index over it
that any client reads with `tiled.client.from_uri`. Its catalog lives in the state
directory and is rebuilt at every start: the runs already in the store are written
into it from their document logs (`backfill`), the runs recorded while serving by
bluesky's `TiledWriter` subscribed to the worker's RunEngine. Both register the HDF5
arrays where they are (a StreamResource becomes a data source pointing at the file; the
server may read the data directory, nothing is copied); the event tables go into a
DuckDB file (SQLite's storage cannot hold the per-pixel list columns of a BE line).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vegard.store.catalog import list_runs
from vegard.store.documents import load_documents

LOG = logging.getLogger(__name__)

API_KEY_VARIABLE = "TILED_SINGLE_USER_API_KEY"
"""How the server gets its key (not on the command line, where `ps` shows it)."""


def tiled_command(executable: str, state: Path, data_dir: Path, host: str, port: int
                  ) -> list[str]:
    """`tiled serve catalog` on a new catalog in `state`, reading the data directory."""
    tables = state / "tiled-tables.duckdb"
    return [executable, "serve", "catalog", str(state / "tiled-catalog.db"), "--init",
            "-w", str(state / "tiled-data"), "-w", f"duckdb:///{tables}",
            "-r", str(data_dir), "--host", host, "--port", str(port)]


def client(uri: str, api_key: str):
    from tiled.client import from_uri

    return from_uri(uri, api_key=api_key)


def backfill(tiled_client, data_dir: Path) -> list[str]:
    """Write every run of the store that the catalog lacks; the uids written (oldest
    first). A run that cannot be written is reported and skipped, not fatal."""
    from bluesky.callbacks.tiled_writer import TiledWriter

    present = set(tiled_client)
    written = []
    for run in reversed(list_runs(data_dir)):
        if run.uid in present:
            continue
        writer = TiledWriter(tiled_client)
        try:
            for name, doc in load_documents(run.path):
                writer(name, doc)
        except Exception as error:
            warnings.warn(f"Tiled: run {run.uid} not backfilled: {error}", stacklevel=2)
            continue
        written.append(run.uid)
    return written


class GuardedWriter:
    """A TiledWriter that never fails an acquisition: a run Tiled refuses is logged and
    left out of Tiled (it is still in the run store, and the next start backfills it)."""

    def __init__(self, make_writer: Callable[[], Any]) -> None:
        self._make_writer = make_writer
        self._writer: Any = None
        self._failed_run: str | None = None

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self._failed_run = None
        if self._failed_run is not None:
            return
        try:
            if self._writer is None:
                self._writer = self._make_writer()
            self._writer(name, doc)
        except Exception as error:
            self._failed_run = doc.get("run_start") or doc.get("uid") or "?"
            self._writer = None  # a fresh writer (and connection) for the next run
            LOG.warning("Tiled: run %s not written live: %s", self._failed_run, error)


def live_writer(uri: str, api_key: str) -> GuardedWriter:
    """The callback the worker subscribes to its RunEngine."""

    def make():
        from bluesky.callbacks.tiled_writer import TiledWriter

        return TiledWriter(client(uri, api_key))

    return GuardedWriter(make)
