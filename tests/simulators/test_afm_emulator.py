"""The band-excitation AFM controller emulator on the wire: framing, errors, time, truth."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from vegard.analysis.loop_fit import fit_loops
from vegard.analysis.sho_fit import fit_sho
from vegard.clock import InstrumentClock
from vegard.simulators.afm_controller_emulator import AfmControllerEmulator
from vegard.simulators.afm_model import AtomicForceMicroscope
from vegard.simulators.esm_spectroscopy import dc_modulation_sweep
from vegard.simulators.scpi_server import ScpiServer

FAST = 1.0e6


class BlockClient:
    """A raw-socket client that can read text lines and IEEE 488.2 definite-length blocks."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=2.0)
        self._buffer = b""

    def send(self, line: str) -> None:
        self.socket.sendall(line.encode("ascii") + b"\n")

    def query(self, line: str) -> str:
        self.send(line)
        while b"\n" not in self._buffer:
            self._buffer += self.socket.recv(4096)
        reply, self._buffer = self._buffer.split(b"\n", 1)
        return reply.decode("ascii")

    def read_exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.socket.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def query_block(self, line: str, dtype: str) -> np.ndarray:
        self.send(line)
        assert self.read_exactly(1) == b"#"
        digits = int(self.read_exactly(1))
        length = int(self.read_exactly(digits))
        payload = self.read_exactly(length)
        assert self.read_exactly(1) == b"\n"
        return np.frombuffer(payload, dtype=dtype)


@pytest.fixture
def afm():
    model = AtomicForceMicroscope(InstrumentClock(FAST), seed=3)
    with ScpiServer(AfmControllerEmulator(model)) as server:
        client = BlockClient(server.port)
        yield model, client
        client.socket.close()


def configure_small_map(client, pixels=(8, 4), bins=32, averages=2):
    client.send(
        f"SCAN:CENT 0,0;SCAN:SIZE 400,200;SCAN:PIX {pixels[0]},{pixels[1]};"
        f"BE:BAND 80000,320000;BE:BINS {bins};BE:AVER {averages};BE:DCOF 1;"
        "BE:SEQ LFDCP,LFDCM,HFLF;BIAS:AC 1;BIAS:OUTP 1"
    )


def test_line_is_a_binary_block_of_complex_spectra_per_pixel_and_excitation(afm):
    model, client = afm
    configure_small_map(client)
    spectra = client.query_block("BE:LINE? 2", "<c8").reshape(8, 3, 32)
    frequencies = client.query_block("BE:FREQ?", "<f8")
    heights = client.query_block("TOPO:LAST?", "<f8")
    assert frequencies[0] == 80e3 and frequencies[-1] == 320e3 and frequencies.size == 32
    assert heights.shape == (8,)
    # the response peaks near each pixel's true contact resonance
    (frame,) = model.truth_frames()
    truth_f0 = frame.maps["resonance_frequency_hz"][2]
    peak_f = frequencies[np.argmax(np.abs(spectra[:, 2, :]), axis=-1)]
    assert np.all(np.abs(peak_f - truth_f0) < 2 * (frequencies[1] - frequencies[0]))
    assert np.allclose(heights, frame.maps["topography_nm"][2], atol=0.5)
    assert client.query("SYST:ERR?").startswith("0,")


def test_acquisition_takes_its_instrument_time(afm):
    model, client = afm
    configure_small_map(client, averages=10)
    duration_s = float(client.query("BE:TIME?"))
    assert duration_s == pytest.approx(8 * 3 * 10 * 4e-3 + 0.05)
    started = model.clock.now()
    client.query_block("BE:LINE? 0", "<c8")
    assert model.clock.now() - started >= duration_s


def test_acquisition_with_the_bias_output_off_is_refused(afm):
    model, client = afm
    configure_small_map(client)
    client.send("BIAS:OUTP 0")
    client.send("BE:LINE? 0")
    error = client.query("SYST:ERR?")
    assert error.startswith("-200,") and "output is off" in error
    assert model.truth_frames() == []


@pytest.mark.parametrize(
    ("command", "code", "check"),
    [
        ("BIAS:DC 11", "-222", ("BIAS:DC?", "0")),
        ("BIAS:AC -1", "-222", ("BIAS:AC?", "0")),
        ("BE:BAND 300000,100000", "-222", ("BE:BAND?", "80000,320000")),
        ("BE:BINS 4", "-222", ("BE:BINS?", "64")),
        ("BE:SEQ LFDCP,BOGUS", "-224", ("BE:SEQ?", "LFDCP,LFDCM,HFLF")),
        ("SCAN:PIX 0,10", "-222", ("SCAN:PIX?", "64,64")),
        ("BE:LINE? 99", "-222", ("SCAN:PIX?", "64,64")),
        ("BIAS:OUTP maybe", "-224", ("BIAS:OUTP?", "0")),
    ],
)
def test_bad_settings_go_to_the_error_queue_and_change_nothing(afm, command, code, check):
    _model, client = afm
    client.send(command)
    assert client.query("SYST:ERR?").startswith(code + ",")
    assert client.query(check[0]) == check[1]


def test_reset_switches_the_tip_bias_off(afm):
    model, client = afm
    assert client.query("BIAS:DC 2;BIAS:AC 1;BIAS:OUTP 1;*OPC?") == "1"
    assert model.tip_bias_v == 2.0
    client.send("*RST")
    assert client.query("BIAS:OUTP?;BIAS:DC?;BIAS:AC?") == "0;0;0"
    truth = model.ground_truth()
    assert truth["tip_bias_v"] == 0.0 and not truth["bias_output_on"]


class DriftingStage:
    def __init__(self):
        self.drift_nm = (120.0, -80.0)

    def sample_temperature_k(self):
        return 350.0

    def sample_drift_nm(self):
        return self.drift_nm


def test_tip_probes_the_sample_shifted_by_the_stage_drift():
    stage = DriftingStage()
    model = AtomicForceMicroscope(InstrumentClock(FAST), seed=3, temperature_stage=stage)
    model.set_pixels(8, 4)
    model.set_bias_output(True)
    model.acquire_be_line(1)
    (frame,) = model.truth_frames()
    x_nm, y_nm = model.scan.line_positions_nm(1)
    assert np.allclose(frame.maps["sample_x_nm"][1], x_nm - 120.0)
    assert np.allclose(frame.maps["sample_y_nm"][1], y_nm + 80.0)
    assert frame.temperatures_k == [350.0]
    switched_off = AtomicForceMicroscope(
        InstrumentClock(FAST), {"drift_switch": 0}, seed=3, temperature_stage=stage)
    assert switched_off.drift_nm() == (0.0, 0.0)


def test_a_new_frame_starts_when_a_row_is_taken_again():
    model = AtomicForceMicroscope(InstrumentClock(FAST), seed=3)
    model.set_pixels(4, 2)
    model.set_bias_output(True)
    for row in (0, 1, 0):
        model.acquire_be_line(row)
    first, second = model.truth_frames()
    assert first.rows == {0, 1} and second.rows == {0}
    assert np.isnan(second.maps["vegard_strain_pm"][1]).all()
    assert set(model.truth_arrays()) >= {"frame0.vegard_strain_pm", "frame1.topography_nm"}


# ---------------------------------------------------------------- voltage spectroscopy


def configure_sweep(client, sweep="8,0,64,2,0", bins=32, averages=4):
    client.send(f"SCAN:MOVE 1500,1500;BE:BAND 80000,320000;BE:BINS {bins};BE:AVER {averages};"
                f"BE:CHIRP 0.004;BIAS:AC 1;BIAS:OUTP 1;BE:SWEEP {sweep}")


def test_a_sweep_answers_after_its_instrument_time_with_in_and_out_of_field_spectra(afm):
    model, client = afm
    configure_sweep(client)
    assert client.query("BE:SWEEP?") == "8,0,64,2,0"
    duration_s = float(client.query("BE:STIME?"))
    assert duration_s == pytest.approx(2 * 64 * 2 * 4 * 4e-3)  # write + read per DC step
    started = model.clock.now()
    spectra = client.query_block("BE:SPEC?", "<c8").reshape(128, 2, 32)
    assert model.clock.now() - started >= duration_s
    assert client.query("SYST:ERR?").startswith("0,")
    # the out-of-field loop of the last cycle switches at the model's coercive biases
    fit = fit_sho(client.query_block("BE:FREQ?", "<f8"), spectra.astype(complex))
    response = (fit.amplitude * np.exp(1j * fit.phase_rad))[64:, 1]
    loop = fit_loops(dc_modulation_sweep(8.0, 0.0, 64, 1, 0.0).dc_v, response)
    truth = model.sweep_truth()
    assert loop.coercive_voltage_negative_v == pytest.approx(
        truth["coercive_voltage_negative_v"][0], abs=0.05)
    assert loop.coercive_voltage_positive_v == pytest.approx(
        truth["coercive_voltage_positive_v"][0], abs=0.05)
    assert loop.switchable_response == pytest.approx(truth["switchable_response_pm"][0], rel=0.02)
    # in-field: the electrostatic term grows with V_dc; out-of-field it does not
    in_field = (fit.amplitude * np.exp(1j * fit.phase_rad))[64:, 0]
    assert abs(in_field[16] - in_field[48]) > 3 * abs(response[16] - response[48])


@pytest.mark.parametrize("sweep", ["9.5,1,64,1,0", "8,-2.5,64,1,0", "4,0,64,1,11", "4,0,66,1,0",
                                   "4,0,64,0,0"])
def test_a_sweep_beyond_the_tip_limit_or_malformed_is_refused_and_changes_nothing(afm, sweep):
    _, client = afm
    client.send(f"BE:SWEEP {sweep}")
    assert client.query("SYST:ERR?").startswith("-222,")
    assert client.query("BE:SWEEP?") == "1,0,64,1,0"


def test_a_sweep_needs_the_bias_output_on_and_leaves_the_tip_at_its_static_bias(afm):
    model, client = afm
    configure_sweep(client, sweep="4,0,16,1,0")
    client.send("BIAS:OUTP 0")
    client.send("BE:SPEC?")
    assert client.query("SYST:ERR?").startswith("-200,")
    assert model.sweep_truth() == {}
    client.send("BIAS:OUTP 1")
    client.query_block("BE:SPEC?", "<c8")
    assert model.tip_bias_v == 0.0 and client.query("BIAS:DC?") == "0"
