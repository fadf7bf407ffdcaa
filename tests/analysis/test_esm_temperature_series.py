"""ESM temperature series from synthetic documents: region means, Arrhenius, Δc/c, R_total."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vegard.analysis.esm_temperature_series import (
    R_TOTAL_ASSUMPTION,
    EsmTemperatureSeriesAnalysis,
    concentration_swing,
    diffusion_length_m,
    total_resistance,
)
from vegard.analysis.grains import disk_mask
from vegard.simulators.esm_sample import EsmSample

R_GAS = 8.314462618
E_A_KJ_MOL = 27.0
A_HF_PM = 16.0
A_F_300K_PM = 5.0
PIXELS = 64
SIZE_NM = 800.0
EXCITATIONS = ["lf_dc_plus", "lf_dc_minus", "hf_lf"]
SETPOINTS_K = [250.0, 275.0, 300.0, 325.0, 350.0, 375.0, 400.0]
MATERIAL = {
    "poisson_ratio": 0.25, "vegard_coefficient": 0.03,
    "diffusion_coefficient_300k_cm2_per_s": 3e-6, "activation_energy_for_d_kj_mol": None,
    "mobile_ion_concentration_mol_per_m3": 11700.0, "ion_charge_number": 1,
}


@pytest.fixture(scope="module")
def surface():
    """Simulator topography (a big grain near the centre, small grains around) and the truth
    of which pixels belong to the big grain; positions in nm, row 0 at the lowest y."""
    sample = EsmSample(seed=1)
    centres_nm = (np.arange(PIXELS) + 0.5) * SIZE_NM / PIXELS - SIZE_NM / 2

    def at(shift_x_nm=0.0, shift_y_nm=0.0):
        properties = sample.properties(centres_nm[None, :] - shift_x_nm,
                                       centres_nm[:, None] - shift_y_nm)
        return properties["height_nm"], properties["grain_id"] == sample.largest_grain_id()

    return at


def a_f_grain_pm(temperature_k, energy_kj_mol=E_A_KJ_MOL):
    """a_f ∝ sqrt(D): exp(−E_A/(2RT)), 5 pm at 300 K."""
    exponent = -energy_kj_mol * 1e3 / (2 * R_GAS) * (1 / temperature_k - 1 / 300)
    return A_F_300K_PM * math.exp(exponent)


def series_maps(surface, temperature_k, rng, shift_nm=(0.0, 0.0), noise_pm=0.3):
    """Amplitude maps: A_HF 16 pm; a_f Arrhenius with 27 kJ/mol inside the big grain, a
    weaker, steeper one elsewhere (so a wrong region would show); LF± = A_HF + a_f ± 3 pm."""
    topography_nm, grain = surface(*shift_nm)
    a_f = np.where(grain, a_f_grain_pm(temperature_k), 0.3 * a_f_grain_pm(temperature_k, 45.0))

    def noise():
        return rng.normal(0.0, noise_pm, grain.shape)

    hf = A_HF_PM + noise()
    amplitudes = {"hf_lf": hf, "lf_dc_plus": hf + a_f + 3.0 + noise(),
                  "lf_dc_minus": hf + a_f - 3.0 + noise()}
    return topography_nm + rng.normal(0.0, 0.05, grain.shape), amplitudes


def start_doc(region=None, temperatures_k=SETPOINTS_K, material=MATERIAL):
    esm_map = {
        "device": "afm", "pixels_x": PIXELS, "pixels_y": PIXELS, "width_nm": SIZE_NM,
        "height_nm": SIZE_NM, "center_x_nm": 0.0, "center_y_nm": 0.0, "u_ac_v": 2.5,
        "u_dc_v": 2.5, "excitations": EXCITATIONS, "band_hz": [80e3, 320e3], "bins": 64,
        "averages": 20, "chirp_duration_s": 4e-3, "stream": "primary",
    }
    return {
        "uid": "run-1", "time": 0.0, "plan_name": "esm_temperature_series", "esm_map": esm_map,
        "temperature_stage": "temperature_stage", "monitor_stream": "temperature_monitor",
        "esm_series": {
            "temperatures_k": list(temperatures_k),
            "region": region or {"kind": "largest_grain"},
            "material": material, "drive_frequency_hz": 250e3,
            "tracking_stream": "drift_tracking",
        },
    }


def documents(surface, setpoints_k=SETPOINTS_K, region=None, lines_of_last=None,
              exit_status="success", shifts_nm=None, tracking=True, seed=0):
    rng = np.random.default_rng(seed)
    yield "start", start_doc(region, setpoints_k)
    for name in ("primary", "drift_tracking", "temperature_monitor"):
        yield "descriptor", {"uid": f"d-{name}", "run_start": "run-1", "name": name,
                             "data_keys": {}, "time": 0.0}
    seq, clock = 0, 0.0
    for index, setpoint in enumerate(setpoints_k):
        shift = (0.0, 0.0) if shifts_nm is None else shifts_nm[index]
        sample_temperature_k = setpoint - 0.2  # the sample lags the control sensor a little
        topography, amplitudes = series_maps(surface, sample_temperature_k, rng, shift)
        for t in range(3):
            clock += 10.0
            yield "event", {
                "uid": f"m{index}-{t}", "descriptor": "d-temperature_monitor", "seq_num": 0,
                "time": clock, "timestamps": {"temperature_stage-temperature_k": clock},
                "data": {"temperature_stage-temperature_k": setpoint + 0.1 * t,
                         "temperature_stage-heater_output_percent": 20.0},
            }
        if tracking:
            yield "event", {
                "uid": f"t{index}", "descriptor": "d-drift_tracking", "seq_num": index + 1,
                "time": clock, "timestamps": {},
                "data": {"tracking-map_index": index, "tracking-offset_x_nm": 2.0 * index,
                         "tracking-offset_y_nm": -1.0 * index, "tracking-peak_quality": 0.9},
            }
        last = index == len(setpoints_k) - 1
        rows = range(lines_of_last if last and lines_of_last is not None else PIXELS)
        for row in rows:
            seq += 1
            clock += 1.0
            data = {"afm-row": row, "afm-map_index": index,
                    "afm-topography_nm": topography[row],
                    "temperature_stage-sample_temperature_k": sample_temperature_k,
                    "temperature_stage-temperature_k": setpoint,
                    "temperature_stage-setpoint_k": setpoint}
            for e in EXCITATIONS:
                data[f"afm-{e}_amplitude_pm"] = amplitudes[e][row]
                data[f"afm-{e}_resonance_frequency_hz"] = np.full(PIXELS, 250e3)
                data[f"afm-{e}_quality_factor"] = np.full(PIXELS, 80.0)
                data[f"afm-{e}_phase_rad"] = np.full(PIXELS, 0.3)
                data[f"afm-{e}_r_squared"] = np.full(PIXELS, 0.99)
                data[f"afm-{e}_converged"] = np.ones(PIXELS, dtype=bool)
            yield "event", {"uid": f"e{seq}", "descriptor": "d-primary", "seq_num": seq,
                            "time": clock, "data": data, "timestamps": {}, "filled": {}}
    yield "stop", {"uid": "stop", "run_start": "run-1", "time": clock + 1,
                   "exit_status": exit_status}


def run(docs, figures_directory_for=None):
    analysis = EsmTemperatureSeriesAnalysis(figures_directory_for)
    for name, doc in docs:
        analysis(name, doc)
    return analysis


def through_json(docs):
    def to_lists(value):
        return value.tolist() if isinstance(value, np.ndarray) else value

    return [(name, json.loads(json.dumps(doc, default=to_lists))) for name, doc in docs]


@pytest.fixture(scope="module")
def full_series(surface):
    docs = list(documents(surface))
    return docs, run(docs)


def test_activation_energy_of_a_f_is_recovered_and_a_lf_shows_much_less(full_series):
    result = full_series[1].result
    assert result["maps_recorded"] == 7 and result["maps_incomplete"] == []
    assert result["activation_energy_kj_mol"] == pytest.approx(E_A_KJ_MOL, abs=0.5)
    assert 0 < result["activation_energy_stderr_kj_mol"] < 0.5
    apparent = result["apparent_activation_energy_lf_kj_mol"]
    assert 0 < apparent < 0.6 * E_A_KJ_MOL
    assert result["temperatures_k"] == pytest.approx([t - 0.2 for t in SETPOINTS_K])
    assert result["arrhenius_fit_a_f"]["points_used"] == 7
    assert result["exit_status"] == "success"
    json.dumps(result, allow_nan=False)


def test_region_means_per_temperature(full_series):
    result = full_series[1].result
    assert list(result["a_f_pm_by_temperature_k"]) == ["250", "275", "300", "325", "350",
                                                       "375", "400"]
    for setpoint in SETPOINTS_K:
        key = f"{setpoint:g}"
        a_f = a_f_grain_pm(setpoint - 0.2)
        assert result["a_f_pm_by_temperature_k"][key] == pytest.approx(a_f, abs=0.05)
        assert result["a_hf_pm_by_temperature_k"][key] == pytest.approx(A_HF_PM, abs=0.05)
        assert result["a_lf_pm_by_temperature_k"][key] == pytest.approx(A_HF_PM + a_f, abs=0.05)
        assert result["region_pixels_by_temperature_k"][key] > 700  # the big grain: ~1260 px
    assert result["a_hf_variation"] < 0.01
    assert result["scan_offsets_nm_by_temperature_k"]["275"] == [2.0, -1.0]
    assert result["region"] == {"kind": "largest_grain", "erode_px": 2}
    assert result["monitor_points"] == 21


def test_concentration_swing_and_resistance_follow_the_hand_calculation(full_series):
    result = full_series[1].result
    a_f_300k_pm = result["a_f_300k_pm"]
    assert a_f_300k_pm == pytest.approx(A_F_300K_PM, rel=0.01)
    assert result["a_f_300k_source"] == "arrhenius_fit"
    # by hand: L_D = sqrt(D/2πf), Δc/c = a_f/(2(1+ν)β L_D), V = 2/3 π L_D³, R = U/(2πf zF Δc/c c V)
    length_m = math.sqrt(3e-6 * 1e-4 / (2 * math.pi * 250e3))
    delta = a_f_300k_pm * 1e-12 / (2 * 1.25 * 0.03 * length_m)
    volume_m3 = 2 / 3 * math.pi * length_m**3
    resistance = 2.5 / (2 * math.pi * 250e3 * 96485.33212 * delta * 11700.0 * volume_m3)
    assert result["diffusion_length_300k_nm"] == pytest.approx(length_m * 1e9, rel=1e-9)
    assert result["delta_c_over_c_300k"] == pytest.approx(delta, rel=1e-9)
    assert result["probed_volume_m3"] == pytest.approx(volume_m3, rel=1e-9)
    assert result["r_total_ohm"] == pytest.approx(resistance, rel=1e-9)
    # the paper's numbers: Δc/c ≈ 0.005, R_total ≈ 5·10¹⁰ Ω
    assert 0.004 < result["delta_c_over_c_300k"] < 0.006
    assert 3e10 < result["r_total_ohm"] < 8e10
    assert result["r_total_assumption"] == R_TOTAL_ASSUMPTION
    # with E_A of D taken from the a_f fit, Δc/c is the same at every temperature here
    swings = result["delta_c_over_c_by_temperature_k"]
    assert result["activation_energy_for_d_source"] == "measured_a_f"
    assert swings["250"] == pytest.approx(swings["400"], rel=0.02)


def test_physics_helpers_by_hand():
    assert diffusion_length_m(3e-10, 250e3) == pytest.approx(1.3819e-8, rel=1e-4)
    assert concentration_swing(5.0, 0.25, 0.03, 1.3819e-8) == pytest.approx(4.8245e-3, rel=1e-4)
    estimate = total_resistance(2.5, 250e3, 4.8245e-3, 11700.0, 1, 1.3819e-8)
    assert estimate.probed_volume_m3 == pytest.approx(5.527e-24, rel=1e-3)
    assert estimate.r_total_ohm == pytest.approx(5.32e10, rel=0.01)
    assert math.isnan(total_resistance(2.5, 250e3, 0.0, 11700.0, 1, 1e-8).r_total_ohm)


def test_300k_need_not_be_a_setpoint(surface):
    setpoints = [260.0, 290.0, 330.0, 370.0]
    result = run(documents(surface, setpoints_k=setpoints)).result
    assert "300" not in result["a_f_pm_by_temperature_k"]
    assert result["a_f_300k_pm"] == pytest.approx(a_f_grain_pm(300.0), rel=0.02)
    assert result["activation_energy_kj_mol"] == pytest.approx(E_A_KJ_MOL, abs=0.5)


def test_replay_from_json_gives_the_same_result(full_series):
    docs, analysis = full_series
    replayed = run(through_json(docs)).result
    assert replayed == analysis.result
    assert json.loads(json.dumps(analysis.result, allow_nan=False)) == analysis.result


def test_a_failed_run_analyses_the_complete_maps(surface):
    setpoints = SETPOINTS_K[:3]
    result = run(documents(surface, setpoints_k=setpoints, lines_of_last=20,
                           exit_status="fail")).result
    assert result["exit_status"] == "fail"
    assert result["maps_recorded"] == 2 and result["maps_incomplete"] == [2]
    assert list(result["a_f_pm_by_temperature_k"]) == ["250", "275"]
    assert result["activation_energy_kj_mol"] == pytest.approx(E_A_KJ_MOL, abs=1.0)
    assert result["activation_energy_stderr_kj_mol"] is None  # two points: no scatter
    assert [m["lines_recorded"] for m in result["maps"]] == [64, 64, 20]
    json.dumps(result, allow_nan=False)


def test_one_map_is_not_enough_for_an_arrhenius_fit(surface):
    result = run(documents(surface, setpoints_k=[300.0, 325.0], lines_of_last=5,
                           exit_status="abort")).result
    assert result["maps_recorded"] == 1
    assert result["activation_energy_kj_mol"] is None
    assert result["apparent_activation_energy_lf_kj_mol"] is None
    # a single map at 300 K still gives Δc/c (said so in the source)
    assert result["a_f_300k_source"] == "measured_map_within_10_k"
    assert result["delta_c_over_c_300k"] == pytest.approx(0.0048, rel=0.05)
    json.dumps(result, allow_nan=False)


def test_no_maps_at_all(tmp_path):
    docs = [("start", start_doc()), ("stop", {"uid": "s", "run_start": "run-1",
                                               "exit_status": "abort"})]
    result = run(docs, lambda uid: tmp_path / uid).result
    assert result["maps_recorded"] == 0 and result["activation_energy_kj_mol"] is None
    assert result["figures"] == [] and result["r_total_ohm"] is None
    json.dumps(result, allow_nan=False)


def test_disk_region_follows_the_sample_without_tracking(surface):
    """Maps drift by up to 5 px and no tracking events: the disk, measured against the first
    map's topography, stays on the big grain (a fixed disk would reach out of it)."""
    shifts_nm = [(12.5 * i * 0.8, -12.5 * i * 0.5) for i in range(len(SETPOINTS_K))]
    region = {"kind": "disk", "center_nm": [40.0, -30.0], "radius_nm": 190.0}
    _, last_grain = surface(*shifts_nm[-1])
    fixed_disk = disk_mask((PIXELS, PIXELS), (-400.0, 400.0, -400.0, 400.0), (40.0, -30.0), 190.0)
    assert (fixed_disk & ~last_grain).sum() > 50  # a disk that stayed put would leave the grain
    result = run(documents(surface, region=region, shifts_nm=shifts_nm, tracking=False)).result
    assert result["activation_energy_kj_mol"] == pytest.approx(E_A_KJ_MOL, abs=0.5)
    last = result["maps"][-1]
    assert last["residual_shift_nm"] == pytest.approx([60.0, -37.5], abs=4.0)
    assert result["scan_offsets_nm_by_temperature_k"] == {}
    assert result["region"]["kind"] == "disk"


def test_figures_live_and_at_the_end(surface, tmp_path):
    docs = list(documents(surface, setpoints_k=SETPOINTS_K[:3]))
    analysis = EsmTemperatureSeriesAnalysis(lambda uid: tmp_path / uid)
    arrhenius_png = tmp_path / "run-1" / "esm_series_arrhenius.png"
    seen_during_run = False
    for name, doc in docs:
        analysis(name, doc)
        if name == "event" and doc["data"].get("afm-row") == 0 and doc["data"][
                "afm-map_index"] == 2:  # third map begun: two finished, their plot drawn
            analysis.figures_drawn()  # drawn in a figure process: wait for it
            seen_during_run = arrhenius_png.exists()
            assert analysis.latest["maps_finished"] == 2
            assert analysis.latest["activation_energy_kj_mol"] == pytest.approx(27, abs=1.0)
    assert seen_during_run
    result = analysis.result
    names = sorted(p.rsplit("/", 1)[-1] for p in result["figures"])
    assert names == ["esm_series_amplitudes.png", "esm_series_arrhenius.png",
                     "esm_series_maps.png", "esm_series_temperature.png"]
    for path in result["figures"]:
        assert (tmp_path / "run-1" / path.rsplit("/", 1)[-1]).stat().st_size > 1000
    with np.load(result["maps_file"]) as saved:
        assert saved["a_f_pm"].shape == (3, PIXELS, PIXELS)
        assert saved["region_mask"].shape == (3, PIXELS, PIXELS)
        assert list(saved["map_index"]) == [0, 1, 2]


def test_no_figures_without_a_directory(surface, tmp_path):
    result = run(documents(surface, setpoints_k=SETPOINTS_K[:2])).result
    assert result["figures"] == [] and result["maps_file"] is None
    assert not any(tmp_path.iterdir())


def test_activation_energy_of_d_from_the_material_sets_the_diffusion_lengths(surface):
    material = {**MATERIAL, "activation_energy_for_d_kj_mol": 23.0}
    docs = list(documents(surface, setpoints_k=[250.0, 300.0]))
    docs[0] = ("start", start_doc(temperatures_k=[250.0, 300.0], material=material))
    result = run(docs).result
    assert result["activation_energy_for_d_source"] == "material"
    temperature_k = 249.8
    d_m2_per_s = 3e-10 * math.exp(-23e3 / R_GAS * (1 / temperature_k - 1 / 300))
    length_m = math.sqrt(d_m2_per_s / (2 * math.pi * 250e3))
    expected = result["a_f_pm_by_temperature_k"]["250"] * 1e-12 / (2 * 1.25 * 0.03 * length_m)
    assert result["delta_c_over_c_by_temperature_k"]["250"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("region", [{"kind": "square"}, {"kind": "disk", "radius_nm": 50.0}])
def test_a_region_not_understood_is_refused_at_start(region):
    with pytest.raises(ValueError):
        EsmTemperatureSeriesAnalysis()("start", start_doc(region=region))


def test_a_retaken_line_replaces_the_interrupted_take_and_its_temperature(surface):
    """The plan re-takes a line that ended out of the temperature band; only the last take
    of a row counts, its data and its temperature alike."""
    docs = list(documents(surface))
    first_line = next(i for i, (name, doc) in enumerate(docs)
                      if name == "event" and doc["descriptor"] == "d-primary")
    interrupted = json.loads(json.dumps(docs[first_line][1], default=lambda v: v.tolist()))
    interrupted["uid"] = "interrupted"
    interrupted["data"]["temperature_stage-sample_temperature_k"] += 15.0  # a runaway
    for e in EXCITATIONS:
        interrupted["data"][f"afm-{e}_amplitude_pm"] = [1e6] * PIXELS  # nonsense if kept
    docs.insert(first_line, ("event", interrupted))
    with_retake = run(docs).result
    clean = run(documents(surface)).result
    assert with_retake["temperatures_k"] == clean["temperatures_k"]
    assert with_retake["a_f_pm_by_temperature_k"] == clean["a_f_pm_by_temperature_k"]
