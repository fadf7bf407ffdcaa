"""`vegard serve` end to end: Redis, the RE Manager with vegard's startup module, the HTTP
server with its key, the simulated lab wall-paced; clients through bluesky-queueserver-api.

One served stack for the module (starting it costs seconds); tests that need an open
environment open it if it is closed. Instrument time runs 1000 x wall time on the served
lab, so each run takes well under a second of wall time; every wait is a poll of a server
with a timeout.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import h5py
import numpy as np
import pytest
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.http import REManagerAPI as HttpManager
from bluesky_queueserver_api.zmq import REManagerAPI as ZmqManager
from tiled.client import from_uri
from variants import protocol_variant

from vegard.instruments.visa_connection import VisaConnection
from vegard.interactive import open_lab
from vegard.store.catalog import list_runs
from vegard.store.documents import load_documents

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[2]
SIM_PROFILE = REPOSITORY / "configs/profiles/sim.yaml"
ESM_PROTOCOL = REPOSITORY / "configs/protocols/esm_room_temperature.yaml"
STEPS_PROTOCOL = REPOSITORY / "configs/protocols/temperature_steps.yaml"
API_KEY = "0123456789abcdef" * 4
SPEEDUP = 1000
STARTUP_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 60.0


class ServedStack:
    """A `vegard serve` process and what it printed."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vegard.cli", "serve", "--devices", "temperature_stage,afm",
             "--speedup", str(SPEEDUP), "--data-dir", str(data_dir),
             "--zmq-control-port", "0", "--zmq-info-port", "0", "--http-port", "0",
             "--tiled-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "VEGARD_API_KEY": API_KEY, "PYTHONUNBUFFERED": "1"})
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.printed: dict[str, str] = {}
        self.re_manager_pids: list[int] = []
        self.wait_for_line("ready", STARTUP_TIMEOUT_S)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, wanted: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"vegard serve did not print {wanted!r} "
                                     f"(printed {self.printed})") from None
            name, _, value = line.partition(" ")
            self.printed[name] = value
            if line.startswith("re-manager pid"):
                self.re_manager_pids.append(int(line.split()[-1]))
            if line.startswith(wanted):
                return line

    def http(self) -> HttpManager:
        manager = HttpManager(http_server_uri=self.printed["http"], timeout=10.0)
        manager.set_authorization_key(api_key=API_KEY)
        return manager

    def zmq(self) -> ZmqManager:
        return ZmqManager(zmq_control_addr=self.printed["zmq_control"], timeout_recv=5.0)

    def simulator(self, query: str) -> dict:
        connection = VisaConnection(self.printed["simulator_control"], name="sim control",
                                    timeout_s=2.0)
        connection.open_blocking()
        try:
            return json.loads(connection.query_blocking(query))
        finally:
            connection.close()

    def descendants(self) -> set[int]:
        """Every process below `vegard serve` (by parent pid, through the process groups)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, frontier = set(), {self.process.pid}
        while frontier:
            children = {pid for pid, parent in parents.items() if parent in frontier}
            found |= children
            frontier = children
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The served stack on a run store that already holds one run (to be backfilled)."""
    folder = tmp_path_factory.mktemp("served")
    store = folder / "store"
    recorded_before = protocol_variant(
        STEPS_PROTOCOL, folder / "recorded_before.yaml",
        temperature_stage={"temperatures_k": [300.0], "settle_time_s": 10.0})
    with open_lab(SIM_PROFILE, devices=["temperature_stage"], data_dir=store) as lab:
        summary = lab.run_protocol(recorded_before)
    served = ServedStack(store)
    served.recorded_before = summary["run_uids"][0]
    yield served
    served.stop()


def tiled_client(stack):
    return from_uri(stack.printed["tiled"], api_key=API_KEY)


def assert_spectra_served_in_place(run_node, run_path: Path) -> None:
    """The BE spectra read through Tiled are the run store's HDF5 dataset, not a copy."""
    spectra = run_node["primary"]["afm-spectra"]
    with h5py.File(run_path / "arrays" / "afm.h5", "r") as arrays:
        stored = arrays["/data/afm-spectra"][()]
    assert spectra.shape == stored.shape and spectra.dtype == stored.dtype
    np.testing.assert_array_equal(spectra.read(), stored)
    (source,) = spectra.data_sources()
    assert source.management == "external"
    assert [Path(urlparse(asset.data_uri).path) for asset in source.assets] == [
        run_path / "arrays" / "afm.h5"]


def open_environment(manager) -> None:
    if not manager.status()["worker_environment_exists"]:
        manager.environment_open()
        manager.wait_for_idle(timeout=STARTUP_TIMEOUT_S)
    assert manager.status()["worker_environment_exists"]


def run_queue(manager) -> list[dict]:
    """Start the queue, wait until it is done; the history items of this start."""
    before = len(manager.history_get()["items"])
    manager.queue_start()
    manager.wait_for_idle(timeout=RUN_TIMEOUT_S)
    return manager.history_get()["items"][before:]


def small_esm_protocol(path: Path, lines: int = 8, averages: int = 2) -> Path:
    return protocol_variant(
        ESM_PROTOCOL, path, map={"pixels": [16, lines], "size_nm": [200, 200]},
        excitation={"averages": averages}, temperature_stage={"settle_time_s": 10})


def start_long_map(stack, tmp_path: Path):
    """Queue a long ESM map and start it; return once the tip is biased (mid-map)."""
    manager = stack.http()
    open_environment(manager)
    protocol = small_esm_protocol(tmp_path / "esm_long.yaml", lines=256, averages=50)
    manager.item_add(BPlan("run_protocol", str(protocol)))
    manager.queue_start()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not stack.simulator("SAFE? afm")["bias_output_on"]:  # the map is being taken
        assert time.monotonic() < deadline, "the map never biased the tip"
        time.sleep(0.02)
    return manager, protocol


def test_protocol_file_and_typed_plan_run_from_the_queue(stack, tmp_path):
    manager = stack.http()
    open_environment(manager)
    protocol = small_esm_protocol(tmp_path / "esm_small.yaml")
    manager.item_add(BPlan("run_protocol", str(protocol)))
    manager.item_add(BPlan("temperature_steps", temperatures_k=[300.0, 305.0],
                           settle_time_s=10.0, sample="queued"))
    history = run_queue(manager)
    assert [item["name"] for item in history] == ["run_protocol", "temperature_steps"]
    assert [item["result"]["exit_status"] for item in history] == ["completed"] * 2
    runs = {run.uid: run for run in list_runs(stack.data_dir)}
    esm_uid, = history[0]["result"]["run_uids"]
    steps_uid, = history[1]["result"]["run_uids"]
    assert runs[esm_uid].status == "success" and runs[esm_uid].protocol == str(protocol)
    assert (runs[esm_uid].path / "arrays" / "afm.h5").is_file()  # the BE spectra, in HDF5
    assert (runs[esm_uid].path / "figures" / "esm_maps.npz").is_file()  # live analysis ran
    documents = list(load_documents(runs[steps_uid].path))
    start = documents[0][1]
    assert start["protocol_settings"]["temperature_stage"]["temperatures_k"] == [300.0, 305.0]
    assert start["sample"] == "queued" and start["served_by"] == "vegard serve"
    assert start["instrument_clock"]["speedup"] == SPEEDUP  # the served lab's clock
    streams = {doc["name"] for name, doc in documents if name == "descriptor"}
    assert streams == {"primary", "temperature_monitor"}

    tiled = tiled_client(stack)  # both live runs and the one recorded before serving
    assert {esm_uid, steps_uid, stack.recorded_before} <= set(tiled)
    assert stack.printed["tiled-backfilled"] == "1"
    for uid in (esm_uid, steps_uid, stack.recorded_before):
        assert set(tiled[uid]) == {"primary", "temperature_monitor"}
    assert tiled[steps_uid]["primary"]["temperature_stage-setpoint_k"].read().tolist() == [
        300.0, 305.0]
    assert tiled[esm_uid].metadata["start"]["protocol"] == str(protocol)
    assert_spectra_served_in_place(tiled[esm_uid], runs[esm_uid].path)
    before = tiled[stack.recorded_before]["primary"]["temperature_stage-setpoint_k"]
    assert before.read().tolist() == [300.0]  # backfilled from its document log


def test_a_bad_parameter_is_refused_when_added(stack):
    manager = stack.http()
    with pytest.raises(manager.RequestFailedError, match="temperatures_k"):
        manager.item_add(BPlan("temperature_steps", temperatures_k="hot"))
    with pytest.raises(manager.RequestFailedError, match="not in the list of allowed plans"):
        manager.item_add(BPlan("mv", "afm", 1))


def test_two_clients_adding_at_once_both_run_in_queue_order(stack):
    open_environment(stack.http())
    clients = {"http": stack.http(), "zmq": stack.zmq()}
    together = threading.Barrier(len(clients))
    added: dict[str, str] = {}

    def add(name: str) -> None:
        together.wait(timeout=10)
        reply = clients[name].item_add(
            BPlan("count", ["temperature_stage"], num=2, md={"client": name}))
        added[name] = reply["item"]["item_uid"]

    threads = [threading.Thread(target=add, args=(name,)) for name in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert set(added) == set(clients)
    queued = [item["item_uid"] for item in clients["http"].queue_get()["items"]]
    assert sorted(queued) == sorted(added.values())
    history = run_queue(clients["zmq"])
    assert [item["item_uid"] for item in history] == queued  # both, in queue order
    assert all(item["result"]["exit_status"] == "completed" for item in history)


def test_abort_mid_map_leaves_the_tip_unbiased_and_parked(stack, tmp_path):
    manager, _ = start_long_map(stack, tmp_path)
    manager.re_pause(option="immediate")
    manager.wait_for_idle_or_paused(timeout=RUN_TIMEOUT_S)
    status = manager.status(reload=True)
    assert status["re_state"] == "paused", (status, manager.history_get()["items"][-1:])
    manager.re_abort()
    manager.wait_for_idle(timeout=RUN_TIMEOUT_S)
    safe = stack.simulator("SAFE? afm")
    assert safe["safe"] and not safe["bias_output_on"] and safe["tip_parked"], safe
    assert safe["bias_dc_v"] == 0 and safe["bias_ac_v"] == 0
    last = manager.history_get()["items"][-1]
    assert last["result"]["exit_status"] == "aborted"
    uid, = last["result"]["run_uids"]
    run = next(run for run in list_runs(stack.data_dir) if run.uid == uid)
    assert run.status == "abort" and 0 < run.num_events
    manager.queue_clear()


def test_a_request_without_the_key_is_refused(stack):
    for url, scheme in ((f"{stack.printed['http']}/api/status", "ApiKey"),
                        (f"{stack.printed['tiled']}/api/v1/metadata/", "Apikey")):
        for headers in ({}, {"Authorization": f"{scheme} " + "f" * 64}):
            request = urllib.request.Request(url, headers=headers)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401, url
        request = urllib.request.Request(url, headers={"Authorization": f"{scheme} {API_KEY}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200


def test_a_killed_re_manager_comes_back_with_its_queue_and_the_runs_intact(stack):
    manager = stack.http()
    runs_before = {run.uid: run for run in list_runs(stack.data_dir)}
    assert runs_before  # the runs recorded by the tests above
    manager.queue_clear()
    for temperature_k in (300.0, 302.0):
        manager.item_add(BPlan("temperature_steps", temperatures_k=[temperature_k]))
    queued = [item["item_uid"] for item in manager.queue_get()["items"]]
    first_pid = stack.re_manager_pids[-1]
    os.killpg(first_pid, signal.SIGKILL)  # watchdog, manager and worker at once
    stack.wait_for_line("re-manager pid", STARTUP_TIMEOUT_S)
    assert stack.re_manager_pids[-1] != first_pid
    after = stack.http()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            items = after.queue_get()["items"]
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert [item["item_uid"] for item in items] == queued  # kept in Redis
    assert after.status()["items_in_queue"] == len(queued)
    runs_after = {run.uid: run for run in list_runs(stack.data_dir)}
    for uid, run in runs_before.items():
        assert runs_after[uid].status == run.status
        assert runs_after[uid].num_events == run.num_events
    assert set(runs_before) <= set(tiled_client(stack))
    after.queue_clear()


def test_sigterm_aborts_the_running_plan_then_leaves_no_process(stack, tmp_path):
    _, protocol = start_long_map(stack, tmp_path)
    children = stack.descendants()
    assert len(children) >= 5  # redis, the RE Manager's three, HTTP server, Tiled
    assert stack.stop() == 0
    (newest, *_) = list_runs(stack.data_dir)
    assert newest.protocol == str(protocol)
    assert newest.status == "abort"  # closed by the plan's clean-up, not cut off
    left = [pid for pid in children if alive(pid)]
    assert not left, left
    for pid in stack.re_manager_pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def test_serve_refuses_a_remote_host_and_a_bad_port_before_starting(tmp_path):
    for arguments, message in (
        (["--host", "0.0.0.0"], "pass --allow-remote"),
        (["--http-port", "70000"], "--http-port = 70000 is not valid: allowed: 0"),
        (["--devices", "levitator"], "--devices = levitator is not valid"),
    ):
        capture = subprocess.run(
            [sys.executable, "-m", "vegard.cli", "serve", *arguments,
             "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, check=False)
        assert capture.returncode == 2, capture.stderr
        assert message in capture.stderr
