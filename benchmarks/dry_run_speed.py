"""Instrument seconds per wall second of every shipped protocol, virtual vs paced clock.

    .venv/bin/python benchmarks/dry_run_speed.py [--paced 1000] [--only NAME ...]

Each protocol is dry-run from the CLI (a fresh process, as a user runs it) on the virtual
clock and on the paced clock at `--paced` x wall time. Printed per row: the clock, the
instrument time the run reports, the wall time of the whole command (start-up included)
and their ratio. On the virtual clock the instrument time is the real instrument's; on
the paced clock it also contains the host's overhead multiplied by the speed-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
PROTOCOLS = sorted((REPOSITORY / "configs/protocols").glob("*.yaml"))


def dry_run(protocol: Path, data_dir: Path, paced: float | None) -> tuple[dict, float]:
    command = [sys.executable, "-m", "vegard.cli", "dry-run", str(protocol), "--json",
               "--quiet", "--data-dir", str(data_dir)]
    if paced:
        command += ["--paced", str(paced)]
    started = time.monotonic()
    capture = subprocess.run(command, capture_output=True, text=True, check=False,
                             cwd=REPOSITORY)
    wall_s = time.monotonic() - started
    if capture.returncode != 0:
        raise RuntimeError(f"{protocol.name}: {capture.stderr[-500:]}")
    return json.loads(capture.stdout.strip().splitlines()[-1]), wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paced", type=float, default=1000.0)
    parser.add_argument("--only", nargs="*", help="protocol file stems")
    args = parser.parse_args()
    print(f"{'protocol':<28} {'clock':<12} {'instrument s':>13} {'wall s':>8} "
          f"{'inst s / wall s':>16}")
    with tempfile.TemporaryDirectory() as folder:
        for protocol in PROTOCOLS:
            if args.only and protocol.stem not in args.only:
                continue
            for paced in (None, args.paced):
                summary, wall_s = dry_run(protocol, Path(folder), paced)
                instrument_s = summary["instrument_time_s"]
                print(f"{protocol.stem:<28} {summary['clock']:<12} {instrument_s:>13.0f} "
                      f"{wall_s:>8.1f} {instrument_s / wall_s:>16.0f}", flush=True)


if __name__ == "__main__":
    main()
