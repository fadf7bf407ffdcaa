"""Record every run to disk as it happens, so a crash loses at most one document.

`RunWriter` is a bluesky callback. On ``start`` it creates
``<data_dir>/runs/<uid>/`` with

- ``documents.jsonl``: every document of the run, one ``{"name", "doc"}`` JSON
  object per line, flushed to the OS after each line (survives the process
  being killed) and fsynced at ``stop`` and at most about once a second
  otherwise (survives a power cut up to the last sync without paying a disk
  sync per point);
- ``run.json``: a small summary for humans and quick listings, replaced
  atomically at start and at stop; `vegard.store.catalog` trusts the documents
  over it;
- ``arrays/``: the run's HDF5 files (`arrays_directory` is the
  ``directory_provider`` for array-streaming devices).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .jsonable import dumps
from .layout import (
    DOCUMENTS_FILE,
    SUMMARY_FILE,
    arrays_directory,
    run_directory,
)

__all__ = ["RunWriter", "run_directory"]

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, value: Any) -> None:
    """Replace ``path`` in one step: readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(dumps(value))
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_directory(path: Path) -> None:
    """Make a new directory entry durable (POSIX only; a no-op elsewhere)."""
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:
        return
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def start_summary(start: dict[str, Any]) -> dict[str, Any]:
    """What ``run.json`` says about a run from its start document."""
    return {
        "uid": start["uid"],
        "start_time": start.get("time"),
        "plan_name": start.get("plan_name"),
        "protocol": start.get("protocol"),
        "sample": start.get("sample"),
        "exit_status": None,
        "reason": None,
        "num_events": None,
    }


@dataclass
class _OpenRun:
    path: Path
    file: IO[str]
    summary: dict[str, Any]
    last_fsync: float = field(default_factory=time.monotonic)


class RunWriter:
    """Bluesky callback appending each run's documents to ``<data_dir>/runs/<uid>/``."""

    def __init__(self, data_dir: Path, *, fsync_interval_s: float = 1.0) -> None:
        self.data_dir = Path(data_dir)
        self.fsync_interval_s = fsync_interval_s
        self._runs: dict[str, _OpenRun] = {}
        # uid of a descriptor / (stream_)resource -> uid of the run it belongs to
        self._owner: dict[str, str] = {}

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "start":
            self._open(doc)
            return
        uid = self._run_of(name, doc)
        if uid is None:
            log.warning("RunWriter: %s document belongs to no open run; not recorded", name)
            return
        run = self._runs[uid]
        if name in ("descriptor", "resource", "stream_resource"):
            self._owner[doc["uid"]] = uid
        self._append(run, name, doc)
        if name == "stop":
            self._close(uid, doc)
        elif time.monotonic() - run.last_fsync >= self.fsync_interval_s:
            self._fsync(run)

    def arrays_directory(self) -> Path:
        """The open run's ``arrays/`` folder: pass this as a device's ``directory_provider``."""
        if len(self._runs) != 1:
            state = "no run is open" if not self._runs else "several runs are open"
            raise RuntimeError(f"cannot choose an arrays folder: {state} in {self.data_dir}")
        (run,) = self._runs.values()
        return arrays_directory(run.path)

    @property
    def open_runs(self) -> list[str]:
        """Uids of runs started but not yet stopped."""
        return list(self._runs)

    def close(self) -> None:
        """Sync and close files of runs that never got a stop document."""
        for run in self._runs.values():
            self._fsync(run)
            run.file.close()
        self._runs.clear()
        self._owner.clear()

    def _open(self, start: dict[str, Any]) -> None:
        path = run_directory(self.data_dir, start["uid"])
        path.mkdir(parents=True, exist_ok=False)
        arrays_directory(path).mkdir()
        summary = start_summary(start)
        write_json_atomic(path / SUMMARY_FILE, summary)
        run = _OpenRun(path, (path / DOCUMENTS_FILE).open("x", encoding="ascii"), summary)
        self._runs[start["uid"]] = run
        self._append(run, "start", start)
        self._fsync(run)
        _fsync_directory(path)
        _fsync_directory(path.parent)

    def _run_of(self, name: str, doc: dict[str, Any]) -> str | None:
        if name in ("descriptor", "resource", "stream_resource", "stop"):
            key, runs = doc.get("run_start"), self._runs
        elif name in ("event", "event_page", "stream_datum"):
            key, runs = doc.get("descriptor"), self._owner
        else:  # datum, datum_page
            key, runs = doc.get("resource"), self._owner
        if key:
            owner = key if runs is self._runs else self._owner.get(key)
            return owner if owner in self._runs else None
        # Documents without a link (e.g. a stream_resource composed outside
        # the RunEngine) can only be placed when a single run is open.
        return next(iter(self._runs)) if len(self._runs) == 1 else None

    def _append(self, run: _OpenRun, name: str, doc: dict[str, Any]) -> None:
        run.file.write(dumps({"name": name, "doc": doc}) + "\n")
        run.file.flush()

    def _fsync(self, run: _OpenRun) -> None:
        os.fsync(run.file.fileno())
        run.last_fsync = time.monotonic()

    def _close(self, uid: str, stop: dict[str, Any]) -> None:
        run = self._runs.pop(uid)
        self._fsync(run)
        run.file.close()
        self._owner = {k: v for k, v in self._owner.items() if v != uid}
        num_events = stop.get("num_events") or {}
        run.summary.update(
            stop_time=stop.get("time"),
            exit_status=stop.get("exit_status"),
            reason=stop.get("reason", ""),
            num_events=sum(num_events.values()),
            num_events_by_stream=num_events,
        )
        write_json_atomic(run.path / SUMMARY_FILE, run.summary)
