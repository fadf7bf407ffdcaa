"""Synchronous Channel Access helpers for tests that talk to the simulated IOC directly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from caproto.sync.client import read, write


def get(pv: str, timeout_s: float = 2.0) -> Any:
    value = read(pv, timeout=timeout_s, repeater=False).data[0]
    return value.decode() if isinstance(value, bytes) else value


def put(pv: str, value: Any, *, wait: bool = True) -> None:
    write(pv, value, notify=wait, timeout=5.0, repeater=False)


def wait_until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Poll until `condition` holds (the IOC's motion loop runs in its own thread)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)
