"""The area-detector emulator over the wire, in a lab with the diffractometer IOC and the cell.

A fly line: the detector armed on position-compare triggers of sample x, the piezo
moved through them over Channel Access, the frames read back as one binary block.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from caproto.sync.client import write

from vegard.clock import InstrumentClock
from vegard.diffraction_geometry import DetectorRoi
from vegard.simulators.lab import SimulatedLab
from vegard.simulators.nanodiffraction import expected_counts

pytestmark = pytest.mark.simulators("area_detector")

SPEEDUP = 10.0
SAMX = "SIM:DIFF:SAMX"
ROI = (224, 176, 64, 160)  # around the direct-beam pixel (255.5, 255.5)


def put(pv: str, value: Any, *, wait: bool = True) -> None:
    write(pv, value, notify=wait, timeout=5.0, repeater=False)


def read_block(client) -> bytes:
    return client.read_block()


@pytest.fixture(scope="module")
def lab() -> Iterator[SimulatedLab]:
    with SimulatedLab(InstrumentClock(SPEEDUP), seed=3, instruments=["area_detector"]) as lab:
        with pytest.MonkeyPatch.context() as environment:
            for key, value in lab.client_environment().items():
                environment.setenv(key, value)
            yield lab


@pytest.fixture
def detector(lab, connect, port_from_address):
    client = connect(port_from_address(lab.addresses["area_detector"]))
    client.send("*RST;*CLS")
    yield client
    client.send("ABOR")


def test_identity_defaults_and_setting_errors(detector) -> None:
    assert detector.query("*IDN?") == "vegard,MAXIPIX-SIM,0,1.0"
    assert detector.query("DET:SIZE?;DET:PIXS?") == "512,512;5.5e-05"
    assert detector.query("ROI?;EXPO?;TRIG:SOUR?;FRAM?;STAT?") == "0,0,512,512;0.01;INT;1;IDLE"
    assert float(detector.query("DEAD?")) == 2.9e-4
    detector.send("ROI 500,0,20,10;EXPO 20;TRIG:STEP 0;TRIG:AXIS phi_deg;FRAM 0")
    errors = [detector.query("SYST:ERR?") for _ in range(5)]
    assert [e.split(",")[0] for e in errors] == ["-222", "-222", "-224", "-224", "-222"]
    detector.send("TRIG:SOUR pos;TRIG:AXIS SAMPLE_Y_UM;TRIG:STAR -1.5;TRIG:STEP -0.25")
    assert detector.query("TRIG:SOUR?;TRIG:AXIS?;TRIG:STAR?;TRIG:STEP?") == (
        "POS;sample_y_um;-1.5;-0.25")
    detector.send("ARM;ARM;EXPO 0.1")
    assert detector.query("STAT?") == "ARMED"
    assert "already ARMED" in detector.query("SYST:ERR?")
    assert "while ARMED" in detector.query("SYST:ERR?")
    detector.send("ABOR")
    assert detector.query("STAT?;SYST:ERR?") == 'IDLE;0,"No error"'


def test_internal_timing_spaces_frames_by_exposure_plus_dead_time(lab, detector) -> None:
    detector.send("ROI 250,250,8,12;EXPO 0.002;FRAM 5;ARM")
    armed_s = lab.clock.now()
    detector.send("FRAM:DATA?")
    frames = np.frombuffer(read_block(detector), "<u2")
    assert frames.size == 5 * 8 * 12
    times = np.array([float(t) for t in detector.query("FRAM:TIME?").split(",")])
    assert np.diff(times) == pytest.approx([0.00229] * 4, abs=1e-6)
    assert times[0] == pytest.approx(armed_s, abs=0.05 * SPEEDUP)
    assert lab.clock.now() >= times[-1] + 0.00229
    assert detector.query("STAT?;SYST:ERR?") == 'IDLE;0,"No error"'


def test_fly_line_on_position_triggers(lab, detector) -> None:
    put(f"{SAMX}.VELO", 1000.0)
    put(f"{SAMX}.VAL", -3.5)
    velocity, first, step, count, exposure_s = 40.0, -3.0, 0.5, 12, 0.01
    detector.send(f"ROI {','.join(map(str, ROI))};EXPO {exposure_s};TRIG:SOUR POS;"
                  f"TRIG:AXIS sample_x_um;TRIG:STAR {first};TRIG:STEP {step};FRAM {count};ARM")
    assert detector.query("STAT?") == "ARMED"  # armed before the move starts (a round trip)
    armed_s = lab.clock.now()
    put(f"{SAMX}.VELO", velocity)
    put(f"{SAMX}.VAL", 3.5)  # 7 µm at 40 µm/s: 0.175 s
    detector.send("FRAM:DATA?")
    payload = read_block(detector)
    assert payload, detector.query("SYST:ERR?")
    frames = np.frombuffer(payload, "<u2").reshape(count, ROI[2], ROI[3])
    assert detector.query("STAT?;SYST:ERR?") == 'IDLE;0,"No error"'

    times = np.array([float(t) for t in detector.query("FRAM:TIME?").split(",")])
    assert times[0] > armed_s
    assert np.diff(times) == pytest.approx([step / velocity] * (count - 1), abs=1e-5)
    model = lab.models["area_detector"]
    truth = {key: value[-count:] for key, value in model.truth_arrays().items()}
    triggers = first + step * np.arange(count)
    assert truth["frame_time_s"] == pytest.approx(times, abs=1e-9)
    assert truth["x_um"] == pytest.approx(triggers + velocity * exposure_s / 2, abs=1e-4)
    assert truth["travel_x_um"] == pytest.approx(velocity * exposure_s, abs=1e-4)
    assert truth["y_um"] == pytest.approx(0.0)
    assert truth["eta_deg"] == pytest.approx(17.68)

    # The Bragg peak sits where the noise-free model puts it at the frame's position.
    roi = DetectorRoi(*ROI)
    expected = expected_counts(
        model.crystal, float(truth["x_li"][0]), np.column_stack((truth["x_um"], truth["y_um"])),
        [17.68], model.geometry(10000.0), roi, 0.0, 35.37, exposure_s,
        model.parameters["flux_ph_per_s"], beam=model.beam,
    )[:, 0]
    lit = expected.sum(axis=(1, 2)) > 1000
    assert lit.sum() >= 5  # the crystal spans about 4 µm of the 6 µm line
    for measured, model_frame in zip(frames[lit], expected[lit], strict=True):
        assert centroid(measured) == pytest.approx(centroid(model_frame), abs=1.0)
        assert measured.sum() == pytest.approx(model_frame.sum(), rel=0.15)
    assert frames[~lit].sum(axis=(1, 2)).max() < 1000


def centroid(frame: np.ndarray) -> np.ndarray:
    rows, cols = np.indices(frame.shape)
    total = frame.sum()
    return np.array([(rows * frame).sum() / total, (cols * frame).sum() / total])


def test_missing_triggers_give_an_empty_block_and_an_error(lab, detector) -> None:
    detector.send("FRAM:DATA?")
    assert read_block(detector) == b""
    assert "not armed" in detector.query("SYST:ERR?")
    put(f"{SAMX}.VELO", 1000.0)
    put(f"{SAMX}.VAL", 0.0)
    put(f"{SAMX}.VELO", 20.0)  # triggers 25 ms apart, frames 1.3 ms
    detector.send("ROI 250,250,4,4;EXPO 0.001;TRIG:SOUR POS;TRIG:STAR 0.5;TRIG:STEP 0.5;"
                  "FRAM 4;ARM")
    assert detector.query("STAT?") == "ARMED"
    detector.send("FRAM:DATA?")
    assert read_block(detector) == b""  # at rest before the first trigger: no wait
    error = detector.query("SYST:ERR?")
    assert error.startswith("-230,") and "0 of 4 triggers" in error
    put(f"{SAMX}.VAL", 1.2)  # through 0.5 and 1.0 only
    detector.send("FRAM:DATA?")
    assert read_block(detector) == b""
    assert "2 of 4 triggers" in detector.query("SYST:ERR?")
    assert detector.query("STAT?") == "ARMED"
    put(f"{SAMX}.VAL", 2.5)
    detector.send("FRAM:DATA?")
    assert len(read_block(detector)) == 4 * 4 * 4 * 2
    assert detector.query("STAT?;SYST:ERR?") == 'IDLE;0,"No error"'


def test_triggers_faster_than_the_frames_are_flagged(detector) -> None:
    put(f"{SAMX}.VELO", 1000.0)
    put(f"{SAMX}.VAL", 0.0)
    detector.send("ROI 250,250,4,4;EXPO 0.01;TRIG:SOUR POS;TRIG:STAR 0.5;TRIG:STEP 0.5;"
                  "FRAM 3;ARM")
    assert detector.query("STAT?") == "ARMED"
    put(f"{SAMX}.VAL", 2.0)  # triggers 0.5 ms apart
    detector.send("FRAM:DATA?")
    assert len(read_block(detector)) == 3 * 4 * 4 * 2
    error = detector.query("SYST:ERR?")
    assert error.startswith("-200,") and "trigger overrun: 2 of 3" in error
