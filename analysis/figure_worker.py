"""Child processes that draw figures, and the parent's side of talking to them.

A child is `python -m vegard.analysis.figure_worker`, fed pickled jobs (a module-level
figure function, the file to draw, its arguments) on stdin and answering on stdout. It
is started as a plain interpreter rather than through `multiprocessing`, whose spawned
children run the parent's main script again: a user's script without a
`if __name__ == "__main__"` guard would start its experiment a second time.
"""

from __future__ import annotations

import atexit
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

_LENGTH = struct.Struct("!Q")


def _send(stream: IO[bytes], message: object) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("figure process closed its output")
    (length,) = _LENGTH.unpack(header)
    return pickle.loads(stream.read(length))


class FigureWorkers:
    """Up to `processes` children, started at the first job; jobs go to whichever is free."""

    def __init__(self, processes: int) -> None:
        self._processes = processes
        self._jobs: queue.SimpleQueue[tuple[Future, tuple] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, function: Callable[..., Any], path: Path, args: tuple,
               kwargs: dict) -> Future:
        """Draw `function(path, *args, **kwargs)` in a child; the future's result is `path`."""
        with self._lock:
            if not self._threads:
                for _ in range(self._processes):
                    self._start_one()
                atexit.register(self.close)
        future: Future = Future()
        self._jobs.put((future, (function, path, args, kwargs)))
        return future

    def _start_one(self) -> None:
        child = subprocess.Popen(
            [sys.executable, "-m", "vegard.analysis.figure_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        thread = threading.Thread(target=self._serve, args=(child,), daemon=True,
                                  name="figure-worker")
        thread.start()
        self._threads.append(thread)

    def _serve(self, child: subprocess.Popen) -> None:
        """Hand jobs to one child, one at a time, until `close`."""
        assert child.stdin is not None and child.stdout is not None
        try:
            while (job := self._jobs.get()) is not None:
                future, work = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    _send(child.stdin, work)
                    ok, value = _receive(child.stdout)
                except (OSError, EOFError, pickle.PickleError) as error:
                    future.set_exception(RuntimeError(f"figure process failed: {error}"))
                    return
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        finally:
            child.stdin.close()
            child.wait()

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()


def main() -> None:
    """The child: draw each job received; answer (True, path) or (False, error)."""
    import matplotlib

    matplotlib.use("Agg")
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a figure function's prints must not corrupt the answers
    while True:
        try:
            function, path, args, kwargs = _receive(source)
        except EOFError:
            return
        try:
            function(path, *args, **kwargs)
            answer: tuple[bool, object] = (True, path)
        except Exception as error:  # sent back: the parent logs it and leaves the figure out
            answer = (False, error)
        _send(sink, answer)


if __name__ == "__main__":
    main()
