"""A session: profile → (simulators) → devices → RunEngine → run store and analysis.

Everything a protocol needs is validated before the first command goes on a
wire: the protocol file, the profile, the protocol against the profile's
limits, and the simulator parameters.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.utils import RunEngineInterrupted

from vegard.clock import InstrumentClock
from vegard.config.errors import ConfigError
from vegard.config.profiles import SIM_ADDRESS, Profile
from vegard.config.protocols import Protocol
from vegard.devices import BuildContext, build_device, close_device
from vegard.instruments.visa_connection import VisaConnection
from vegard.plans.retakes import failure_cause
from vegard.progress import ProgressPrinter
from vegard.registry import (
    Bench,
    bench_for,
    merged_analysis,
    protocol_kind,
    session_metadata,
)
from vegard.simulators.control import parse_clock_reply
from vegard.simulators.lab import SimulatedLab, default_instruments, parameter_specs
from vegard.simulators.parameters import resolve_parameters
from vegard.simulators.scpi_server import LOOPBACK_HOST
from vegard.store.event_validation import use_flattened_event_schema
from vegard.store.layout import run_directory
from vegard.store.writer import RunWriter
from vegard.virtual_clock import VirtualClock

TRUTH_FILE = "simulator_truth.npz"
"""Per-pixel simulator truth of a dry run (`<instrument>.<frame>.<quantity>` arrays)."""


def make_run_engine(clock: InstrumentClock) -> RunEngine:
    """A RunEngine on the clock's own event loop (on a virtual clock its timers, and so
    every timeout and poll of the devices on it, run in instrument time), whose plan
    sleeps (`bps.sleep`) last instrument time, not wall time."""
    use_flattened_event_schema()
    run_engine = RunEngine({}, call_returns_result=True, loop=clock.new_event_loop())

    async def instrument_sleep(msg):
        await clock.sleep(*msg.args)

    run_engine.register_command("sleep", instrument_sleep)
    return run_engine


def follow_clock(control_address: str) -> InstrumentClock:
    """A clock in step with a simulator lab served by another process."""
    connection = VisaConnection(control_address, name="simulator control", timeout_s=2.0)
    connection.open_blocking()
    try:
        reply = connection.query_blocking("CLOCK?")
    finally:
        connection.close()
    try:
        state = parse_clock_reply(reply)
    except ValueError:
        raise ConfigError(
            f"{control_address}: CLOCK? answered {reply!r}, not 'time,speedup'"
        ) from None
    return InstrumentClock.following(state)


def build_lab(
    profile: Profile,
    profile_source: str,
    overrides: Sequence[str],
    clock: InstrumentClock,
    ports: dict[str, int] | None,
    instruments: Sequence[str] | None = None,
    host: str = LOOPBACK_HOST,
    allow_remote: bool = False,
) -> SimulatedLab:
    """The simulators of a profile, parameters validated (profile, then --set overrides).

    `instruments`: only these (and the models they are coupled to); None = all.
    """
    simulated = {name: profile.devices[name].driver for name in profile.simulated_devices()}
    known = {**default_instruments(), **simulated}
    parameters = resolve_parameters(
        parameter_specs(known), profile.simulation.parameters, list(overrides), profile_source
    )
    built = simulated if instruments is None else {name: simulated[name] for name in instruments}
    return SimulatedLab(clock, parameters=parameters, ports=ports, seed=profile.simulation.seed,
                        instruments=built, known=known, host=host, allow_remote=allow_remote)


@dataclass
class RunOutcome:
    """What `vegard run`/`dry-run` print: the summary of one protocol execution."""

    summary: dict[str, Any]
    exit_status: str
    reason: str = ""


@dataclass
class Session:
    profile: Profile
    data_dir: Path
    dry_run: bool
    simulator_overrides: Sequence[str] = ()
    speedup: float | None = None
    """Dry runs: pace instrument time at this many times wall time (`--paced`) instead of
    the virtual clock. Ignored at real instruments."""
    show_progress: bool = True
    profile_source: str = "profile"
    clock: InstrumentClock = field(init=False)
    lab: SimulatedLab | None = field(init=False, default=None)
    """Kept after `close` (stopped): its models and command logs are the post-mortem."""
    run_engine: RunEngine = field(init=False)
    devices: dict[str, Any] = field(init=False, default_factory=dict)
    _uses_channel_access: bool = field(init=False, default=False)
    _lab_running: bool = field(init=False, default=False)
    """A simulated IOC is served: close libca's context before stopping it."""

    def __post_init__(self) -> None:
        if self.speedup is not None and not self.speedup > 0:
            raise ConfigError(f"--paced = {self.speedup!r} is not valid: allowed: value > 0")
        simulated = self.profile.simulated_devices()
        if simulated and not self.dry_run:
            raise ConfigError(
                f"{self.profile_source}: devices {', '.join(simulated)} have address 'sim'; "
                "use `vegard dry-run` for simulators, or give real addresses"
            )
        if self.dry_run and not simulated and self.profile.clock.follow is None:
            raise ConfigError(
                f"{self.profile_source}: a dry run needs devices at address 'sim' or a clock "
                "that follows a served simulator lab"
            )

    def _make_clock(self) -> InstrumentClock:
        if self.profile.clock.follow and not self.profile.simulated_devices():
            return follow_clock(self.profile.clock.follow)
        if not self.dry_run:
            return InstrumentClock(self.profile.clock.speedup)
        if self.speedup is not None:
            return InstrumentClock(self.speedup)
        return VirtualClock()

    def _make_lab(self, device_names: Sequence[str]) -> SimulatedLab | None:
        simulated = [name for name in device_names if name in self.profile.simulated_devices()]
        if not simulated:
            return None
        return build_lab(
            self.profile, self.profile_source, self.simulator_overrides, self.clock, ports=None,
            instruments=simulated,
        )

    def execute(self, protocol: Protocol, protocol_path: Path) -> RunOutcome:
        bench = self.check(protocol, protocol_path)
        self.open(list(dict.fromkeys(bench.names.values())))
        try:
            return self.run_protocol(protocol, protocol_path, bench)
        finally:
            self.close()

    def check(self, protocol: Protocol, protocol_path: Path) -> Bench:
        """The profile devices that play the protocol's roles, after the protocol's checks
        against their limits: everything refused here is refused before a device moves."""
        bench = bench_for(protocol, self.profile, self.profile_source, str(protocol_path))
        protocol_kind(protocol).check(protocol, bench, protocol_path)
        return bench

    def open(self, device_names: Sequence[str]) -> None:
        """Clock, simulators (if any), RunEngine with the run store, and the devices
        connected: what a protocol runs on, and what `vegard.open_lab` hands out."""
        for name in device_names:
            if name not in self.profile.devices:
                raise ConfigError(
                    f"{self.profile_source}: devices.{name} is missing "
                    f"(the profile has {', '.join(self.profile.devices)})")
        self.clock = self._make_clock()
        self.lab = self._make_lab(device_names)  # validates parameters before starting any
        self.devices = {}
        try:
            if self.lab is not None:
                self.lab.start()
                self._lab_running = True
                environment = self.lab.client_environment()
                if environment:  # Channel Access is loaded only for a session that uses it
                    from vegard.instruments.diffractometer_device import (
                        use_channel_access_environment,
                    )

                    use_channel_access_environment(environment)
                    self._uses_channel_access = True
            self.run_engine = self._make_run_engine()
            self.devices = self._connect(device_names)
            self._add_clock_barriers(self.run_engine)
        except BaseException:
            self.close()
            raise

    def run_protocol(self, protocol: Protocol, protocol_path: Path, bench: Bench
                     ) -> RunOutcome:
        """Run one checked protocol on the open session's devices; its summary."""
        kind = protocol_kind(protocol)
        run_engine = self.run_engine
        wall_start_s = time.monotonic()
        first_span = len(self._run_spans_s)
        first_status = len(self._statuses)
        analyses = self.protocol_analyses(protocol)
        tokens = [run_engine.subscribe(analysis) for analysis in analyses]
        try:
            plan = self.protocol_plan(protocol, protocol_path, bench)
            uids, exit_status, reason = self._run(run_engine, plan, first_status)
        finally:
            for token in tokens:
                run_engine.unsubscribe(token)
        summary: dict[str, Any] = {
            "protocol": str(protocol_path),
            "protocol_kind": protocol.protocol,
            "profile": self.profile.profile,
            "sample": protocol.sample,
            "run_uids": list(uids),
            "exit_status": exit_status,
            "instrument_time_s": self._run_instrument_time_s(first_span),
            "wall_time_s": time.monotonic() - wall_start_s,
            "clock": self.clock.describe(),
            "clock_origin_s": self.clock.now() - self.clock.elapsed_s(),
            "data_dir": str(self.data_dir),
            "analysis": merged_analysis(analyses),
        }
        if reason:
            summary["reason"] = reason
        if self.lab is not None:
            self.clock.quiesce()  # the run's last writes reach the simulators first
            summary["ground_truth"] = self.lab.ground_truth()
            # as the simulators know it, after the plan's own clean-up and before ours
            summary["safe_state"] = self.lab.safe_state()
            summary["faults_injected"] = self.lab.injected_faults()
            extra_arrays = {}
            if kind.ground_truth is not None:
                extra = kind.ground_truth(self.lab, bench.names, summary["analysis"])
                extra_arrays = extra.pop("arrays", {})
                summary["ground_truth"].update(extra)
            truth_file = self._write_truth_arrays(uids, extra_arrays)
            if truth_file is not None:
                summary["ground_truth_file"] = str(truth_file)
        return RunOutcome(summary=summary, exit_status=exit_status, reason=reason)

    def protocol_analyses(self, protocol: Protocol) -> list[Any]:
        """The protocol kind's analysis callbacks, drawing into each run's `figures/`."""
        return protocol_kind(protocol).analyses(
            lambda uid: run_directory(self.data_dir, uid) / "figures")

    def protocol_plan(self, protocol: Protocol, protocol_path: Path, bench: Bench):
        """The checked protocol's plan on this session's devices, with the session's start
        metadata (what `vegard run` runs, and what the queue server's `run_protocol` runs)."""
        metadata = session_metadata(
            protocol, protocol_path, self.profile, dry_run=self.dry_run, clock=self.clock)
        devices = {role: self.devices[name] for role, name in bench.names.items()}
        return protocol_kind(protocol).plan(protocol, devices, bench, metadata)

    def close(self) -> None:
        """Devices closed, simulators stopped (each step even if an earlier one failed)."""
        clock = getattr(self, "clock", None)
        if clock is not None:
            clock.remove_barriers()
        for device in getattr(self, "devices", {}).values():
            close_device(device)
        self.devices = {}
        if self.lab is not None and self._lab_running:
            try:
                if self._uses_channel_access:
                    from vegard.instruments.diffractometer_device import release_channel_access

                    release_channel_access()  # before the IOC goes away
                    self._uses_channel_access = False
            finally:
                self._lab_running = False
                self.lab.stop()

    def _add_clock_barriers(self, run_engine: RunEngine) -> None:
        """On a virtual clock, a Channel Access round trip to each simulated IOC before
        every jump (see `vegard.virtual_clock`): libca's traffic is invisible otherwise."""
        if not self.clock.virtual or self.lab is None or not self.lab.clock_sync_pvs():
            return
        from vegard.instruments.diffractometer_device import channel_access_barrier

        for pv in self.lab.clock_sync_pvs():
            barrier = channel_access_barrier(pv)
            with self.clock.hold(f"connecting {pv}"):
                call_in_bluesky_event_loop(barrier())  # connects the channel
            self.clock.add_barrier(run_engine.loop, barrier)

    def _write_truth_arrays(
        self, uids: Sequence[str], extra: dict[str, Any] | None = None
    ) -> Path | None:
        """Simulator truth maps (dry runs only) next to the last run's documents."""
        assert self.lab is not None
        arrays = {**self.lab.truth_arrays(), **(extra or {})}
        if not arrays or not uids:
            return None
        path = run_directory(self.data_dir, uids[-1]) / TRUTH_FILE
        np.savez_compressed(path, **arrays)
        return path

    def _make_run_engine(self) -> RunEngine:
        run_engine = make_run_engine(self.clock)
        self._writer = RunWriter(self.data_dir)
        run_engine.subscribe(self._writer)
        if self.show_progress:
            run_engine.subscribe(ProgressPrinter(self.clock))
        self._statuses: list[tuple[str, str, str]] = []
        self._run_spans_s: list[list[float]] = []
        run_engine.subscribe(self._remember_start, "start")
        run_engine.subscribe(self._remember_stop, "stop")
        return run_engine

    def _remember_start(self, name: str, doc: dict) -> None:
        now_s = self.clock.now()
        self._run_spans_s.append([now_s, now_s])

    def _remember_stop(self, name: str, doc: dict) -> None:
        self._statuses.append((doc["run_start"], doc["exit_status"], doc.get("reason", "")))
        self._run_spans_s[-1][1] = self.clock.now()

    def _run_instrument_time_s(self, first_span: int = 0) -> float:
        """Instrument time spent inside runs (start to stop document), summed."""
        return sum(end - start for start, end in self._run_spans_s[first_span:])

    def _connect(self, names: Sequence[str]) -> dict[str, Any]:
        devices = {}
        for name in names:
            settings = self.profile.devices[name]
            address = settings.address
            if address == SIM_ADDRESS:
                assert self.lab is not None
                address = self.lab.addresses[name]
            context = BuildContext(self.clock, self._writer.arrays_directory)
            device = build_device(name, settings, address, context)
            devices[name] = device
            # libca's searches and circuits are invisible to a virtual clock: instrument
            # time stands still while a Channel Access device connects (it costs none).
            hold = self.clock.hold(f"connecting {name}") if address.startswith("ca://") \
                else contextlib.nullcontext()  # fmt: skip
            with hold:
                call_in_bluesky_event_loop(device.connect(timeout=settings.timeout_s * 5))
        return devices

    def _run(self, run_engine: RunEngine, plan, first_status: int = 0
             ) -> tuple[list[str], str, str]:
        error_text = ""
        try:
            run_engine(plan)
        except RunEngineInterrupted:
            run_engine.abort("interrupted by the user")
        except Exception as error:  # the run is closed and recorded; report, don't crash
            cause = failure_cause(error)  # the device's error, not bluesky's status wrapper
            error_text = f"{type(cause).__name__}: {cause}"
        statuses = self._statuses[first_status:]
        uids = [uid for uid, _, _ in statuses]
        failures = [(status, reason) for _, status, reason in statuses if status != "success"]
        if failures:
            return uids, failures[0][0], error_text or failures[0][1]
        if error_text:
            return uids, "fail", error_text
        return uids, "success", ""
