"""Where the diffractometer's axes were: the recorded trajectories of the simulated IOC."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from ca_client import get, put, wait_until

from vegard.simulators.diffractometer_ioc_emulator import (
    Move,
    MoveHistory,
    SimulatedDiffractometer,
)

SAMX = "SIM:DIFF:SAMX"


@pytest.fixture
def diffractometer(manual_clock, monkeypatch) -> Iterator[SimulatedDiffractometer]:
    model = SimulatedDiffractometer(manual_clock).start()
    for key, value in model.client_environment().items():
        monkeypatch.setenv(key, value)
    yield model
    model.stop()


def test_move_time_at_inverts_position_at_on_ramps_and_cruise() -> None:
    move = Move(1.0, -9.0, 50.0, velocity=2.0, acceleration_time_s=1.0)
    for time_s in (50.0, 50.3, 51.0, 52.7, 55.5, 55.9, move.end_time_s):
        assert move.time_at(move.position_at(time_s)) == pytest.approx(time_s, abs=1e-9)
    triangle = Move(0.0, 0.5, 0.0, velocity=2.0, acceleration_time_s=1.0)
    assert triangle.time_at(0.25) == pytest.approx(triangle.duration_s / 2)


def test_history_answers_for_past_times_across_replaced_moves() -> None:
    history = MoveHistory(Move.at_rest(0.0, 0.0))
    history.record(Move(0.0, 10.0, 10.0, velocity=1.0, acceleration_time_s=0.0))
    history.record(Move(4.0, -2.0, 14.0, velocity=2.0, acceleration_time_s=0.0))  # turned back
    assert history.position_at(5.0) == 0.0
    assert history.position_at(12.5) == pytest.approx(2.5)
    assert history.position_at(15.0) == pytest.approx(2.0)
    assert history.positions_at([5.0, 12.5, 15.0, 99.0]) == pytest.approx([0, 2.5, 2.0, -2.0])
    assert history.crossing_time_s(3.0, 0.0, +1, now_s=100.0) == pytest.approx(13.0)
    assert history.crossing_time_s(3.0, 13.5, +1, now_s=100.0) is None  # later only downwards
    assert history.crossing_time_s(3.0, 13.5, -1, now_s=100.0) == pytest.approx(14.5)
    assert history.crossing_time_s(6.0, 0.0, +1, now_s=100.0) is None  # replaced before 6
    assert history.crossing_time_s(-1.0, 0.0, -1, now_s=16.0) is None  # not yet at 16 s
    assert history.crossing_time_s(-1.0, 0.0, -1, now_s=17.0) == pytest.approx(16.5)
    with pytest.raises(ValueError, match="direction"):
        history.crossing_time_s(1.0, 0.0, 0, now_s=1.0)


def test_history_is_bounded_and_says_when_it_forgot() -> None:
    history = MoveHistory(Move.at_rest(0.0, 0.0), length=4)
    for step in range(1, 6):
        history.record(Move.at_rest(float(step), float(step)))
    assert len(history.moves()) == 4
    assert history.position_at(4.5) == 4.0
    with pytest.raises(ValueError, match="before the oldest move"):
        history.position_at(0.5)


def test_history_is_safe_to_read_while_the_ioc_thread_appends() -> None:
    history = MoveHistory(Move.at_rest(0.0, 0.0), length=64)
    done = threading.Event()

    def writer() -> None:
        for step in range(5000):
            history.record(Move(0.0, 1.0, 1.0 + step, velocity=1.0, acceleration_time_s=0.0))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        assert 0.0 <= history.position_at(1e9) <= 1.0
    thread.join()


def test_a_move_through_channel_access_is_recorded(diffractometer, manual_clock) -> None:
    start_s = manual_clock.now()
    assert diffractometer.position_at("sample_x_um", start_s) == 0.0
    assert not diffractometer.is_moving("sample_x_um")
    put(f"{SAMX}.VELO", 100.0)
    put(f"{SAMX}.VAL", 4.0, wait=False)  # 4 µm at 100 µm/s, 2 ms ramps: 42 ms
    wait_until(lambda: diffractometer.is_moving("sample_x_um"))
    move = diffractometer.ioc.history("sample_x_um").latest()
    assert (move.start_position, move.target, move.velocity) == (0.0, 4.0, 100.0)
    assert move.duration_s == pytest.approx(0.042)
    manual_clock.advance(0.02)
    assert diffractometer.crossing_time_s("sample_x_um", 3.0, start_s, +1) is None  # not yet
    crossed_s = diffractometer.crossing_time_s("sample_x_um", 1.0, start_s, +1)
    assert crossed_s == pytest.approx(
        move.start_time_s + 0.011, abs=1e-6)  # ramp + 0.9 µm cruise
    assert diffractometer.position_at("sample_x_um", crossed_s) == pytest.approx(1.0, abs=1e-4)
    assert diffractometer.crossing_time_s("sample_x_um", 1.0, start_s, -1) is None
    manual_clock.advance(0.05)
    wait_until(lambda: get(f"{SAMX}.DMOV") == 1)
    assert not diffractometer.is_moving("sample_x_um")
    assert diffractometer.crossing_time_s("sample_x_um", 4.0, start_s, +1) == pytest.approx(
        move.end_time_s, abs=1e-6)
    assert diffractometer.ground_truth()["positions"]["sample_x_um"] == 4.0
    # A halted move ends where it stopped; the trajectory keeps both.
    put(f"{SAMX}.VAL", -4.0, wait=False)
    wait_until(lambda: diffractometer.is_moving("sample_x_um"))
    back_s = diffractometer.ioc.history("sample_x_um").latest().start_time_s
    manual_clock.advance(0.021)
    put(f"{SAMX}.STOP", 1)
    wait_until(lambda: not diffractometer.is_moving("sample_x_um"))
    stopped = diffractometer.position_at("sample_x_um", manual_clock.now())
    assert stopped == pytest.approx(4.0 - 0.1 - 100 * 0.019, abs=1e-4)
    assert diffractometer.position_at("sample_x_um", crossed_s) == pytest.approx(1.0, abs=1e-4)
    assert diffractometer.crossing_time_s("sample_x_um", 1.0, back_s, -1) is None
    assert diffractometer.crossing_time_s("sample_x_um", 3.0, back_s, -1) == pytest.approx(
        back_s + 0.011, abs=1e-6)
