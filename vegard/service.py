"""`vegard serve`: the facility layer on one machine — Redis, the RE Manager, the HTTP
server and Tiled.

All on 127.0.0.1 unless `--host` and `--allow-remote` say otherwise (the rule of
`vegard sim serve`; Redis and the simulators stay on loopback either way). Started:

1. Redis (`vegard.redis_server`): the queue and the history live there, so they outlive
   an RE Manager that dies; `vegard serve` starts a new RE Manager on the same Redis.
2. Tiled (`vegard.tiled_service`), which boots while the rest starts and is waited for
   last, when the runs already in the store are backfilled into it.
3. For a sim profile, the simulated lab in this process, wall-paced (`--speedup`), with
   its control port; the worker opens a *served* profile (the devices at the served
   simulators, the clock following the lab's), written to the state directory.
4. The generated lists (`vegard.queue_lists`) and the RE Manager with the startup module
   `vegard.queue_startup`; bluesky-httpserver in front of it with a single-user API key
   (the same key as Tiled's).

Stopped on SIGTERM or Ctrl-C: a running plan is aborted through the queue server (its
clean-up makes the instruments safe), then the HTTP server, the RE Manager and Tiled,
then the lab and Redis. Everything the services need on disk (profiles, lists, Tiled's
catalog, logs) is in a temporary state directory, removed on exit; the run store is the
data directory, as for `vegard run`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import yaml

from vegard.clock import InstrumentClock
from vegard.config.errors import ConfigError
from vegard.config.profiles import Profile, load_profile
from vegard.queue_environment import (
    CONFIG_VARIABLE,
    TILED_KEY_VARIABLE,
    QueueConfig,
    plan_names,
)
from vegard.queue_lists import (
    STARTUP_MODULE,
    console_script,
    generate_existing_plans_and_devices,
    write_permissions,
)
from vegard.redis_server import RedisServer, free_port
from vegard.service_processes import ChildProcess, ServiceFailed
from vegard.simulators.serve import check_serve_host

DEFAULT_PORTS = {"zmq_control_port": 60615, "zmq_info_port": 60625, "http_port": 60610,
                 "tiled_port": 8000}
"""bluesky-queueserver's, bluesky-httpserver's and Tiled's own defaults, so `qserver`
needs no flag."""
READY_TIMEOUT_S = 120.0
"""Wall time a service gets to come up (imports, connecting the instruments)."""
SUPERVISE_PERIOD_S = 0.2
SHUTDOWN_ABORT_TIMEOUT_S = 30.0
"""Wall time a running plan gets to abort and clean up when the service stops."""
API_KEY_VARIABLE = "VEGARD_API_KEY"
"""Where `vegard serve` takes the HTTP server's API key from (else it makes one)."""


@dataclass
class ServeOptions:
    profile_path: Path
    data_dir: Path
    devices: Sequence[str] | None = None
    """Only these of the profile's devices (None: all)."""
    speedup: float | None = None
    """A sim profile's lab: instrument time per wall time (None: the profile's)."""
    simulator_overrides: Sequence[str] = ()
    host: str = "127.0.0.1"
    allow_remote: bool = False
    zmq_control_port: int = DEFAULT_PORTS["zmq_control_port"]
    zmq_info_port: int = DEFAULT_PORTS["zmq_info_port"]
    http_port: int = DEFAULT_PORTS["http_port"]
    tiled_port: int = DEFAULT_PORTS["tiled_port"]
    api_key: str | None = None
    restart_re_manager: bool = True
    """Start the RE Manager again if it exits while serving (its queue is in Redis)."""


def _port(host: str, port: int) -> int:
    return free_port(host) if port == 0 else port


def _import_tiled_writer() -> None:
    import bluesky.callbacks.tiled_writer  # noqa: F401
    import tiled.client  # noqa: F401


def _answers(url: str, headers: dict[str, str]) -> bool:
    """True if `url` answers 200 with these headers."""
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=1.0) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def served_profile(profile: Profile, devices: Sequence[str], addresses: dict[str, str],
                   control_address: str) -> dict:
    """The profile as the worker opens it: only the served devices, the simulated ones at
    their served addresses, the clock following the served lab (a device left at `sim`
    would make the worker a dry run with simulators of its own, on a virtual clock)."""
    data = profile.model_dump(mode="json")
    data["devices"] = {name: data["devices"][name] for name in devices}
    for name, address in addresses.items():
        if name in data["devices"]:
            data["devices"][name]["address"] = address
    data["clock"] = {"follow": control_address}
    return data


@dataclass
class ServiceStack:
    options: ServeOptions
    api_key: str = field(init=False)
    redis: RedisServer | None = field(init=False, default=None)
    re_manager: ChildProcess | None = field(init=False, default=None)
    http_server: ChildProcess | None = field(init=False, default=None)
    tiled: ChildProcess | None = field(init=False, default=None)
    backfilled: list[str] = field(init=False, default_factory=list)
    addresses: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        check_serve_host(self.options.host, self.options.allow_remote)
        self.api_key = self.options.api_key or os.environ.get(API_KEY_VARIABLE) \
            or secrets.token_hex(32)
        self.profile = load_profile(self.options.profile_path)
        names = list(self.options.devices or self.profile.device_names())
        unknown = [name for name in names if name not in self.profile.devices]
        if unknown:
            raise ConfigError(
                f"--devices = {','.join(unknown)} is not valid: allowed: devices of "
                f"{self.options.profile_path} ({', '.join(self.profile.devices)})")
        self.device_names = names
        self._lab = None
        self._control = None
        self._state: tempfile.TemporaryDirectory | None = None

    # --- start ------------------------------------------------------------------------

    def start(self) -> ServiceStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        options = self.options
        self._state = tempfile.TemporaryDirectory(prefix="vegard-serve-")
        state = Path(self._state.name)
        self.redis = RedisServer().start()
        self.addresses["redis"] = self.redis.address
        self._start_tiled(state)  # it boots while the rest starts
        warm = threading.Thread(target=_import_tiled_writer, daemon=True)
        warm.start()  # the backfill's imports, meanwhile
        profile_path = self._start_lab(state)
        self.worker_environment = {**os.environ, **getattr(self, "_client_environment", {}),
                                   TILED_KEY_VARIABLE: self.api_key}
        worker = QueueConfig(profile=str(profile_path), devices=self.device_names,
                             data_dir=str(options.data_dir),
                             metadata={"served_by": "vegard serve"},
                             tiled_uri=self.tiled_address)
        self._queue_config = worker.write(state / "queue.json")
        describe = QueueConfig(**{**worker.__dict__, "describe_only": True})
        self._lists = (
            generate_existing_plans_and_devices(describe.write(state / "describe.json"), state),
            write_permissions(state, plan_names(), self.device_names),
        )
        host = options.host
        self.addresses["zmq_control"] = f"tcp://{host}:{_port(host, options.zmq_control_port)}"
        self.addresses["zmq_info"] = f"tcp://{host}:{_port(host, options.zmq_info_port)}"
        self.start_re_manager(wait=False)
        http_port = _port(host, options.http_port)
        self.addresses["http"] = f"http://{host}:{http_port}"
        self.http_server = ChildProcess(
            "bluesky-httpserver",
            [console_script("start-bluesky-httpserver"), "--host", host, "--port",
             str(http_port)],
            env={**os.environ, "QSERVER_ZMQ_CONTROL_ADDRESS": self.addresses["zmq_control"],
                 "QSERVER_ZMQ_INFO_ADDRESS": self.addresses["zmq_info"],
                 "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": self.api_key},
            log_path=state / "http-server.log").start()
        self.re_manager.wait_ready(self._re_manager_ready, READY_TIMEOUT_S)
        self.http_server.wait_ready(self._http_ready, READY_TIMEOUT_S)
        self._backfill()

    def _start_tiled(self, state: Path) -> None:
        """Tiled on a new catalog; the runs already in the store written into it."""
        from vegard.tiled_service import API_KEY_VARIABLE, tiled_command

        self.options.data_dir.mkdir(parents=True, exist_ok=True)
        port = _port(self.options.host, self.options.tiled_port)
        self.addresses["tiled"] = f"http://{self.options.host}:{port}"
        self.tiled = ChildProcess(
            "Tiled", tiled_command(console_script("tiled"), state, self.options.data_dir,
                                   self.options.host, port),
            env={**os.environ, API_KEY_VARIABLE: self.api_key},
            log_path=state / "tiled.log").start()

    def _backfill(self) -> None:
        from vegard.tiled_service import backfill, client

        assert self.tiled is not None
        self.tiled.wait_ready(self._tiled_ready, READY_TIMEOUT_S)
        self.backfilled = backfill(client(self.tiled_address, self.api_key),
                                   self.options.data_dir)

    @property
    def tiled_address(self) -> str:
        return self.addresses["tiled"].replace("0.0.0.0", "127.0.0.1")

    def _tiled_ready(self) -> bool:
        return _answers(f"{self.tiled_address}/api/v1/metadata/",
                        {"Authorization": f"Apikey {self.api_key}"})

    def _start_lab(self, state: Path) -> Path:
        """A sim profile's lab, served here; the profile the worker opens."""
        simulated = [name for name in self.device_names
                     if name in self.profile.simulated_devices()]
        if not simulated:
            return self.options.profile_path.resolve()
        from vegard.session import build_lab
        from vegard.simulators.control import control_server

        clock = InstrumentClock(self.options.speedup or self.profile.clock.speedup)
        self._lab = build_lab(self.profile, str(self.options.profile_path),
                              self.options.simulator_overrides, clock, ports=None,
                              instruments=simulated)
        self._control = control_server(self._lab)
        self._lab.start()
        self._control.start()
        self._client_environment = self._lab.client_environment()
        self.addresses["simulator_control"] = self._control.visa_address
        path = state / "served-profile.yaml"
        path.write_text(yaml.safe_dump(
            served_profile(self.profile, self.device_names, self._lab.addresses,
                           self._control.visa_address),
            sort_keys=False))
        return path

    def start_re_manager(self, wait: bool = True) -> None:
        state = Path(self._state.name)  # type: ignore[union-attr]
        existing, permissions = self._lists
        assert self.redis is not None
        self.re_manager = ChildProcess(
            "RE Manager",
            [console_script("start-re-manager"), "--startup-module", STARTUP_MODULE,
             "--existing-plans-devices", str(existing),
             "--user-group-permissions", str(permissions),
             "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
             "--redis-addr", self.redis.address,
             "--zmq-control-addr", self.addresses["zmq_control"],
             "--zmq-info-addr", self.addresses["zmq_info"], "--zmq-publish-console", "ON",
             "--console-output", "OFF"],
            env={**self.worker_environment, CONFIG_VARIABLE: str(self._queue_config)},
            log_path=state / "re-manager.log").start()
        if wait:
            self.re_manager.wait_ready(self._re_manager_ready, READY_TIMEOUT_S)

    def _re_manager_ready(self) -> bool:
        from bluesky_queueserver_api.zmq import REManagerAPI

        manager = REManagerAPI(zmq_control_addr=self.addresses["zmq_control"],
                               timeout_recv=0.5)
        try:
            manager.status()
            return True
        except Exception:
            return False
        finally:
            manager.close()

    def _http_ready(self) -> bool:
        return _answers(f"{self.http_address}/api/status",
                        {"Authorization": f"ApiKey {self.api_key}"})

    @property
    def http_address(self) -> str:
        return self.addresses["http"].replace("0.0.0.0", "127.0.0.1")

    # --- serve and stop --------------------------------------------------------------

    def supervise(self, stop: threading.Event, out: TextIO) -> None:
        """Block until `stop`; start the RE Manager again if it exits meanwhile."""
        while not stop.wait(SUPERVISE_PERIOD_S):
            for child in (self.http_server, self.tiled):
                if child is not None and not child.running():
                    raise ServiceFailed(f"{child.name} exited:\n{child.log_tail()}")
            if self.re_manager is not None and not self.re_manager.running():
                if not self.options.restart_re_manager:
                    raise ServiceFailed(f"the RE Manager exited:\n{self.re_manager.log_tail()}")
                self.re_manager.stop()  # what is left of its group
                print(f"re-manager exited ({self.re_manager.process.returncode}); "
                      "starting it again on the same Redis", file=out, flush=True)
                self.start_re_manager()
                print(f"re-manager pid {self.re_manager.pid}", file=out, flush=True)

    def stop(self) -> None:
        """Every service stopped, in the reverse order of starting, each even if an
        earlier one failed to stop."""
        for step in (self._abort_before_stopping, self._stop_children, self._stop_lab,
                     self._stop_redis):
            try:
                step()
            except Exception as error:  # keep stopping the others
                print(f"vegard serve: while stopping: {error}", file=sys.stderr)
        if self._state is not None:
            shutil.rmtree(self._state.name, ignore_errors=True)
            self._state = None

    def _abort_before_stopping(self) -> None:
        if self.re_manager is not None and self.re_manager.running():
            self._abort_running_plan()

    def _stop_children(self) -> None:
        """The HTTP server, the RE Manager and Tiled told to stop at once, then awaited."""
        children = [child for child in (self.http_server, self.re_manager, self.tiled)
                    if child is not None]
        for child in children:
            child.terminate()
        for child in children:
            child.wait_stopped()

    def _abort_running_plan(self) -> None:
        """A plan still running when the service stops is aborted through the queue server,
        so its clean-up leaves the instruments safe before the worker goes away."""
        from bluesky_queueserver_api.zmq import REManagerAPI

        manager = REManagerAPI(zmq_control_addr=self.addresses["zmq_control"],
                               timeout_recv=2.0)
        try:
            state = manager.status().get("re_state")
            if state == "running":
                manager.re_pause(option="immediate")
                manager.wait_for_idle_or_paused(timeout=SHUTDOWN_ABORT_TIMEOUT_S)
                state = manager.status().get("re_state")
            if state == "paused":
                manager.re_abort()
                manager.wait_for_idle(timeout=SHUTDOWN_ABORT_TIMEOUT_S)
        except Exception as error:  # a dead or stuck manager: the group is killed next
            print(f"vegard serve: could not abort the running plan: {error}", file=sys.stderr)
        finally:
            manager.close()

    def _stop_tiled(self) -> None:
        if self.tiled is not None:
            self.tiled.stop()

    def _stop_lab(self) -> None:
        if self._control is not None:
            self._control.stop()
            self._control = None
        if self._lab is not None:
            self._lab.stop()
            self._lab = None

    def _stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop()

    def describe(self) -> list[str]:
        """The lines `vegard serve` prints: `name value`, one each."""
        assert self.re_manager is not None and self.http_server is not None
        lines = [f"{name} {address}" for name, address in self.addresses.items()]
        lines += [
            f"api-key {self.api_key}",
            f"re-manager pid {self.re_manager.pid}",
            f"http-server pid {self.http_server.pid}",
            f"tiled-backfilled {len(self.backfilled)}",
            f"export QSERVER_ZMQ_CONTROL_ADDRESS={self.addresses['zmq_control']}",
            f"export QSERVER_ZMQ_INFO_ADDRESS={self.addresses['zmq_info']}",
            f"data-dir {self.options.data_dir}",
        ]
        return lines


def serve(options: ServeOptions, out: TextIO | None = None) -> None:
    """Start the stack, print its addresses and key, serve until SIGINT/SIGTERM, stop."""
    out = out or sys.stdout
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = ServiceStack(options)
    try:
        stack.start()
        for line in stack.describe():
            print(line, file=out)
        print("ready", file=out, flush=True)
        stack.supervise(stop, out)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)
        print("stopped", file=out, flush=True)
