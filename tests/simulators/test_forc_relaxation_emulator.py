"""FORC and relaxation commands of the AFM controller emulator on the wire: replies after
the sequence's instrument time, read times, refused settings, bias output needed."""

from __future__ import annotations

import numpy as np
import pytest
from test_afm_emulator import BlockClient

from vegard.clock import InstrumentClock
from vegard.simulators.afm_controller_emulator import AfmControllerEmulator
from vegard.simulators.afm_model import AtomicForceMicroscope
from vegard.simulators.scpi_server import ScpiServer


@pytest.fixture
def afm():
    model = AtomicForceMicroscope(InstrumentClock(1.0e6), seed=3)
    with ScpiServer(AfmControllerEmulator(model)) as server:
        client = BlockClient(server.port)
        client.send("SCAN:MOVE 1500,1500;BE:BINS 16;BE:AVER 2;BE:CHIRP 0.004;BIAS:AC 1;"
                    "BIAS:OUTP 1")
        yield model, client
        client.socket.close()


def test_a_forc_sweep_answers_after_its_instrument_time(afm):
    model, client = afm
    client.send("BE:FORC 1,4,4,16,2,0")
    assert client.query("BE:FORC?") == "1,4,4,16,2,0"
    duration_s = float(client.query("BE:FTIME?"))
    assert duration_s == pytest.approx(2 * 4 * 16 * 2 * 2 * 4e-3)
    started = model.clock.now()
    spectra = client.query_block("BE:FSPEC?", "<c8")
    assert model.clock.now() - started >= duration_s
    assert spectra.size == 4 * 16 * 2 * 2 * 16
    assert model.forc_relaxation.forc_truth()["threshold_v"].size == 1


def test_a_relaxation_reports_its_read_times_and_answers_after_the_sequence(afm):
    model, client = afm
    client.send("BE:RELAX -3,0.1,0.8,8,2,0")
    assert client.query("BE:RELAX?") == "-3,0.1,0.8,8,2,0"
    times = client.query_block("BE:RTAX?", "<f8")
    assert times == pytest.approx([-0.296, -0.196, 0.004, 0.104, 0.204, 0.304, 0.404, 0.504,
                                   0.604, 0.704])
    duration_s = float(client.query("BE:RTIME?"))
    assert duration_s == pytest.approx(0.2 + 0.1 + 0.8)
    started = model.clock.now()
    spectra = client.query_block("BE:RSPEC?", "<c8")
    assert model.clock.now() - started >= duration_s and spectra.size == 10 * 16
    truth = model.forc_relaxation.relaxation_truth()
    assert truth["write_bias_v"][0] == -3.0 and truth["relaxing_response_pm"][0] < 0


@pytest.mark.parametrize(("command", "query", "unchanged"), [
    ("BE:FORC 1,10.5,4,16,2,0", "BE:FORC?", "1,4,4,32,2,0"),
    ("BE:FORC 1,4,4,18,2,0", "BE:FORC?", "1,4,4,32,2,0"),
    ("BE:FORC 1,4,2.5,16,2,0", "BE:FORC?", "1,4,4,32,2,0"),
    ("BE:RELAX 11,0.1,1,32,4,0", "BE:RELAX?", "4,0.1,1,32,4,0"),
    ("BE:RELAX 4,0.1,1,1,4,0", "BE:RELAX?", "4,0.1,1,32,4,0"),
])
def test_settings_out_of_range_are_refused_and_change_nothing(afm, command, query, unchanged):
    _, client = afm
    client.send(command)
    assert client.query("SYST:ERR?").startswith(("-222,", "-224,"))
    assert client.query(query) == unchanged


def test_acquisitions_need_the_bias_output_and_a_read_step_long_enough(afm):
    model, client = afm
    client.send("BIAS:OUTP 0;BE:FSPEC?")
    assert client.query("SYST:ERR?").startswith("-200,")
    client.send("BIAS:OUTP 1;BE:AVER 50;BE:RELAX 4,0.1,1,32,4,0;BE:RSPEC?")
    assert client.query("SYST:ERR?").startswith("-200,")  # 0.2 s spectra in 31 ms steps
    assert model.forc_relaxation.forc_truth() == {} == model.forc_relaxation.relaxation_truth()
    assert np.isclose(model.tip_bias_v, 0.0)
