"""The monochromated STEM (Nion HERMES-like) on the wire and its model: commands, blocks,
instrument time, blanking, drift between passes, dose and damage, reproducibility."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from vegard.clock import InstrumentClock
from vegard.simulators.link_costs import LINK_PARAMETER_NAMES
from vegard.simulators.nion_stem_emulator import NAMED_CONTROLS, NionStemEmulator
from vegard.simulators.scpi_server import ScpiServer
from vegard.simulators.stem_eels_model import MonochromatedStem, StemSettingError
from vegard.simulators.wire_faults import WIRE_FAULT_NAMES

SPEEDUP = 1.0e3
"""Instrument seconds per wall second: a 1 s line scan takes 1 ms."""
STILL = {"specimen_drift_nm_per_min": 0.0, "energy_drift_mev_per_min": 0.0,
         "energy_drift_oscillation_mev": 0.0}
"""Nothing drifts: truth positions and energies are those set."""


def read_block(client, dtype: str) -> np.ndarray:
    return np.frombuffer(client.read_block(), dtype=dtype)


def query_block(client, line: str, dtype: str = "<f4") -> np.ndarray:
    client.send(line)
    return read_block(client, dtype)


@pytest.fixture
def stem(connect):
    model = MonochromatedStem(InstrumentClock(SPEEDUP), STILL, seed=3)
    with ScpiServer(NionStemEmulator(model)) as server:
        yield model, connect(server.port)


def test_identity_and_power_on_state(stem) -> None:
    model, client = stem
    assert "NION-HERMES" in client.query("*IDN?")
    assert client.query("PROBE:BLANK?;PROBE:POS?;SCAN:FOV?") == "1;0.5,0.5;400"
    assert client.query("SPEC:DISPERSION?;SPEC:OFFSET?;CAM:EXPOSURE_MS?") == "0.4;-50;100"
    assert client.query("MONO:SLIT?;CAM:CHANNELS?;CAM:SATURATION?") == "7.6;2048;8000000"
    assert float(client.query("MONO:FWHM?")) == pytest.approx(8.0, abs=0.01)
    assert float(client.query("PROBE:CURRENT?")) == pytest.approx(20.0)
    assert client.query("SCAN:LINE?;SCAN:FLYBACK_MS?;SCAN:MAXPIX?") == (
        "0.25,0.5,0.75,0.5,64;10;1024")
    assert client.query("SYST:ERR?") == '0,"No error"'
    assert model.safe_state()["safe"] is True


def test_settings_and_named_controls_round_trip(stem) -> None:
    model, client = stem
    client.send("PROBE:POS 0.1,0.9;SCAN:FOV 250;SCAN:LINE 0,0.5,1,0.5,128;SCAN:FLYBACK_MS 5")
    client.send("CAM:EXPOSURE_MS 250;SPEC:DISPERSION 50;SPEC:OFFSET -2000;MONO:SLIT 15")
    assert client.query("PROBE:POS?;SCAN:FOV?;SCAN:LINE?;SCAN:FLYBACK_MS?") == (
        "0.1,0.9;250;0,0.5,1,0.5,128;5")
    assert client.query("CAM:EXPOSURE_MS?;SPEC:DISPERSION?;SPEC:OFFSET?;MONO:SLIT?") == (
        "250;50;-2000;15")
    assert float(client.query("PROBE:CURRENT?")) == pytest.approx(20.0 * 15 / 7.6)
    assert float(client.query("MONO:FWHM?")) == pytest.approx(np.hypot(15, 2.5))
    assert client.query("CTRL:LIST?") == ",".join(NAMED_CONTROLS)
    client.send("SETVAL EELS_MagneticShift,30;SETVAL c10,40;SETVAL exposure_ms,12.5")
    assert client.query("SPEC:OFFSET?;CAM:EXPOSURE_MS?") == "30000;12.5"
    assert client.query("GETVAL? EELS_MagneticShift;GETVAL? C10") == "30;40"
    assert model.probe_fwhm_nm() == pytest.approx(np.hypot(0.1, 2 * 0.035 * 40))
    assert client.query("SYST:ERR?") == '0,"No error"'


@pytest.mark.parametrize(
    ("command", "code", "check"),
    [
        ("PROBE:POS 1.2,0.5", "-222", ("PROBE:POS?", "0.5,0.5")),
        ("PROBE:BLANK maybe", "-224", ("PROBE:BLANK?", "1")),
        ("SCAN:LINE 0,0.5,1,0.5,0", "-222", ("SCAN:LINE?", "0.25,0.5,0.75,0.5,64")),
        ("SCAN:LINE 0,0.5,1,0.5,1025", "-222", ("SCAN:LINE?", "0.25,0.5,0.75,0.5,64")),
        ("SCAN:LINE 0,0.5,1", "-109", ("SCAN:LINE?", "0.25,0.5,0.75,0.5,64")),
        ("SCAN:LINE 0,0.5,1,0.5,2.5", "-104", ("SCAN:LINE?", "0.25,0.5,0.75,0.5,64")),
        ("SCAN:FOV -5", "-222", ("SCAN:FOV?", "400")),
        ("CAM:EXPOSURE_MS 0", "-222", ("CAM:EXPOSURE_MS?", "100")),
        ("SPEC:DISPERSION abc", "-104", ("SPEC:DISPERSION?", "0.4")),
        ("SPEC:OFFSET nan", "-104", ("SPEC:OFFSET?", "-50")),
        ("MONO:SLIT 1000", "-222", ("MONO:SLIT?", "7.6")),
        ("SETVAL Focus,1", "-224", ("GETVAL? C10", "0")),
        ("SETVAL C10,1e6", "-222", ("GETVAL? C10", "0")),
        ("NOSUCH 1", "-113", ("PROBE:BLANK?", "1")),
    ],
)
def test_refused_commands_queue_an_error_and_change_nothing(stem, command, code, check) -> None:
    _, client = stem
    client.send(command)
    error = client.query("SYST:ERR?")
    assert error.startswith(code + ","), error
    if code == "-222":
        assert "allowed" in error
    assert client.query(check[0]) == check[1]


def test_line_scan_is_a_block_of_spectra_that_takes_its_instrument_time(stem) -> None:
    model, client = stem
    client.send("SCAN:LINE 0.1,0.5,0.6,0.5,50;CAM:EXPOSURE_MS 20;SCAN:FLYBACK_MS 10")
    duration_s = float(client.query("SCAN:TIME?"))
    assert duration_s == pytest.approx(50 * (20 + 2) / 1000 + 0.010)
    started = model.clock.now()
    spectra = query_block(client, "PROBE:BLANK OFF;SCAN:ACQ?;PROBE:BLANK ON").reshape(50, 2048)
    assert model.clock.now() - started >= duration_s
    haadf = query_block(client, "HAADF:LAST?")
    energy = query_block(client, "SPEC:AXIS?", "<f8")
    assert energy == pytest.approx(-50 + 0.4 * np.arange(2048))
    truth = model.truth()
    assert truth["position_nm"] == pytest.approx(np.linspace(-160, 40, 50))
    vacuum = truth["in_vacuum"]
    assert vacuum.sum() == 10  # −160 … −123.3 nm: outside the edge at −120 nm
    assert np.all(haadf[vacuum] == 0) and np.all(haadf[~vacuum] > 0)
    # the ZLP maximum is where the spectra are calibrated: at 0 meV, to a channel or two
    maxima = energy[np.argmax(spectra, axis=1)]
    assert np.median(maxima) == 0.0 and np.all(np.abs(maxima) <= 0.8 + 1e-9)
    assert np.all(truth["saturated_channels"] == 0)
    assert client.query("SYST:ERR?;PROBE:BLANK?") == '0,"No error";1'


def test_a_blanked_beam_gives_dark_spectra_and_no_dose(stem) -> None:
    model, client = stem
    client.send("SCAN:LINE 0.4,0.5,0.6,0.5,8;CAM:EXPOSURE_MS 5")
    spectra = query_block(client, "SCAN:ACQ?")
    assert spectra.size == 8 * 2048 and not spectra.any()
    assert not query_block(client, "CAM:ACQ?").any()
    assert model.ground_truth()["electrons_delivered"] == 0.0


def test_aloof_point_spectrum_shows_the_34_mev_polariton(stem) -> None:
    model, client = stem
    client.send("PROBE:POS 0.0375,0.5;CAM:EXPOSURE_MS 1000")  # 65 nm outside the edge
    spectrum = query_block(client, "PROBE:BLANK OFF;CAM:ACQ?;PROBE:BLANK ON")
    energy = -50 + 0.4 * np.arange(2048)
    truth = model.truth()
    assert truth["in_vacuum"].tolist() == [True]
    assert truth["impact_parameter_nm"][0] == pytest.approx(65.0)

    def counts(low: float, high: float) -> float:
        return float(spectrum[(energy >= low) & (energy < high)].sum())

    # the ZLP tail falls convexly, so the chord between the flanks overestimates it
    background = (counts(22, 26) + counts(46, 50)) / 2 * 2
    peak = counts(30, 38)
    assert peak - background > 10 * np.sqrt(peak)


def test_a_long_exposure_in_vacuum_saturates_the_zlp(stem) -> None:
    model, client = stem
    client.send("PROBE:POS 0.0375,0.5;CAM:EXPOSURE_MS 4000")
    spectrum = query_block(client, "PROBE:BLANK OFF;CAM:ACQ?;PROBE:BLANK ON")
    assert spectrum.max() == float(client.query("CAM:SATURATION?"))
    assert model.truth()["saturated_channels"][0] > 3


def test_reset_blanks_the_beam_and_restores_power_on_settings(stem) -> None:
    _, client = stem
    client.send("PROBE:BLANK OFF;SPEC:DISPERSION 100;*RST")
    assert client.query("PROBE:BLANK?;SPEC:DISPERSION?") == "1;0.4"


def test_no_command_breaks_the_emulator(caplog) -> None:
    """Every header with awkward arguments: an answer or a queued error, never a crash."""
    model = MonochromatedStem(InstrumentClock(1e5), seed=1)
    emulator = NionStemEmulator(model)
    arguments = ["", "1", "0", "-1", "nan", "1e999", "abc", "ON", "0,0,1,1,5", "C10,3",
                 "exposure_ms", "0.5,0.5"]
    with caplog.at_level(logging.ERROR):
        for header in sorted(emulator._handlers):
            for argument in arguments:
                emulator.handle_line(f"{header} {argument}".strip())
    assert not [r for r in caplog.records if "failed on" in r.getMessage()]
    assert emulator.handle_line("*RST;*IDN?") == emulator.identity.encode()


# ---------------------------------------------------------------------- the model itself


def test_specimen_drift_between_passes_is_re_registered_by_the_haadf_line(manual_clock) -> None:
    model = MonochromatedStem(manual_clock, {"specimen_drift_nm_per_min": 6.0}, seed=4)
    model.set_line(0.0, 0.5, 0.5, 0.5, 201)  # −200 … 0 nm, 1 nm pixels, across the edge
    model.set_exposure(1.0)
    model.set_beam_blanked(False)
    _, first = model.acquire_line(started_s=manual_clock.now())
    first_truth = model.truth()
    _, second = model.acquire_line(started_s=manual_clock.now() + 300.0)
    second_truth = model.truth()
    model.set_beam_blanked(True)
    moved_nm = second_truth["drift_x_nm"].mean() - first_truth["drift_x_nm"].mean()
    assert abs(moved_nm) > 10.0  # this seed drifts mostly along the line
    # the vacuum edge is where the HAADF signal starts: it moved with the specimen
    edge_first, edge_second = int(np.argmax(first > 0)), int(np.argmax(second > 0))
    assert edge_second - edge_first == pytest.approx(moved_nm, abs=1.0)
    assert first_truth["position_nm"][edge_first] == pytest.approx(-120.0, abs=1.0)
    assert second_truth["position_nm"][edge_second] == pytest.approx(-120.0, abs=1.0)


def test_an_unblanked_idle_probe_damages_the_specimen_where_it_is_parked(manual_clock) -> None:
    model = MonochromatedStem(manual_clock, STILL, seed=4)
    model.set_probe_position(0.5, 0.5)  # on the boundary (x = 0 nm)
    model.set_beam_blanked(True)
    manual_clock.advance(600.0)
    assert model.dose_at(np.array([0.0]), np.array([0.0]))[0] == 0.0
    model.set_beam_blanked(False)
    manual_clock.advance(30.0)  # 3.7e9 electrons into ≈6 nm²
    model.set_beam_blanked(True)
    model.set_line(0.45, 0.5, 0.55, 0.5, 41)  # −20 … 20 nm
    model.set_exposure(1.0)
    model.set_beam_blanked(False)
    model.acquire_line()
    truth = model.truth()
    centre = truth["li_remaining_fraction"][20]
    assert truth["dose_e_per_nm2"][20] > model.damage.budget_e_per_nm2
    assert centre < 0.5 and truth["li_remaining_fraction"][0] == 1.0
    assert truth["li_to_co"][20] == pytest.approx(truth["li_to_co_pristine"][20] * centre)
    assert model.ground_truth()["dose_budget_exceeded"] is True
    assert model.safe_state()["safe"] is False


def test_same_seed_same_spectra_different_seed_different(manual_clock) -> None:
    def scan(seed: int) -> tuple[np.ndarray, np.ndarray]:
        model = MonochromatedStem(manual_clock, seed=seed)
        model.set_line(0.2, 0.5, 0.6, 0.5, 16)
        model.set_beam_blanked(False)
        return model.acquire_line(started_s=manual_clock.now())

    first, again, other = scan(11), scan(11), scan(12)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_model_refuses_bad_parameters_and_settings(manual_clock) -> None:
    with pytest.raises(ValueError, match=r"^stem: ldo_boundary_shift_mev = 50 is out of range: "
                                         r"allowed -10 … 10 meV$"):
        MonochromatedStem(manual_clock, {"ldo_boundary_shift_mev": 50})
    with pytest.raises(ValueError, match="unknown stem parameters"):
        MonochromatedStem(manual_clock, {"ldo_shift": 1})
    model = MonochromatedStem(manual_clock)
    with pytest.raises(StemSettingError, match=r"exposure = 1e\+06 not valid: allowed 0\.1 … "):
        model.set_exposure(1e6)


def test_model_fits_the_lab_contract(manual_clock) -> None:
    model = MonochromatedStem(manual_clock, seed=[0, 1234])  # as `SimulatedLab` seeds it
    names = [parameter.name for parameter in MonochromatedStem.PARAMETERS]
    assert len(names) == len(set(names))
    assert not set(names) & (WIRE_FAULT_NAMES | LINK_PARAMETER_NAMES)
    assert model.truth() == {} and model.truth_arrays() == {}
    model.set_beam_blanked(False)
    model.acquire_point()
    assert set(model.truth_arrays()) >= {"acq0.position_nm", "acq0.ldo_centre_mev",
                                         "acq0.li_to_co", "acq0.thickness_t_over_lambda",
                                         "acq0.in_vacuum"}
    assert model.ground_truth()["acquisitions"] == 1


# ---------------------------------------------------------------------- frames per spectrum

AT_65_NM = (0.0375, 0.5)
"""The aloof position (65 nm outside the edge): the brightest ZLP."""


def test_frames_round_trip_and_reset_to_one(stem) -> None:
    model, client = stem
    assert client.query("CAM:FRAMES?") == "1"
    client.send("CAM:FRAMES 16")
    assert client.query("CAM:FRAMES?;SYST:ERR?") == '16;0,"No error"'
    assert model.settings.frames == 16
    client.send("*RST")
    assert client.query("CAM:FRAMES?") == "1"


@pytest.mark.parametrize(("argument", "code"),
                         [("0", "-222"), ("1001", "-222"), ("-3", "-222"), ("2.5", "-104"),
                          ("abc", "-104")])
def test_frames_out_of_range_are_refused_with_the_range(stem, argument, code) -> None:
    model, client = stem
    client.send("CAM:FRAMES 7")
    client.send(f"CAM:FRAMES {argument}")
    error = client.query("SYST:ERR?")
    assert error.startswith(code + ","), error
    if code == "-222":
        assert "frames = " in error and "allowed 1 " in error and " 1000 " in error
    assert client.query("CAM:FRAMES?") == "7" and model.settings.frames == 7


def test_each_frame_pays_exposure_and_read_out(stem) -> None:
    model, client = stem
    client.send("SCAN:LINE 0.4,0.5,0.6,0.5,10;CAM:EXPOSURE_MS 20;SCAN:FLYBACK_MS 10")
    client.send("CAM:FRAMES 3")
    assert float(client.query("CAM:TIME?")) == pytest.approx(3 * (20 + 2) / 1000)
    line_s = float(client.query("SCAN:TIME?"))
    assert line_s == pytest.approx(10 * 3 * (20 + 2) / 1000 + 0.010)
    started = model.clock.now()
    spectra = query_block(client, "PROBE:BLANK OFF;SCAN:ACQ?;PROBE:BLANK ON").reshape(10, 2048)
    assert model.clock.now() - started >= line_s
    truth = model.truth()
    assert truth["frames"].tolist() == [3] * 10 and truth["exposure_ms"].tolist() == [20.0] * 10
    assert np.diff(truth["time_s"]) == pytest.approx(np.full(9, 3 * 0.022), abs=1e-6)
    assert spectra.sum() > 0


def stem_at(manual_clock, saturation_counts: float = 3.0e6) -> MonochromatedStem:
    parameters = {**STILL, "camera_saturation_counts": saturation_counts}
    model = MonochromatedStem(manual_clock, parameters, seed=5)
    model.set_probe_position(*AT_65_NM)
    model.set_beam_blanked(False)
    return model


def test_four_frames_of_250_ms_count_as_one_of_1000_ms_without_saturating(manual_clock) -> None:
    """The ZLP in vacuum reaches ≈5.8e6 counts per channel in 1 s: one 1000 ms frame clips at
    3e6, four 250 ms frames (≈1.45e6 each) do not, and hold the same counts."""
    single, summed = stem_at(manual_clock), stem_at(manual_clock)
    single.set_exposure(1000.0)
    summed.set_exposure(250.0)
    summed.set_frames(4)
    one = single.acquire_point().astype(float)
    four = summed.acquire_point().astype(float)
    one_truth, four_truth = single.truth(), summed.truth()
    assert one_truth["saturated_channels"][0] > 3 and four_truth["saturated_channels"][0] == 0
    assert one.max() == 3.0e6 and four.max() > 5.0e6
    assert four_truth["electrons"] == pytest.approx(one_truth["electrons"], rel=1e-12)
    assert four_truth["ldo_counts_expected"] == pytest.approx(
        one_truth["ldo_counts_expected"], rel=1e-12)
    assert (four_truth["frames"][0], four_truth["exposure_ms"][0]) == (4, 250.0)
    # where neither clips, the same counts to Poisson noise; where one frame clips, more
    unclipped = one < 3.0e6
    assert np.all(np.abs(four - one)[unclipped] <= 6 * np.sqrt(one[unclipped] + 1) + 1)
    assert np.all(four[~unclipped] > 3.0e6)
    assert four.sum() > one.sum()


def test_frames_dose_the_specimen_n_times_and_damage_with_that_dose(manual_clock) -> None:
    def point(frames: int) -> MonochromatedStem:
        model = MonochromatedStem(manual_clock, {**STILL, "damage_dose_budget_e_per_nm2": 1e7,
                                                 "damage_li_loss_dose_e_per_nm2": 1e7}, seed=2)
        model.set_probe_position(0.45, 0.5)  # on grain A, 20 nm from the boundary
        model.set_exposure(100.0)
        model.set_frames(frames)
        model.set_beam_blanked(False)
        model.acquire_point(started_s=manual_clock.now())
        model.set_beam_blanked(True)
        return model

    one, ten = point(1), point(10)
    per_e = one.beam_current_pa() * 1e-12 / 1.602176634e-19
    assert one.truth()["electrons"][0] == pytest.approx(per_e * 0.100)
    assert ten.truth()["electrons"][0] == pytest.approx(per_e * 10 * 0.100)
    # the dwell is exposure and read-out, each frame (2 ms read-out)
    assert ten.ground_truth()["electrons_delivered"] == pytest.approx(per_e * 10 * 0.102)
    assert ten.truth()["dose_e_per_nm2"][0] == pytest.approx(10 * one.truth()["dose_e_per_nm2"][0])
    assert ten.truth()["li_remaining_fraction"][0] < one.truth()["li_remaining_fraction"][0]
    assert ten.truth()["haadf_expected"][0] == pytest.approx(10 * one.truth()["haadf_expected"][0])
    assert ten.last_haadf[0] > 5 * one.last_haadf[0]
    assert set(ten.truth_arrays()) >= {"acq0.frames", "acq0.exposure_ms", "acq0.electrons"}


def test_a_pixel_of_frames_is_timed_at_the_mean_of_their_exposures(manual_clock) -> None:
    model = MonochromatedStem(manual_clock, STILL, seed=1)
    model.set_line(0.4, 0.5, 0.6, 0.5, 5)
    model.set_exposure(20.0)
    model.set_frames(3)
    started_s = manual_clock.now()
    model.acquire_line(started_s=started_s)
    frame_s = (20.0 + 2.0) / 1000
    # frames at 0, 22 and 44 ms from the pixel's start, exposed 20 ms: mean mid-exposure 32 ms
    expected_s = started_s + np.arange(5) * 3 * frame_s + frame_s + 0.010
    assert model.truth()["time_s"] == pytest.approx(expected_s, abs=1e-9)
    assert model.line_duration_s() == pytest.approx(5 * 3 * frame_s + 0.010)
