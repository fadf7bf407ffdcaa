"""Physics faults of the SXDM simulators: each happens at its scheduled instrument time,
is reported by `fired_faults()`, shows in the physics truth, and `safe_state()` tells
whether the instrument could be left alone."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import ClassVar

import numpy as np
import pytest
from caproto.sync.client import read, write

from vegard.clock import InstrumentClock
from vegard.diffraction_geometry import DetectorRoi
from vegard.simulators.diffractometer_ioc_emulator import MotionFaults, SimulatedDiffractometer
from vegard.simulators.lab import parameter_specs
from vegard.simulators.lmno_cell_model import LmnoCell
from vegard.simulators.maxipix_emulator import MaxipixEmulator
from vegard.simulators.sxdm_endstation_model import SATURATION_COUNTS, SxdmEndStation

ROI = DetectorRoi(224, 176, 64, 160)
C15_A = 5.0 * 147.0 / 15 * 1e-6  # C/15 of the default 5 mg electrode


def test_fault_parameters_are_declared_for_profiles_and_sim_params() -> None:
    names = {kind: {p.name for p in specs} for kind, specs in parameter_specs().items()}
    assert "fault_potential_jump_at_s" in names["potentiostat"]
    assert {"fault_frame_missing_at_s", "fault_frame_saturated_at_s"} <= names["area_detector"]
    assert "fault_stall_at_s" in names["diffractometer"]


# ------------------------------------------------------------------ cell


def test_potential_jump_ends_a_charge_at_the_limit_at_the_scheduled_time(manual_clock) -> None:
    cell = LmnoCell(manual_clock, {"fault_potential_jump_at_s": 1800.0}, seed=1)
    cell.galvanostatic(C15_A, 4.9)
    manual_clock.advance(1000.0)
    assert cell.mode.value == "galvanostatic" and cell.potential_v() < 4.5
    assert cell.fired_faults() == []
    assert cell.safe_state() == {"safe": False, "output_on": True, "current_a": C15_A,
                                 "mode": "GALVANOSTATIC"}
    manual_clock.advance(1000.0)
    # the limit was reached at 1800 s, an hour of C/15 charge early (x still ≈ 0.97)
    assert cell.limit_reached_time_s == pytest.approx(manual_clock.time_s - 200.0, abs=1e-6)
    assert cell.lithium_content() > 0.9
    (fault,) = cell.fired_faults()
    assert fault["kind"] == "potential_jump"
    assert fault["instrument_time_s"] == pytest.approx(1800.0)
    assert fault["potential_after_v"] == 4.9 and fault["potential_before_v"] < 4.8
    assert cell.safe_state() == {"safe": True, "output_on": False, "current_a": 0.0,
                                 "mode": "REST"}
    # one jump only: the next charge runs on
    cell.galvanostatic(C15_A, 4.9)
    manual_clock.advance(600.0)
    assert cell.mode.value == "galvanostatic" and len(cell.fired_faults()) == 1


def test_potential_jump_waits_for_a_charge(manual_clock) -> None:
    """Scheduled while the cell rests: it hits the first charge started afterwards, at once."""
    cell = LmnoCell(manual_clock, {"fault_potential_jump_at_s": 100.0}, seed=1)
    manual_clock.advance(500.0)
    assert cell.fired_faults() == [] and cell.safe_state()["safe"]
    cell.galvanostatic(C15_A, 4.9)
    assert cell.mode.value == "rest" and cell.limit_reached
    assert cell.fired_faults()[0]["instrument_time_s"] == pytest.approx(500.0)


# ------------------------------------------------------------------ detector


class LinearPiezo:
    """Trajectories of a piezo flying sample x at 10 µm/s from -1 µm at t0; angles fixed."""

    ANGLES: ClassVar[dict[str, float]] = {
        "eta_deg": 17.68, "phi_deg": 0.0, "nu_deg": 0.0, "delta_deg": 35.37, "energy_ev": 1e4}

    def __init__(self, clock, t0: float) -> None:
        self.clock, self.t0, self.speed = clock, t0, 10.0

    def _x(self, t: float) -> float:
        return -1.0 + self.speed * (t - self.t0)

    def positions_at(self, axis: str, times_s: Iterable[float]) -> Sequence[float]:
        if axis == "sample_x_um":
            return [self._x(t) for t in times_s]
        return [self.ANGLES.get(axis, 0.0) for _ in times_s]

    def crossing_time_s(self, axis, position, after_s, direction) -> float | None:
        crossing = self.t0 + (position + 1.0) / self.speed
        return crossing if after_s <= crossing <= self.clock.now() else None

    def is_moving(self, axis: str) -> bool:
        return False

    def move_end_s(self, axis: str) -> float:
        return self.t0 + 1.0


def fly_line(emulator: MaxipixEmulator, clock, frames: int = 8) -> tuple[np.ndarray, list[str]]:
    """Arm a line of `frames` triggers 0.1 µm apart, fly it, read frames and times."""
    emulator.model.diffractometer = LinearPiezo(clock, clock.now() + 0.01)
    emulator.handle_line(f"ROI {ROI.row_start},{ROI.col_start},{ROI.n_rows},{ROI.n_cols};"
                         f"EXPO 0.005;TRIG:SOUR POS;TRIG:AXIS sample_x_um;TRIG:STAR -0.5;"
                         f"TRIG:STEP 0.1;FRAM {frames};ARM")
    assert emulator.model.safe_state() == {"safe": False, "armed": True}
    clock.advance(1.0)
    block = emulator.handle_line("FRAM:DATA?")
    assert block is not None and block[:1] == b"#"
    digits = int(block[1:2])
    counts = np.frombuffer(block[2 + digits:], dtype="<u2").reshape(-1, ROI.n_rows, ROI.n_cols)
    times = (emulator.handle_line("FRAM:TIME?") or b"").decode().split(",")
    return counts, times


def test_missing_and_saturated_frames_hit_the_first_line_armed_after_their_time(
        manual_clock) -> None:
    model = SxdmEndStation(manual_clock, {"fault_frame_missing_at_s": 2.5,
                                          "fault_frame_saturated_at_s": 4.5}, seed=2)
    emulator = MaxipixEmulator(model)
    good, times = fly_line(emulator, manual_clock)  # armed at 0 s
    assert good.shape[0] == len(times) == 8 and good.max() < SATURATION_COUNTS
    assert model.fired_faults() == []
    manual_clock.advance(2.0)
    short, times = fly_line(emulator, manual_clock)  # armed at 3 s: one frame missing
    assert short.shape[0] == len(times) == 7
    (missing,) = model.fired_faults()
    assert missing["kind"] == "frame_missing" and missing["triggers"] == 8
    assert missing["frames_delivered"] == 7 and missing["instrument_time_s"] == pytest.approx(3.0)
    manual_clock.advance(1.0)
    burst, _ = fly_line(emulator, manual_clock)  # armed at 5 s: one burst frame
    saturated = (burst == SATURATION_COUNTS).sum(axis=(1, 2))
    assert burst.shape[0] == 8
    assert saturated[4] >= 0.04 * ROI.n_rows * ROI.n_cols
    assert saturated[np.arange(8) != 4].sum() == 0
    assert model.fired_faults()[1]["kind"] == "frame_saturated"
    assert model.fired_faults()[1]["saturated_pixels"] == saturated[4]
    assert model.safe_state() == {"safe": True, "armed": False}  # delivered: back to IDLE
    again, _ = fly_line(emulator, manual_clock)  # each fault fires once
    assert again.shape[0] == 8 and again.max() < SATURATION_COUNTS
    assert len(model.fired_faults()) == 2


def test_detector_safe_state_follows_arm_and_abort(manual_clock) -> None:
    emulator = MaxipixEmulator(SxdmEndStation(manual_clock, seed=2))
    emulator.handle_line("TRIG:SOUR POS;FRAM 4;ARM")
    assert emulator.model.safe_state()["safe"] is False
    emulator.handle_line("ABOR")
    assert emulator.model.safe_state()["safe"] is True
    emulator.handle_line("ARM")
    emulator.handle_line("*RST")
    assert emulator.model.safe_state()["safe"] is True


# ------------------------------------------------------------------ diffractometer


@contextmanager
def served(diffractometer: SimulatedDiffractometer) -> Iterator[SimulatedDiffractometer]:
    diffractometer.start()
    try:
        yield diffractometer
    finally:
        diffractometer.stop()


def test_stall_is_scheduled_on_the_first_long_enough_move_at_or_after_its_time() -> None:
    faults = MotionFaults(started_s=1000.0, stall_at_s=50.0)
    assert faults.move_end("eta_deg", 17.0, 18.0, 1049.0, 5e-4) == 18.0  # before the time
    assert faults.move_end("eta_deg", 18.0, 18.0008, 1051.0, 5e-4) == 18.0008  # too short
    assert faults.move_end("phi_deg", 0.0, 10.0, 1052.0, 5e-4) == 5.0  # stalls halfway
    assert faults.move_end("phi_deg", 5.0, 10.0, 1053.0, 5e-4) == 10.0  # once only
    assert faults.fired() == [{"kind": "stall", "instrument_time_s": 52.0, "axis": "phi_deg",
                               "start": 0.0, "target": 10.0, "stopped_at": 5.0}]


def test_a_stalled_move_ends_with_dmov_set_and_rbv_short_of_val_over_ca() -> None:
    clock = InstrumentClock(1000.0)
    diffractometer = SimulatedDiffractometer(clock, {"fault_stall_at_s": 1e-3})
    eta = "SIM:DIFF:ETA"
    with served(diffractometer), pytest.MonkeyPatch.context() as environment:
        for key, value in diffractometer.client_environment().items():
            environment.setenv(key, value)

        def get(pv: str) -> float:
            return float(read(pv, timeout=5.0, repeater=False).data[0])

        write(eta, 16.68, notify=True, timeout=10.0, repeater=False)  # put-completion returns
        assert get(eta + ".DMOV") == 1 and get(eta + ".VAL") == pytest.approx(16.68)
        readback = get(eta + ".RBV")
        assert readback == pytest.approx(17.18)  # halfway from 17.68
        assert abs(readback - 16.68) > get(eta + ".RDBD")
        (stall,) = diffractometer.fired_faults()
        assert stall["kind"] == "stall" and stall["axis"] == "eta_deg"
        assert stall["target"] == pytest.approx(16.68) and stall["instrument_time_s"] > 0
        assert diffractometer.ground_truth()["positions"]["eta_deg"] == pytest.approx(readback)
        assert diffractometer.safe_state() == {"safe": True, "moving_axes": []}
        write(eta, 16.68, notify=True, timeout=10.0, repeater=False)  # the retry arrives
        assert get(eta + ".RBV") == pytest.approx(16.68)


def test_diffractometer_is_unsafe_while_an_axis_moves() -> None:
    clock = InstrumentClock(1.0)
    diffractometer = SimulatedDiffractometer(clock)
    with served(diffractometer), pytest.MonkeyPatch.context() as environment:
        for key, value in diffractometer.client_environment().items():
            environment.setenv(key, value)
        write("SIM:DIFF:PHI", 10.0, notify=False, repeater=False)  # 2 s at 5°/s
        deadline = time.monotonic() + 2.0
        while diffractometer.safe_state()["safe"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert diffractometer.safe_state() == {"safe": False, "moving_axes": ["phi_deg"]}
        write("SIM:DIFF:PHI.STOP", 1, notify=False, repeater=False)
        deadline = time.monotonic() + 2.0
        while not diffractometer.safe_state()["safe"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert diffractometer.safe_state()["safe"]
