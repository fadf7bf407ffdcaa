"""The `vegard` command.

    vegard check PROTOCOL [--profile P] [--json]
    vegard dry-run PROTOCOL [--profile P] [--set inst.param=value ...] [--full-map N] [--json]
    vegard run PROTOCOL --profile P [--json]
    vegard runs [--json]
    vegard replay UID [--json]
    vegard analyze UID [--dask [--workers N] | --scheduler tcp://HOST:PORT] [--json]
    vegard sim serve [--profile P] [--set ...] [--host H --allow-remote]
    vegard sim params [--profile P] [--set ...] [--json]
    vegard serve [--profile P] [--devices a,b] [--speedup S] [--host H --allow-remote]

Errors exit non-zero with one line per problem and no traceback (unless
--debug). With --json the last line of stdout is exactly one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vegard.config.errors import ConfigError
from vegard.simulators.parameters import SimulatorParameterError

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIM_PROFILE = Path("configs/profiles/sim.yaml")


REFUSED_INPUT = (ConfigError, SimulatorParameterError, LookupError)
"""Errors that mean "fix your input" (exit 2), as opposed to a failed run (exit 1)."""


def default_sim_profile() -> Path:
    """The sim profile in the working directory, else the one shipped in the repository."""
    if DEFAULT_SIM_PROFILE.is_file():
        return DEFAULT_SIM_PROFILE
    return REPOSITORY_ROOT / DEFAULT_SIM_PROFILE


def data_directory(argument: str | None) -> Path:
    return Path(argument or os.environ.get("VEGARD_DATA") or "vegard-data").resolve()


def _print_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, default=str, allow_nan=False))


def _execute(args: argparse.Namespace, *, dry_run: bool) -> int:
    from vegard.config.profiles import load_profile
    from vegard.config.protocols import load_protocol
    from vegard.session import Session

    protocol_path = Path(args.protocol)
    protocol = with_full_map(load_protocol(protocol_path), getattr(args, "full_map", None),
                             protocol_path)
    profile_path = Path(args.profile) if args.profile else default_sim_profile()
    profile = load_profile(profile_path)
    session = Session(
        profile=profile,
        data_dir=data_directory(args.data_dir),
        dry_run=dry_run,
        simulator_overrides=args.set or [],
        speedup=getattr(args, "speedup", None),
        show_progress=not args.quiet,
        profile_source=str(profile_path),
    )
    outcome = session.execute(protocol, protocol_path)
    if args.json:
        _print_json(outcome.summary)
    else:
        print_summary(outcome.summary)
    if outcome.exit_status != "success":
        print(f"vegard: run ended with {outcome.exit_status}: {outcome.reason}", file=sys.stderr)
        return 1
    return 0


def with_full_map(protocol: Any, number: int | None, path: Path) -> Any:
    """`--full-map N` as the protocol's `full_map` (its range is the protocol kind's check)."""
    if number is None:
        return protocol
    if "full_map" not in type(protocol).model_fields:
        raise ConfigError(f"{path}: --full-map = {number} is not valid for protocol "
                          f"{protocol.protocol!r}: allowed only for operando_sxdm protocols")
    return protocol.model_copy(update={"full_map": number})


def _check(args: argparse.Namespace) -> int:
    """Refuse what a dry run would refuse, then walk the plan without hardware."""
    from vegard.config.profiles import load_profile
    from vegard.config.protocols import load_protocol
    from vegard.plan_check import check_protocol, summarize, summary_lines

    protocol_path = Path(args.protocol)
    protocol = load_protocol(protocol_path)
    profile_path = Path(args.profile) if args.profile else default_sim_profile()
    profile = load_profile(profile_path)
    check = check_protocol(protocol, protocol_path, profile, profile_source=str(profile_path))
    if args.json:
        summary = summarize(check)
        for run, metadata in zip(summary["runs"], check.start_documents(), strict=True):
            if "sxdm_estimate" in metadata:
                run["sxdm_estimate"] = metadata["sxdm_estimate"]
        _print_json(summary)
        return 0

    from vegard.registry import protocol_kind

    kind = protocol_kind(protocol)

    def estimate(metadata: dict[str, Any]) -> list[str]:  # e.g. an operando run's beamline cost
        return kind.summary_lines({"estimate": metadata.get("sxdm_estimate")})

    for line in summary_lines(check, run_notes=estimate):
        print(line)
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    print(f"protocol      {summary['protocol']} ({summary.get('protocol_kind', '?')})")
    print(f"runs          {', '.join(summary['run_uids'])}")
    print(f"exit status   {summary.get('exit_status', '?')}")
    print(
        f"time          {summary['instrument_time_s']:.0f} s instrument, "
        f"{summary['wall_time_s']:.1f} s wall ({summary.get('clock', 'clock?')} clock)"
    )
    analysis = summary.get("analysis", {})
    from vegard.registry import protocol_kind_named

    kind = protocol_kind_named(str(summary.get("protocol_kind", "")))
    for line in kind.summary_lines(analysis) if kind is not None else []:
        print(line)
    for figure in analysis.get("figures", []):
        print(f"figure        {figure}")


def _runs(args: argparse.Namespace) -> int:
    from vegard.store.catalog import list_runs

    runs = list_runs(data_directory(args.data_dir))
    if args.json:
        _print_json({"runs": [{**asdict(run), "path": str(run.path)} for run in runs]})
        return 0
    if not runs:
        print(f"no runs in {data_directory(args.data_dir)}")
    for run in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.start_time))
        what = run.protocol or run.plan_name
        print(f"{run.uid}  {what}  {started}  {run.status:<10}  {run.sample}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from vegard.replay import replay_run

    summary = replay_run(data_directory(args.data_dir), args.uid)
    if args.json:
        _print_json(summary)
    else:
        print_summary(summary)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    """A recorded run through its analysis; the SXDM reduction on Dask if asked."""
    from vegard.analysis.sxdm_dask import check_scheduler_address, check_workers
    from vegard.replay import replay_run

    try:  # before anything is started
        if args.scheduler is not None:
            check_scheduler_address(args.scheduler)
            if args.workers is not None:
                raise ValueError("--workers starts a local cluster; with --scheduler the "
                                 "scheduler's workers are used (give one of the two)")
        if args.workers is not None:
            check_workers(args.workers)
    except ValueError as refused:
        raise ConfigError(str(refused)) from None
    if args.scheduler is None and not args.dask and args.workers is None:
        summary = replay_run(data_directory(args.data_dir), args.uid)
    else:
        summary = _analyze_on_dask(args)
    if args.json:
        _print_json(summary)
    else:
        print_summary(summary)
    return 0


def _analyze_on_dask(args: argparse.Namespace) -> dict[str, Any]:
    from distributed import Client

    from vegard.analysis.sxdm_dask import DaskReducer, local_cluster
    from vegard.replay import replay_run

    cluster = None
    if args.scheduler is not None:
        client = Client(args.scheduler, timeout="10s")
    else:
        cluster, client = local_cluster(args.workers or 2)
    try:
        summary = replay_run(data_directory(args.data_dir), args.uid,
                             reducer=DaskReducer(client))
        summary["dask"] = {"scheduler": client.scheduler.address,
                           "workers": len(client.scheduler_info().get("workers", {}))}
        return summary
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _sim_lab(
    args: argparse.Namespace, *, fixed_ports: bool, host: str | None = None,
    allow_remote: bool = False,
):
    from vegard.clock import InstrumentClock
    from vegard.config.profiles import load_profile
    from vegard.session import build_lab

    profile_path = Path(args.profile) if args.profile else default_sim_profile()
    profile = load_profile(profile_path)
    clock = InstrumentClock(args.speedup or profile.clock.speedup)
    ports = dict(profile.simulation.ports) if fixed_ports else None
    lab = build_lab(profile, str(profile_path), args.set or [], clock, ports=ports,
                    **({} if host is None else {"host": host, "allow_remote": allow_remote}))
    return lab, profile.simulation


def _sim_serve(args: argparse.Namespace) -> int:
    from vegard.simulators.serve import RemoteHostRefused, check_serve_host, serve_forever

    try:  # before anything is built or bound
        check_serve_host(args.host, args.allow_remote)
    except RemoteHostRefused as refused:
        print(f"vegard: {refused}", file=sys.stderr)
        return 2
    lab, simulation = _sim_lab(
        args, fixed_ports=True, host=args.host, allow_remote=args.allow_remote
    )
    serve_forever(lab, control_port=simulation.control_port)
    return 0


def _port_argument(field: str, value: int) -> int:
    if not 0 <= value <= 65535:
        raise ConfigError(f"{field} = {value!r} is not valid: allowed: 0 (a free port) … 65535")
    return value


def _serve(args: argparse.Namespace) -> int:
    from vegard.service import ServeOptions, serve
    from vegard.simulators.serve import RemoteHostRefused, check_serve_host

    try:  # before anything is built or bound
        check_serve_host(args.host, args.allow_remote)
    except RemoteHostRefused as refused:
        print(f"vegard: {refused}", file=sys.stderr)
        return 2
    if args.speedup is not None and not 0 < args.speedup <= 1_000_000:
        raise ConfigError(f"--speedup = {args.speedup!r} is not valid: allowed: 0 < value "
                          "<= 1000000")
    devices = None
    if args.devices is not None:
        devices = [name.strip() for name in args.devices.split(",") if name.strip()]
        if not devices:
            raise ConfigError(f"--devices = {args.devices!r} is not valid: allowed: "
                              "comma-separated device names of the profile")
    options = ServeOptions(
        profile_path=Path(args.profile) if args.profile else default_sim_profile(),
        data_dir=data_directory(args.data_dir), devices=devices, speedup=args.speedup,
        simulator_overrides=args.set or [], host=args.host, allow_remote=args.allow_remote,
        zmq_control_port=_port_argument("--zmq-control-port", args.zmq_control_port),
        zmq_info_port=_port_argument("--zmq-info-port", args.zmq_info_port),
        http_port=_port_argument("--http-port", args.http_port),
        tiled_port=_port_argument("--tiled-port", args.tiled_port),
    )
    serve(options)
    return 0


def _sim_params(args: argparse.Namespace) -> int:
    from vegard.simulators.parameters import parameter_table

    lab, _ = _sim_lab(args, fixed_ports=False)
    rows = parameter_table(lab.parameter_specs, lab.parameters)
    if args.json:
        _print_json({"parameters": rows})
        return 0
    for row in rows:
        name = f"{row['instrument']}.{row['name']}"
        print(
            f"{name:<48} {row['value']:>10g} {row['unit']:<6} "
            f"[{row['minimum']:g} … {row['maximum']:g}]  {row['description']}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vegard", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
        sub.add_argument("--data-dir", help="run store (default $VEGARD_DATA or ./vegard-data)")
        if json_flag:
            sub.add_argument("--json", action="store_true", help="print one JSON object last")
        sub.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    def simulator_options(sub: argparse.ArgumentParser, *, speedup: bool = True) -> None:
        sub.add_argument("--profile", help="instrument profile YAML (default: sim profile)")
        sub.add_argument(
            "--set", action="append", metavar="INSTRUMENT.PARAMETER=VALUE",
            help="override a simulator parameter (repeatable)",
        )
        if speedup:
            sub.add_argument("--speedup", type=float, help="instrument time / wall time")

    sub = commands.add_parser(
        "check", help="validate a protocol against a profile and walk its plan, without hardware")
    sub.add_argument("protocol", help="protocol YAML file")
    sub.add_argument("--profile", help="instrument profile YAML (default: sim profile)")
    sub.add_argument("--json", action="store_true", help="print one JSON object last")
    sub.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    for name, help_text in (
        ("dry-run", "run a protocol against the physics simulators"),
        ("run", "run a protocol at the instruments of a profile"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("protocol", help="protocol YAML file")
        simulator_options(sub, speedup=False)
        if name == "dry-run":
            sub.add_argument(
                "--paced", type=float, metavar="SPEEDUP", dest="speedup",
                help="run instrument time at SPEEDUP x wall time, to watch a run live "
                     "(default: virtual time, as fast as the computation allows)")
            sub.add_argument(
                "--full-map", type=int, metavar="N",
                help="operando SXDM with dry_run: estimate: take map N (1-based) at full "
                     "size on the simulators, estimate the others")
        sub.add_argument("--quiet", action="store_true", help="no progress lines")
        common(sub)

    sub = commands.add_parser("runs", help="list recorded runs")
    common(sub)
    sub = commands.add_parser("replay", help="push a recorded run through its live analysis")
    sub.add_argument("uid", help="run uid (a unique prefix is enough)")
    common(sub)

    sub = commands.add_parser(
        "analyze", help="a recorded run through its analysis (SXDM maps on Dask if asked)")
    sub.add_argument("uid", help="run uid (a unique prefix is enough)")
    sub.add_argument("--dask", action="store_true",
                     help="run the SXDM reduction on a local Dask cluster (127.0.0.1 only)")
    sub.add_argument("--workers", type=int,
                     help="worker processes of the local cluster (1 … 64, default 2; "
                          "implies --dask)")
    sub.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                     help="run the SXDM reduction on this Dask scheduler's workers")
    common(sub)

    sim = commands.add_parser("sim", help="simulated instruments").add_subparsers(
        dest="sim_command", required=True
    )
    sub = sim.add_parser("serve", help="serve the simulators on loopback until interrupted")
    simulator_options(sub)
    sub.add_argument(
        "--host", default="127.0.0.1",
        help="address every simulator and the control port bind to (default 127.0.0.1)",
    )
    sub.add_argument(
        "--allow-remote", action="store_true",
        help="allow a non-loopback --host (the simulators become reachable from the network)",
    )
    sub.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = sim.add_parser("params", help="list every simulator parameter with unit and range")
    simulator_options(sub)
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    add_serve_parser(commands, common, simulator_options)
    return parser


def add_serve_parser(commands, common, simulator_options) -> None:
    from vegard.service import DEFAULT_PORTS

    sub = commands.add_parser(
        "serve", help="queue server (Redis, RE Manager) and HTTP server on loopback")
    simulator_options(sub)
    sub.add_argument("--devices", help="comma-separated profile devices to serve (default all)")
    sub.add_argument("--host", default="127.0.0.1",
                     help="address the 0MQ and HTTP servers bind to (default 127.0.0.1)")
    sub.add_argument("--allow-remote", action="store_true",
                     help="allow a non-loopback --host (the queue becomes reachable)")
    for name, port in DEFAULT_PORTS.items():
        sub.add_argument(f"--{name.replace('_', '-')}", type=int, default=port,
                         help=f"(default {port}; 0: a free port)")
    common(sub, json_flag=False)


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "check":
        return _check(args)
    if args.command in ("dry-run", "run"):
        return _execute(args, dry_run=args.command == "dry-run")
    if args.command == "runs":
        return _runs(args)
    if args.command == "replay":
        return _replay(args)
    if args.command == "analyze":
        return _analyze(args)
    if args.command == "serve":
        return _serve(args)
    if args.sim_command == "serve":
        return _sim_serve(args)
    return _sim_params(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return dispatch(args)
    except KeyboardInterrupt:
        print("vegard: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, LookupError, ValueError, OSError, RuntimeError) as error:
        if args.debug:
            raise
        message = "; ".join(str(error).strip().splitlines()) or type(error).__name__
        print(f"vegard: {message}", file=sys.stderr)
        if getattr(args, "json", False):
            _print_json({"error": message})
        return 2 if isinstance(error, REFUSED_INPUT) else 1
    except Exception as error:
        if args.debug:
            raise
        print(
            f"vegard: internal error: {type(error).__name__}: {error} (--debug shows where)",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
