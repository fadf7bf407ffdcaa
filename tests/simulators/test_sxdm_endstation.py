"""The SXDM end-station model: frames at past instrument times and their ground truth."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from vegard.diffraction_geometry import DetectorRoi, detector_angles_for_specular
from vegard.simulators.diffractometer_ioc_emulator import DIFFRACTOMETER_MOTORS, Move, MoveHistory
from vegard.simulators.lmno_crystal import PHASES
from vegard.simulators.sxdm_endstation_model import SxdmEndStation


class Axes:
    """Recorded trajectories set by the test (the `SimulatedDiffractometer` interface)."""

    def __init__(self, start_s: float, **positions: float) -> None:
        starts = {spec.name: spec.start for spec in DIFFRACTOMETER_MOTORS} | positions
        self.history = {name: MoveHistory(Move.at_rest(value, start_s), length=10_000)
                        for name, value in starts.items()}

    def rest(self, axis: str, position: float, time_s: float) -> None:
        self.history[axis].record(Move.at_rest(position, time_s))

    def positions_at(self, axis, times_s):
        return self.history[axis].positions_at(times_s)

    def crossing_time_s(self, axis, position, after_s, direction):
        return self.history[axis].crossing_time_s(position, after_s, direction, 1e12)

    def is_moving(self, axis):
        return False

    def move_end_s(self, axis):
        return self.history[axis].latest().end_time_s


class Cell:
    def __init__(self, x_li: float) -> None:
        self.x_li = x_li

    def lithium_content(self) -> float:
        return self.x_li


def raster(station: SxdmEndStation, axes: Axes, xs, ys, t0: float) -> tuple[float, float]:
    """One frame at rest at every raster position (x fastest); the time window."""
    time_s = t0
    starts = []
    for y in ys:
        for x in xs:
            time_s += 1.0
            axes.rest("sample_x_um", x, time_s)
            axes.rest("sample_y_um", y, time_s)
            starts.append(time_s + 0.1)
    station.acquire(starts, 0.01, DetectorRoi(240, 240, 32, 32))
    return starts[0], starts[-1]


def test_parameters_are_the_crystal_beam_and_detector_ones_each_once(manual_clock) -> None:
    names = [p.name for p in SxdmEndStation.PARAMETERS]
    assert len(names) == len(set(names))
    assert {"crystal_size_um", "beam_fwhm_um", "detector_distance_m", "flux_ph_per_s",
            "readout_dead_time_s", "direct_beam_row"} <= set(names)
    station = SxdmEndStation(manual_clock, {"detector_distance_m": 2.0, "beam_fwhm_um": 0.1})
    assert station.geometry(9000.0).distance_m == 2.0
    assert station.beam.parameters["beam_fwhm_um"] == 0.1
    with pytest.raises(ValueError, match="detector_distance_m"):
        SxdmEndStation(manual_clock, {"detector_distance_m": 5.0})


def test_map_truth_agrees_with_the_crystal_truth(manual_clock) -> None:
    x_li = 0.55  # plateau 1: Li1 and Li0.5 side by side
    t0 = manual_clock.now()
    probe = SxdmEndStation(manual_clock, seed=4)
    d05 = probe.crystal.d400_mean_angstrom(x_li, "li05")
    eta, delta = detector_angles_for_specular(d05, 10000.0)  # Li0.5 on the direct-beam pixel
    axes = Axes(t0, eta_deg=eta, delta_deg=delta)
    station = SxdmEndStation(manual_clock, seed=4, potentiostat=Cell(x_li), diffractometer=axes)
    xs = np.round(np.arange(-2.4, 2.41, 0.4), 4)
    ys = np.round(np.arange(-2.0, 2.01, 0.4), 4)
    window = raster(station, axes, xs, ys, t0)
    truth = station.map_truth(*window)
    assert truth["phase"] == "li05"
    assert truth["x_um"] == pytest.approx(xs) and truth["y_um"] == pytest.approx(ys)
    assert truth["x_li_mean"] == pytest.approx(x_li)
    assert truth["potential_window_s"] == pytest.approx((window[0], window[1] + 0.01), abs=1e-6)
    assert (truth["frames"] == 1).all()

    crystal = station.crystal.ground_truth_maps(x_li, (xs, ys), phase="li05")
    agree = truth["mask"] == crystal["mask"]
    assert agree.mean() > 0.9  # the footprint blurs the mask's edges
    both = truth["mask"] & crystal["mask"]
    assert both.sum() >= 15
    d_error = np.abs(truth["d400_angstrom"][both] - crystal["d400_angstrom"][both])
    assert np.median(d_error) < 2e-4 and d_error.max() < 1e-3  # Li0.5's d varies by ~1e-3
    assert truth["d400_mean_angstrom"] == pytest.approx(d05, abs=5e-4)
    assert np.abs(truth["tilt_altitude_deg"][both]
                  - crystal["tilt_altitude_deg"][both]).max() < 0.03
    assert np.isnan(truth["d400_angstrom"][~truth["mask"]]).all()

    # The other phase, when the detector looks at it.
    axes_li1 = Axes(t0, eta_deg=eta, delta_deg=detector_angles_for_specular(
        probe.crystal.d400_mean_angstrom(x_li, "li1"), 10000.0)[1])
    station.diffractometer = axes_li1
    window = raster(station, axes_li1, xs, ys, t0 + 1000.0)
    assert station.map_truth(*window)["phase"] == "li1"


def test_truth_arrays_hold_every_frame_and_ground_truth_is_json(manual_clock) -> None:
    t0 = manual_clock.now()
    axes = Axes(t0)
    axes.history["sample_x_um"].record(Move(-4.0, 4.0, t0 + 1.0, 40.0, 0.002))
    station = SxdmEndStation(manual_clock, seed=1, diffractometer=axes)
    starts = t0 + 1.01 + 0.0105 * np.arange(16)
    frames = station.acquire(starts, 0.01, DetectorRoi(224, 176, 64, 160))
    assert frames.shape == (16, 64, 160) and frames.dtype == np.uint16
    truth = station.truth_arrays()
    # Cruising at 40 µm/s after a 2 ms ramp (0.04 µm behind), at mid-exposure.
    assert truth["x_um"] == pytest.approx(-4.04 + 40 * (starts - t0 - 1.0 + 0.005), abs=1e-4)
    assert truth["travel_x_um"] == pytest.approx(0.4, abs=1e-4)
    for phase in PHASES:
        assert truth[f"g_{phase}_inv_angstrom"].shape == (16, 3)
        assert truth[f"weight_{phase}"].shape == (16,)
    lit = truth["weight_li1"] > 0
    g = truth["g_li1_inv_angstrom"][lit]
    assert 2 * np.pi / np.linalg.norm(g, axis=1) == pytest.approx(2.0409, abs=1e-3)
    summary = station.ground_truth()
    json.dumps(summary)
    assert (summary["acquisitions"], summary["frames"]) == (1, 16)
    started = time.perf_counter()
    for _ in range(5):
        station.acquire(starts, 0.01, DetectorRoi(224, 176, 64, 160))
    print(f"one blurred fly line, 16 × 64 × 160: {(time.perf_counter() - started) / 5e-3:.1f} ms")


def test_saturated_pixels_clip_at_65535(manual_clock) -> None:
    t0 = manual_clock.now()
    axes = Axes(t0)
    station = SxdmEndStation(manual_clock, {"flux_ph_per_s": 1e12}, diffractometer=axes)
    frames = station.acquire([t0 + 1.0], 0.1, DetectorRoi(240, 240, 32, 32))
    assert frames.max() == 65535
