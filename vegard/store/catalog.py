"""What runs are in a data directory, and how each one ended.

Everything comes from ``documents.jsonl`` (first line: start; last line: stop,
if the run got one), never from ``run.json``: that summary is only rewritten
at start and stop, so after a crash it is stale.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .documents import first_document, last_document, load_documents
from .layout import documents_path, runs_directory

__all__ = ["RunInfo", "RunStatus", "find_run", "list_runs", "load_documents", "read_run_info"]

RunStatus = Literal["success", "fail", "abort", "incomplete"]


@dataclass(frozen=True)
class RunInfo:
    """One line of a run listing."""

    uid: str
    protocol: Any
    plan_name: str | None
    start_time: float
    status: RunStatus
    """Exit status of the stop document; "incomplete" if there is none (a killed run)."""
    sample: Any
    num_events: int
    path: Path
    reason: str = ""


def list_runs(data_dir: Path) -> list[RunInfo]:
    """All runs under ``<data_dir>/runs``, newest first; unreadable folders warned about."""
    root = runs_directory(data_dir)
    if not root.is_dir():
        return []
    runs = []
    for path in root.iterdir():
        if not documents_path(path).is_file():
            continue
        try:
            runs.append(read_run_info(path))
        except (OSError, ValueError) as err:
            warnings.warn(f"skipping run folder {path}: {err}", stacklevel=2)
    return sorted(runs, key=lambda run: run.start_time, reverse=True)


def read_run_info(run_path: Path) -> RunInfo:
    """Summarise one run from the first and last lines of its document log."""
    run_path = Path(run_path)
    name, start = first_document(run_path)
    if name != "start":
        raise ValueError(f"{documents_path(run_path)} begins with {name!r}, not 'start'")
    last = last_document(run_path)
    if last is not None and last[0] == "stop":
        stop = last[1]
        status: RunStatus = stop.get("exit_status", "incomplete")
        num_events = sum((stop.get("num_events") or {}).values())
        reason = stop.get("reason", "")
    else:
        status, num_events, reason = "incomplete", count_events(run_path), ""
    return RunInfo(
        uid=start["uid"],
        protocol=start.get("protocol"),
        plan_name=start.get("plan_name"),
        start_time=float(start["time"]),
        status=status,
        sample=start.get("sample"),
        num_events=num_events,
        path=run_path,
        reason=reason,
    )


_EVENT = b'{"name":"event",'
_EVENT_PAGE = b'{"name":"event_page",'


def count_events(run_path: Path) -> int:
    """Events in a run without a stop document, by line prefix (no full parse).

    Only newline-terminated lines count: a line cut short by a crash has none.
    """
    count = 0
    with documents_path(run_path).open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                continue
            if raw.startswith(_EVENT):
                count += 1
            elif raw.startswith(_EVENT_PAGE):
                try:
                    count += len(json.loads(raw)["doc"]["seq_num"])
                except (ValueError, KeyError, TypeError):
                    pass  # not a readable page; load_documents will say why
    return count


def find_run(data_dir: Path, uid_prefix: str) -> Path:
    """The folder of the one run whose uid starts with ``uid_prefix``."""
    root = runs_directory(data_dir)
    if not uid_prefix:
        raise ValueError("give at least the first characters of a run uid")
    folders = root.iterdir() if root.is_dir() else ()
    candidates = sorted(p for p in folders if p.name.startswith(uid_prefix) and p.is_dir())
    exact = [p for p in candidates if p.name == uid_prefix]
    if exact:
        return exact[0]
    if not candidates:
        raise LookupError(f"no run with uid starting {uid_prefix!r} in {root}")
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates[:10])
        more = f" and {len(candidates) - 10} more" if len(candidates) > 10 else ""
        raise LookupError(
            f"{len(candidates)} runs have a uid starting {uid_prefix!r} in {root}: {names}{more}"
        )
    return candidates[0]
