"""The Nion STEM driver over the wire against the emulated microscope, on a virtual clock:
settings round-trip with their units, acquisitions take the modelled instrument time and
are never asked twice, refusals name the setting, and `make_safe` blanks the beam."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from vegard.instruments.errors import InstrumentCommunicationError
from vegard.instruments.nion_stem_driver import (
    LineScanGeometry,
    NionStemDriver,
    StemSettingRefusedError,
)
from vegard.instruments.visa_connection import VisaConnection
from vegard.simulators.nion_stem_emulator import NionStemEmulator
from vegard.simulators.scpi_server import ScpiServer
from vegard.simulators.stem_eels_model import MonochromatedStem
from vegard.simulators.wire_faults import WireFaults
from vegard.virtual_clock import VirtualClock

TIMEOUT_S = 0.5
"""Far shorter than any acquisition here: only the acquisition's own duration, added to
the reply timeout, lets one through."""
STILL = {"specimen_drift_nm_per_min": 0.0, "energy_drift_mev_per_min": 0.0,
         "energy_drift_oscillation_mev": 0.0}


class Microscope:
    """The emulated STEM served on loopback, on its own virtual clock."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.model = MonochromatedStem(self.clock, STILL, seed=3)
        self.emulator = NionStemEmulator(self.model)
        self.server = ScpiServer(self.emulator)

    def run(self, body):
        """`body(driver)` on a loop of the clock, with a connected driver."""
        connection = VisaConnection(self.server.visa_address, name="stem",
                                    timeout_s=TIMEOUT_S, clock=self.clock)
        driver = NionStemDriver(connection)

        async def main():
            await driver.connect()
            try:
                return await body(driver)
            finally:
                connection.close()

        loop = self.clock.new_event_loop()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()

    def fault_on_next_query(self, kind: str) -> None:
        """`kind` (timeout, drop, ...) on the next line the microscope receives."""
        self.emulator.wire_faults = WireFaults(
            self.clock, {f"fault_{kind}_at_s": 1e-9}, started_s=self.clock.now() - 1.0)

    def commands(self) -> list[str]:
        return [entry.command for entry in self.emulator.command_log()]


@pytest.fixture
def stem() -> Iterator[Microscope]:
    microscope = Microscope()
    with microscope.server:
        yield microscope


def test_settings_round_trip_with_their_units(stem) -> None:
    line = LineScanGeometry((0.1, 0.5), (0.6, 0.45), 128)

    async def body(driver: NionStemDriver):
        await driver.set_probe_position_fraction(0.2, 0.7)
        await driver.set_field_of_view_nm(250.0)
        await driver.set_line_scan(line)
        await driver.set_flyback_ms(5.0)
        await driver.set_exposure_ms(12.5)
        await driver.set_dispersion_mev_per_channel(50.0)
        await driver.set_energy_offset_mev(-2000.0)
        await driver.set_mono_slit_mev(15.0)
        await driver.set_defocus_c10_nm(40.0)
        return {
            "position": await driver.probe_position_fraction(),
            "fov_nm": await driver.field_of_view_nm(),
            "line": await driver.line_scan(),
            "flyback_ms": await driver.flyback_ms(),
            "exposure_ms": await driver.exposure_ms(),
            "dispersion": await driver.dispersion_mev_per_channel(),
            "offset_mev": await driver.energy_offset_mev(),
            "magnetic_shift_ev": await driver.control("EELS_MagneticShift"),
            "slit_mev": await driver.mono_slit_mev(),
            "fwhm_mev": await driver.zlp_fwhm_mev(),
            "current_pa": await driver.probe_current_pa(),
            "c10_nm": await driver.defocus_c10_nm(),
            "controls": await driver.control_names(),
            "readout_ms": await driver.readout_ms(),
            "channels": await driver.channels(),
            "max_pixels": await driver.max_line_pixels(),
            "saturation": await driver.saturation_counts(),
            "point_s": await driver.point_duration_s(),
            "line_s": await driver.line_duration_s(),
            "axis": await driver.energy_axis_mev(),
        }

    read = stem.run(body)
    assert read["position"] == (0.2, 0.7)
    assert read["fov_nm"] == 250.0
    assert read["line"] == line
    assert (read["flyback_ms"], read["exposure_ms"]) == (5.0, 12.5)
    assert (read["dispersion"], read["offset_mev"], read["magnetic_shift_ev"]) == (
        50.0, -2000.0, -2.0)
    assert read["slit_mev"] == 15.0 and read["fwhm_mev"] == pytest.approx(np.hypot(15, 2.5))
    assert read["current_pa"] == pytest.approx(20.0 * 15 / 7.6)
    assert read["c10_nm"] == 40.0 and stem.model.settings.defocus_c10_nm == 40.0
    assert read["controls"] == ("EELS_MagneticShift", "C10", "exposure_ms")
    assert (read["readout_ms"], read["channels"], read["max_pixels"]) == (2.0, 2048, 1024)
    assert read["saturation"] == 8.0e6
    assert read["point_s"] == pytest.approx(0.0145)
    assert read["line_s"] == pytest.approx(128 * 0.0145 + 0.005)
    assert read["axis"] == pytest.approx(-2000.0 + 50.0 * np.arange(2048))
    assert stem.emulator.errors() == []  # every setting's queue entry was read


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        (lambda d: d.set_field_of_view_nm(50_000.0), "field of view = 50000"),
        (lambda d: d.set_exposure_ms(0.0), "exposure = 0"),
        (lambda d: d.set_probe_position_fraction(1.2, 0.5), "probe x = 1.2"),
        (lambda d: d.set_line_scan(LineScanGeometry((0, 0.5), (1, 0.5), 5000)),
         "line pixels = 5000"),
        (lambda d: d.set_mono_slit_mev(1000.0), "monochromator slit = 1000"),
        (lambda d: d.set_control("Focus", 1.0), "unknown control 'Focus'"),
    ],
    ids=["field_of_view", "exposure", "probe_position", "line_pixels", "mono_slit", "control"],
)
def test_a_refused_setting_raises_naming_it_and_changes_nothing(stem, setting, named) -> None:
    before = stem.model.settings.__dict__.copy()

    async def body(driver):
        with pytest.raises(StemSettingRefusedError) as refused:
            await setting(driver)
        return refused.value

    error = stem.run(body)
    assert named in str(error) and str(error).startswith("stem: ")
    assert error.code in (-222, -224)
    assert "allowed" in str(error) or "known" in str(error)
    assert stem.model.settings.__dict__ == before
    assert stem.emulator.errors() == []  # taken off the queue, not left for the next one


def test_a_line_scan_takes_its_modelled_time_with_the_beam_on_only_meanwhile(stem) -> None:
    async def body(driver: NionStemDriver):
        conditions = await driver.configure_line(
            LineScanGeometry((0.1, 0.5), (0.6, 0.5), 50), exposure_ms=20.0, flyback_ms=10.0)
        started_s = stem.clock.now()
        acquisition = await driver.acquire_line(conditions)
        return conditions, acquisition, stem.clock.now() - started_s, await driver.beam_blanked()

    conditions, acquisition, elapsed_s, blanked = stem.run(body)
    assert conditions.line_duration_s == pytest.approx(50 * (20 + 2) / 1000 + 0.010)
    # 1.11 s against a 0.5 s timeout: only the reported duration on top lets it through
    assert elapsed_s == pytest.approx(conditions.line_duration_s, abs=1e-6)
    assert acquisition.duration_s == conditions.line_duration_s
    assert acquisition.spectra_counts.shape == (50, 2048)
    assert acquisition.spectra_counts.dtype == np.float32
    assert acquisition.haadf_counts.shape == (50,)
    assert acquisition.spectra_counts.sum() > 0  # the beam was on during the scan
    assert blanked and stem.model.settings.beam_blanked  # and blanked by the microscope after
    truth = stem.model.truth()
    assert truth["position_nm"] == pytest.approx(np.linspace(-160, 40, 50))
    np.testing.assert_array_equal(acquisition.haadf_counts, stem.model.last_haadf)


def test_a_point_spectrum_takes_exposure_and_read_out(stem) -> None:
    async def body(driver: NionStemDriver):
        conditions = await driver.configure_point(250.0, position_fraction=(0.5, 0.5))
        started_s = stem.clock.now()
        acquisition = await driver.acquire_point(conditions)
        dark = await driver.acquire_point(unblank=False)
        return conditions, acquisition, dark, stem.clock.now() - started_s

    conditions, acquisition, dark, elapsed_s = stem.run(body)
    assert conditions.point_duration_s == pytest.approx(0.252)
    assert elapsed_s == pytest.approx(2 * 0.252, abs=1e-6)
    assert acquisition.spectra_counts.shape == (1, 2048) and acquisition.spectra_counts.max() > 0
    assert not dark.spectra_counts.any()  # blanked: a dark reference, no dose
    assert stem.model.settings.beam_blanked


def test_an_acquisition_whose_reply_is_lost_is_never_asked_again(stem) -> None:
    async def body(driver: NionStemDriver):
        conditions = await driver.configure_line(
            LineScanGeometry((0.4, 0.5), (0.6, 0.5), 8), exposure_ms=5.0)
        stem.fault_on_next_query("timeout")
        started_s = stem.clock.now()
        with pytest.raises(InstrumentCommunicationError, match=r"SCAN:ACQ\?.*timeout"):
            await driver.acquire_line(conditions)
        waited_s = stem.clock.now() - started_s
        return conditions, waited_s, await driver.make_safe()

    conditions, waited_s, blanked = stem.run(body)
    (fired,) = stem.emulator.wire_faults.fired
    assert "SCAN:ACQ?" in fired.line
    assert not any("SCAN:ACQ?" in command for command in stem.commands())  # no second try
    assert waited_s == pytest.approx(conditions.line_duration_s + TIMEOUT_S, abs=1e-3)
    assert blanked and stem.model.ground_truth()["acquisitions"] == 0


def test_make_safe_blanks_the_beam_through_a_dropped_connection(stem) -> None:
    stem.model.set_beam_blanked(False)  # left unblanked at the console

    async def body(driver: NionStemDriver):
        stem.fault_on_next_query("drop")
        return await driver.make_safe(), driver.connection.reconnects_made

    blanked, reconnects = stem.run(body)
    assert blanked is True and reconnects == 1
    assert stem.model.safe_state()["safe"] is True
    assert stem.commands()[-2:] == ["SYST:ERR?", "PROBE:BLANK?"]


def test_parts_of_the_line_changed_at_once_are_all_kept(stem) -> None:
    async def body(driver: NionStemDriver):
        await asyncio.gather(
            driver.update_line_scan(start_fraction=(0.1, 0.2)),
            driver.update_line_scan(end_fraction=(0.9, 0.8)),
            driver.update_line_scan(pixels=17))
        return await driver.line_scan()

    assert stem.run(body) == LineScanGeometry((0.1, 0.2), (0.9, 0.8), 17)


# ---------------------------------------------------------------------- frames per spectrum


def test_frames_round_trip_and_a_refusal_names_the_range(stem) -> None:
    async def body(driver: NionStemDriver):
        await driver.set_frames(12)
        read = await driver.frames()
        with pytest.raises(StemSettingRefusedError) as refused:
            await driver.set_frames(0)
        with pytest.raises(StemSettingRefusedError) as too_many:
            await driver.set_frames(1001)
        return read, refused.value, too_many.value, await driver.frames()

    read, refused, too_many, after = stem.run(body)
    assert read == 12 and after == 12 and stem.model.settings.frames == 12
    for error, value in ((refused, 0), (too_many, 1001)):
        assert error.code == -222 and error.command == f"CAM:FRAMES {value}"
        assert f"frames = {value}" in str(error) and "allowed 1" in str(error)
    assert stem.emulator.errors() == []


def test_a_point_of_frames_takes_frames_times_exposure_and_read_out(stem) -> None:
    async def body(driver: NionStemDriver):
        conditions = await driver.configure_point(250.0, position_fraction=(0.5, 0.5), frames=4)
        started_s = stem.clock.now()
        acquisition = await driver.acquire_point(conditions)
        elapsed_s = stem.clock.now() - started_s
        back = await driver.configure_point(250.0)  # the default: one frame again
        return conditions, acquisition, elapsed_s, back

    conditions, acquisition, elapsed_s, back = stem.run(body)
    assert conditions.frames == 4 and conditions.exposure_ms == 250.0
    assert conditions.point_duration_s == pytest.approx(4 * 0.252)
    assert elapsed_s == pytest.approx(4 * 0.252, abs=1e-6)
    assert acquisition.duration_s == conditions.point_duration_s
    assert stem.model.truth()["frames"].tolist() == [4]
    assert back.frames == 1 and back.point_duration_s == pytest.approx(0.252)
    assert stem.model.settings.frames == 1
    assert [c for c in stem.commands() if c.startswith("CAM:FRAMES ")] == [
        "CAM:FRAMES 4", "CAM:FRAMES 1"]


def test_a_line_of_frames_is_confirmed_and_one_frame_sends_nothing_new(stem) -> None:
    line = LineScanGeometry((0.1, 0.5), (0.6, 0.5), 20)

    async def body(driver: NionStemDriver):
        single = await driver.configure_line(line, exposure_ms=20.0, flyback_ms=10.0)
        sent_before = [c for c in stem.commands() if c.startswith("CAM:FRAMES ")]
        summed = await driver.configure_line(line, exposure_ms=20.0, frames=5)
        started_s = stem.clock.now()
        await driver.acquire_line(summed)
        return single, sent_before, summed, stem.clock.now() - started_s

    single, sent_before, summed, elapsed_s = stem.run(body)
    assert single.frames == 1 and sent_before == []  # the microscope had one frame already
    assert summed.frames == 5
    assert summed.line_duration_s == pytest.approx(20 * 5 * (20 + 2) / 1000 + 0.010)
    assert elapsed_s == pytest.approx(summed.line_duration_s, abs=1e-6)
    assert stem.model.truth()["frames"].tolist() == [5] * 20
