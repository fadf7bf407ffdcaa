"""The voltage-spectroscopy callback: loops from per-step SHO fits in events, all fitted at
the stop, maps and per-point lists; cycles after the first averaged; last take kept."""

from __future__ import annotations

import numpy as np
import pytest

from vegard.analysis.be_spectroscopy_map import BeSpectroscopyMapAnalysis, cycle_mean_response
from vegard.analysis.loop_fit import loop_model
from vegard.analysis.run_metadata import BeSpectroscopyMetadata
from vegard.plans.spectroscopy_waveforms import bipolar_triangle_v

DC_V = bipolar_triangle_v(8.0, 0.0, 64, 1)
PREFIX = "afm-voltage_sweep"


def loop_pm(negative_v: float, positive_v: float, switchable_pm: float = 10.0) -> np.ndarray:
    parameters = [-switchable_pm / 2, switchable_pm, negative_v, positive_v, 0.0,
                  0.3, 0.3, 0.3, 0.3]
    return loop_model(DC_V, np.array(parameters))


def event(index: int, out_of_field_pm: np.ndarray, cycles: int = 2) -> dict:
    z = np.tile(out_of_field_pm * np.exp(0.3j), cycles)
    in_field = np.tile(DC_V * 2.5 * np.exp(0.3j), cycles)
    data = {f"{PREFIX}-point_index": index, f"{PREFIX}-x_nm": 10.0 * index,
            f"{PREFIX}-y_nm": 0.0}
    for field, values in (("in_field", in_field), ("out_of_field", z)):
        data[f"{PREFIX}-{field}_amplitude_pm"] = list(np.abs(values))
        data[f"{PREFIX}-{field}_phase_rad"] = list(np.angle(values))
    return {"descriptor": "d1", "data": data}


def run(events: list[dict]) -> dict:
    analysis = BeSpectroscopyMapAnalysis()
    meta = BeSpectroscopyMetadata(device=PREFIX, points_x=2, points_y=2, width_nm=20.0,
                                  height_nm=20.0, dc_bias_v=list(DC_V), cycles=2, u_ac_v=1.0)
    analysis("start", {"uid": "u1", **meta.document()})
    analysis("descriptor", {"uid": "d1", "name": "primary"})
    for doc in events:
        analysis("event", doc)
    analysis("stop", {"exit_status": "success"})
    return analysis.result


def test_every_points_coercive_voltages_and_the_means_are_recovered():
    truths = [(-2.8, 3.1), (-3.2, 2.6), (-2.5, 2.9), (-3.0, 3.0)]
    result = run([event(i, loop_pm(*t)) for i, t in enumerate(truths)])
    per_point = result["per_point"]
    assert result["points_fitted"] == 4
    np.testing.assert_allclose(per_point["coercive_voltage_negative_v"],
                               [t[0] for t in truths], atol=0.05)
    np.testing.assert_allclose(per_point["coercive_voltage_positive_v"],
                               [t[1] for t in truths], atol=0.05)
    np.testing.assert_allclose(per_point["switchable_response_pm"], 10.0, rtol=1e-3)
    assert result["imprint_v_mean"] == pytest.approx(np.mean([sum(t) / 2 for t in truths]),
                                                     abs=0.01)
    assert result["coercive_voltage_negative_v_mean"] == pytest.approx(-2.875, abs=0.01)
    assert result["loop_area_pm_v_mean"] > 0 and result["r_squared_mean"] > 0.999


def test_a_point_taken_again_keeps_its_last_take_and_a_missing_one_is_none():
    result = run([event(0, loop_pm(-1.0, 1.0)), event(0, loop_pm(-2.0, 2.5)),
                  event(1, loop_pm(-3.0, 3.0)), event(2, loop_pm(-3.0, 3.0))])
    per_point = result["per_point"]
    assert result["points_measured"] == 3 and result["points_fitted"] == 3
    assert per_point["coercive_voltage_positive_v"][0] == pytest.approx(2.5, abs=0.01)
    assert per_point["coercive_voltage_positive_v"][3] is None and per_point["x_nm"][3] is None


def test_the_first_cycle_is_left_out_and_unfitted_steps_count_as_no_response():
    first, second, third = (np.full(8, v) for v in (100.0, 1.0, 3.0))
    amplitude = np.concatenate([first, second, third])
    amplitude[9] = np.nan
    mean = cycle_mean_response(amplitude, np.zeros(24), cycles=3)
    np.testing.assert_allclose(mean, [2.0, 1.5, 2, 2, 2, 2, 2, 2])
    np.testing.assert_allclose(cycle_mean_response(first[:4], np.zeros(4), 1), 100.0)
