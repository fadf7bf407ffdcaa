"""Read a run's ``documents.jsonl`` back, tolerating the damage a crash can do.

A process killed mid-write leaves at most its last line truncated: that line is
skipped with a `TruncatedRunWarning`. A broken line anywhere else is not crash
damage but corruption, and raises `CorruptRunError` naming file and line.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .layout import documents_path


class TruncatedRunWarning(UserWarning):
    """The last line of a document log was cut short (the writer died mid-line)."""


class CorruptRunError(ValueError):
    """A document log line other than the last cannot be read."""


def parse_line(raw: bytes) -> tuple[str, dict[str, Any]]:
    """One ``{"name": ..., "doc": {...}}`` line -> ``(name, doc)``; ValueError if broken."""
    record = json.loads(raw.decode("ascii"))
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise ValueError("not a {'name': ..., 'doc': ...} record")
    doc = record.get("doc")
    if not isinstance(doc, dict):
        raise ValueError("'doc' is not an object")
    return record["name"], doc


def load_documents(run_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(name, doc)`` in recorded order from a run folder (or its jsonl file)."""
    path = documents_path(run_path)
    with path.open("rb") as f:
        broken: tuple[int, Exception] | None = None
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            if broken is not None:
                _raise_corrupt(path, *broken)
            try:
                document = parse_line(raw)
            except ValueError as err:  # JSONDecodeError and UnicodeDecodeError too
                broken = (lineno, err)
                continue
            yield document
        if broken is not None:
            warnings.warn(
                f"{path}:{broken[0]}: skipped a truncated last line ({broken[1]})",
                TruncatedRunWarning,
                stacklevel=2,
            )


def _raise_corrupt(path: Path, lineno: int, err: Exception) -> None:
    raise CorruptRunError(f"{path}:{lineno}: unreadable document line ({err})") from err


def first_document(run_path: Path) -> tuple[str, dict[str, Any]]:
    """The first document (normally ``start``), without reading the rest."""
    path = documents_path(run_path)
    with path.open("rb") as f:
        raw = f.readline()
    try:
        return parse_line(raw)
    except ValueError as err:
        _raise_corrupt(path, 1, err)
        raise


def last_document(run_path: Path, block: int = 1 << 16) -> tuple[str, dict[str, Any]] | None:
    """The last complete document, read from the end; None if the last line is broken."""
    path = documents_path(run_path)
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        tail = b""
        position = end
        while position > 0:
            step = min(block, position)
            position -= step
            f.seek(position)
            tail = f.read(step) + tail
            # Need a newline before the last non-empty line, or the file start.
            if tail.rstrip().count(b"\n") >= 1:
                break
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        return parse_line(lines[-1])
    except ValueError:
        return None
