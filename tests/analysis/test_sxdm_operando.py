"""Operando SXDM analysis: line-by-line COM maps of a simulated crystal while a cell charges.

One synthetic run, built as bluesky would record it: the LMNO crystal simulator's frames for
two maps (lithium contents 0.9 and 0.7, i.e. two instants of the simulated C/15 charge), one
`primary` event per fly line (one row at one eta), the frames in HDF5 through
`Hdf5StreamWriter` (stream_datum just before its event), and the potentiostat monitor stream
from the cell simulator, interleaved in instrument time.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
from event_model import compose_run

from vegard.analysis.sxdm_maps import q_centres, sxdm_maps, tilt_altitude_azimuth_deg
from vegard.analysis.sxdm_operando import (
    SxdmOperandoAnalysis,
    charge_plateaus_v,
    map_file_name,
)
from vegard.diffraction_geometry import DiffractometerGeometry, pixel_q
from vegard.instruments.hdf5_stream import Hdf5StreamWriter
from vegard.simulators.lmno_cell_model import LmnoCell
from vegard.simulators.lmno_crystal import LmnoCrystal, tilt_normal
from vegard.simulators.nanodiffraction import (
    NanoBeam,
    detector_setting_for,
    frames,
    rocking_eta_deg,
)

GEOMETRY = DiffractometerGeometry(distance_m=1.4, center_row=255.0, center_col=260.0)
X_UM = np.linspace(-1.6, 1.9, 10)
Y_UM = np.linspace(-1.8, 1.6, 10)
ROI_SHAPE = (48, 48)
POINTS, STEP_DEG = 30, 0.016
X_LI = (0.9, 0.7)  # both in the Li1 solid solution: one peak, d400 shrinking with x
PHASE = "li1"
EXPOSURE_S, FLUX = 0.01, 1e9
MAP_DURATION_S = 1800.0
MONITOR_PERIOD_S = 120.0
T0_S = 1.7e9
FRAMES_KEY = "area_detector-frames"
THRESHOLD = 1.0


class _Clock:
    """Instrument time under the test's control (the cell integrates up to `now()`)."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def _cell_curve() -> dict[str, np.ndarray]:
    """The cell simulator charged at C/15 to 4.9 V, read every `MONITOR_PERIOD_S`."""
    clock = _Clock(T0_S)
    cell = LmnoCell(clock, seed=1)
    cell.galvanostatic(cell.c_rate_current_a(1 / 15), 4.9)
    readings: dict[str, list] = {k: [] for k in ("time_s", "potential_v", "current_a",
                                                 "charge_mah", "mode", "x")}
    for t in T0_S + np.arange(0.0, 16.5 * 3600, MONITOR_PERIOD_S):
        clock.t = float(t)
        potential, current, charge, mode = cell.measure()
        for key, value in zip(readings, (t, potential, current, charge, str(mode),
                                         cell.lithium_content()), strict=True):
            readings[key].append(value)
    return {k: np.asarray(v) for k, v in readings.items()}


def _truth_g(crystal: LmnoCrystal, x_li: float, etas: np.ndarray) -> np.ndarray:
    """The footprint-weighted mean G per pixel, (ny, nx, 3) (as in test_sxdm_maps)."""
    gx, gy = np.meshgrid(X_UM, Y_UM)
    points = np.stack((gx, gy), axis=-1).reshape(-1, 2)
    offsets, beam_weight = NanoBeam().footprint(etas.mean())
    state = crystal.maps(x_li, points[:, None, :] + offsets)
    weight = beam_weight * state["strength"] * state[f"{PHASE}_fraction"]
    g = (2 * math.pi / state[f"{PHASE}_d400_angstrom"])[..., None] * tilt_normal(
        state["tilt_x_deg"], state["tilt_y_deg"])
    with np.errstate(invalid="ignore"):
        g_truth = np.einsum("ps,psi->pi", weight, g) / weight.sum(axis=1)[:, None]
    return g_truth.reshape(Y_UM.size, X_UM.size, 3)


def _sxdm_start(roi) -> dict:
    return {
        "geometry": {"distance_m": GEOMETRY.distance_m, "pixel_size_m": GEOMETRY.pixel_size_m,
                     "pixels": list(GEOMETRY.pixels), "center_row": GEOMETRY.center_row,
                     "center_col": GEOMETRY.center_col},
        "roi": [roi.row_start, roi.col_start, roi.n_rows, roi.n_cols],
        "map": {"x_um": X_UM.tolist(), "y_um": Y_UM.tolist()},
        "rocking": {"points": POINTS, "step_deg": STEP_DEG},
        "detector": "area_detector", "diffractometer": "diffractometer",
        "cell_stream": "potentiostat_monitor", "mask_fraction": 0.2, "exposure_s": 0.01,
        "threshold_counts": THRESHOLD,
    }


def _scalar(dtype: str = "number") -> dict:
    return {"source": "sim", "dtype": dtype, "shape": []}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """Documents of a two-map operando run, the frames per map and the truth."""
    directory = tmp_path_factory.mktemp("sxdm_run")
    crystal = LmnoCrystal(seed=0)
    cell = _cell_curve()
    rng = np.random.default_rng(5)
    gx, gy = np.meshgrid(X_UM, Y_UM)
    points = np.stack((gx, gy), axis=-1).reshape(-1, 2)
    maps = []
    for index, x_li in enumerate(X_LI):
        setting = detector_setting_for(crystal.d400_mean_angstrom(x_li, PHASE), GEOMETRY,
                                       ROI_SHAPE)
        etas = rocking_eta_deg(setting.eta_center_deg, POINTS, STEP_DEG)
        counts = frames(crystal, x_li, points, etas, GEOMETRY, setting.roi, setting.nu_deg,
                        setting.delta_deg, EXPOSURE_S, FLUX, rng)
        assert counts.max() < 2**16
        # The map is taken around the instant the cell reaches this lithium content.
        middle_s = float(np.interp(-x_li, -cell["x"], cell["time_s"]))
        maps.append({
            "index": index, "x_li": x_li, "setting": setting, "etas": etas,
            "frames": counts.astype(np.uint16).reshape(Y_UM.size, X_UM.size, *counts.shape[1:]),
            "start_s": middle_s - MAP_DURATION_S / 2,
            "g_truth": _truth_g(crystal, x_li, etas),
            "truth": crystal.ground_truth_maps(x_li, (X_UM, Y_UM), PHASE),
        })

    bundle = compose_run(metadata={"sxdm": _sxdm_start(maps[0]["setting"].roi),
                                   "plan_name": "sxdm_operando"}, time=T0_S)
    writer = Hdf5StreamWriter(directory / "arrays", "area_detector",
                              {FRAMES_KEY: ((X_UM.size, *ROI_SHAPE), np.uint16)})
    line_keys = {f"area_detector-{k}": _scalar("integer")
                 for k in ("map_index", "row", "eta_index")}
    line_keys["area_detector-frame_time_s"] = {"source": "sim", "dtype": "array",
                                               "shape": [X_UM.size]}
    line_keys.update({f"diffractometer-{k}": _scalar() for k in (
        "eta_deg", "delta_deg", "nu_deg", "phi_deg", "energy_ev", "sample_x_um",
        "sample_y_um")})
    primary = bundle.compose_descriptor(name="primary",
                                        data_keys={**writer.describe(), **line_keys})
    monitor_keys = {f"potentiostat-{k}": _scalar() for k in ("potential_v", "current_a",
                                                             "charge_mah")}
    monitor_keys["potentiostat-mode"] = _scalar("string")
    monitor = bundle.compose_descriptor(name="potentiostat_monitor", data_keys=monitor_keys)
    baseline = bundle.compose_descriptor(name="baseline", data_keys={"ring-current": _scalar()})
    timeline = [(float(t), "monitor", i) for i, t in enumerate(cell["time_s"])]
    lines_per_map = POINTS * Y_UM.size
    line_period_s = MAP_DURATION_S / lines_per_map
    for m in maps:
        for n in range(lines_per_map):
            timeline.append((m["start_s"] + n * line_period_s, "line", (m["index"], n)))
    timeline.sort(key=lambda item: item[0])

    documents = [("start", bundle.start_doc), ("descriptor", primary.descriptor_doc),
                 ("descriptor", monitor.descriptor_doc), ("descriptor", baseline.descriptor_doc),
                 ("event", baseline.compose_event(data={"ring-current": 200.0},
                                                  timestamps={"ring-current": T0_S}))]
    seq = 0
    for t, kind, what in timeline:
        if kind == "monitor":
            data = {"potentiostat-potential_v": float(cell["potential_v"][what]),
                    "potentiostat-current_a": float(cell["current_a"][what]),
                    "potentiostat-charge_mah": float(cell["charge_mah"][what]),
                    "potentiostat-mode": str(cell["mode"][what])}
            documents.append(("event", monitor.compose_event(
                data=data, timestamps=dict.fromkeys(data, t), time=t + 1e3)))
            continue
        index, n = what
        m = maps[index]
        eta_index, row = divmod(n, Y_UM.size)  # a whole map at each eta, as at ID01
        writer.append({FRAMES_KEY: m["frames"][row, :, eta_index]})
        for name, doc in writer.collect_stream_docs():
            doc = dict(doc)
            if name == "stream_resource":
                doc["run_start"] = bundle.start_doc["uid"]
            else:
                doc["descriptor"] = primary.descriptor_doc["uid"]
                doc["seq_nums"] = {"start": seq + 1, "stop": seq + 2}
            documents.append((name, doc))
        setting = m["setting"]
        data = {"area_detector-map_index": index, "area_detector-row": row,
                "area_detector-eta_index": eta_index,
                "area_detector-frame_time_s": (t + EXPOSURE_S * np.arange(X_UM.size)).tolist(),
                "diffractometer-eta_deg": float(m["etas"][eta_index]),
                "diffractometer-delta_deg": setting.delta_deg,
                "diffractometer-nu_deg": setting.nu_deg, "diffractometer-phi_deg": 0.0,
                "diffractometer-energy_ev": GEOMETRY.energy_ev,
                "diffractometer-sample_x_um": float(X_UM.mean()),
                "diffractometer-sample_y_um": float(Y_UM[row])}
        seq += 1
        documents.append(("event", primary.compose_event(
            data=data, timestamps=dict.fromkeys(data, t), seq_num=seq, time=t + 1e3,
            validate=False)))
    writer.close()
    documents.append(("stop", bundle.compose_stop(exit_status="success", time=t + 2e3)))
    return {"documents": documents, "maps": maps, "cell": cell, "directory": directory}


class _RecordingAnalysis(SxdmOperandoAnalysis):
    """Remembers which threads added lines."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.line_threads: set[str] = set()

    def _add_line(self, line) -> None:
        self.line_threads.add(threading.current_thread().name)
        super()._add_line(line)


def _first_event_of_map(documents, index: int) -> int:
    return next(i for i, (name, doc) in enumerate(documents)
                if name == "event" and doc["data"].get("area_detector-map_index") == index)


@pytest.fixture(scope="module")
def live(run, tmp_path_factory) -> dict:
    """The documents fed as the RunEngine would, with snapshots before the stop document."""
    figures = tmp_path_factory.mktemp("live_figures")
    analysis = _RecordingAnalysis(lambda uid: figures)
    documents = run["documents"]
    second = _first_event_of_map(documents, 1)
    for name, doc in documents[: second + 1]:
        analysis(name, doc)
    analysis.wait()
    after_map_1_began = dict(analysis.finished)
    for name, doc in documents[second + 1: -1]:
        analysis(name, doc)
    analysis.wait()
    before_stop = {i: dict(entry) for i, entry in analysis.finished.items()}
    files_before_stop = sorted(p.name for p in figures.iterdir())
    analysis(*documents[-1])
    return {"analysis": analysis, "result": analysis.result, "figures": figures,
            "after_map_1_began": after_map_1_began, "before_stop": before_stop,
            "files_before_stop": files_before_stop}


def _npz(entry: dict) -> dict:
    with np.load(entry["maps_file"]) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("index", [0, 1])
def test_maps_recover_the_crystal_d400_and_tilt(run, live, index) -> None:
    entry = live["result"]["maps"][index]
    saved = _npz(entry)
    mask = saved["mask"]
    m = run["maps"][index]
    assert mask.sum() >= 25 and np.mean(mask == m["truth"]["mask"]) >= 0.9
    g = m["g_truth"]
    d_truth = 2 * math.pi / np.linalg.norm(g, axis=-1)
    d_error = saved["d_angstrom"][mask] - d_truth[mask]
    d_rms = float(np.sqrt(np.mean(d_error**2)))
    maps = sxdm_maps(saved["q_com_inv_angstrom"], saved["intensity"])
    altitude_truth, _ = tilt_altitude_azimuth_deg(g, maps.q_mean_inv_angstrom)
    tilt_rms = float(np.sqrt(np.mean((saved["tilt_altitude_deg"][mask]
                                      - altitude_truth[mask]) ** 2)))
    print(f"map {index}: {mask.sum()} pixels, d RMS {d_rms:.1e} Å, mean "
          f"{np.mean(d_error):.1e} Å, tilt RMS {tilt_rms:.4f}°")
    assert d_rms < 5e-4
    assert abs(np.mean(d_error)) < 2e-4
    assert tilt_rms < 0.01
    assert entry["d400_mean_angstrom"] == pytest.approx(maps.d_mean_angstrom, abs=1e-12)
    assert entry["masked_in_pixels"] == int(mask.sum())
    assert entry["lines"] == POINTS * Y_UM.size and entry["complete"]
    np.testing.assert_array_equal(saved["x_um"], X_UM)
    np.testing.assert_array_equal(saved["y_um"], Y_UM)
    assert entry["delta_deg"] == pytest.approx(m["setting"].delta_deg)
    assert entry["eta_center_deg"] == pytest.approx(m["setting"].eta_center_deg)


@pytest.mark.parametrize("index", [0, 1])
def test_incremental_sums_equal_q_centres_on_the_same_frames(run, live, index) -> None:
    m = run["maps"][index]
    setting = m["setting"]
    q = pixel_q(GEOMETRY, m["etas"], 0.0, setting.nu_deg, setting.delta_deg, setting.roi.rows,
                setting.roi.cols)
    q_com, counts = q_centres(m["frames"], q, threshold_counts=THRESHOLD)
    saved = _npz(live["result"]["maps"][index])
    np.testing.assert_array_equal(saved["intensity"], counts)
    np.testing.assert_allclose(saved["q_com_inv_angstrom"], q_com, rtol=0, atol=2e-7,
                               equal_nan=True)
    whole = sxdm_maps(q_com, counts)
    np.testing.assert_array_equal(saved["mask"], whole.mask)
    np.testing.assert_allclose(saved["d_angstrom"], whole.d_angstrom, rtol=0, atol=1e-7,
                               equal_nan=True)


def test_a_map_is_finished_live_while_the_next_is_taken(live) -> None:
    assert 0 in live["after_map_1_began"] and 1 not in live["after_map_1_began"]
    assert set(live["before_stop"]) == {0, 1}  # map 1 complete: all its lines are in
    assert {"sxdm_map_0.png", "sxdm_map_0.npz", "sxdm_charge.png"} <= set(
        live["files_before_stop"])
    # the lines were added on the worker, never on the thread that delivers documents
    assert live["analysis"].line_threads and all(
        name.startswith("sxdm-operando") for name in live["analysis"].line_threads)


def test_the_more_delithiated_map_has_the_smaller_d400(run, live) -> None:
    result = live["result"]
    first, second = result["maps"]
    assert second["d400_mean_angstrom"] < first["d400_mean_angstrom"]
    assert result["d400_mean_change_angstrom"] == pytest.approx(
        second["d400_mean_angstrom"] - first["d400_mean_angstrom"])
    crystal = LmnoCrystal(seed=0)
    expected = crystal.d400_mean_angstrom(X_LI[1], PHASE) - crystal.d400_mean_angstrom(
        X_LI[0], PHASE)
    assert result["d400_mean_change_angstrom"] == pytest.approx(expected, abs=5e-4)
    # both maps were taken on the first plateau, the second one later with more charge
    cell = run["cell"]
    for entry, m in zip(result["maps"], run["maps"], strict=True):
        start, end = entry["time_span_s"]
        assert start == pytest.approx(m["start_s"])
        assert end == pytest.approx(m["start_s"] + MAP_DURATION_S * (1 - 1 / 300)
                                     + EXPOSURE_S * (X_UM.size - 1))
        middle = 0.5 * (start + end)
        assert entry["potential_v"] == pytest.approx(
            np.interp(middle, cell["time_s"], cell["potential_v"]), abs=1e-9)
        assert 4.65 < entry["potential_v"] < 4.76
    assert second["charge_mah"] > first["charge_mah"] > 0


def test_charge_summary_finds_the_simulated_cells_two_plateaus(run, live) -> None:
    charge = live["result"]["charge"]
    cell = run["cell"]
    print("plateaus", charge["plateaus_v"])
    assert len(charge["plateaus_v"]) == 2
    # the Ni plateaus at 4.70 / 4.75 V plus the polarisation at C/15 (a few mV)
    assert charge["plateaus_v"][0] == pytest.approx(4.70, abs=0.015)
    assert charge["plateaus_v"][1] == pytest.approx(4.75, abs=0.015)
    assert charge["potential_start_v"] == pytest.approx(cell["potential_v"][0])
    assert charge["potential_end_v"] == pytest.approx(cell["potential_v"][-1])
    assert charge["charge_mah"] == pytest.approx(cell["charge_mah"][-1] - cell["charge_mah"][0])
    assert charge["monitor_points"] == cell["time_s"].size


def test_plateaus_are_the_flat_steps_of_a_synthetic_charge_curve() -> None:
    """Flat steps at 4.70 and 4.75 V (half the capacity each), a slope from 4.0 V before,
    a climb after, noise; some readings out of order in time do not matter."""
    rng = np.random.default_rng(0)
    charge = np.linspace(0.0, 1.0, 3000)
    potential = np.interp(charge, [0.0, 0.03, 0.05, 0.45, 0.50, 0.55, 0.95, 1.0],
                          [4.0, 4.3, 4.70, 4.70, 4.725, 4.75, 4.75, 4.95])
    potential = potential + rng.normal(scale=5e-4, size=charge.size)
    plateaus = charge_plateaus_v(potential, charge)
    assert len(plateaus) == 2
    np.testing.assert_allclose(plateaus, [4.70, 4.75], atol=0.002)
    # a potentiostatic hold at 4.9 V passes charge at one potential: not a plateau if excluded
    held = np.concatenate((charge, 1.0 + np.linspace(0, 0.5, 500)))
    held_v = np.concatenate((potential, np.full(500, 4.9)))
    counted = np.concatenate((np.ones(charge.size, bool), np.zeros(500, bool)))
    assert len(charge_plateaus_v(held_v, held)) == 3
    np.testing.assert_allclose(charge_plateaus_v(held_v, held, counted=counted), [4.70, 4.75],
                               atol=0.002)


def test_figures_files_and_json(live) -> None:
    result = live["result"]
    json.dumps(result, allow_nan=False)
    for entry in result["maps"]:
        png = Path(entry["figures"]["maps"])
        assert png.exists() and png.stat().st_size > 20_000
        assert Path(entry["maps_file"]).name == map_file_name(entry["map_index"])
        saved = _npz(entry)
        assert set(saved) == {"x_um", "y_um", "d_angstrom", "strain", "tilt_altitude_deg",
                              "tilt_azimuth_deg", "intensity", "mask", "q_com_inv_angstrom"}
        assert saved["d_angstrom"].shape == (Y_UM.size, X_UM.size)
    assert Path(result["charge"]["figure"]).stat().st_size > 10_000
    assert result["exit_status"] == "success"


def test_replay_gives_the_same_result(run, live, tmp_path) -> None:
    replayed = SxdmOperandoAnalysis(lambda uid: tmp_path)
    for name, doc in run["documents"]:
        replayed(name, doc)
    text = json.dumps(replayed.result, sort_keys=True).replace(str(tmp_path), "FIGURES")
    expected = json.dumps(live["result"], sort_keys=True).replace(str(live["figures"]),
                                                                  "FIGURES")
    assert text == expected
    for index in (0, 1):
        a, b = _npz(live["result"]["maps"][index]), _npz(replayed.result["maps"][index])
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_runs_without_sxdm_are_ignored_and_files_are_optional(run, live) -> None:
    bundle = compose_run(metadata={"plan_name": "count"})
    descriptor = bundle.compose_descriptor(name="primary", data_keys={"a": _scalar()})
    analysis = SxdmOperandoAnalysis(lambda uid: Path("/nonexistent"))
    for name, doc in (("start", bundle.start_doc), ("descriptor", descriptor.descriptor_doc),
                      ("event", descriptor.compose_event(data={"a": 1.0},
                                                         timestamps={"a": 0.0})),
                      ("stop", bundle.compose_stop())):
        analysis(name, doc)
    assert analysis.result is None
    # no figures folder: same numbers, no files (only the first map, to keep it short)
    documents = run["documents"]
    quiet = SxdmOperandoAnalysis()
    for name, doc in documents[: _first_event_of_map(documents, 1)]:
        quiet(name, doc)
    quiet(*documents[-1])
    entry = quiet.result["maps"][0]
    assert entry["maps_file"] is None and entry["figures"]["maps"] is None
    assert quiet.result["charge"]["figure"] is None
    assert len(quiet.result["maps"]) == 1
    assert entry["d400_mean_angstrom"] == live["result"]["maps"][0]["d400_mean_angstrom"]


def test_an_interrupted_map_is_finished_at_stop(run) -> None:
    """A run stopped half-way through map 0: the lines in are analysed, marked incomplete."""
    documents = run["documents"]
    lines = [i for i, (name, doc) in enumerate(documents)
             if name == "event" and "area_detector-row" in doc["data"]]
    analysis = SxdmOperandoAnalysis()
    for name, doc in documents[: lines[149] + 1]:
        analysis(name, doc)
    stop = dict(documents[-1][1], exit_status="abort")
    analysis("stop", stop)
    (entry,) = analysis.result["maps"]
    assert entry["lines"] == 150 and not entry["complete"]
    assert entry["masked_in_pixels"] > 0 and entry["d400_mean_angstrom"] is not None
    assert analysis.result["exit_status"] == "abort"
    assert analysis.result["d400_mean_change_angstrom"] is None
