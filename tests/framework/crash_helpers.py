"""Helpers shared by the crash tests: kill a child on cue, read back what a run stored."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vegard.store import ArrayFiller, load_documents, replay


def sigkill_when(
    child: subprocess.Popen, ready: Callable[[], bool], timeout_s: float, poll_s: float = 0.005
) -> float:
    """SIGKILL `child` as soon as `ready()` is true; return the seconds waited.

    Fails (after killing the child anyway) if it exits first or `timeout_s` passes, so a
    hung child never outlives the test.
    """
    started = time.monotonic()
    try:
        while not ready():
            if child.poll() is not None:
                raise AssertionError(
                    f"child exited with {child.returncode} before it was killed: "
                    f"{child.stderr.read() if child.stderr else ''}"
                )
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"child not ready to be killed within {timeout_s} s")
            time.sleep(poll_s)
        waited = time.monotonic() - started
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    return waited


def arrays_by_seq_num(run_path: Path, data_key: str) -> dict[int, np.ndarray]:
    """Event seq_num → the rows its stream_datum points at, replayed from the stored run.

    Raises if a stream_datum's rows cannot be read (missing file, rows never written).
    """
    rows: dict[int, np.ndarray] = {}

    def collect(stream_datum: Any, arrays: dict[str, np.ndarray]) -> None:
        seq_nums = range(stream_datum["seq_nums"]["start"], stream_datum["seq_nums"]["stop"])
        for seq_num, row in zip(seq_nums, arrays[data_key], strict=True):
            rows[seq_num] = row

    with ArrayFiller(run_path, on_arrays=collect) as filler:
        replay(run_path, [filler])
    return rows


def document_names(run_path: Path) -> list[str]:
    """The names of a stored run's documents, in recorded order."""
    return [name for name, _ in load_documents(run_path)]
