"""A run whose process is SIGKILLed keeps everything recorded before the kill."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from crash_helpers import arrays_by_seq_num, document_names

from vegard.store import find_run, list_runs, replay

EVENTS_BEFORE_KILL = 3

CRASHING_RUN = """
import sys
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky import RunEngine
from ophyd_async.core import init_devices

from vegard.instruments.array_detector import ArrayStreamingDetector
from vegard.store import RunWriter


class Line(ArrayStreamingDetector):
    def __init__(self, directory_provider, name=""):
        self.n = 0
        super().__init__(directory_provider, {"line": ((4, 3), np.complex64)}, name=name)

    async def acquire(self):
        self.n += 1
        return {"line": (np.arange(12).reshape(4, 3) * self.n + 1j * self.n)}


RE = RunEngine({})
writer = RunWriter(Path(sys.argv[1]))
with init_devices():
    det = Line(writer.arrays_directory)
RE.subscribe(writer)


@bpp.stage_decorator([det])
@bpp.run_decorator(md={"protocol": "crash_test"})
def plan():
    for _ in range(int(sys.argv[2])):
        yield from bps.trigger_and_read([det])
    print("ready", flush=True)
    yield from bps.sleep(120)


RE(plan())
"""


def expected_line(n: int) -> np.ndarray:
    return (np.arange(12).reshape(4, 3) * n + 1j * n).astype(np.complex64)


def test_sigkill_mid_run_leaves_a_readable_incomplete_run(tmp_path: Path) -> None:
    script = tmp_path / "crashing_run.py"
    script.write_text(CRASHING_RUN)
    data_dir = tmp_path / "data"
    with subprocess.Popen(
        [sys.executable, str(script), str(data_dir), str(EVENTS_BEFORE_KILL)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        watchdog = threading.Timer(15.0, child.kill)
        watchdog.start()
        try:
            ready = child.stdout.readline()
            child.send_signal(signal.SIGKILL)
            child.wait()
        finally:
            watchdog.cancel()
        assert ready == "ready\n", child.stderr.read()
    assert child.returncode == -signal.SIGKILL

    (run,) = list_runs(data_dir)
    assert (run.status, run.num_events, run.protocol) == ("incomplete", 3, "crash_test")
    names = document_names(run.path)
    assert names[:2] == ["start", "descriptor"]
    assert names.count("event") == names.count("stream_datum") == EVENTS_BEFORE_KILL
    assert "stop" not in names

    rows = arrays_by_seq_num(find_run(data_dir, run.uid[:6]), "det-line")
    assert not replay(run.path, []).complete
    np.testing.assert_array_equal(
        np.stack([rows[n] for n in sorted(rows)]),
        np.stack([expected_line(n) for n in range(1, EVENTS_BEFORE_KILL + 1)]),
    )
