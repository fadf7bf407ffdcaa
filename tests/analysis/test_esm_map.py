"""ESM maps from `three_excitation_map` documents: assembly, compensation, summary, files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vegard.analysis.esm_compensation import compensate, region_mean, region_std
from vegard.analysis.esm_map import EsmMapAnalysis, EsmMapAssembler, level_lines

EXCITATIONS = ["lf_dc_plus", "lf_dc_minus", "hf_lf"]
PIXELS_X, PIXELS_Y = 8, 6  # not square, so a transposed map cannot pass


def esm_map(**changes):
    setup = {
        "device": "afm", "pixels_x": PIXELS_X, "pixels_y": PIXELS_Y, "width_nm": 800.0,
        "height_nm": 600.0, "center_x_nm": 100.0, "center_y_nm": 0.0, "u_ac_v": 1.0,
        "u_dc_v": 1.0, "excitations": EXCITATIONS, "band_hz": [80000.0, 320000.0], "bins": 64,
        "averages": 20, "chirp_duration_s": 4e-3, "stream": "primary",
    }
    setup.update(changes)
    return setup


def known_maps(rng=None, noise_pm=0.0):
    """Amplitudes that tell rows and columns apart: A = base + 1·row + 0.1·column (pm)."""
    rows, columns = np.mgrid[0:PIXELS_Y, 0:PIXELS_X]
    position = 1.0 * rows + 0.1 * columns

    def noise():
        return rng.normal(0.0, noise_pm, position.shape) if rng is not None else 0.0

    amplitudes = {
        "lf_dc_plus": 20.0 + position + noise(),
        "lf_dc_minus": 16.0 + position + noise(),
        "hf_lf": 15.0 + position + noise(),
    }
    return {
        "topography_nm": 3.0 * rows + 0.01 * columns,
        "amplitude_pm": amplitudes,
        "resonance_frequency_hz": {e: 250e3 + 100.0 * position for e in EXCITATIONS},
        "quality_factor": {e: np.full(position.shape, 80.0) for e in EXCITATIONS},
        "phase_rad": {e: np.full(position.shape, 0.1) for e in EXCITATIONS},
        "r_squared": {e: np.full(position.shape, 0.95) for e in EXCITATIONS},
        "converged": {e: np.ones(position.shape, dtype=bool) for e in EXCITATIONS},
    }


def documents(maps, rows=None, exit_status="success", map_index=None):
    """start, descriptors, one event per line (a monitor stream to ignore), stop."""
    rows = range(PIXELS_Y) if rows is None else rows
    yield "start", {"uid": "run-1", "time": 0.0, "plan_name": "three_excitation_map",
                    "esm_map": esm_map()}
    yield "descriptor", {"uid": "d-primary", "run_start": "run-1", "name": "primary",
                         "data_keys": {}, "time": 0.0}
    yield "descriptor", {"uid": "d-monitor", "run_start": "run-1", "name": "temperature_monitor",
                         "data_keys": {}, "time": 0.0}
    for seq, row in enumerate(rows, start=1):
        data = {"afm-row": row, "afm-topography_nm": maps["topography_nm"][row],
                "temperature_stage-sample_temperature_k": 300.0, "afm-spectra": "datum-id"}
        if map_index is not None:
            data["afm-map_index"] = map_index
        for e in EXCITATIONS:
            for quantity in ("amplitude_pm", "resonance_frequency_hz", "quality_factor",
                             "phase_rad", "r_squared", "converged"):
                data[f"afm-{e}_{quantity}"] = maps[quantity][e][row]
        yield "event", {"uid": f"e{seq}", "descriptor": "d-primary", "seq_num": seq,
                        "time": float(seq), "data": data, "timestamps": {}, "filled": {}}
        yield "event", {"uid": f"m{seq}", "descriptor": "d-monitor", "seq_num": seq,
                        "time": float(seq), "data": {"afm-row": 999}, "timestamps": {}}
    yield "stop", {"uid": "stop-1", "run_start": "run-1", "time": 99.0,
                   "exit_status": exit_status}


def run(docs, figures_directory_for=None):
    analysis = EsmMapAnalysis(figures_directory_for)
    for name, doc in docs:
        analysis(name, doc)
    return analysis


def through_json(docs):
    def to_lists(value):
        return value.tolist() if isinstance(value, np.ndarray) else value

    return [(name, json.loads(json.dumps(doc, default=to_lists))) for name, doc in docs]


def test_compensation_arithmetic():
    maps = compensate(np.array([[4.0, 6.0]]), np.array([[2.0, np.nan]]), np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(maps.a_lf_pm, [[3.0, np.nan]])
    np.testing.assert_allclose(maps.a_f_pm, [[2.0, np.nan]])
    assert region_mean(np.array([1.0, np.nan, 3.0])) == 2.0
    assert region_mean(np.array([1.0, 5.0, 3.0]), np.array([True, False, True])) == 2.0
    assert np.isnan(region_mean(np.array([np.nan])))
    assert np.isnan(region_std(np.array([1.0])))


def test_line_levelling_removes_per_line_offsets():
    topography_nm = np.array([[1.0, 2.0, 9.0], [10.0, 11.0, 12.0], [np.nan] * 3])
    levelled = level_lines(topography_nm)
    np.testing.assert_allclose(levelled[:2], [[-1.0, 0.0, 7.0], [-1.0, 0.0, 1.0]])
    assert np.isnan(levelled[2]).all()


def test_lines_land_at_their_row_and_column():
    maps = known_maps()
    assembler = EsmMapAssembler(PIXELS_X, PIXELS_Y, EXCITATIONS)
    for row in (4, 1):
        data = {"afm-topography_nm": list(maps["topography_nm"][row])}
        for e in EXCITATIONS:
            for quantity in ("amplitude_pm", "resonance_frequency_hz", "quality_factor",
                             "phase_rad", "r_squared", "converged"):
                data[f"afm-{e}_{quantity}"] = maps[quantity][e][row]
        assembler.add_row(row, data)
    assert assembler.rows_done == 2
    assembled = assembler.maps["lf_dc_plus_amplitude_pm"]
    assert assembled.shape == (PIXELS_Y, PIXELS_X)
    assert assembled[4, 7] == pytest.approx(20.0 + 4.0 + 0.7)
    assert assembled[1, 2] == pytest.approx(20.0 + 1.0 + 0.2)
    assert np.isnan(assembled[0]).all() and not assembler.maps["hf_lf_converged"][0].any()
    np.testing.assert_allclose(assembler.compensated().a_f_pm[[1, 4]], 3.0)
    with pytest.raises(ValueError):
        assembler.add_row(PIXELS_Y, data)


def test_known_maps_give_known_means():
    analysis = run(documents(known_maps()))
    result = analysis.result
    mean_position = 1.0 * (PIXELS_Y - 1) / 2 + 0.1 * (PIXELS_X - 1) / 2
    assert result["a_f_mean_pm"] == pytest.approx(3.0)
    assert result["a_lf_mean_pm"] == pytest.approx(18.0 + mean_position)
    assert result["a_lf_plus_mean_pm"] == pytest.approx(20.0 + mean_position)
    assert result["a_lf_minus_mean_pm"] == pytest.approx(16.0 + mean_position)
    assert result["a_hf_mean_pm"] == pytest.approx(15.0 + mean_position)
    assert result["a_f_std_pm"] == pytest.approx(0.0, abs=1e-9)
    assert result["resonance_frequency_mean_hz"] == pytest.approx(250e3 + 100.0 * mean_position)
    assert result["quality_factor_mean"] == pytest.approx(80.0)
    assert result["fit_r_squared_median"] == pytest.approx(0.95)
    assert result["pixels"] == result["pixels_fitted"] == PIXELS_X * PIXELS_Y
    assert result["lines_recorded"] == PIXELS_Y
    assert result["topography_rms_nm"] == pytest.approx(np.std(0.01 * np.arange(PIXELS_X)))
    assert result["exit_status"] == "success"
    assert result["figures"] == [] and result["maps_file"] is None
    assert analysis.latest["rows_done"] == PIXELS_Y
    assert analysis.latest["a_f_mean_pm"] == pytest.approx(3.0)
    json.dumps(result, allow_nan=False)


def test_pure_electrostatics_compensates_to_zero_within_the_noise():
    maps = known_maps()
    rng = np.random.default_rng(7)
    noise_pm = 0.2
    for e in EXCITATIONS:  # LF+ = LF− = HF: no Vegard strain, only noise
        maps["amplitude_pm"][e] = 15.0 + rng.normal(0.0, noise_pm, (PIXELS_Y, PIXELS_X))
    result = run(documents(maps)).result
    a_f_noise_pm = noise_pm * np.sqrt(1.5)  # half of two LF noises, minus the HF noise
    assert abs(result["a_f_mean_pm"]) < 4 * a_f_noise_pm / np.sqrt(PIXELS_X * PIXELS_Y)
    assert result["a_f_std_pm"] == pytest.approx(a_f_noise_pm, rel=0.3)


def test_failed_fits_are_counted_and_left_out_of_the_means():
    maps = known_maps()
    maps["converged"]["hf_lf"][2, 3] = False
    maps["amplitude_pm"]["hf_lf"][2, 3] = 1e6  # a non-converged fit keeps a wild value
    maps["amplitude_pm"]["lf_dc_minus"][5, 0] = np.nan
    maps["converged"]["lf_dc_plus"][0, :] = False
    maps["amplitude_pm"]["lf_dc_plus"][0, :] = -1e6
    analysis = run(documents(maps))
    result = analysis.result
    assert result["pixels_fitted"] == PIXELS_X * PIXELS_Y - 2 - PIXELS_X
    assert result["a_f_mean_pm"] == pytest.approx(3.0)
    assert result["a_f_std_pm"] == pytest.approx(0.0, abs=1e-9)
    a_f_pm = analysis.assemblers[0].compensated().a_f_pm
    assert np.isnan(a_f_pm[2, 3]) and np.isnan(a_f_pm[5, 0]) and np.isnan(a_f_pm[0]).all()
    json.dumps(result, allow_nan=False)


def test_a_failed_run_keeps_the_missing_rows_empty(tmp_path):
    half = PIXELS_Y // 2
    analysis = run(documents(known_maps(), rows=range(half), exit_status="fail"),
                   lambda uid: tmp_path / uid)
    result = analysis.result
    assert result["exit_status"] == "fail"
    assert result["lines_recorded"] == half
    assert result["pixels_fitted"] == half * PIXELS_X
    assert result["a_f_mean_pm"] == pytest.approx(3.0)
    with np.load(result["maps_file"]) as saved:
        assert np.isnan(saved["a_f_pm"][half:]).all()
        assert not saved["fitted"][half:].any() and saved["row_recorded"][:half].all()
    json.dumps(result, allow_nan=False)


def test_no_lines_at_all_gives_empty_json_safe_result(tmp_path):
    analysis = run(documents(known_maps(), rows=[], exit_status="abort"),
                   lambda uid: tmp_path / uid)
    result = analysis.result
    assert result["lines_recorded"] == 0 and result["pixels_fitted"] == 0
    assert result["a_f_mean_pm"] is None and result["figures"] == []
    json.dumps(result, allow_nan=False)


def test_replay_from_json_gives_the_same_result():
    maps = known_maps(np.random.default_rng(3), noise_pm=0.3)
    maps["converged"]["lf_dc_minus"][1, 1] = False
    maps["amplitude_pm"]["hf_lf"][4, 6] = np.nan
    docs = list(documents(maps, rows=[0, 2, 3, 5]))
    live = run(docs).result
    replayed = run(through_json(docs)).result
    assert replayed == live
    assert json.loads(json.dumps(live, allow_nan=False)) == live


def test_event_pages_give_the_same_result_as_events():
    from event_model import pack_event_page

    docs = list(documents(known_maps(np.random.default_rng(5), noise_pm=0.1)))
    events = [doc for name, doc in docs if name == "event" and doc["descriptor"] == "d-primary"]
    start_and_descriptors = [d for d in docs if d[0] != "event"][:3]
    paged = [*start_and_descriptors, ("event_page", pack_event_page(*events)), docs[-1]]
    assert run(paged).result == run(docs).result


def test_figures_and_maps_file_written_when_a_directory_is_given(tmp_path):
    result = run(documents(known_maps()), lambda uid: tmp_path / uid).result
    assert [p.rsplit("/", 1)[-1] for p in result["figures"]] == ["esm_map.png",
                                                                  "esm_resonance.png"]
    for path in result["figures"]:
        assert (tmp_path / "run-1" / path.rsplit("/", 1)[-1]).stat().st_size > 1000
    assert result["maps_file"] == str(tmp_path / "run-1" / "esm_maps.npz")
    with np.load(result["maps_file"]) as saved:
        for name in ("topography_nm", "topography_levelled_nm", "a_lf_pm", "a_hf_pm", "a_f_pm",
                     "lf_dc_plus_amplitude_pm", "hf_lf_resonance_frequency_hz",
                     "lf_dc_minus_converged", "fitted", "resonance_frequency_hz"):
            assert saved[name].shape == (PIXELS_Y, PIXELS_X)
        np.testing.assert_allclose(saved["a_f_pm"], 3.0)
        assert saved["lf_dc_plus_amplitude_pm"][4, 7] == pytest.approx(24.7)
        np.testing.assert_allclose(saved["extent_nm"], [-300.0, 500.0, -300.0, 300.0])
        assert saved["x_nm"][0] == pytest.approx(-250.0) and saved["y_nm"][-1] == 250.0
        assert list(saved["excitations"]) == EXCITATIONS
    json.dumps(result, allow_nan=False)


def test_no_figures_without_a_directory(tmp_path):
    result = run(documents(known_maps())).result
    assert result["figures"] == [] and result["maps_file"] is None
    assert not any(tmp_path.iterdir())


def test_map_index_keeps_several_maps_apart():
    first = [d for d in documents(known_maps()) if d[0] != "stop"]
    other = known_maps()
    other["amplitude_pm"]["hf_lf"] = other["amplitude_pm"]["hf_lf"] - 2.0
    second = [d for d in documents(other, map_index=1) if d[0] == "event"]
    analysis = run([*first, *second, ("stop", {"uid": "s", "run_start": "run-1",
                                               "exit_status": "success"})])
    result = analysis.result
    assert sorted(analysis.assemblers) == [0, 1]
    assert result["a_f_mean_pm"] == pytest.approx(3.0)
    assert [m["a_f_mean_pm"] for m in result["maps"]] == pytest.approx([3.0, 5.0])
    json.dumps(result, allow_nan=False)


def test_a_start_document_that_breaks_the_contract_is_refused_with_the_field_named() -> None:
    """The plan and the analysis share one model of the `esm_map` key: a missing or
    mistyped field fails at the start document, not as a KeyError half-way through."""
    import pydantic
    import pytest

    from vegard.analysis.run_metadata import EsmMapMetadata

    assert EsmMapMetadata.of({"esm_map": esm_map()}).extent_nm() == (-300.0, 500.0, -300.0, 300.0)
    broken = esm_map()
    del broken["pixels_y"]
    with pytest.raises(pydantic.ValidationError, match="pixels_y"):
        EsmMapAnalysis().start({"uid": "r", "esm_map": broken})
