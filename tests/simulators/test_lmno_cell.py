"""The Li || LMNO cell model: capacity, plateaus, polarisation, relaxation, holds, cost."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vegard.simulators.lmno_cell_model import (
    FARADAY_C_PER_MOL,
    GAS_CONSTANT_J_PER_MOL_K,
    CellMode,
    LmnoCell,
)

HOUR_S = 3600.0


@pytest.fixture
def cell(manual_clock) -> LmnoCell:
    return LmnoCell(manual_clock, seed=5)


def charging_overpotential_v(cell: LmnoCell, current_a: float) -> float:
    """I·R + Butler–Volmer + steady diffusion polarisation, from the parameters."""
    p = cell.parameters
    kinetic_v = (2 * GAS_CONSTANT_J_PER_MOL_K * p["temperature_k"] / FARADAY_C_PER_MOL
                 * math.asinh(current_a / (2 * p["exchange_current_a"])))
    return current_a * (p["ohmic_resistance_ohm"] + p["diffusion_resistance_ohm"]) + kinetic_v


def sample_charge(cell: LmnoCell, clock, step_s: float, duration_s: float):
    """(lithium content, noise-free potential) every `step_s` while the clock runs."""
    lithium, potential_v = [], []
    for _ in range(int(duration_s / step_s)):
        clock.advance(step_s)
        lithium.append(cell.lithium_content())
        potential_v.append(cell.potential_v())
    return np.array(lithium), np.array(potential_v)


def test_pristine_cell_rests_at_its_open_circuit_potential(cell) -> None:
    assert cell.mode is CellMode.REST
    assert cell.lithium_content() == 1.0
    assert cell.potential_v() == pytest.approx(4.05, abs=1e-9)
    readings = np.array([cell.read_potential_v() for _ in range(2000)])
    assert readings.mean() == pytest.approx(4.05, abs=2e-5)
    assert readings.std() == pytest.approx(2e-4, rel=0.1)
    assert cell.capacity_mah == pytest.approx(0.735)  # 5 mg × 147 mAh/g
    assert cell.c_rate_current_a(1 / 15) == pytest.approx(49e-6)


def test_c15_charge_reaches_4v9_after_nearly_the_full_capacity(cell, manual_clock) -> None:
    started_s = manual_clock.now()
    current_a = cell.c_rate_current_a(1 / 15)
    cell.galvanostatic(current_a, 4.9)
    manual_clock.advance(16 * HOUR_S)
    truth = cell.ground_truth()
    hours = (truth["limit_reached_time_s"] - started_s) / HOUR_S
    fraction = truth["charge_mah"] / cell.capacity_mah
    assert 0.98 * 15 <= hours <= 15.0
    assert 0.98 <= fraction <= 1.0
    assert truth["lithium_content"] == pytest.approx(1.0 - fraction, abs=1e-12)
    assert truth["mode"] == "rest" and truth["current_a"] == 0.0 and truth["limit_reached"]
    # after the cut-off the charge no longer moves
    manual_clock.advance(HOUR_S)
    assert cell.charge_mah() == truth["charge_mah"]


def test_two_plateaus_near_4v70_and_4v75_shifted_by_the_polarisation(cell, manual_clock) -> None:
    current_a = cell.c_rate_current_a(1 / 15)
    cell.galvanostatic(current_a, 4.9)
    manual_clock.advance(2 * HOUR_S)  # polarisation settled (τ = 600 s)
    lithium, potential_v = sample_charge(cell, manual_clock, 30.0, 12.5 * HOUR_S)
    slope_v = np.gradient(potential_v, -lithium)  # dV/dQ in V per unit of x
    overpotential_v = charging_overpotential_v(cell, current_a)
    assert 0.005 < overpotential_v < 0.02
    plateaus_v = []
    for low, high in ((0.55, 0.9), (0.1, 0.45)):
        inside = (lithium > low) & (lithium < high)
        flattest = np.argmin(slope_v[inside])
        plateaus_v.append(potential_v[inside][flattest] - overpotential_v)
        assert slope_v[inside][flattest] < 0.2  # flat: < 0.2 V over the whole capacity
    assert plateaus_v == pytest.approx([4.70, 4.75], abs=0.003)
    # between the plateaus (x ≈ 0.5) the potential steps by about 50 mV
    step = (lithium > 0.47) & (lithium < 0.53)
    assert np.ptp(potential_v[step]) > 0.01


def test_sloping_start_and_steep_end(cell) -> None:
    ocv = cell.open_circuit_potential_v
    assert ocv(1.0) == pytest.approx(4.05)
    assert 4.05 < ocv(0.99) < ocv(0.98) < 4.3  # Mn3+/Mn4+: a few % of the capacity, sloping
    assert ocv(0.95) > 4.65
    assert ocv(0.003) > 4.9  # the last lithium takes the potential past the cut-off
    assert ocv(0.0) == pytest.approx(5.5)
    lithium = np.linspace(0.0, 1.0, 2001)
    assert np.all(np.diff([ocv(x) for x in lithium]) < 0)  # monotonic


def test_charging_potential_is_ocv_plus_ohmic_kinetic_and_diffusion_terms(
    cell, manual_clock
) -> None:
    current_a = cell.c_rate_current_a(1 / 15)
    cell.galvanostatic(current_a, 4.9)
    manual_clock.advance(5 * HOUR_S)
    truth = cell.ground_truth()
    p = cell.parameters
    above_ocv_v = truth["potential_v"] - truth["open_circuit_potential_v"]
    assert above_ocv_v == pytest.approx(charging_overpotential_v(cell, current_a), abs=1e-7)
    assert above_ocv_v > current_a * p["ohmic_resistance_ohm"]
    assert truth["diffusion_polarisation_v"] == pytest.approx(
        current_a * p["diffusion_resistance_ohm"], rel=1e-6)


def test_rest_drops_the_ohmic_and_kinetic_terms_then_relaxes_to_ocv(cell, manual_clock) -> None:
    current_a = cell.c_rate_current_a(1 / 15)
    cell.galvanostatic(current_a, 4.9)
    manual_clock.advance(5 * HOUR_S)
    lithium, charge_mah = cell.lithium_content(), cell.charge_mah()
    cell.rest()
    ocv_v = cell.open_circuit_potential_v()
    diffusion_v = current_a * cell.parameters["diffusion_resistance_ohm"]
    assert cell.potential_v() - ocv_v == pytest.approx(diffusion_v, rel=1e-6)
    manual_clock.advance(600.0)  # one time constant
    assert cell.potential_v() - ocv_v == pytest.approx(diffusion_v / math.e, rel=1e-6)
    manual_clock.advance(HOUR_S)
    assert abs(cell.potential_v() - ocv_v) < 1e-5
    assert cell.current_a() == 0.0
    assert cell.lithium_content() == lithium and cell.charge_mah() == charge_mah


def test_discharge_stops_at_a_lower_cut_off(cell, manual_clock) -> None:
    current_a = cell.c_rate_current_a(1 / 5)
    cell.galvanostatic(current_a, 4.9)
    manual_clock.advance(2.5 * HOUR_S)  # half charged
    cell.galvanostatic(-current_a, 4.5)
    manual_clock.advance(5 * HOUR_S)
    truth = cell.ground_truth()
    assert truth["limit_reached"] and truth["mode"] == "rest"
    assert 0.95 < truth["lithium_content"] < 0.99  # below the Ni plateau, in the Mn region
    assert truth["charge_mah"] == pytest.approx((1 - truth["lithium_content"]) * 0.735)


def test_a_charge_started_past_its_cut_off_rests_at_once(cell, manual_clock) -> None:
    cell.galvanostatic(1e-4, 4.0)
    assert cell.mode is CellMode.REST and cell.limit_reached
    assert cell.limit_reached_time_s == manual_clock.now()
    cell.galvanostatic(1e-4, 4.9)  # a new start clears the flag
    assert cell.mode is CellMode.GALVANOSTATIC and not cell.limit_reached


def test_potential_hold_is_compliance_limited_then_decays(cell, manual_clock) -> None:
    compliance_a = cell.parameters["compliance_current_a"]
    cell.potentiostatic(4.80)
    assert cell.current_a() == compliance_a  # 0.75 V above OCV: the potentiostat saturates
    currents_a = []
    for _ in range(30):  # 5 h: the Ni plateaus at 50-100 mV overpotential, kinetics-limited
        manual_clock.advance(600.0)
        currents_a.append(cell.current_a())
        assert cell.potential_v() == pytest.approx(4.80, abs=1e-9)
    assert currents_a[0] < compliance_a
    assert all(later < earlier for earlier, later in itertools.pairwise(currents_a))
    assert currents_a[-1] < 1e-6
    manual_clock.advance(10 * HOUR_S)
    truth = cell.ground_truth()
    assert 0.0 < truth["current_a"] < 1e-7
    assert truth["open_circuit_potential_v"] == pytest.approx(4.80, abs=1e-4)
    assert truth["lithium_content"] == pytest.approx(1 - truth["charge_mah"] / 0.735, abs=1e-9)


def test_holding_the_open_circuit_potential_draws_no_current(cell, manual_clock) -> None:
    cell.potentiostatic(4.05)
    manual_clock.advance(HOUR_S)
    assert abs(cell.current_a()) < 1e-9
    assert cell.lithium_content() == pytest.approx(1.0, abs=1e-6)


def test_lazy_integration_of_long_stretches_is_cheap(manual_clock, monkeypatch) -> None:
    """A 15 h charge and a 15 h hold cost a few thousand sub-steps (counted, not timed)."""
    steps = []
    step = LmnoCell._step_at_current
    monkeypatch.setattr(LmnoCell, "_step_at_current",
                        lambda self, *a: (steps.append(1), step(self, *a)))
    cell = LmnoCell(manual_clock)
    cell.galvanostatic(cell.c_rate_current_a(1 / 15), 4.9)
    manual_clock.advance(15 * HOUR_S)
    cell.advance()
    charge_steps = len(steps)
    cell.potentiostatic(4.75)
    manual_clock.advance(15 * HOUR_S)
    cell.advance()
    hold_steps = len(steps) - charge_steps
    assert cell.limit_reached_time_s is not None or cell.mode is CellMode.POTENTIOSTATIC
    print(f"15 h charge: {charge_steps} sub-steps; 15 h hold: {hold_steps}")
    assert charge_steps < 3000 and hold_steps < 3000


def test_same_seed_same_readings(manual_clock) -> None:
    def readings(seed: int) -> list[float]:
        cell = LmnoCell(manual_clock, seed=seed)
        cell.galvanostatic(1e-4, 4.9)
        return [cell.read_potential_v() for _ in range(20)]

    assert readings(11) == readings(11)
    assert readings(11) != readings(12)


def test_parameters_are_checked(manual_clock) -> None:
    with pytest.raises(ValueError, match="unknown lmno_cell parameters"):
        LmnoCell(manual_clock, {"capacity": 140.0})
    with pytest.raises(ValueError, match="plateau_1_potential_v"):
        LmnoCell(manual_clock, {"plateau_1_potential_v": 4.8, "plateau_2_potential_v": 4.75})
    for parameter in LmnoCell.PARAMETERS:
        assert parameter.admits(parameter.default), parameter
        assert parameter.unit, parameter


def test_ground_truth_is_json_serialisable(cell, manual_clock) -> None:
    import json

    cell.galvanostatic(1e-4, 4.9)
    manual_clock.advance(60.0)
    truth = json.loads(json.dumps(cell.ground_truth()))
    assert truth["mode"] == "galvanostatic" and truth["current_setpoint_a"] == 1e-4


def test_the_history_does_not_depend_on_how_often_the_cell_is_read(manual_clock) -> None:
    """Polling the cell must not change it: sub-steps, limit searches and the hold's step
    would otherwise split at every poll, and a dry run's charge and potentials would change
    in their last digits with the number of polls the machine's speed let through."""
    def history(poll_s: float | None) -> list[tuple[float, ...]]:
        clock = type(manual_clock)()
        origin_s = clock.now()
        cell = LmnoCell(clock, seed=5)
        seen = []
        for at_s, command in ((0.0, lambda: cell.galvanostatic(cell.c_rate_current_a(1.0), 4.9)),
                              (1900.0, lambda: cell.potentiostatic(4.72)),
                              (2500.0, cell.rest),
                              (3000.0, None)):
            while poll_s is not None and clock.now() - origin_s + poll_s < at_s:
                clock.advance(poll_s)
                cell.measure()
            clock.time_s = origin_s + at_s
            truth = cell.ground_truth()
            seen.append((truth["lithium_content"], truth["potential_v"], truth["charge_mah"],
                         truth["current_a"], truth["limit_reached_time_s"] or 0.0))
            if command is not None:
                command()
        return seen

    assert history(0.9) == history(None) == history(17.0)
