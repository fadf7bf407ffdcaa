"""Framework overhead per pixel of a three-excitation ESM map in a dry run.

Runs the shipped room-temperature map (64 × 64 pixels, 3 excitations, 64 bins,
20 averages) through a `Session` with a very fast instrument clock, and splits
the wall time of the map (start document to last line event, from the stored
documents' wall-clock `time` fields) into

- simulator physics: the AFM model building spectra and topography (timed by
  wrapping the model), and the clock waits standing for acquisition time;
- everything else: wire transfer and parsing, the device's SHO fits, HDF5
  writes, documents to disk, live analysis, bluesky itself = the overhead.

Starting the simulators, connecting, and the figures written after the stop
document are reported separately (once per run, not per pixel).

    .venv/bin/python benchmarks/esm_map.py [--speedup 1e5]

Last line: `overhead_ms_per_pixel=<x>`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from vegard.analysis import sho_fit
from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol
from vegard.instruments import band_excitation_afm
from vegard.session import Session
from vegard.simulators import afm as afm_model
from vegard.store.documents import load_documents
from vegard.store.layout import run_directory

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "configs/protocols/esm_room_temperature.yaml"
PROFILE = ROOT / "configs/profiles/sim.yaml"


class Stopwatch:
    """Accumulates the wall time spent inside wrapped callables."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed


def map_only_protocol(directory: Path) -> Path:
    """The shipped map without the temperature hold, so the run is the map alone."""
    settings = yaml.safe_load(PROTOCOL.read_text())
    settings.pop("temperature_stage", None)
    path = directory / "esm_map_only.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speedup", type=float, default=1e5)
    args = parser.parse_args()

    physics, waits, fits = Stopwatch(), Stopwatch(), Stopwatch()
    model = afm_model.AtomicForceMicroscope
    model._measure = physics.wrap(model._measure)
    model.acquire_topography_line = physics.wrap(model.acquire_topography_line)
    clock_class = afm_model.InstrumentClock
    clock_class.sleep_blocking = waits.wrap(clock_class.sleep_blocking)
    band_excitation_afm.fit_sho = fits.wrap(sho_fit.fit_sho)

    with tempfile.TemporaryDirectory() as directory:
        protocol_path = map_only_protocol(Path(directory))
        session = Session(
            load_profile(PROFILE), Path(directory) / "store", dry_run=True,
            speedup=args.speedup, show_progress=False,
        )
        wall_start = time.perf_counter()
        outcome = session.execute(load_protocol(protocol_path), protocol_path)
        wall_s = time.perf_counter() - wall_start
        summary = outcome.summary
        (uid,) = summary["run_uids"]
        times = {"event": []}
        for name, doc in load_documents(run_directory(Path(directory) / "store", uid)):
            if name in ("start", "stop"):
                times[name] = doc["time"]
            elif name == "event":
                times["event"].append(doc["time"])
    pixels = summary["analysis"]["pixels"]
    map_s = max(times["event"]) - times["start"]
    overhead_s = map_s - physics.seconds - waits.seconds
    print(f"protocol            {PROTOCOL.name} without the temperature hold, "
          f"{pixels} pixels, speed-up {args.speedup:g}")
    print(f"exit status         {summary['exit_status']}")
    print(f"instrument time     {summary['instrument_time_s']:.0f} s")
    print(f"wall time, session  {wall_s:.2f} s: start-up and connect "
          f"{wall_s - (times['stop'] - times['start']) :.2f} s incl. figures, "
          f"map {map_s:.2f} s")
    print(f"  simulator physics {physics.seconds:.2f} s in {physics.calls} calls")
    print(f"  acquisition waits {waits.seconds:.2f} s in {waits.calls} calls")
    print(f"  of which SHO fits {fits.seconds:.2f} s in {fits.calls} lines "
          "(counted as overhead: the device fits)")
    print(f"  overhead          {overhead_s:.2f} s = {1e3 * overhead_s / pixels:.3f} ms/pixel "
          "(goal < 1 ms)")
    print(f"overhead_ms_per_pixel={1e3 * overhead_s / pixels:.3f}")


if __name__ == "__main__":
    main()
