"""Band-excitation plans against the simulated AFM: events, HDF5 spectra, fits, safe tip."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from bluesky.run_engine import call_in_bluesky_event_loop

from vegard.instruments.afm_driver import BandExcitationAfmController, ScanArea
from vegard.instruments.band_excitation_afm_device import BandExcitationAfm, BiasLimitError
from vegard.instruments.visa_connection import VisaConnection
from vegard.plans.band_excitation import (
    band_excitation_spectrum,
    map_settings,
    three_excitation_map,
)

pytestmark = pytest.mark.simulators("afm")

AREA = ScanArea(0.0, 0.0, 600.0, 450.0, 16, 12)


@pytest.fixture
def afm(lab, RE, tmp_path):
    connection = VisaConnection(lab.addresses["afm"], name="afm")
    controller = BandExcitationAfmController(connection)
    device = BandExcitationAfm(controller, lambda: tmp_path, clock=lab.clock,
                               maximum_bias_v=5.0, name="afm")
    call_in_bluesky_event_loop(device.connect(timeout=5))
    yield device
    connection.close()


def collect(RE, plan):
    documents = []
    RE(plan, lambda name, doc: documents.append((name, doc)))
    return documents


def events_of(documents):
    return [doc for name, doc in documents if name == "event"]


def settings(averages=2, drive_amplitude_v=2.5):
    return map_settings(AREA, drive_amplitude_v=drive_amplitude_v, dc_offset_v=2.5,
                        bins=48, averages=averages)


def assert_tip_safe(lab):
    truth = lab.ground_truth()["afm"]
    assert truth["tip_bias_v"] == 0.0
    assert truth["tip_bias_ac_v"] == 0.0
    assert not truth["bias_output_on"]
    assert lab.safe_state()["afm"] == {
        "safe": True, "bias_output_on": False, "bias_dc_v": 0.0, "bias_ac_v": 0.0,
        "tip_parked": True,
    }


def test_map_has_one_event_per_line_with_fits_and_spectra_in_hdf5(lab, RE, afm, tmp_path):
    documents = collect(RE, three_excitation_map(afm, settings()))
    events = events_of(documents)
    assert [e["data"]["afm-row"] for e in events] == list(range(12))
    first = events[0]["data"]
    for key in ("afm-topography_nm", "afm-lf_dc_plus_amplitude_pm",
                "afm-hf_lf_resonance_frequency_hz", "afm-lf_dc_minus_converged"):
        assert np.shape(first[key]) == (16,), key
    resources = [doc for name, doc in documents if name == "stream_resource"]
    data = [doc for name, doc in documents if name == "stream_datum"]
    assert len(resources) == 1 and len(data) == 12
    (path,) = tmp_path.glob("*.h5")
    with h5py.File(path, "r", swmr=True) as file:
        spectra = file[resources[0]["parameters"]["dataset"]]
        assert spectra.shape == (12, 16, 3, 48) and spectra.dtype == np.complex64
    # the fits recover the simulator's amplitudes: A_HF is the electrostatic truth
    (frame,) = lab.models["afm"].truth_frames()
    a_hf = np.array([e["data"]["afm-hf_lf_amplitude_pm"] for e in events])
    f0 = np.array([e["data"]["afm-lf_dc_plus_resonance_frequency_hz"] for e in events])
    np.testing.assert_allclose(a_hf, frame.maps["electrostatic_pm"], rtol=0.05)
    np.testing.assert_allclose(f0, frame.maps["resonance_frequency_hz"], rtol=0.01)
    stop = documents[-1][1]
    assert stop["exit_status"] == "success"
    assert_tip_safe(lab)


def test_spectrum_at_a_point_matches_the_drive_amplitudes_there(lab, RE, afm):
    documents = collect(RE, band_excitation_spectrum(
        afm, 120.0, -60.0, drive_amplitude_v=2.5, dc_offset_v=2.5, bins=64, averages=8))
    (event,) = events_of(documents)
    model = lab.models["afm"]
    dx, dy = model.drift_nm()
    expected = model.sample.drive_amplitudes_pm(
        np.array([120.0 - dx]), np.array([-60.0 - dy]), model.temperature_k(),
        ("lf_dc_plus", "lf_dc_minus", "hf_lf"), 2.5, 2.5)[0]
    measured = [event["data"][f"afm-{e}_amplitude_pm"][0]
                for e in ("lf_dc_plus", "lf_dc_minus", "hf_lf")]
    np.testing.assert_allclose(measured, expected, rtol=0.03)
    assert lab.ground_truth()["afm"]["tip_bias_v"] == 0.0


class FailsAfter:
    """A readable that raises on its n-th read: a fault in the middle of a map."""

    name = "faulty"
    parent = None

    def __init__(self, reads: int) -> None:
        self.reads_left = reads

    def read(self):
        self.reads_left -= 1
        if self.reads_left < 0:
            raise RuntimeError("simulated fault mid-map")
        return {}

    def describe(self):
        return {}

    def trigger(self):
        from ophyd_async.core import AsyncStatus

        async def done():
            return None

        return AsyncStatus(done())


def test_tip_is_unbiased_after_a_plan_fails_midway(lab, RE, afm):
    documents = []
    with pytest.raises(RuntimeError, match="mid-map"):
        RE(three_excitation_map(afm, settings(), readables=[FailsAfter(5)]),
           lambda name, doc: documents.append((name, doc)))
    assert len(events_of(documents)) == 5  # the lines before the fault are recorded
    assert documents[-1][1]["exit_status"] == "fail"
    assert_tip_safe(lab)
    commands = lab.command_log("afm")
    assert commands[-8:-5] == ["BIAS:OUTP 0", "BIAS:DC 0", "BIAS:AC 0"]
    assert commands[-2:] == ["SCAN:PARK", "SCAN:PARK?"]


def test_bias_beyond_the_limit_is_refused_before_any_command(lab, RE, afm):
    before = len(lab.command_log("afm"))
    with pytest.raises(BiasLimitError, match="exceeds the tip bias limit 5 V"):
        RE(three_excitation_map(afm, settings(drive_amplitude_v=3.0)))
    assert not any(c.startswith(("BIAS", "BE:", "SCAN")) for c in lab.command_log("afm")[before:])
