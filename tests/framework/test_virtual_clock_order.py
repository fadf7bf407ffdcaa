"""Virtual-clock hazards found by the fault matrix and the determinism runs, one test each."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import sys
import threading

from vegard.virtual_clock import VirtualClock


def test_a_worker_cancelled_before_a_thread_took_it_does_not_stop_the_clock() -> None:
    """With the only worker thread busy, a second submission is cancelled while queued.
    Left counted busy it stopped the clock for good (a hung fault-matrix row)."""
    clock = VirtualClock()
    loop = clock.new_event_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(1))
    release = threading.Event()
    stuck = threading.Timer(20.0, loop.call_soon_threadsafe, (loop.stop,))  # hang guard

    def occupy() -> None:
        clock.sleep_blocking(0.5)  # instrument time: waits on the clock, not busy
        release.wait(5.0)

    async def main() -> float:
        first = asyncio.ensure_future(clock.run_in_thread(occupy))
        await asyncio.sleep(0)
        queued = asyncio.ensure_future(clock.run_in_thread(lambda: None))
        await asyncio.sleep(0)
        queued.cancel()
        release.set()
        await first
        started_s = clock.elapsed_s()
        await clock.sleep(2.0)  # needs a jump: impossible with a participant left busy
        return clock.elapsed_s() - started_s

    stuck.start()
    try:
        assert loop.run_until_complete(main()) == 2.0
    finally:
        stuck.cancel()
        loop.close()
    assert not [p for p in clock._participants if p.busy]


ORDER_SCRIPT = """
import asyncio, json
from vegard.instruments.lakeshore336_driver import LakeShore336Driver
from vegard.instruments.temperature_stage_device import TemperatureStage
from vegard.instruments.visa_connection import VisaConnection
stage = TemperatureStage(LakeShore336Driver(VisaConnection("TCPIP0::127.0.0.1::1::SOCKET",
                                                     name="temperature_stage")),
                         name="stage")
print(json.dumps([getattr(f, "signal", None) and f.signal.name for f in stage._read_funcs]))
"""


def test_a_device_reads_its_signals_in_the_same_order_in_every_process() -> None:
    """ophyd-async's add_children_as_readables orders by string hash (PYTHONHASHSEED):
    the signals of one read() went out on the wire in another order in every dry run."""
    orders = {
        seed: json.loads(subprocess.run(
            [sys.executable, "-c", ORDER_SCRIPT], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout)
        for seed in range(6)
    }
    assert len({tuple(order) for order in orders.values()}) == 1, orders
    assert orders[0][0] == "stage-temperature_k"  # declaration order, hinted signal first
