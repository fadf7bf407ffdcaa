"""Figures drawn in a separate process, not on the RunEngine's event loop.

Drawing a figure with matplotlib holds the interpreter for a tenth of a second or more
(the series' map grid for most of a second). On the RunEngine's loop that is time in
which no device is served and no document is processed; in a dry run it was a quarter of
the work on the loop. A child process draws instead, on another core.

Each figure is drawn to a temporary file and moved into place when done, so a reader
never sees half a PNG. A live figure redrawn before the previous drawing finished (the
Arrhenius plot after each map) keeps the newest: drawings of one path are moved into
place only if no later one already was.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from .figure_worker import FigureWorkers

LOG = logging.getLogger(__name__)

FIGURE_PROCESSES = 2
"""Children drawing figures (the final figures of a series are drawn side by side)."""

_workers = FigureWorkers(FIGURE_PROCESSES)


class FigureDrawer:
    """An analysis's figures: asked for while it runs, all on disk when `finished` returns."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path, int, Future]] = []
        self._sequence = 0
        self._placed: dict[Path, int] = {}
        self._drawn: list[Path] = []
        self._lock = threading.Lock()

    def draw(self, function: Callable[..., Any], path: Path, *args: Any, **kwargs: Any) -> Path:
        """Ask for `function(path, *args, **kwargs)` to be drawn; returns `path` at once.

        `function` is a module-level figure function (it is sent to the child by name)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
        temporary = path.with_name(f".{path.stem}.{sequence}{path.suffix}")
        try:
            future = _workers.submit(function, temporary, args, kwargs)
        except OSError as error:  # no child process could be started: draw here
            LOG.warning("figure process unavailable (%s); drawing %s here", error, path.name)
            function(temporary, *args, **kwargs)
            future = Future()
            future.set_result(temporary)
        else:  # placed as soon as drawn, for whoever watches the figure during the run
            future.add_done_callback(lambda done: self._place(done, temporary, path, sequence))
        with self._lock:
            self._pending.append((path, temporary, sequence, future))
        return path

    def _place(self, future: Future, temporary: Path, path: Path, sequence: int) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        with self._lock:
            if self._placed.get(path, 0) >= sequence:  # this or a later drawing is there
                if self._placed.get(path, 0) > sequence:
                    temporary.unlink(missing_ok=True)
                return
            os.replace(temporary, path)
            self._placed[path] = sequence

    def finished(self) -> list[Path]:
        """Wait for every figure asked for; the paths drawn so far, each once, in the order
        first asked. A figure that failed is logged and left out."""
        with self._lock:
            pending, self._pending = self._pending, []
        for path, temporary, sequence, future in pending:
            try:
                future.result()
            except Exception as error:  # a figure must not take the run's result with it
                LOG.error("figure %s failed: %s: %s", path, type(error).__name__, error)
                temporary.unlink(missing_ok=True)
                continue
            self._place(future, temporary, path, sequence)  # its callback may not have run yet
            if path not in self._drawn:
                self._drawn.append(path)
        return list(self._drawn)
