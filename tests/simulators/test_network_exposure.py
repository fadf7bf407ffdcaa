"""Simulators and every service vegard starts bind to loopback unless explicitly allowed.

A simulator reachable from the network could be taken for (or by) a real instrument, and
the control port hands out the ground truth. These tests look at the sockets actually
bound (from /proc, see bound_sockets.py), not at what the code asked for.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from bound_sockets import TCP_LISTEN, BoundSocket, bound_sockets

from vegard.cli import main
from vegard.clock import InstrumentClock
from vegard.simulators.control import control_server
from vegard.simulators.lab import SimulatedLab, default_instruments

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parents[1]
SIM_PROFILE = REPOSITORY / "configs/profiles/sim.yaml"
SERVE_TIMEOUT_S = 30.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_full_lab_and_control_server_bind_only_loopback() -> None:
    before = {s.inode for s in bound_sockets()}  # e.g. a CA client of an earlier test
    with SimulatedLab(InstrumentClock(1000.0), seed=1) as lab:
        with control_server(lab) as control:
            opened = [s for s in bound_sockets() if s.inode not in before]
            addresses = [*lab.addresses.values(), control.visa_address]
    assert set(lab.built) == set(default_instruments())
    listening = {s.port for s in opened if s.state == TCP_LISTEN}
    # the listing sees every server: one TCP listener per SCPI instrument and the control
    # port (ports read from their addresses), plus the IOC's TCP circuits and UDP search
    for address in addresses:
        if "::" in address or address.startswith("socket://"):
            port = int(address.removesuffix("::SOCKET").rsplit(":", 1)[1])
            assert port in listening, address
    assert len(listening) == len(default_instruments()) + 1
    assert any(s.udp for s in opened)
    exposed = [str(s) for s in opened if not s.loopback]
    assert not exposed, f"non-loopback sockets: {exposed}"


CA_CLIENT = """
import json, os, sys, threading
import asyncio
from aioca import caget
from bound_sockets import bound_sockets
from vegard.clock import InstrumentClock
from vegard.instruments.diffractometer_device import use_channel_access_environment
from vegard.simulators.lab import SimulatedLab

def children():
    found = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            found += f.read().split()
    return [open(f"/proc/{pid}/comm").read().strip() for pid in found]

with SimulatedLab(InstrumentClock(1000.0), seed=1) as lab:
    before = [vars(s) for s in bound_sockets()]
    use_channel_access_environment(lab.client_environment())
    value = asyncio.run(caget("SIM:DIFF:ETA.RBV", timeout=10))
    after = [vars(s) for s in bound_sockets()]
    threads = [open(f"/proc/self/task/{t}/comm").read().strip()
               for t in os.listdir("/proc/self/task")]
    print(json.dumps({"value": value, "before": before, "after": after,
                      "threads": threads, "children": children()}))
    sys.stdout.flush()
    os._exit(0)  # libca's exit handler would wait for the stopped IOC
"""


def test_a_channel_access_client_adds_only_libca_udp_sockets(tmp_path: Path) -> None:
    """libca (the CA client under aioca) binds UDP to 0.0.0.0 and nothing here can stop it.

    EPICS base 7.0 (epicscorelibs) binds its client search socket to INADDR_ANY on an
    ephemeral port, with no setting to change it, and starts a CA repeater on
    0.0.0.0:EPICS_CA_REPEATER_PORT (5065) unless that port is already taken. With no
    `caRepeater` executable installed (epicscorelibs ships none), its spawn fails (a
    zombie child) and the repeater runs as the "CAC-repeater" thread *in this process*.
    No variable disables it; making libca believe one is running (holding the port) only
    swaps it for a "cannot contact CA repeater" message after a minute and still leaves the
    search sockets on 0.0.0.0. So the servers stay on loopback and the client sockets
    are the documented exception: UDP only, no TCP listener, none before the first channel.
    Run in a fresh interpreter: libca's context and repeater thread outlive any test.
    """
    repeater_port = free_udp_port()  # not 5065: another CA process on this host has that
    environment = {**os.environ, "EPICS_CA_REPEATER_PORT": str(repeater_port),
                   "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", CA_CLIENT], capture_output=True, text=True, timeout=60,
        env=environment, cwd=tmp_path, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(report["value"], float)
    before = [BoundSocket(**s) for s in report["before"]]
    after = [BoundSocket(**s) for s in report["after"]]
    assert before and all(s.loopback for s in before), [str(s) for s in before]
    exposed = [s for s in after if not s.loopback]
    assert exposed, "libca bound nothing outside loopback: tighten this test"
    assert all(s.udp and s.host == "0.0.0.0" for s in exposed), [str(s) for s in exposed]
    assert not {s.inode for s in exposed} & {s.inode for s in before}
    repeater = [s for s in exposed if s.port == repeater_port]
    assert len(repeater) == 1
    assert "CAC-repeater" in report["threads"]
    assert "caRepeater" not in report["children"]
    # besides the repeater: libca's own search socket(s), on ephemeral ports
    low, _ = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    searches = [s for s in exposed if s.port != repeater_port]
    assert 1 <= len(searches) <= 2 and all(s.port >= low for s in searches)


def test_sim_serve_refuses_a_remote_host_without_the_flag(capsys, monkeypatch) -> None:
    def serve_forever(*args: object, **kwargs: object) -> None:
        raise AssertionError("sim serve went on to serve")  # fail, rather than hang

    monkeypatch.setattr("vegard.simulators.serve.serve_forever", serve_forever)
    before = {s.inode for s in bound_sockets()}
    assert main(["sim", "serve", "--host", "0.0.0.0"]) == 2
    message = capsys.readouterr().err
    assert "0.0.0.0" in message and "--allow-remote" in message and "non-loopback" in message
    assert {s.inode for s in bound_sockets()} <= before  # nothing was bound


def profile_on_free_ports(tmp_path: Path) -> Path:
    """The sim profile with every port left to the system (no clash with other servers)."""
    profile = yaml.safe_load(SIM_PROFILE.read_text())
    profile["simulation"]["control_port"] = 0
    profile["simulation"]["ports"] = {}
    path = tmp_path / "sim_free_ports.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def test_sim_serve_on_a_remote_host_warns_and_stops_on_sigterm(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "vegard.cli", "sim", "serve", "--host", "0.0.0.0",
         "--allow-remote", "--profile", str(profile_on_free_ports(tmp_path))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as child:
        watchdog = threading.Timer(SERVE_TIMEOUT_S, child.kill)
        watchdog.start()
        try:
            printed = {}
            for line in child.stdout:
                name, address = line.split(maxsplit=1)
                printed[name if name != "export" else address.split("=")[0]] = address.strip()
                if name == "control":
                    break
            served = bound_sockets(child.pid)
            child.send_signal(signal.SIGTERM)
            _, errors = child.communicate(timeout=SERVE_TIMEOUT_S)
        finally:
            watchdog.cancel()
    assert child.returncode == 0, errors
    assert "Traceback" not in errors
    for name in [*default_instruments(), "control"]:
        assert f"serving {name} on non-loopback host 0.0.0.0" in errors, errors
    for name in [*(n for n in default_instruments() if n != "diffractometer"), "control"]:
        assert "0.0.0.0" in printed[name], printed
    ca_port = int(printed["EPICS_CA_ADDR_LIST"].rsplit(":", 1)[1])
    by_port = {(s.udp, s.port): s for s in served}
    # the IOC honours the host too: its UDP search and TCP circuit sockets
    assert by_port[(True, ca_port)].host == "0.0.0.0"
    assert any(not s.udp and s.host == "0.0.0.0" and s.state == TCP_LISTEN
               and s.port == ca_port for s in served)
    # everything listening is on the host asked for
    assert all(s.host == "0.0.0.0" for s in served if s.state == TCP_LISTEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_sim_serve_loopback_hosts_need_no_flag(host: str) -> None:
    from vegard.simulators.serve import check_serve_host

    check_serve_host(host, allow_remote=False)  # does not raise
