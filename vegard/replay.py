"""`vegard replay`: a stored run through the same analysis the live run used."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from event_model import DocumentRouter

from vegard.config.errors import ConfigError
from vegard.registry import merged_analysis, protocol_kind_named
from vegard.store.documents import first_document
from vegard.store.layout import run_directory
from vegard.store.replay import replay


class _RunSpan(DocumentRouter):
    """Instrument and wall time covered by a recorded run."""

    def start(self, doc):
        self.uid = doc["uid"]
        clock = doc.get("instrument_clock", {})
        self.instrument_start_s = clock.get("started_s")
        self.wall_start_s = doc["time"]
        self.wall_end_s = doc["time"]
        self.instrument_end_s = self.instrument_start_s
        self.exit_status = "incomplete"
        self.reason = ""

    def event(self, doc):
        self.wall_end_s = max(self.wall_end_s, doc["time"])
        latest = max(doc["timestamps"].values(), default=None)
        if latest is not None:
            if self.instrument_start_s is None:
                self.instrument_start_s = latest
            self.instrument_end_s = max(self.instrument_end_s or latest, latest)

    def stop(self, doc):
        self.wall_end_s = doc["time"]
        self.exit_status = doc["exit_status"]
        self.reason = doc.get("reason", "")


def replay_run(data_dir: Path, uid_prefix: str, *, reducer: Any = None) -> dict[str, Any]:
    """Replay one run and return a summary shaped like the live run's.

    `reducer` (`analysis.sxdm_dask.DaskReducer`) goes to every analysis that takes one
    (the SXDM maps): their reduction then runs as Dask graphs (`vegard analyze --dask`).
    """
    from vegard.store.catalog import find_run

    wall_started = time.monotonic()
    run_path = find_run(data_dir, uid_prefix)
    _, start = first_document(run_path)
    kind = start.get("protocol_kind")
    found = protocol_kind_named(kind) if isinstance(kind, str) else None
    if found is None:
        raise ConfigError(f"{run_path}: protocol kind {kind!r} has no known analysis")
    analyses = found.analyses(lambda uid: run_directory(data_dir, uid) / "figures")
    if reducer is not None:
        for analysis in analyses:
            if hasattr(analysis, "reducer"):
                analysis.reducer = reducer
    span = _RunSpan()
    result = replay(run_path, [*analyses, span])
    if not result.complete:
        # A killed run has no stop document: analyse what was recorded up to the kill.
        closing = {"run_start": span.uid, "exit_status": "incomplete", "time": span.wall_end_s,
                   "uid": "", "reason": "run has no stop document", "num_events": {}}
        for analysis in analyses:
            analysis("stop", closing)
    summary: dict[str, Any] = {
        "protocol": start.get("protocol"),
        "protocol_kind": kind,
        "sample": start.get("sample"),
        "run_uids": [span.uid],
        "exit_status": span.exit_status,
        "complete": result.complete,
        "documents": result.num_documents,
        "instrument_time_s": (span.instrument_end_s or 0.0) - (span.instrument_start_s or 0.0),
        "wall_time_s": span.wall_end_s - span.wall_start_s,
        "replay_wall_time_s": time.monotonic() - wall_started,
        "clock": (start.get("instrument_clock") or {}).get("kind", "unrecorded"),
        "analysis": merged_analysis(analyses),
    }
    if span.reason:
        summary["reason"] = span.reason
    return summary
