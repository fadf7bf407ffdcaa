"""How much faster than real time a dry run goes, and what the wire costs.

Prints, for the shipped temperature-steps protocol at several clock speed-ups,
the instrument time covered, the wall time taken and their ratio, plus the
round-trip time of one query to the simulated LakeShore over pyvisa-py.

    .venv/bin/python benchmarks/clock_speedup.py
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from vegard.clock import InstrumentClock
from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol
from vegard.instruments.visa_connection import VisaConnection
from vegard.session import Session
from vegard.simulators.lab import SimulatedLab

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "configs/protocols/temperature_steps.yaml"
PROFILE = ROOT / "configs/profiles/sim.yaml"


def query_round_trip_ms(samples: int = 500) -> tuple[float, float]:
    """Median round trip of `KRDG? A`: blocking, and through the asyncio worker thread."""
    with SimulatedLab(InstrumentClock(1000.0)) as lab:
        connection = VisaConnection(lab.addresses["temperature_stage"], name="bench")
        connection.open_blocking()
        blocking = []
        for _ in range(samples):
            start = time.perf_counter()
            connection.query_blocking("KRDG? A")
            blocking.append(time.perf_counter() - start)

        async def threaded() -> list[float]:
            durations = []
            for _ in range(samples):
                start = time.perf_counter()
                await connection.query("KRDG? A")
                durations.append(time.perf_counter() - start)
            return durations

        through_thread = asyncio.run(threaded())
        connection.close()
    return statistics.median(blocking) * 1e3, statistics.median(through_thread) * 1e3


def dry_run(speedup: float) -> dict:
    with tempfile.TemporaryDirectory() as data_dir:
        session = Session(
            profile=load_profile(PROFILE), data_dir=Path(data_dir), dry_run=True,
            speedup=speedup, show_progress=False, profile_source=str(PROFILE),
        )
        return session.execute(load_protocol(PROTOCOL), PROTOCOL).summary


def main() -> None:
    blocking_ms, threaded_ms = query_round_trip_ms()
    print(f"query round trip (KRDG? A, loopback, pyvisa-py): {blocking_ms:.3f} ms blocking, "
          f"{threaded_ms:.3f} ms via worker thread")
    print(f"{'speed-up':>9} {'instrument s':>13} {'wall s':>8} {'ratio':>8} "
          f"{'steps ok':>9} {'monitor pts':>12}")
    for speedup in (250.0, 1000.0, 4000.0):
        summary = dry_run(speedup)
        analysis = summary["analysis"]
        ratio = summary["instrument_time_s"] / summary["wall_time_s"]
        print(f"{speedup:9.0f} {summary['instrument_time_s']:13.0f} {summary['wall_time_s']:8.2f} "
              f"{ratio:8.0f} {analysis['all_within_tolerance']!s:>9} "
              f"{analysis['monitor_points']:12d}")


if __name__ == "__main__":
    main()
