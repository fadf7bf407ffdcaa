"""The STEM-EELS devices: the camera's logic in ophyd-async mock mode on a scripted driver
(no wire), then a RunEngine on a virtual clock against the emulated microscope: HDF5
rows of pixels × channels with their StreamDatum, and the beam blanked after success,
after an error, after a stop and after a cancelled trigger."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import h5py
import numpy as np
import pydantic
import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from virtual_engines import close_virtual_run_engine, make_virtual_run_engine

from vegard.devices import BuildContext, close_device
from vegard.instruments.electron_dose import electrons_per_pixel, peak_dose_e_per_nm2
from vegard.instruments.errors import InstrumentCommunicationError
from vegard.instruments.nion_stem_driver import (
    AcquisitionConditions,
    EelsAcquisition,
    LineScanGeometry,
    NionStemDriver,
)
from vegard.instruments.stem_eels_device import (
    AcquisitionChangedError,
    ElectronDoseBudgetError,
    ExposureLimitError,
    FieldOfViewLimitError,
    FramesLimitError,
    LineScanSpectra,
    MonochromatedStemEels,
    PointSpectrum,
)
from vegard.instruments.visa_connection import VisaConnection
from vegard.kinds.instruments.nion_stem import KIND, StemEelsSettings
from vegard.plans.retakes import failure_cause
from vegard.simulators.link_costs import LinkCosts
from vegard.simulators.scpi_server import ScpiServer
from vegard.virtual_clock import VirtualClock

PIXELS, CHANNELS = 8, 16
LINE = LineScanSpectra((0.25, 0.5), (0.75, 0.5), PIXELS, exposure_ms=100.0)
MAKE_SAFE = ["*CLS", "PROBE:BLANK ON", "SYST:ERR?", "PROBE:BLANK?"]
"""The device's own blanking, confirmed (the microscope also blanks at the end of a line)."""

# ---------------------------------------------------------------------- mock mode


class ScriptedStem(NionStemDriver):
    """The camera's IO as a script: the beam stays on after an acquisition unless the
    device blanks it, and an acquisition can fail or hang until cancelled."""

    def __init__(self) -> None:
        super().__init__(VisaConnection("TCPIP::127.0.0.1::9::SOCKET", name="stem"))  # unopened
        self.calls: list[str] = []
        self.blanked = True
        self.failure: Exception | None = None
        self.hang = False
        self.saturated_pixel = 3
        self.conditions = AcquisitionConditions(
            line=LineScanGeometry((0.25, 0.5), (0.75, 0.5), PIXELS), flyback_ms=10.0,
            field_of_view_nm=400.0, probe_position_fraction=(0.5, 0.5), probe_current_pa=20.0,
            exposure_ms=100.0, readout_ms=2.0, channels=CHANNELS, saturation_counts=1000.0,
            line_duration_s=PIXELS * 0.102 + 0.01, point_duration_s=0.102)

    async def acquisition_conditions(self) -> AcquisitionConditions:
        self.calls.append("conditions")
        return self.conditions

    async def configure_line(self, line, exposure_ms, flyback_ms=None):
        self.calls.append("configure_line")
        self.conditions = dataclasses.replace(self.conditions, line=line, exposure_ms=exposure_ms)
        return self.conditions

    async def configure_point(self, exposure_ms, position_fraction=None):
        self.calls.append("configure_point")
        self.conditions = dataclasses.replace(self.conditions, exposure_ms=exposure_ms)
        return self.conditions

    async def energy_axis_mev(self) -> np.ndarray:
        return -50.0 + 0.4 * np.arange(self.conditions.channels)

    async def acquire_line(self, conditions=None, *, unblank=True) -> EelsAcquisition:
        return await self._acquire("acquire_line", conditions.line.pixels)

    async def acquire_point(self, conditions=None, *, unblank=True) -> EelsAcquisition:
        return await self._acquire("acquire_point", 1)

    async def _acquire(self, call: str, pixels: int) -> EelsAcquisition:
        self.calls.append(call)
        self.blanked = False
        if self.hang:
            await asyncio.Event().wait()
        if self.failure is not None:
            raise self.failure
        spectra = np.tile(np.arange(CHANNELS, dtype=np.float32) * 10, (pixels, 1))
        if pixels > self.saturated_pixel:
            spectra[self.saturated_pixel, :2] = self.conditions.saturation_counts
        return EelsAcquisition(spectra, np.arange(pixels, dtype=np.float32), 0.826)

    async def make_safe(self) -> bool:
        self.calls.append("make_safe")
        self.blanked = True
        return True


async def mocked_stem(tmp_path: Path, **limits) -> tuple[MonochromatedStemEels, ScriptedStem]:
    driver = ScriptedStem()
    stem = MonochromatedStemEels(driver, lambda: tmp_path, name="stem", **limits)
    await stem.connect(mock=True)
    return stem, driver


def test_a_line_trigger_writes_pixels_by_channels_and_blanks_after(tmp_path) -> None:
    async def scenario():
        stem, driver = await mocked_stem(tmp_path)
        camera = stem.camera
        await camera.stage()
        await camera.prepare(LINE)
        await camera.trigger()
        documents = [doc async for doc in camera.collect_asset_docs()]
        reading = await camera.read()
        described = await camera.describe()
        await camera.unstage()
        return driver, documents, reading, described

    driver, documents, reading, described = asyncio.run(scenario())
    assert driver.calls[-3:] == ["conditions", "acquire_line", "make_safe"]
    assert driver.blanked
    assert described["stem-camera-spectra"]["shape"] == [1, PIXELS, CHANNELS]
    saturated = reading["stem-camera-saturated_channels"]["value"]
    assert saturated.tolist() == [0, 0, 0, 2, 0, 0, 0, 0]
    assert reading["stem-camera-peak_counts"]["value"] == 1000.0
    electrons = electrons_per_pixel(20.0, 102.0)
    spacing_nm = 200.0 / (PIXELS - 1)
    assert spacing_nm > 2.5  # pixels farther apart than the footprint: N / w²
    assert reading["stem-camera-dose_estimate_e_per_nm2"]["value"] == pytest.approx(
        electrons / 2.5**2)
    resources = [doc for name, doc in documents if name == "stream_resource"]
    data = [doc for name, doc in documents if name == "stream_datum"]
    assert sorted(r["data_key"] for r in resources) == [
        "stem-camera-energy_axis_mev", "stem-camera-haadf_counts", "stem-camera-spectra"]
    assert [d["indices"] for d in data] == [{"start": 0, "stop": 1}] * 3
    with h5py.File(tmp_path / "stem-camera.h5", "r", swmr=True) as file:
        assert file["/data/stem-camera-spectra"].shape == (1, PIXELS, CHANNELS)
        assert file["/data/stem-camera-spectra"].dtype == np.float32
        assert file["/data/stem-camera-haadf_counts"][0].tolist() == list(range(PIXELS))
        assert file["/data/stem-camera-energy_axis_mev"][0, 1] == pytest.approx(-49.6)


def test_a_point_spectrum_is_one_pixel_of_every_channel(tmp_path) -> None:
    async def scenario():
        stem, driver = await mocked_stem(tmp_path)
        await stem.camera.prepare(PointSpectrum(500.0, position_fraction=(0.1, 0.5)))
        await stem.camera.trigger()
        return driver, await stem.camera.describe()

    driver, described = asyncio.run(scenario())
    assert "configure_point" in driver.calls and "acquire_point" in driver.calls
    assert driver.calls[-1] == "make_safe" and driver.blanked
    assert described["stem-camera-spectra"]["shape"] == [1, 1, CHANNELS]
    assert described["stem-camera-haadf_counts"]["shape"] == [1, 1]


def test_the_beam_is_blanked_when_an_acquisition_fails(tmp_path) -> None:
    async def scenario():
        stem, driver = await mocked_stem(tmp_path)
        await stem.camera.prepare(LINE)
        driver.failure = RuntimeError("camera read-out failed")
        with pytest.raises(RuntimeError, match="read-out failed"):
            await stem.camera.trigger()
        return driver, await stem.camera.get_index()

    driver, written = asyncio.run(scenario())
    assert driver.calls[-2:] == ["acquire_line", "make_safe"] and driver.blanked
    assert written == 0  # nothing of a failed line is recorded


def test_the_beam_is_blanked_when_a_trigger_is_cancelled(tmp_path) -> None:
    async def scenario():
        stem, driver = await mocked_stem(tmp_path)
        await stem.camera.prepare(LINE)
        driver.hang = True
        status = stem.camera.trigger()
        while "acquire_line" not in driver.calls:
            await asyncio.sleep(0)
        assert not driver.blanked  # the beam is on, mid-line
        status.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await status
        return driver

    driver = asyncio.run(scenario())
    assert driver.calls[-1] == "make_safe" and driver.blanked


def test_an_exposure_beyond_the_profile_limit_is_refused_before_anything_is_sent(
        tmp_path) -> None:
    async def scenario():
        stem, driver = await mocked_stem(tmp_path, maximum_exposure_ms=1000.0)
        with pytest.raises(ExposureLimitError, match=r"exposure 1500 ms .* ≤ 1000 ms"):
            await stem.camera.prepare(dataclasses.replace(LINE, exposure_ms=1500.0))
        return driver

    assert asyncio.run(scenario()).calls == []


def test_a_line_over_the_dose_budget_is_refused_before_it_is_configured(tmp_path) -> None:
    async def scenario():
        stem, driver = await mocked_stem(tmp_path, dose_budget_e_per_nm2=1.0e5)
        with pytest.raises(ElectronDoseBudgetError, match=r"line of 8 pixels .* budget 1e\+05"):
            await stem.camera.prepare(LINE)
        return driver

    assert asyncio.run(scenario()).calls == ["conditions"]  # read, nothing sent


def test_a_trigger_over_the_dose_budget_is_refused_before_unblanking(tmp_path) -> None:
    async def scenario():
        stem, driver = await mocked_stem(tmp_path, dose_budget_e_per_nm2=1.0e7)
        await stem.camera.prepare(LINE)
        # the slit was opened since: 50 × the current, 1e8 e/nm² per pixel
        driver.conditions = dataclasses.replace(driver.conditions, probe_current_pa=1000.0)
        with pytest.raises(ElectronDoseBudgetError, match="this acquisition"):
            await stem.camera.trigger()
        return driver

    driver = asyncio.run(scenario())
    assert "acquire_line" not in driver.calls and driver.blanked


def test_a_line_changed_since_prepare_is_not_acquired(tmp_path) -> None:
    async def scenario():
        stem, driver = await mocked_stem(tmp_path)
        await stem.camera.prepare(LINE)
        line = dataclasses.replace(driver.conditions.line, pixels=32)
        driver.conditions = dataclasses.replace(driver.conditions, line=line)
        with pytest.raises(AcquisitionChangedError, match=r"32 pixels .* prepared for 8"):
            await stem.camera.trigger()
        return driver

    assert "acquire_line" not in asyncio.run(scenario()).calls


def test_a_trigger_before_prepare_is_refused(tmp_path) -> None:
    async def scenario():
        stem, driver = await mocked_stem(tmp_path)
        with pytest.raises(RuntimeError, match=r"prepare\(\) the acquisition"):
            await stem.camera.trigger()
        return driver

    assert asyncio.run(scenario()).calls == []


def test_stop_and_the_safe_state_blank_the_beam(tmp_path) -> None:
    async def scenario():
        stem, driver = await mocked_stem(tmp_path)
        driver.blanked = False
        await stem.stop()
        stopped = driver.blanked
        driver.blanked = False
        await stem.safe_state.set(True)
        with pytest.raises(ValueError, match="only an acquisition unblanks"):
            await stem.safe_state.set(False)
        return stopped, driver, await stem.safe_state.action.get_value()

    stopped, driver, action = asyncio.run(scenario())
    assert stopped and driver.blanked
    assert action == "beam blanked (confirmed by the microscope)"


def test_the_dose_estimate_has_the_point_and_dense_line_limits() -> None:
    electrons = electrons_per_pixel(20.0, 1000.0)
    assert electrons == pytest.approx(1.248e8, rel=1e-3)  # 20 pA for 1 s
    point = peak_dose_e_per_nm2(electrons, 0.0, 2.5)
    assert point == pytest.approx(electrons / 6.25)
    assert peak_dose_e_per_nm2(electrons, 10.0, 2.5) == pytest.approx(point)  # far apart
    dense = peak_dose_e_per_nm2(electrons, 0.1, 2.5)  # overlapping along the line
    assert dense == pytest.approx(electrons / (2.5 * 0.1))


def test_the_settings_model_bounds_the_limits() -> None:
    settings = StemEelsSettings(address="sim")
    assert (settings.driver, KIND.default_name, KIND.driver) == ("nion_stem", "stem", "nion_stem")
    for field, value in [("dose_budget_e_per_nm2", 0.0), ("maximum_exposure_ms", 1e6),
                         ("maximum_field_of_view_nm", 5e4), ("timeout_s", 0.0),
                         ("probe_footprint_nm", -1.0), ("probe_current_pa", 0.0)]:
        with pytest.raises(pydantic.ValidationError, match=field):
            StemEelsSettings(address="sim", **{field: value})


class FramedStem(ScriptedStem):
    """The script, with frames: configured frames show in the conditions."""

    async def configure_line(self, line, exposure_ms, flyback_ms=None, frames=1):
        await super().configure_line(line, exposure_ms, flyback_ms)
        self.calls[-1] = f"configure_line frames={frames}"
        self.conditions = dataclasses.replace(self.conditions, frames=frames)
        return self.conditions

    async def configure_point(self, exposure_ms, position_fraction=None, frames=1):
        await super().configure_point(exposure_ms, position_fraction)
        self.calls[-1] = f"configure_point frames={frames}"
        self.conditions = dataclasses.replace(self.conditions, frames=frames)
        return self.conditions


async def framed_stem(tmp_path: Path, **limits) -> tuple[MonochromatedStemEels, FramedStem]:
    driver = FramedStem()
    stem = MonochromatedStemEels(driver, lambda: tmp_path, name="stem", **limits)
    await stem.connect(mock=True)
    return stem, driver


@pytest.mark.parametrize("frames", [0, -1, 1001, 2.5, True])
def test_frames_outside_1_to_1000_are_refused_before_anything_is_sent(tmp_path, frames) -> None:
    async def scenario():
        stem, driver = await framed_stem(tmp_path)
        with pytest.raises(FramesLimitError, match=rf"frames {frames!r} is outside 1 ≤ frames "
                                                   rf"≤ 1000"):
            await stem.camera.prepare(dataclasses.replace(LINE, frames=frames))
        with pytest.raises(FramesLimitError, match="outside 1 ≤ frames ≤ 1000"):
            await stem.camera.prepare(PointSpectrum(100.0, frames=frames))
        return driver

    assert asyncio.run(scenario()).calls == []


def test_frames_are_sent_and_the_event_counts_saturation_per_frame(tmp_path) -> None:
    async def scenario():
        stem, driver = await framed_stem(tmp_path)
        camera = stem.camera
        await camera.prepare(dataclasses.replace(LINE, frames=4))
        await camera.trigger()
        return driver, await camera.read()

    driver, reading = asyncio.run(scenario())
    assert "configure_line frames=4" in driver.calls
    # the script's spectra reach 1000 counts (one frame's saturation), not 4 frames' 4000
    assert reading["stem-camera-saturated_channels"]["value"].tolist() == [0] * PIXELS
    assert reading["stem-camera-peak_counts"]["value"] == 1000.0 / 4  # per frame
    assert reading["stem-camera-dose_estimate_e_per_nm2"]["value"] == pytest.approx(
        4 * electrons_per_pixel(20.0, 102.0) / 2.5**2)


def test_one_frame_is_prepared_as_before_frames_existed(tmp_path) -> None:
    async def scenario():
        stem, driver = await framed_stem(tmp_path)
        await stem.camera.prepare(PointSpectrum(100.0))
        return driver

    assert asyncio.run(scenario()).calls == ["conditions", "configure_point frames=1"]


def test_the_dose_check_before_configuring_counts_the_frames(tmp_path) -> None:
    one_frame = electrons_per_pixel(20.0, 102.0) / 2.5**2  # ≈2.0e6 e/nm² per pixel

    async def scenario():
        stem, driver = await framed_stem(tmp_path, dose_budget_e_per_nm2=3 * one_frame)
        await stem.camera.prepare(dataclasses.replace(LINE, frames=2))  # within the budget
        driver.calls.clear()
        with pytest.raises(ElectronDoseBudgetError, match=r"line of 8 pixels at 4 × 100 ms"):
            await stem.camera.prepare(dataclasses.replace(LINE, frames=4))
        return driver

    assert asyncio.run(scenario()).calls == ["conditions"]  # read, nothing sent


def test_the_dose_check_before_unblanking_counts_the_microscopes_frames(tmp_path) -> None:
    async def scenario():
        stem, driver = await framed_stem(tmp_path, dose_budget_e_per_nm2=1.0e7)
        await stem.camera.prepare(LINE)
        # 50 frames set at the console since: 50 × the dose of one
        driver.conditions = dataclasses.replace(driver.conditions, frames=50)
        with pytest.raises(ElectronDoseBudgetError, match=r"\(50 × 100 ms per pixel\)"):
            await stem.camera.trigger()
        return driver

    driver = asyncio.run(scenario())
    assert "acquire_line" not in driver.calls and driver.blanked


def test_electrons_per_pixel_count_every_frame() -> None:
    one = electrons_per_pixel(20.0, 102.0)
    assert electrons_per_pixel(20.0, 102.0, 4) == pytest.approx(4 * one)
    assert electrons_per_pixel(20.0, 102.0, 1) == electrons_per_pixel(20.0, 102.0)


# ---------------------------------------------------------------------- end to end

STILL = {"specimen_drift_nm_per_min": 0.0, "energy_drift_mev_per_min": 0.0,
         "energy_drift_oscillation_mev": 0.0}
E2E_LINE = LineScanSpectra((0.25, 0.5), (0.75, 0.5), 16, exposure_ms=50.0, flyback_ms=5.0)


@dataclass
class Bench:
    clock: VirtualClock
    model: object
    emulator: object
    engine: RunEngine
    stem: MonochromatedStemEels

    def commands(self) -> list[str]:
        return [entry.command for entry in self.emulator.command_log()]


@pytest.fixture
def bench(tmp_path) -> Iterator[Bench]:
    """The kind's simulator served as a lab serves it (its link costs), and the kind's
    device on it, with a RunEngine on the same virtual clock."""
    clock = VirtualClock()
    simulator = KIND.simulator()
    model = simulator.model(clock, STILL, seed=[7, 1])
    emulator = simulator.emulator(model)
    emulator.link = LinkCosts.from_parameters(
        {parameter.name: parameter.default for parameter in emulator.LINK.parameters()})
    with ScpiServer(emulator) as server:
        engine = make_virtual_run_engine(clock)
        stem = KIND.build(StemEelsSettings(address="sim"), "stem", server.visa_address,
                          BuildContext(clock, lambda: tmp_path))
        try:
            call_in_bluesky_event_loop(stem.connect(timeout=10))
            yield Bench(clock, model, emulator, engine, stem)
        finally:
            close_device(stem)
            close_virtual_run_engine(engine, clock)


def collect(engine: RunEngine, plan) -> list[tuple[str, dict]]:
    documents: list[tuple[str, dict]] = []
    engine(plan, lambda name, doc: documents.append((name, doc)))
    return documents


def cause_of_failure(engine: RunEngine, plan, documents: list | None = None) -> BaseException:
    """The device's own error behind the RunEngine's, for a plan that must fail."""
    kept = documents if documents is not None else []
    try:
        engine(plan, lambda name, doc: kept.append((name, doc)))
    except Exception as error:
        return failure_cause(error)
    raise AssertionError("the plan did not fail")


def test_a_count_of_line_scans_writes_pixels_by_channels_to_hdf5(bench, tmp_path) -> None:
    stem = bench.stem

    def plan():
        yield from bps.prepare(stem.camera, E2E_LINE, wait=True)
        return (yield from bp.count([stem.camera], num=2))

    started_s = bench.clock.now()
    documents = collect(bench.engine, plan())
    elapsed_s = bench.clock.now() - started_s
    (descriptor,) = [doc for name, doc in documents if name == "descriptor"]
    assert descriptor["data_keys"]["stem-camera-spectra"]["shape"] == [1, 16, 2048]
    assert descriptor["configuration"]["stem-camera"]["data"]["stem-camera-exposure_ms"] == 50.0
    events = [doc for name, doc in documents if name == "event"]
    assert [len(e["data"]["stem-camera-saturated_channels"]) for e in events] == [16, 16]
    resources = {doc["uid"]: doc for name, doc in documents if name == "stream_resource"}
    data = [doc for name, doc in documents if name == "stream_datum"]
    assert len(resources) == 3
    for key in ("stem-camera-spectra", "stem-camera-energy_axis_mev", "stem-camera-haadf_counts"):
        indices = [d["indices"] for d in data if resources[d["stream_resource"]]["data_key"] == key]
        assert indices == [{"start": 0, "stop": 1}, {"start": 1, "stop": 2}], key
    (path,) = tmp_path.glob("*.h5")
    with h5py.File(path, "r", swmr=True) as file:
        spectra = file["/data/stem-camera-spectra"]
        assert spectra.shape == (2, 16, 2048) and spectra.dtype == np.float32
        assert spectra[1].sum() > 0
        assert file["/data/stem-camera-energy_axis_mev"].shape == (2, 2048)
        assert file["/data/stem-camera-energy_axis_mev"][0] == pytest.approx(
            -50.0 + 0.4 * np.arange(2048))
        np.testing.assert_array_equal(file["/data/stem-camera-haadf_counts"][1],
                                      bench.model.last_haadf)
    line_s = 16 * (50 + 2) / 1000 + 0.005
    assert 2 * line_s <= elapsed_s < 2 * line_s + 0.5  # the instrument's time, plus the link's
    assert documents[-1][1]["exit_status"] == "success"
    assert bench.model.ground_truth()["acquisitions"] == 2
    assert bench.model.safe_state()["safe"] is True
    assert bench.commands()[-4:] == MAKE_SAFE


def test_the_beam_is_blanked_after_an_acquisition_fails(bench, monkeypatch) -> None:
    stem = bench.stem

    def broken(started_s=None):
        raise RuntimeError("camera read-out failed")

    def plan():
        yield from bps.prepare(stem.camera, E2E_LINE, wait=True)
        monkeypatch.setattr(bench.model, "acquire_line", broken)
        return (yield from bp.count([stem.camera]))

    documents: list[tuple[str, dict]] = []
    cause = cause_of_failure(bench.engine, plan(), documents)
    assert isinstance(cause, InstrumentCommunicationError)
    assert "SCAN:ACQ?" in str(cause) and "timeout" in str(cause)
    assert documents[-1][0] == "stop" and documents[-1][1]["exit_status"] == "fail"
    assert bench.model.safe_state()["safe"] is True
    commands = bench.commands()
    acquisition = max(i for i, c in enumerate(commands) if c == "SCAN:ACQ?")
    assert commands[acquisition + 2:acquisition + 6] == MAKE_SAFE


def test_stop_blanks_a_beam_left_unblanked(bench) -> None:
    bench.model.set_beam_blanked(False)  # unblanked at the microscope's console

    def plan():
        yield from bps.stop(bench.stem)
        blanked = yield from bps.rd(bench.stem.probe.beam_blanked)
        yield from bps.mv(bench.stem.safe_state, True)
        return blanked, (yield from bps.rd(bench.stem.safe_state.action))

    blanked, action = bench.engine(plan()).plan_result
    assert blanked is True and action.startswith("beam blanked")
    assert bench.model.safe_state()["safe"] is True


def test_a_trigger_cancelled_mid_line_ends_with_the_beam_blanked(bench) -> None:
    stem, model = bench.stem, bench.model

    async def scenario():
        await stem.camera.prepare(E2E_LINE)
        status = stem.camera.trigger()
        await asyncio.sleep(0.3)  # instrument time: a third into the 0.84 s line
        on_mid_line = not model.settings.beam_blanked
        status.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await status
        return on_mid_line, await stem.camera.get_index()

    on_mid_line, written = call_in_bluesky_event_loop(scenario())
    assert on_mid_line and written == 0
    assert model.safe_state()["safe"] is True
    assert bench.commands()[-4:] == MAKE_SAFE


def test_limits_set_through_signals_are_refused_before_sending(bench) -> None:
    stem = bench.stem
    bench.emulator.clear_command_log()

    def plan():
        yield from bps.mv(stem.camera.exposure_ms, 5000.0)

    exposure = cause_of_failure(bench.engine, plan())
    assert isinstance(exposure, ExposureLimitError) and "5000 ms" in str(exposure)

    def wide():
        yield from bps.mv(stem.probe.field_of_view_nm, 30_000.0)

    field_of_view = cause_of_failure(bench.engine, wide())
    assert isinstance(field_of_view, FieldOfViewLimitError) and "30000 nm" in str(field_of_view)
    assert not any(c.startswith(("CAM:EXPOSURE_MS ", "SCAN:FOV ")) for c in bench.commands())

    def settings():
        yield from bps.mv(stem.spectrometer.dispersion_mev_per_channel, 50.0,
                          stem.probe.line_start_fraction, (0.1, 0.5),
                          stem.probe.line_end_fraction, (0.9, 0.5))
        return (yield from bps.rd(stem.probe.line_pixels))

    assert bench.engine(settings()).plan_result == 64
    assert bench.model.settings.dispersion_mev_per_channel == 50.0
    line = bench.model.settings.line
    assert (line.start_x, line.end_x, line.pixels) == (0.1, 0.9, 64)


def test_frames_reach_the_microscope_its_time_and_the_descriptor(bench) -> None:
    stem = bench.stem
    summed = dataclasses.replace(E2E_LINE, frames=3)

    def plan():
        yield from bps.prepare(stem.camera, summed, wait=True)
        return (yield from bp.count([stem.camera]))

    started_s = bench.clock.now()
    documents = collect(bench.engine, plan())
    elapsed_s = bench.clock.now() - started_s
    (descriptor,) = [doc for name, doc in documents if name == "descriptor"]
    configured = descriptor["configuration"]["stem-camera"]["data"]
    assert (configured["stem-camera-frames"], configured["stem-camera-exposure_ms"]) == (3, 50.0)
    assert "stem-camera-frames" in descriptor["configuration"]["stem-camera"]["data_keys"]
    line_s = 16 * 3 * (50 + 2) / 1000 + 0.005
    assert line_s <= elapsed_s < line_s + 0.5
    truth = bench.model.truth()
    assert truth["frames"].tolist() == [3] * 16 and truth["exposure_ms"].tolist() == [50.0] * 16
    assert "CAM:FRAMES 3" in bench.commands()
    assert bench.model.safe_state()["safe"] is True


def test_frames_set_through_the_signal_are_checked_before_sending(bench) -> None:
    stem = bench.stem
    bench.emulator.clear_command_log()

    def none():
        yield from bps.mv(stem.camera.frames, 0)

    refused = cause_of_failure(bench.engine, none())
    assert isinstance(refused, FramesLimitError) and "frames 0" in str(refused)
    assert not any(c.startswith("CAM:FRAMES ") for c in bench.commands())

    def eight():
        yield from bps.mv(stem.camera.frames, 8)
        return (yield from bps.rd(stem.camera.frames))

    assert bench.engine(eight()).plan_result == 8
    assert bench.model.settings.frames == 8
