"""`vegard.open_lab`: the README's IPython example, in a fresh interpreter, on the simulators."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vegard.config.errors import ConfigError
from vegard.store.catalog import count_events, list_runs

pytestmark = pytest.mark.slow  # end-to-end on the simulators

REPOSITORY = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (REPOSITORY / "README.md").read_text()
    block = re.search(r"## From IPython or a script\n\n```python\n(.*?)```", text, re.S)
    assert block, "the README's Python example is missing"
    return block.group(1)


def test_the_readme_example_records_three_events_and_a_protocol(tmp_path):
    script = readme_example().replace(
        'open_lab("configs/profiles/sim.yaml",',
        f'open_lab("configs/profiles/sim.yaml", data_dir={str(tmp_path)!r},')
    script += "\nimport json; print(json.dumps(summary['exit_status']))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == "success"
    runs = list_runs(tmp_path)
    assert sorted(run.plan_name for run in runs) == ["count", "temperature_steps"]
    count_run = next(run for run in runs if run.plan_name == "count")
    assert count_run.status == "success"
    assert count_run.num_events == count_events(count_run.path) == 3


def test_a_protocol_needing_devices_not_opened_is_refused(tmp_path):
    import vegard

    with vegard.open_lab(REPOSITORY / "configs/profiles/sim.yaml", devices=["temperature_stage"],
                         data_dir=tmp_path) as lab:
        assert sorted(lab.devices) == ["temperature_stage"]
        port = int(lab.simulators.addresses["temperature_stage"].split("::")[2])
        with pytest.raises(ConfigError, match=r"needs devices \['afm'\], not opened"):
            lab.run_protocol(REPOSITORY / "configs/protocols/esm_room_temperature.yaml")
    with pytest.raises(OSError):  # the simulator is stopped with the block
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
