"""Every fault × every instrument, against small copies of the dry-run protocols.

Each row is one `vegard dry-run` subprocess with one fault scheduled through `--set`
(the same path a profile uses), a wall-clock limit, and these checks from its JSON
summary and its stored files:

- outcome: `recovered` (the run succeeded with the fault fired), `paused-resumed` (it
  succeeded after pausing a map), `failed-safe` (it failed with every instrument safe),
  `UNSAFE` (some instrument not in its safe state, as the simulator knows it), `hung`
  (killed at the wall-clock limit), `not-fired` (the fault never happened: the schedule
  missed the run, so the row says nothing);
- events lost: array rows written to HDF5 by a device but referenced by no event
  (a line acquired and then lost between the file and the document stream);
- safe: every instrument's `safe_state` in the summary.

Transient faults hit one exchange (`fault_repeat` 1). Outages hit 6 consecutive lines:
longer than one query's three tries (so the run fails) and shorter than the safe-state
sequences' retry budget. A controller that never answers again cannot be made safe by
software at all; that is left to hardware interlocks and is not a row here.

    .venv/bin/python benchmarks/fault_matrix.py [--only afm] [--workers 2]

Last line: `rows=<n> unsafe=<n> hung=<n> max_events_lost=<n>`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parents[1]
WIRE_KINDS = ("drop", "timeout", "malformed", "slow", "error")
OUTAGE_LINES = 6
WALL_LIMIT_FACTOR = 6.0
"""A row is hung when it runs this many times the fault-free wall time (plus a minute)."""


@dataclass(frozen=True)
class Experiment:
    """A small copy of a shipped protocol, and when in its run faults are scheduled."""

    name: str
    source: str
    replacements: tuple[tuple[str, str], ...]
    fault_fraction: float
    """Faults fire at this fraction of the fault-free run's instrument time."""

    def write(self, folder: Path) -> Path:
        text = (ROOT / self.source).read_text()
        for old, new in self.replacements:
            if old not in text:
                raise SystemExit(f"{self.source}: {old!r} not found (protocol changed?)")
            text = text.replace(old, new)
        path = folder / f"{self.name}.yaml"
        path.write_text(text)
        return path


ESM = Experiment(
    "esm_series_small", "configs/protocols/esm_temperature_series.yaml",
    (("[250, 275, 300, 325, 350, 375, 400]", "[300, 325]"),
     ("pixels: [64, 64]", "pixels: [16, 16]"), ("averages: 20", "averages: 4"),
     ("  enabled: true", "  enabled: false")),
    0.3,
)
SXDM = Experiment(
    "sxdm_operando_small", "configs/protocols/sxdm_operando_lmno.yaml",
    (("pixels: [32, 32]", "pixels: [8, 6]"), ("count: 4", "count: 3")),
    0.4,
)
EELS = Experiment(
    "eels_small", "configs/protocols/eels_licoo2_grain_boundary.yaml",
    (("pixels: 61", "pixels: 31"), ("start_nm: [-30, 0]", "start_nm: [-15, 0]"),
     ("end_nm: [30, 0]", "end_nm: [15, 0]")),
    0.5,
)


@dataclass(frozen=True)
class Row:
    experiment: Experiment
    instrument: str
    fault: str
    settings: tuple[str, ...]
    """`--set` values besides the schedule; `{at}` is replaced by the fault time."""


@dataclass
class Result:
    row: Row
    outcome: str = ""
    events_lost: int = 0
    safe: bool = False
    fired: int = 0
    wall_s: float = 0.0
    reason: str = ""
    unsafe_detail: dict = field(default_factory=dict)


def wire_rows(experiment: Experiment, instrument: str) -> list[Row]:
    rows = []
    for kind in WIRE_KINDS:
        rows.append(Row(experiment, instrument, f"{kind} (once)",
                        (f"{instrument}.fault_{kind}_at_s={{at}}",)))
        rows.append(Row(experiment, instrument, f"{kind} ({OUTAGE_LINES} lines)",
                        (f"{instrument}.fault_{kind}_at_s={{at}}",
                         f"{instrument}.fault_repeat={OUTAGE_LINES}")))
    return rows


def all_rows() -> list[Row]:
    rows = [*wire_rows(ESM, "temperature_stage"), *wire_rows(ESM, "afm")]
    rows += [
        Row(ESM, "temperature_stage", "heater runaway (60 s)",
            ("temperature_stage.fault_heater_runaway_at_s={at}",
             "temperature_stage.fault_heater_runaway_s=60")),
        Row(ESM, "temperature_stage", "heater runaway (until off)",
            ("temperature_stage.fault_heater_runaway_at_s={at}",)),
    ]
    rows += [*wire_rows(SXDM, "potentiostat"), *wire_rows(SXDM, "area_detector")]
    rows += [
        Row(SXDM, "potentiostat", "potential jump",
            ("potentiostat.fault_potential_jump_at_s={at}",)),
        Row(SXDM, "area_detector", "frame missing",
            ("area_detector.fault_frame_missing_at_s={at}",)),
        Row(SXDM, "area_detector", "frame saturated",
            ("area_detector.fault_frame_saturated_at_s={at}",)),
        Row(SXDM, "diffractometer", "motor stall", ("diffractometer.fault_stall_at_s={at}",)),
    ]
    rows += wire_rows(EELS, "stem")  # the saturated ZLP: tests/plans/test_eels_plan.py
    return rows


def dry_run(protocol: Path, data_dir: Path, settings: list[str], limit_s: float):
    command = [sys.executable, "-m", "vegard.cli", "dry-run", str(protocol), "--json",
               "--data-dir", str(data_dir)]
    for setting in settings:
        command += ["--set", setting]
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit_s)
    except subprocess.TimeoutExpired:
        return None, "", time.monotonic() - started
    lines = done.stdout.strip().splitlines()
    summary = None
    if lines:
        try:
            summary = json.loads(lines[-1])
        except json.JSONDecodeError:
            summary = None
    return summary, done.stderr, time.monotonic() - started


def events_lost(data_dir: Path) -> int:
    """Rows in the runs' HDF5 datasets that no StreamDatum refers to."""
    lost = 0
    for documents in data_dir.glob("runs/*/documents.jsonl"):
        resources: dict[str, dict] = {}
        referenced: dict[str, int] = {}
        for line in documents.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            name, doc = entry["name"], entry["doc"]
            if name == "stream_resource":
                resources[doc["uid"]] = doc
            elif name == "stream_datum":
                indices = doc["indices"]
                referenced[doc["stream_resource"]] = max(
                    referenced.get(doc["stream_resource"], 0), indices["stop"])
        for uid, resource in resources.items():
            path = Path(resource["uri"].removeprefix("file://localhost"))
            if not path.exists():
                path = documents.parent / "arrays" / path.name
            with h5py.File(path, "r", swmr=True) as file:
                written = len(file[resource["parameters"]["dataset"]])
            lost = max(lost, written - referenced.get(uid, 0))
    return lost


_PORT = re.compile(r"(127\.0\.0\.1::?)\d+")


def classify(summary: dict | None, stderr: str) -> tuple[str, bool, int, str, dict]:
    if summary is None:
        last_lines = stderr.strip().splitlines()[-1:]
        return "no-summary", False, 0, last_lines[0] if last_lines else "", {}
    safe_state = summary.get("safe_state", {})
    unsafe = {name: state for name, state in safe_state.items() if not state.get("safe")}
    fired = sum(len(v) for v in summary.get("faults_injected", {}).values())
    reason = _PORT.sub(r"\1<port>", summary.get("reason", ""))  # ephemeral: differs per run
    if unsafe:
        return "UNSAFE", False, fired, reason, unsafe
    if summary["exit_status"] != "success":
        return "failed-safe", True, fired, reason, {}
    if not fired:
        return "not-fired", True, fired, reason, {}
    if "map paused" in stderr:
        return "paused-resumed", True, fired, reason, {}
    return "recovered", True, fired, reason, {}


def run_row(row: Row, protocol: Path, baseline: dict, folder: Path, index: int) -> Result:
    at_s = baseline["instrument_time_s"] * row.experiment.fault_fraction
    settings = [setting.format(at=f"{at_s:.1f}") for setting in row.settings]
    data_dir = folder / f"row{index:02d}"
    limit_s = WALL_LIMIT_FACTOR * baseline["wall_time_s"] + 60.0
    summary, stderr, wall_s = dry_run(protocol, data_dir, settings, limit_s)
    result = Result(row, wall_s=wall_s)
    if summary is None and wall_s >= limit_s:
        result.outcome = "hung"
        return result
    (result.outcome, result.safe, result.fired, result.reason,
     result.unsafe_detail) = classify(summary, stderr)
    result.events_lost = events_lost(data_dir)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="only rows of this instrument")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = [row for row in all_rows() if args.only in (None, row.instrument)]
    folder = Path(tempfile.mkdtemp(prefix="vegard-fault-matrix-"))
    protocols: dict[str, Path] = {}
    baselines: dict[str, dict] = {}
    for experiment in {row.experiment.name: row.experiment for row in rows}.values():
        protocols[experiment.name] = experiment.write(folder)
        summary, stderr, wall_s = dry_run(
            protocols[experiment.name], folder / f"baseline-{experiment.name}", [], 900.0)
        if summary is None or summary["exit_status"] != "success":
            raise SystemExit(f"fault-free {experiment.name} did not succeed:\n{stderr[-2000:]}")
        baselines[experiment.name] = {"instrument_time_s": summary["instrument_time_s"],
                                      "wall_time_s": wall_s}
        print(f"baseline {experiment.name}: {summary['instrument_time_s']:.0f} s instrument, "
              f"{wall_s:.1f} s wall", flush=True)
    with ThreadPoolExecutor(args.workers) as pool:
        futures = [
            pool.submit(run_row, row, protocols[row.experiment.name],
                        baselines[row.experiment.name], folder, index)
            for index, row in enumerate(rows)
        ]
        results = [future.result() for future in futures]
    # The table is what must come out the same on every run (virtual instrument time);
    # wall times, which do not, are listed after it.
    header = f"{'instrument':<18} {'fault':<24} {'outcome':<15} {'lost':>4} {'safe':<5} " \
             f"{'fired':>5}  reason"
    print(header)
    print("-" * len(header))
    for result in results:
        row = result.row
        print(f"{row.instrument:<18} {row.fault:<24} {result.outcome:<15} "
              f"{result.events_lost:>4} {'yes' if result.safe else 'NO':<5} {result.fired:>5}  "
              f"{result.reason[:90]}")
        if result.unsafe_detail:
            print(f"{'':<18} unsafe: {json.dumps(result.unsafe_detail)}")
    unsafe = sum(r.outcome in ("UNSAFE", "no-summary") for r in results)
    hung = sum(r.outcome == "hung" for r in results)
    lost = max((r.events_lost for r in results), default=0)
    walls = sorted(r.wall_s for r in results)
    print(f"wall s per row: median {walls[len(walls) // 2]:.1f}, max {walls[-1]:.1f}")
    print(f"runs kept in {folder}")
    print(f"rows={len(results)} unsafe={unsafe} hung={hung} max_events_lost={lost}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
