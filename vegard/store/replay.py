"""Push a stored run through the callbacks live analysis uses.

Replay is deliberately nothing more than calling each callback with each
recorded ``(name, doc)`` in order -- the same calls the RunEngine makes live --
so there is one analysis code path. A run without a stop document (the
process was killed) is replayed as far as it goes; callbacks simply never see
a ``stop``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .documents import load_documents

__all__ = ["ReplayResult", "replay"]

Callback = Callable[[str, dict[str, Any]], Any]


@dataclass(frozen=True)
class ReplayResult:
    """How much of a run was replayed."""

    num_documents: int
    complete: bool
    """True if the run's stop document was among them."""


def replay(run_path: Path, callbacks: Iterable[Callback]) -> ReplayResult:
    """Feed every stored document of ``run_path`` to each callback, in recorded order."""
    callbacks = list(callbacks)
    count = 0
    complete = False
    for name, doc in load_documents(run_path):
        for callback in callbacks:
            callback(name, doc)
        count += 1
        complete = complete or name == "stop"
    return ReplayResult(num_documents=count, complete=complete)
