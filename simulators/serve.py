"""Serve a simulated lab until told to stop: the body of `vegard sim serve`.

Everything binds to loopback unless the caller asked for another host *and* allowed it
(`check_serve_host`): a simulator reachable from the network could be taken for a real
instrument, and its control port hands out the ground truth. Serving elsewhere is logged
as a warning naming each service and its address.
"""

from __future__ import annotations

import logging
import shlex
import signal
import sys
import threading
from typing import TextIO

from .control import control_server
from .lab import SimulatedLab
from .scpi_server import is_loopback

CONTROL_NAME = "control"
ENVIRONMENT_PREFIX = "export"
"""Lines `export NAME=value`: the environment a client needs (Channel Access search)."""

LOG = logging.getLogger(__name__)


class RemoteHostRefused(ValueError):
    """A non-loopback host was asked for without explicitly allowing it."""


def check_serve_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback `host` unless `allow_remote` (before any socket is opened)."""
    if not is_loopback(host) and not allow_remote:
        raise RemoteHostRefused(
            f"refusing to serve the simulators on non-loopback host {host!r}: they would be "
            "reachable from the network; pass --allow-remote if that is really wanted"
        )


def serve_forever(
    lab: SimulatedLab,
    control_port: int = 0,
    *,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Start the lab and its control port, print the addresses, block, then stop cleanly.

    Prints one `name address` line per instrument (`diffractometer ca://SIM:DIFF:`), one
    `export NAME=value` line per variable a client needs in its environment (the IOC's
    EPICS_CA_*; two words per line like the others, and valid shell), and last one for
    the control port.
    Returns on KeyboardInterrupt, SIGTERM (when called from the main thread), or
    when `stop` is set (for callers that run it in a thread).
    """
    out = out or sys.stdout
    stop = stop or threading.Event()
    check_serve_host(lab.host, lab.allow_remote)
    control = control_server(
        lab, port=control_port, host=lab.host, allow_remote=lab.allow_remote
    )
    previous_handler = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    try:
        # before anything is printed: a client may stop us as soon as it reads the addresses
        if in_main_thread:
            previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        lab.start()
        control.start()
        if not is_loopback(lab.host):
            for name, address in [*lab.addresses.items(), (CONTROL_NAME, control.visa_address)]:
                LOG.warning("serving %s on non-loopback host %s: %s", name, lab.host, address)
        for name, address in lab.addresses.items():
            print(f"{name} {address}", file=out)
        for key, value in lab.client_environment().items():
            print(f"{ENVIRONMENT_PREFIX} {key}={shlex.quote(value)}", file=out)
        print(f"{CONTROL_NAME} {control.visa_address}", file=out)
        out.flush()
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if in_main_thread and previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        control.stop()
        lab.stop()
