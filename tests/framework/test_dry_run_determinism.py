"""A dry run's answer does not depend on how busy the machine is.

The same protocol is dry-run twice from the CLI: once alone, once with two CPU-bound
processes beside it (on a 2-core machine that triples the wall time of everything). On the
virtual clock both must print the same analysis, simulator truth and instrument time, to
the last digit: instrument time moves only through modelled durations.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runs import dry_run

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]
UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@contextlib.contextmanager
def cpu_load(processes: int = 2) -> Iterator[None]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def quiet_dry_run(protocol: Path, data_dir: Path) -> dict:
    return dry_run(data_dir, protocol, "--quiet", timeout_s=900)[0]


def answer(summary: dict, data_dir: Path) -> dict:
    """What must not change: analysis, truth and instrument time (run uids, the data folder
    and the clock's epoch origin, which differ by construction, taken out)."""
    text = json.dumps({key: summary[key] for key in
                       ("analysis", "ground_truth", "instrument_time_s", "exit_status")},
                      sort_keys=True)
    origin_s = summary["clock_origin_s"]

    def relative(value):  # epoch instrument times (within 100 days of it), from the origin
        if isinstance(value, float) and abs(value - origin_s) < 1e7:
            return value - origin_s
        if isinstance(value, dict):
            return {key: relative(item) for key, item in value.items()}
        if isinstance(value, list):
            return [relative(item) for item in value]
        return value

    return relative(json.loads(UID.sub("<uid>", text.replace(str(data_dir), "<data>"))))


@pytest.mark.parametrize("protocol", [
    "configs/protocols/esm_room_temperature.yaml",
    "tests/framework/operando_small.yaml",
])
def test_the_same_answer_alone_and_under_load(protocol: str, tmp_path: Path) -> None:
    alone_dir, loaded_dir = tmp_path / "alone", tmp_path / "loaded"
    alone = quiet_dry_run(REPOSITORY / protocol, alone_dir)
    with cpu_load():
        loaded = quiet_dry_run(REPOSITORY / protocol, loaded_dir)
    assert alone["clock"] == loaded["clock"] == "virtual"
    assert answer(loaded, loaded_dir) == answer(alone, alone_dir)
    assert alone["instrument_time_s"] > 0
