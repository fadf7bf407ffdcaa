"""The simulated diffractometer IOC on its own, through caproto's synchronous CA client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ca_client import get, put, wait_until
from caproto import CaprotoTimeoutError, ErrorResponseReceived
from caproto.sync.client import read

from vegard.clock import InstrumentClock
from vegard.simulators.diffractometer_ioc_emulator import (
    DIFFRACTOMETER_MOTORS,
    DiffractometerIoc,
    Move,
    ca_address_env_for_all,
)

FAST_SPEEDUP = 100.0
ETA = "SIM:DIFF:ETA"
ENERGY = "SIM:DIFF:ENERGY"
MOTOR_FIELDS = (
    "VAL RBV DMOV MOVN VELO VMAX ACCL EGU PREC DESC HLM LLM DHLM DLLM STOP RDBD "
    "MRES SREV UREV ERES OFF FOFF SET HLS LLS OUT LVIO"
).split()
"""Every field ophyd-async 0.21's Motor connects to, plus MOVN, DESC and LVIO."""


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DiffractometerIoc]]:
    """serve(clock, **options) → a started IOC the CA client is pointed at; stopped after."""
    started: list[DiffractometerIoc] = []

    def start(clock: InstrumentClock, **options: Any) -> DiffractometerIoc:
        ioc = DiffractometerIoc(clock, **options).start()
        started.append(ioc)
        for key, value in ioc.ca_address_env().items():
            monkeypatch.setenv(key, value)
        return ioc

    yield start
    for ioc in started:
        ioc.stop()


def test_trapezoid_and_triangle_profiles() -> None:
    cruise = Move(0.0, 10.0, 100.0, velocity=2.0, acceleration_time_s=1.0)
    assert cruise.duration_s == pytest.approx(6.0)  # 10/2 + one ramp time
    assert cruise.position_at(101.0) == pytest.approx(1.0)  # ½·a·t² with a = 2
    assert cruise.position_at(103.0) == pytest.approx(5.0)
    assert cruise.position_at(105.0) == pytest.approx(9.0)
    assert cruise.position_at(200.0) == 10.0
    short = Move(5.0, 4.0, 0.0, velocity=2.0, acceleration_time_s=1.0)  # never reaches 2/s
    assert short.duration_s == pytest.approx(2.0 * (0.5**0.5))
    positions = [short.position_at(t) for t in (0.0, 0.3, 0.7, 1.0, 1.5)]
    assert positions == sorted(positions, reverse=True)
    assert short.position_at(short.duration_s / 2) == pytest.approx(4.5)
    assert Move.at_rest(3.0, 0.0).duration_s == 0.0


def test_serves_every_motor_record_field_the_motor_device_uses(serve) -> None:
    ioc = serve(InstrumentClock(FAST_SPEEDUP))
    values = {field: get(f"{ETA}.{field}") for field in MOTOR_FIELDS}
    assert values["RBV"] == values["VAL"] == 17.68
    assert (values["DMOV"], values["MOVN"], values["LVIO"], values["STOP"]) == (1, 0, 0, 0)
    assert (values["EGU"], values["LLM"], values["HLM"]) == ("deg", -5.0, 90.0)
    assert (values["DLLM"], values["DHLM"]) == (-5.0, 90.0)
    assert (values["FOFF"], values["SET"]) == ("Variable", "Use")
    for spec in DIFFRACTOMETER_MOTORS:
        prefix = ioc.pv_prefix(spec.name)
        assert get(f"{prefix}.EGU") == spec.egu
        assert (get(f"{prefix}.LLM"), get(f"{prefix}.HLM")) == (spec.low_limit, spec.high_limit)
        assert get(prefix) == spec.start


def test_a_move_takes_instrument_time_with_dmov_and_movn_toggling(serve, manual_clock) -> None:
    ioc = serve(manual_clock)
    put(f"{ETA}.VAL", 20.0, wait=False)  # 2.32° at 1°/s with 0.2 s ramps: 2.52 s
    wait_until(lambda: get(f"{ETA}.DMOV") == 0)
    assert get(f"{ETA}.MOVN") == 1
    assert get(ETA) == 20.0  # VAL shows the target at once
    manual_clock.advance(1.26)
    wait_until(lambda: get(f"{ETA}.RBV") != 17.68)
    assert get(f"{ETA}.RBV") == pytest.approx(18.84)  # halfway, by symmetry
    assert ioc.ground_truth()["eta_deg"].moving
    manual_clock.advance(1.27)
    wait_until(lambda: get(f"{ETA}.DMOV") == 1)
    assert (get(f"{ETA}.RBV"), get(f"{ETA}.MOVN")) == (20.0, 0)
    truth = ioc.ground_truth()["eta_deg"]
    assert (truth.position, truth.moving) == (20.0, False)
    stamp = read(f"{ETA}.RBV", data_type="time", repeater=False).metadata.timestamp
    assert stamp == pytest.approx(manual_clock.now(), abs=1e-6)  # instrument time, not wall


def test_put_with_completion_returns_once_the_move_is_done(serve) -> None:
    clock = InstrumentClock(FAST_SPEEDUP)
    serve(clock)
    started_s = clock.now()
    put(f"{ETA}.VAL", 22.0)  # 4.32° at 1°/s: 4.52 s of instrument time
    elapsed_s = clock.now() - started_s
    assert (get(f"{ETA}.DMOV"), get(f"{ETA}.RBV")) == (1, 22.0)
    assert 4.52 <= elapsed_s < 4.52 + 0.1 * FAST_SPEEDUP


def test_target_beyond_a_soft_limit_is_refused_like_a_motor_record(serve) -> None:
    ioc = serve(InstrumentClock(FAST_SPEEDUP))
    put(f"{ETA}.VAL", 95.0)  # HLM is 90°: the put completes, nothing moves
    assert get(f"{ETA}.LVIO") == 1
    assert (get(ETA), get(f"{ETA}.RBV"), get(f"{ETA}.DMOV")) == (17.68, 17.68, 1)
    assert not ioc.ground_truth()["eta_deg"].moving
    put(f"{ETA}.VAL", 18.0)
    assert (get(f"{ETA}.LVIO"), get(f"{ETA}.RBV")) == (0, 18.0)


def test_stop_halts_the_axis_where_it_is(serve, manual_clock) -> None:
    ioc = serve(manual_clock)
    put(f"{ENERGY}.VAL", 12000.0, wait=False)  # 2000 eV at 100 eV/s: 20.5 s
    wait_until(lambda: get(f"{ENERGY}.DMOV") == 0)
    manual_clock.advance(5.0)
    wait_until(lambda: get(f"{ENERGY}.RBV") != 10000.0)
    put(f"{ENERGY}.STOP", 1)
    stopped_ev = get(f"{ENERGY}.RBV")
    assert 10000.0 < stopped_ev < 12000.0
    assert (get(f"{ENERGY}.DMOV"), get(f"{ENERGY}.MOVN"), get(f"{ENERGY}.STOP")) == (1, 0, 0)
    assert get(ENERGY) == stopped_ev  # VAL follows the stopped position
    manual_clock.advance(60.0)
    assert ioc.ground_truth()["energy_ev"].position == stopped_ev
    time.sleep(0.15)  # a motion loop left running would tick (0.1 s at speed-up 1)
    assert get(f"{ENERGY}.RBV") == stopped_ev


def test_velocity_is_clamped_limits_stay_paired_and_offsets_are_refused(serve) -> None:
    serve(InstrumentClock(FAST_SPEEDUP))
    put(f"{ETA}.VELO", 100.0)
    assert get(f"{ETA}.VELO") == 5.0  # VMAX
    put(f"{ETA}.HLM", 80.0)
    assert get(f"{ETA}.DHLM") == 80.0
    put(f"{ETA}.DLLM", -2.0)
    assert get(f"{ETA}.LLM") == -2.0
    with pytest.raises(ErrorResponseReceived, match="not simulated"):
        put(f"{ETA}.OFF", 1.0)
    assert get(f"{ETA}.OFF") == 0.0


def test_two_iocs_run_side_by_side_on_their_own_ports(serve, monkeypatch) -> None:
    clock = InstrumentClock(FAST_SPEEDUP)
    first = serve(clock, prefix="SIM:A:")
    second = serve(clock, prefix="SIM:B:")
    assert first.port != second.port
    for key, value in first.ca_address_env().items():
        monkeypatch.setenv(key, value)
    assert get("SIM:A:PHI.RBV") == 0.0
    with pytest.raises(CaprotoTimeoutError):
        get("SIM:B:PHI.RBV", timeout_s=0.3)  # the client only asks the first
    for key, value in ca_address_env_for_all([first, second]).items():
        monkeypatch.setenv(key, value)
    assert get("SIM:B:PHI.RBV") == 0.0
    with pytest.raises(OSError, match="in use"):
        DiffractometerIoc(clock, port=first.port).start()


def test_stop_releases_the_thread_and_both_ports() -> None:
    threads_before = set(threading.enumerate())
    ioc = DiffractometerIoc(InstrumentClock(FAST_SPEEDUP)).start()
    port = ioc.port
    assert ioc.ca_address_env() == {
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{port}",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(port),
    }
    ioc.stop()
    # the IOC leaves no thread of its own (threads of earlier tests may end meanwhile: a
    # virtual clock's stuck reporter stops when its clock is collected)
    assert set(threading.enumerate()) - threads_before == set()
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", port))


def test_only_loopback_hosts_are_served() -> None:
    with pytest.raises(ValueError, match="not loopback"):
        DiffractometerIoc(InstrumentClock(), host="0.0.0.0")
