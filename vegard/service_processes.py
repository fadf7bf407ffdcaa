"""Child processes of `vegard serve`, each in its own process group, logged to a file.

Why a process group: the RE Manager is three processes (watchdog, manager, worker) and a
stopped service must leave none behind; a group can be signalled as a whole. Why a new
session: Ctrl-C in the terminal reaches only `vegard serve`, which stops the children in
order (the HTTP server before the RE Manager before Redis).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

POLL_S = 0.05
"""Wall-time period of readiness polls (servers, not instruments)."""


class ServiceFailed(RuntimeError):
    """A service did not come up, or exited."""


def group_alive(pgid: int) -> bool:
    """True while any process of group `pgid` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class ChildProcess:
    name: str
    argv: Sequence[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> ChildProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.argv), env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:].strip()
        except OSError:
            return ""

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float) -> None:
        """Poll `ready` until true; refuse if the process exits or the time runs out."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            if not self.running():
                raise ServiceFailed(
                    f"{self.name} exited with {self.process.returncode if self.process else '?'}"
                    f" (log {self.log_path}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServiceFailed(
                    f"{self.name} was not ready within {timeout_s:g} s (log {self.log_path}):"
                    f"\n{self.log_tail()}")
            time.sleep(POLL_S)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the leader (it stops its own children), then SIGKILL to whatever of
        its group is left."""
        self.terminate()
        self.wait_stopped(grace_s)

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, grace_s: float = 10.0) -> None:
        """Wait for the leader and its group; SIGKILL what is left after `grace_s`."""
        if self.process is None:
            return
        pgid = self.process.pid
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + grace_s
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL to the whole group at once (what a crash looks like)."""
        if self.process is not None and group_alive(self.process.pid):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
