"""Physics of the variable-temperature stage, driven by a clock the test moves by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vegard.simulators.heater_control import HeaterRange
from vegard.simulators.temperature_stage_model import SetpointOutOfRange, TemperatureStageModel
from vegard.simulators.thermal_loop import ThermalLoop, matrix_exponential


def step_response(
    stage: TemperatureStageModel, clock, target_k: float, duration_s: float = 600.0
) -> list[dict]:
    """Set a new setpoint and record the ground truth every instrument second."""
    stage.set_setpoint(target_k)
    history = []
    for _ in range(int(duration_s)):
        clock.advance(1.0)
        history.append(stage.ground_truth())
    return history


def settling_time_s(history: list[dict], target_k: float, key: str, band_k: float = 0.1) -> float:
    """Instrument seconds after the step until `key` stays within ±band of the target."""
    start_s = history[0]["elapsed_s"] - 1.0
    outside = [h["elapsed_s"] for h in history if abs(h[key] - target_k) > band_k]
    return (max(outside) - start_s) if outside else 0.0


def test_step_up_295_to_350_settles_within_three_minutes_without_overshoot(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock)
    history = step_response(stage, manual_clock, 350.0)
    assert settling_time_s(history, 350.0, "stage_temperature_k") < 180.0
    overshoot_k = max(h["stage_temperature_k"] for h in history) - 350.0
    assert overshoot_k < 2.0
    assert history[-1]["stage_temperature_k"] == pytest.approx(350.0, abs=0.01)
    # the sample settles after the stage, within a few of its tens-of-seconds lag
    sample_s = settling_time_s(history, 350.0, "sample_temperature_k")
    assert settling_time_s(history, 350.0, "stage_temperature_k") < sample_s < 300.0


def test_step_down_350_to_250_settles_within_five_minutes_without_undershoot(
    manual_clock,
) -> None:
    stage = TemperatureStageModel(manual_clock)
    step_response(stage, manual_clock, 350.0, duration_s=900.0)
    history = step_response(stage, manual_clock, 250.0)
    assert settling_time_s(history, 250.0, "stage_temperature_k") < 300.0
    assert 250.0 - min(h["stage_temperature_k"] for h in history) < 2.0


@pytest.mark.parametrize(("start_k", "target_k"), [(200, 250), (375, 400), (400, 350), (250, 200)])
def test_steps_of_25_to_50_k_anywhere_in_200_to_400_k_settle(
    manual_clock, start_k: float, target_k: float
) -> None:
    stage = TemperatureStageModel(manual_clock)
    step_response(stage, manual_clock, start_k, duration_s=900.0)
    history = step_response(stage, manual_clock, target_k)
    assert settling_time_s(history, target_k, "stage_temperature_k") < 300.0
    sign = 1.0 if target_k > start_k else -1.0
    assert max(sign * (h["stage_temperature_k"] - target_k) for h in history) < 2.0


def test_ramp_moves_the_setpoint_at_the_rate_and_the_stage_follows(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock)
    stage.set_ramp(True, 10.0)
    stage.set_setpoint(345.0)
    assert stage.ramping
    manual_clock.advance(60.0)
    first = stage.ground_truth()
    manual_clock.advance(120.0)
    second = stage.ground_truth()
    slope_k_per_min = (second["setpoint_k"] - first["setpoint_k"]) / 2.0
    assert slope_k_per_min == pytest.approx(10.0, rel=0.01)
    assert second["ramping"] and second["target_setpoint_k"] == 345.0
    # following: stage within 0.1 K of the moving setpoint once the ramp is under way
    assert abs(second["stage_temperature_k"] - second["setpoint_k"]) < 0.1
    manual_clock.advance(200.0)  # 295 → 345 K at 10 K/min takes 300 s
    done = stage.ground_truth()
    assert not done["ramping"]
    assert done["setpoint_k"] == 345.0


def test_switching_the_ramp_off_mid_ramp_puts_the_setpoint_at_the_target(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock)
    stage.set_ramp(True, 1.0)
    stage.set_setpoint(300.0)
    manual_clock.advance(60.0)
    assert stage.setpoint_k == pytest.approx(296.0, abs=0.02)
    stage.set_ramp(False, 1.0)
    assert stage.setpoint_k == 300.0 and not stage.ramping


@pytest.mark.parametrize("temperature_k", [250.0, 350.0, 400.0])
def test_heater_power_at_steady_state_balances_the_bath_leak(
    manual_clock, temperature_k: float
) -> None:
    stage = TemperatureStageModel(manual_clock)
    stage.set_setpoint(temperature_k)
    manual_clock.advance(3600.0)
    truth = stage.ground_truth()
    p = truth["parameters"]
    leak_w = p["bath_conductance_w_per_k"] * (
        truth["stage_temperature_k"] - p["bath_temperature_k"])
    assert truth["heater_power_w"] == pytest.approx(leak_w, rel=0.02)
    assert truth["heater_output_percent"] == pytest.approx(100.0 * leak_w / 50.0, rel=0.02)


def test_the_stage_starts_in_equilibrium_at_the_initial_temperature(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock, {"initial_temperature_k": 300.0})
    manual_clock.advance(600.0)
    truth = stage.ground_truth()
    assert truth["stage_temperature_k"] == pytest.approx(300.0, abs=0.01)
    assert truth["sample_temperature_k"] == pytest.approx(300.0, abs=0.01)


def test_sample_drift_is_proportional_to_its_temperature_change(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock)
    assert stage.sample_drift_nm() == pytest.approx((0.0, 0.0), abs=0.01)
    drifts = {}
    for temperature_k in (345.0, 245.0):
        stage.set_setpoint(temperature_k)
        manual_clock.advance(1800.0)
        drifts[temperature_k] = stage.sample_drift_nm()
        delta_k = stage.sample_temperature_k() - 295.0
        assert drifts[temperature_k] == pytest.approx((3.0 * delta_k, -2.0 * delta_k), rel=1e-9)
    assert drifts[345.0] == pytest.approx((150.0, -100.0), abs=0.1)
    assert drifts[245.0] == pytest.approx((-150.0, 100.0), abs=0.1)


def test_drift_follows_the_lagging_sample_not_the_stage(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock)
    stage.set_setpoint(350.0)
    manual_clock.advance(30.0)
    truth = stage.ground_truth()
    assert truth["sample_temperature_k"] < truth["stage_temperature_k"] - 1.0
    assert truth["drift_x_nm"] == pytest.approx(3.0 * (truth["sample_temperature_k"] - 295.0))


def test_setpoints_outside_the_rated_range_are_refused(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock)
    for target_k in (199.9, 400.1):
        with pytest.raises(SetpointOutOfRange):
            stage.set_setpoint(target_k)
    assert stage.target_setpoint_k == 295.0


def test_with_the_heater_off_the_stage_cools_towards_the_bath(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock)
    stage.set_heater_range(HeaterRange.OFF)
    manual_clock.advance(60.0)
    assert stage.heater_output_percent() == 0.0
    assert stage.stage_temperature_k() < 295.0 - 30.0
    manual_clock.advance(7200.0)
    assert stage.stage_temperature_k() == pytest.approx(77.0, abs=0.5)


def test_low_range_cannot_hold_room_temperature(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock)
    stage.set_heater_range(HeaterRange.LOW)  # 0.5 W full scale: holds at most 77 + 5 K
    manual_clock.advance(7200.0)
    assert stage.heater_output_percent() == 100.0
    assert stage.stage_temperature_k() == pytest.approx(82.0, abs=0.1)


def test_reset_turns_the_heater_off_and_restores_the_power_on_pid(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock)
    stage.set_pid(10.0, 5.0, 0.0)
    stage.set_ramp(True, 5.0)
    stage.reset()
    assert stage.heater_range == HeaterRange.OFF
    assert (stage.pid.proportional, stage.pid.integral, stage.pid.derivative) == (50, 20, 0)
    assert not stage.ramp_enabled


def test_changing_pid_while_holding_does_not_kick_the_output(manual_clock) -> None:
    stage = TemperatureStageModel(manual_clock)
    manual_clock.advance(60.0)
    before = stage.heater_output_percent()
    stage.set_pid(20.0, 50.0, 0.0)
    manual_clock.advance(1.0)
    assert stage.heater_output_percent() == pytest.approx(before, abs=1.0)


def test_sensor_noise_has_the_set_spread_and_is_reproducible(manual_clock) -> None:
    readings = {}
    for seed in (1, 1, 2):
        stage = TemperatureStageModel(manual_clock, {"sensor_noise_k": 0.01}, seed=seed)
        readings.setdefault(seed, []).append(
            np.array([stage.read_temperature_k("A") for _ in range(2000)]))
    first, again = readings[1]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, readings[2][0])
    assert np.std(first) == pytest.approx(0.01, rel=0.1)
    assert np.mean(first) == pytest.approx(295.0, abs=0.002)


def test_ground_truth_is_json_serialisable_and_complete(manual_clock) -> None:
    started_s = manual_clock.now()
    truth = TemperatureStageModel(manual_clock).ground_truth()
    assert json.loads(json.dumps(truth)) == truth
    for key in ("stage_temperature_k", "sample_temperature_k", "setpoint_k", "ramping",
                "heater_output_percent", "heater_power_w", "drift_x_nm", "drift_y_nm",
                "elapsed_s", "parameters"):
        assert key in truth
    assert truth["parameters"]["thermal_mass_j_per_k"] == 20.0
    assert truth["elapsed_s"] == manual_clock.now() - started_s


def test_a_one_hour_gap_is_skipped_not_stepped(manual_clock, monkeypatch) -> None:
    """Hours of holding cost a few affine maps, not 36,000 controller ticks each."""
    stepped = []
    tick = ThermalLoop.tick
    monkeypatch.setattr(ThermalLoop, "tick", lambda self, *a: (stepped.append(1), tick(self, *a)))
    started_s = manual_clock.now()
    stage = TemperatureStageModel(manual_clock)
    stage.advance()
    manual_clock.advance(3600.0)
    stage.advance()
    assert len(stepped) < 200  # settled: skipped in 60 s commit blocks, one tick closing each
    stage.set_setpoint(350.0)  # a transient, then an hour of holding
    manual_clock.advance(3600.0)
    stepped.clear()
    truth = stage.ground_truth()
    assert len(stepped) < 3000  # the ~80 s transient stepped, the rest skipped
    assert truth["elapsed_s"] == pytest.approx(manual_clock.now() - started_s, abs=0.1)
    assert truth["stage_temperature_k"] == pytest.approx(350.0, abs=0.01)


def test_polling_a_transient_steps_each_tick_once(manual_clock, monkeypatch) -> None:
    """A poll between commit points runs the view on from the last poll: polling every
    2 s through a 60 s commit block of a transient costs the block's 600 ticks (plus the
    commit's own), not a recomputation from the commit point at every poll."""
    stage = TemperatureStageModel(manual_clock)
    stage.advance()
    stage.set_setpoint(350.0)
    stepped = []
    tick = ThermalLoop.tick
    monkeypatch.setattr(ThermalLoop, "tick", lambda self, *a: (stepped.append(1), tick(self, *a)))
    for _ in range(30):
        manual_clock.advance(2.0)
        stage.read_temperature_k("A")
    assert len(stepped) <= 2 * 600 + 20


def test_queries_at_one_instant_share_one_view(manual_clock, monkeypatch) -> None:
    """The four queries of one status line are answered from one view of that instant,
    also when the loop is settled (its view tried a skip)."""
    stage = TemperatureStageModel(manual_clock)
    stage.advance()
    manual_clock.advance(7.0)
    stage.read_temperature_k("A")
    runs = []
    run = ThermalLoop.run
    monkeypatch.setattr(ThermalLoop, "run", lambda self, *a: (runs.append(1), run(self, *a)))
    for sensor in ("B", "A", "B"):
        stage.read_temperature_k(sensor)
    assert runs == []


def test_the_history_does_not_depend_on_how_often_the_stage_is_read(manual_clock) -> None:
    """Reading the stage must not change it: a run polled every 0.7 s and one looked at
    only at the end give the same temperatures to the last bit (a dry run's answer would
    otherwise depend on how many status polls the machine's speed let through)."""
    def history(poll_s: float | None) -> list[tuple[float, float]]:
        clock = type(manual_clock)()
        origin_s = clock.now()
        stage = TemperatureStageModel(clock, {"sensor_noise_k": 0.01,
                                         "fault_heater_runaway_at_s": 700.0,
                                         "fault_heater_runaway_s": 30.0}, seed=5)
        seen = []
        for at_s, command in ((0.0, lambda: stage.set_setpoint(350.0)),
                              (400.0, lambda: stage.set_ramp(True, 5.0)),
                              (401.0, lambda: stage.set_setpoint(300.0)),
                              (1500.0, None)):
            while poll_s is not None and clock.now() - origin_s + poll_s < at_s:
                clock.advance(poll_s)
                stage.read_temperature_k("A")
                stage.sample_drift_nm()
            clock.time_s = origin_s + at_s
            if command is not None:
                command()
            truth = stage.ground_truth()
            seen.append((truth["stage_temperature_k"], truth["sample_temperature_k"]))
        return seen

    assert history(0.7) == history(None) == history(13.0)
def test_skipping_long_stretches_matches_tick_by_tick_integration(manual_clock) -> None:
    """The fast path (affine maps over many ticks) must not change the physics."""
    trajectories = []
    for skip in (True, False):
        clock = type(manual_clock)()
        stage = TemperatureStageModel(clock, {"sensor_noise_k": 0.0})
        if not skip:
            stage._loop._settled_mode = lambda: None  # force tick-by-tick
        points = []

        def at(duration_s: float, stage=stage, clock=clock, points=points) -> None:
            clock.advance(duration_s)
            truth = stage.ground_truth()
            points.append([truth[k] for k in ("stage_temperature_k", "sample_temperature_k",
                                               "heater_output_percent", "setpoint_k")])

        stage.set_setpoint(350.0)
        at(30.0)
        at(300.0)
        stage.set_ramp(True, 10.0)
        stage.set_setpoint(250.0)
        at(100.0)
        at(500.0)
        stage.set_heater_range(HeaterRange.LOW)
        at(600.0)
        stage.set_heater_range(HeaterRange.HIGH)
        stage.set_ramp(True, 0.5)
        stage.set_setpoint(300.0)
        at(3600.0)
        stage.set_heater_range(HeaterRange.OFF)
        at(1800.0)
        trajectories.append(np.array(points))
    np.testing.assert_allclose(trajectories[0], trajectories[1], rtol=0, atol=1e-6)


def test_matrix_exponential_agrees_with_scipy() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    generator = np.array([
        [-0.0075, 0.0025, 0.05, 0.385],
        [0.05, -0.05, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ])
    for scale in (0.1, 100.0, 1e4):
        np.testing.assert_allclose(
            matrix_exponential(generator * scale), scipy_linalg.expm(generator * scale),
            rtol=1e-9, atol=1e-12)


def test_rated_range_must_be_ordered(manual_clock) -> None:
    with pytest.raises(ValueError, match="minimum_temperature_k = 400 must be below"):
        TemperatureStageModel(manual_clock, {"minimum_temperature_k": 400.0})
