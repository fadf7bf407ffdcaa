"""The monochromated STEM and its vibrational EELS spectrometer as ophyd-async devices.

`MonochromatedStemEels` groups three parts on one driver:

- `probe` (`StemProbe`): parked probe position, field of view, defocus, the line scan
  (start, end, pixels, flyback) and, read back, whether the beam is blanked;
- `spectrometer` (`EelsSpectrometer`): dispersion, energy offset, monochromator slit and
  the ZLP FWHM the slit gives;
- `camera` (`SpectrumCamera`): the detector. `prepare(LineScanSpectra | PointSpectrum)`
  sends the geometry, exposure and frames (each spectrum the sum of `frames` exposures);
  each `trigger()` takes one line scan (or one point spectrum) with the beam unblanked for
  that acquisition only, blanks it again on every exit (success, error, cancellation), and
  writes the spectra (pixels × channels float32), the energy axis and the HAADF line to
  HDF5 (StreamResource/StreamDatum). Its event carries the saturated channels of each
  spectrum, the peak count per frame and the dose estimate, so a plan can shorten an
  exposure that saturates (a frame's exposure is what saturates; frames add counts).

Plans reach everything with messages: `mv` for settings (signals), `prepare`/`trigger`/
`read` for the camera, `mv(stem.safe_state, True)` or `stop(stem)` to blank the beam.
Nothing here unblanks the beam but an acquisition: the beam is the specimen's hazard.

The profile's limits are checked before anything is sent: the exposure, the frames
(1 … 1000), the field of view, and the dose one acquisition may give any point of the
specimen (estimated from the probe current, the dwell per pixel over all its frames and the
pixel spacing; see `peak_dose_e_per_nm2`).
"""

from __future__ import annotations

import numbers
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bluesky.protocols import Movable, Preparable, Stoppable
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    Device,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
)

from vegard.clock import WALL_CLOCK, InstrumentClock

from .array_detector import ArrayStreamingDetector
from .driver_signal import ConnectOnce, driver_signal_r, driver_signal_rw
from .electron_dose import electrons_per_pixel, peak_dose_e_per_nm2
from .hdf5_stream import ArraySpec
from .nion_stem_driver import (
    ENERGY_DTYPE,
    FRAMES_LIMITS,
    HAADF_DTYPE,
    SPECTRUM_DTYPE,
    AcquisitionConditions,
    LineScanGeometry,
    NionStemDriver,
)
from .readables import readables_in_order

Vector = Array1D[np.float64]
Connect = Callable[[float], Awaitable[None]]


class ExposureLimitError(ValueError):
    """An exposure beyond the profile's largest; refused before it is sent."""


class FramesLimitError(ValueError):
    """Frames per spectrum outside what the microscope sums; refused before it is sent."""


class FieldOfViewLimitError(ValueError):
    """A field of view beyond the profile's largest; refused before it is sent."""


class ElectronDoseBudgetError(ValueError):
    """An acquisition whose estimated dose exceeds the profile's budget; refused before
    the beam is unblanked."""


class AcquisitionChangedError(RuntimeError):
    """The microscope's line or camera no longer give the shape the camera was prepared
    for (changed since `prepare`); nothing was acquired."""


@dataclass(frozen=True)
class LineScanSpectra:
    """Prepare the camera for line scans: one spectrum per pixel, start to end inclusive."""

    start_fraction: tuple[float, float]
    end_fraction: tuple[float, float]
    pixels: int
    exposure_ms: float
    flyback_ms: float | None = None
    """None: keep the microscope's."""
    frames: int = 1
    """Exposures of `exposure_ms` summed into each pixel's spectrum (1 … 1000)."""

    @property
    def geometry(self) -> LineScanGeometry:
        return LineScanGeometry(tuple(self.start_fraction), tuple(self.end_fraction),
                                int(self.pixels))


@dataclass(frozen=True)
class PointSpectrum:
    """Prepare the camera for spectra at the parked probe (moved there first if given)."""

    exposure_ms: float
    position_fraction: tuple[float, float] | None = None
    frames: int = 1
    """Exposures of `exposure_ms` summed into the spectrum (1 … 1000)."""


SpectrumAcquisition = LineScanSpectra | PointSpectrum


@dataclass(frozen=True)
class _Prepared:
    point: bool
    pixels: int
    channels: int


def _dwell(exposure_ms: float, frames: int) -> str:
    """An exposure as messages give it: `100 ms`, or `4 × 250 ms` for summed frames."""
    return f"{exposure_ms:g} ms" if frames == 1 else f"{frames} × {exposure_ms:g} ms"


def _vector(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


class StemProbe(StandardReadable):
    """Where the probe is parked and what a line scan covers (fractions of the field of
    view); whether the beam is blanked, read back from the microscope."""

    def __init__(self, driver: NionStemDriver, connect: Connect, *, clock: InstrumentClock,
                 maximum_field_of_view_nm: float, name: str = "") -> None:
        self.driver = driver
        self.maximum_field_of_view_nm = maximum_field_of_view_nm
        address = driver.connection.address
        common = {"connect": connect, "clock": clock}

        def source(command: str) -> str:
            return f"visa://{address}/{command}"

        async def position() -> np.ndarray:
            return _vector(await driver.probe_position_fraction())

        async def set_position(value: Sequence[float]) -> None:
            await driver.set_probe_position_fraction(*(float(v) for v in value))

        async def line_start() -> np.ndarray:
            return _vector((await driver.line_scan()).start_fraction)

        async def line_end() -> np.ndarray:
            return _vector((await driver.line_scan()).end_fraction)

        async def line_pixels() -> int:
            return (await driver.line_scan()).pixels

        async def set_start(value: Sequence[float]) -> None:
            await driver.update_line_scan(start_fraction=value)

        async def set_end(value: Sequence[float]) -> None:
            await driver.update_line_scan(end_fraction=value)

        async def set_pixels(value: int) -> None:
            await driver.update_line_scan(pixels=int(value))

        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.beam_blanked = driver_signal_r(
                bool, driver.beam_blanked, source=source("PROBE:BLANK"), **common)
            self.probe_current_pa = driver_signal_r(
                float, driver.probe_current_pa, units="pA", source=source("PROBE:CURRENT"),
                **common)
        with readables_in_order(self, StandardReadableFormat.CONFIG_SIGNAL):
            self.position_fraction = driver_signal_rw(
                Vector, position, set_position, source=source("PROBE:POS"), **common)
            self.field_of_view_nm = driver_signal_rw(
                float, driver.field_of_view_nm, self._set_field_of_view_nm, units="nm",
                source=source("SCAN:FOV"), **common)
            self.defocus_c10_nm = driver_signal_rw(
                float, driver.defocus_c10_nm, driver.set_defocus_c10_nm, units="nm",
                source=source("SETVAL C10"), **common)
            self.line_start_fraction = driver_signal_rw(
                Vector, line_start, set_start, source=source("SCAN:LINE"), **common)
            self.line_end_fraction = driver_signal_rw(
                Vector, line_end, set_end, source=source("SCAN:LINE"), **common)
            self.line_pixels = driver_signal_rw(
                int, line_pixels, set_pixels, source=source("SCAN:LINE"), **common)
            self.flyback_ms = driver_signal_rw(
                float, driver.flyback_ms, driver.set_flyback_ms, units="ms",
                source=source("SCAN:FLYBACK_MS"), **common)
            self.line_duration_s = driver_signal_r(
                float, driver.line_duration_s, units="s", source=source("SCAN:TIME"), **common)
        super().__init__(name=name)

    def check_field_of_view(self, field_of_view_nm: float) -> None:
        if not 0 < field_of_view_nm <= self.maximum_field_of_view_nm:
            raise FieldOfViewLimitError(
                f"{self.name}: field of view {field_of_view_nm:g} nm is outside 0 < field of "
                f"view ≤ {self.maximum_field_of_view_nm:g} nm (profile maximum_field_of_view_nm)")

    async def _set_field_of_view_nm(self, field_of_view_nm: float) -> None:
        self.check_field_of_view(field_of_view_nm)
        await self.driver.set_field_of_view_nm(field_of_view_nm)


class EelsSpectrometer(StandardReadable):
    """Energy axis (dispersion, offset) and the monochromator that sets the resolution."""

    def __init__(self, driver: NionStemDriver, connect: Connect, *, clock: InstrumentClock,
                 name: str = "") -> None:
        address = driver.connection.address
        common = {"connect": connect, "clock": clock}

        def source(command: str) -> str:
            return f"visa://{address}/{command}"

        with readables_in_order(self, StandardReadableFormat.CONFIG_SIGNAL):
            self.dispersion_mev_per_channel = driver_signal_rw(
                float, driver.dispersion_mev_per_channel, driver.set_dispersion_mev_per_channel,
                units="meV/channel", source=source("SPEC:DISPERSION"), **common)
            self.energy_offset_mev = driver_signal_rw(
                float, driver.energy_offset_mev, driver.set_energy_offset_mev, units="meV",
                source=source("SPEC:OFFSET"), **common)
            self.mono_slit_mev = driver_signal_rw(
                float, driver.mono_slit_mev, driver.set_mono_slit_mev, units="meV",
                source=source("MONO:SLIT"), **common)
            self.zlp_fwhm_mev = driver_signal_r(
                float, driver.zlp_fwhm_mev, units="meV", source=source("MONO:FWHM"), **common)
        super().__init__(name=name)


class SpectrumCamera(ArrayStreamingDetector, Preparable, Stoppable):
    """The EELS camera as a detector: one trigger, one line scan (or point spectrum).

    Data keys: `<name>-spectra` (pixels × channels float32 counts, each the sum of its
    frames), `<name>-energy_axis_mev` (channels, float64) and `<name>-haadf_counts` (pixels,
    float32) in HDF5; in the event, `saturated_channels` (per pixel), `peak_counts` (per
    frame), `dose_estimate_e_per_nm2`, `acquisition_duration_s` (instrument time) and
    `haadf_line_counts`.
    """

    def __init__(
        self,
        driver: NionStemDriver,
        connect: Connect,
        directory_provider: Callable[[], Path],
        *,
        clock: InstrumentClock,
        maximum_exposure_ms: float,
        dose_budget_e_per_nm2: float,
        probe_footprint_nm: float,
        name: str = "",
    ) -> None:
        self.driver = driver
        self.maximum_exposure_ms = maximum_exposure_ms
        self.dose_budget_e_per_nm2 = dose_budget_e_per_nm2
        self.probe_footprint_nm = probe_footprint_nm
        self._prepared: _Prepared | None = None
        self._frames_reported: int | None = None
        """Frames in the conditions the camera read last (every prepare and trigger)."""
        address = driver.connection.address
        common = {"connect": connect, "clock": clock}

        def source(command: str) -> str:
            return f"visa://{address}/{command}"

        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.saturated_channels, self._set_saturated_channels = soft_signal_r_and_setter(
                Array1D[np.int64])
            self.peak_counts, self._set_peak_counts = soft_signal_r_and_setter(
                float, 0.0, units="counts")
            """Largest count in one channel per frame (the sum's over the frames): a frame's
            exposure is what saturates, so a plan compares it with `saturation_counts` and
            scales it with the exposure to predict a frame's ZLP peak."""
            self.dose_estimate_e_per_nm2, self._set_dose = soft_signal_r_and_setter(
                float, 0.0, units="e/nm²")
            self.acquisition_duration_s, self._set_duration = soft_signal_r_and_setter(
                float, 0.0, units="s")
            self.haadf_line_counts, self._set_haadf_line = soft_signal_r_and_setter(
                Array1D[np.float64])
            """The last HAADF line in the event too (≤ 1024 values): a plan re-registers the
            drift on it between passes without reading the HDF5 file."""
        with readables_in_order(self, StandardReadableFormat.CONFIG_SIGNAL):
            self.exposure_ms = driver_signal_rw(
                float, driver.exposure_ms, self._set_exposure_ms, units="ms",
                source=source("CAM:EXPOSURE_MS"), **common)
            self.frames = driver_signal_rw(
                int, self._frames, self._set_frames, source=source("CAM:FRAMES"), **common)
            self.readout_ms = driver_signal_r(
                float, driver.readout_ms, units="ms", source=source("CAM:READOUT_MS"), **common)
            self.channels = driver_signal_r(
                int, driver.channels, source=source("CAM:CHANNELS"), **common)
            self.saturation_counts = driver_signal_r(
                float, driver.saturation_counts, units="counts",
                source=source("CAM:SATURATION"), **common)
        super().__init__(directory_provider, arrays={}, name=name)

    # ------------------------------------------------------------------ limits

    def check_exposure(self, exposure_ms: float) -> None:
        if not 0 < exposure_ms <= self.maximum_exposure_ms:
            raise ExposureLimitError(
                f"{self.name}: exposure {exposure_ms:g} ms is outside 0 < exposure ≤ "
                f"{self.maximum_exposure_ms:g} ms (profile maximum_exposure_ms)")

    def check_frames(self, frames: int) -> None:
        low, high = FRAMES_LIMITS
        whole = (isinstance(frames, numbers.Integral | float) and not isinstance(frames, bool)
                 and float(frames).is_integer())
        if not (whole and low <= frames <= high):
            raise FramesLimitError(
                f"{self.name}: frames {frames!r} is outside {low} ≤ frames ≤ {high} (a whole "
                f"number of exposures summed per spectrum, as the microscope allows)")

    def dose_estimate(self, conditions: AcquisitionConditions, *, point: bool,
                      line: LineScanGeometry | None = None,
                      exposure_ms: float | None = None, frames: int | None = None) -> float:
        """Peak dose (e/nm²) of one acquisition under `conditions`, or with the line,
        exposure and frames about to be sent: every frame of a pixel doses it."""
        exposure_ms = conditions.exposure_ms if exposure_ms is None else exposure_ms
        frames = conditions.frames if frames is None else frames
        electrons = electrons_per_pixel(conditions.probe_current_pa,
                                        exposure_ms + conditions.readout_ms, frames)
        line = conditions.line if line is None else line
        spacing_nm = 0.0 if point else line.spacing_nm(conditions.field_of_view_nm)
        return peak_dose_e_per_nm2(electrons, spacing_nm, self.probe_footprint_nm)

    def check_dose(self, dose_e_per_nm2: float, what: str) -> None:
        if dose_e_per_nm2 > self.dose_budget_e_per_nm2:
            raise ElectronDoseBudgetError(
                f"{self.name}: {what} would give up to {dose_e_per_nm2:.3g} e/nm² (estimate), "
                f"beyond the dose budget {self.dose_budget_e_per_nm2:.3g} e/nm² (profile "
                f"dose_budget_e_per_nm2)")

    async def _set_exposure_ms(self, exposure_ms: float) -> None:
        self.check_exposure(exposure_ms)
        await self.driver.set_exposure_ms(exposure_ms)

    async def _frames(self) -> int:
        """Frames as the microscope reported them in the conditions of the last prepare or
        trigger (asked only before there are any): recording them in the configuration
        then costs no exchange of its own, so an acquisition's traffic on the link is
        what it was before frames existed."""
        if self._frames_reported is None:
            self._frames_reported = await self.driver.frames()
        return self._frames_reported

    async def _set_frames(self, frames: int) -> None:
        self.check_frames(frames)
        self._frames_reported = None
        await self.driver.set_frames(frames)
        self._frames_reported = int(frames)

    # ------------------------------------------------------------------ setup

    @AsyncStatus.wrap
    async def prepare(self, value: SpectrumAcquisition) -> None:
        """Check the limits, send geometry, exposure and frames (confirmed), size the HDF5
        rows (a new file per prepare)."""
        if not isinstance(value, LineScanSpectra | PointSpectrum):
            raise TypeError(f"{self.name}: prepare() takes LineScanSpectra or PointSpectrum, "
                            f"not {value!r}")
        self.check_exposure(value.exposure_ms)
        self.check_frames(value.frames)
        self._close_writer()
        self._prepared = None
        point = isinstance(value, PointSpectrum)
        standing = await self.driver.acquisition_conditions()
        line = None if point else value.geometry
        what = "a point spectrum" if point else f"a line of {value.pixels} pixels"
        self.check_dose(self.dose_estimate(standing, point=point, line=line,
                                           exposure_ms=value.exposure_ms, frames=value.frames),
                        f"{what} at {_dwell(value.exposure_ms, value.frames)}")
        # one frame is the driver's default: asked for as before frames existed
        frames = {"frames": int(value.frames)} if value.frames != 1 else {}
        if isinstance(value, PointSpectrum):
            conditions = await self.driver.configure_point(value.exposure_ms,
                                                           value.position_fraction, **frames)
            pixels = 1
        else:
            conditions = await self.driver.configure_line(value.geometry, value.exposure_ms,
                                                          value.flyback_ms, **frames)
            pixels = value.pixels
        self._frames_reported = conditions.frames
        self._prepared = _Prepared(point, pixels, conditions.channels)
        self._array_specs = {
            "spectra": ArraySpec((pixels, conditions.channels), SPECTRUM_DTYPE),
            "energy_axis_mev": ArraySpec((conditions.channels,), ENERGY_DTYPE),
            "haadf_counts": ArraySpec((pixels,), HAADF_DTYPE),
        }

    # ------------------------------------------------------------------ acquisition

    async def acquire(self) -> dict[str, np.ndarray]:
        """One acquisition, the beam blanked again whatever happens."""
        prepared = self._prepared
        if prepared is None:
            raise RuntimeError(f"{self.name}: prepare() the acquisition before triggering")
        conditions = await self.driver.acquisition_conditions()
        self._frames_reported = conditions.frames
        pixels = 1 if prepared.point else conditions.line.pixels
        if (pixels, conditions.channels) != (prepared.pixels, prepared.channels):
            raise AcquisitionChangedError(
                f"{self.name}: the microscope now gives {pixels} pixels × "
                f"{conditions.channels} channels, prepared for {prepared.pixels} × "
                f"{prepared.channels}: prepare() again")
        self.check_exposure(conditions.exposure_ms)
        self.check_frames(conditions.frames)
        dose = self.dose_estimate(conditions, point=prepared.point)
        self.check_dose(dose, f"this acquisition "
                              f"({_dwell(conditions.exposure_ms, conditions.frames)} per pixel)")
        energy_axis_mev = await self.driver.energy_axis_mev()
        if energy_axis_mev.shape != (prepared.channels,):
            raise AcquisitionChangedError(
                f"{self.name}: energy axis of {energy_axis_mev.size} channels, prepared for "
                f"{prepared.channels}: prepare() again")
        try:
            if prepared.point:
                acquisition = await self.driver.acquire_point(conditions)
            else:
                acquisition = await self.driver.acquire_line(conditions)
        finally:
            await self.driver.make_safe()
        spectra = acquisition.spectra_counts
        frames = conditions.frames  # the camera clips each frame: a sum at frames × that
        self._set_saturated_channels(np.count_nonzero(
            spectra >= frames * conditions.saturation_counts, axis=1).astype(np.int64))
        self._set_peak_counts(float(spectra.max(initial=0.0)) / frames)
        self._set_dose(dose)
        self._set_duration(acquisition.duration_s)
        self._set_haadf_line(np.asarray(acquisition.haadf_counts, dtype=np.float64))
        return {"spectra": spectra, "energy_axis_mev": energy_axis_mev,
                "haadf_counts": acquisition.haadf_counts}

    async def stop(self, success: bool = False) -> None:
        """Blank the beam (confirmed); an acquisition in flight ends blanked."""
        await self.driver.make_safe()


class BeamSafeState(Device, Movable):
    """Leaving the specimen safe, as a plan says it: `bps.mv(stem.safe_state, True)` blanks
    the beam (confirmed by the microscope); `action` then says what was done."""

    def __init__(self, make_safe: Callable[[], Awaitable[str]], name: str = "") -> None:
        self._make_safe = make_safe
        self.action, self._set_action = soft_signal_r_and_setter(str, "")
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def set(self, value: bool) -> None:
        if value is not True:
            raise ValueError(f"{self.name}: the safe state is the beam blanked (True); only "
                             f"an acquisition unblanks it, got {value!r}")
        self._set_action(await self._make_safe())


class MonochromatedStemEels(Device, Stoppable):
    """The microscope: `probe`, `spectrometer`, `camera` (the detector), `safe_state`."""

    def __init__(
        self,
        driver: NionStemDriver,
        directory_provider: Callable[[], Path],
        *,
        clock: InstrumentClock = WALL_CLOCK,
        dose_budget_e_per_nm2: float = 3.0e8,
        maximum_exposure_ms: float = 2000.0,
        maximum_field_of_view_nm: float = 20_000.0,
        probe_footprint_nm: float = 2.5,
        name: str = "",
    ) -> None:
        self.driver = driver
        self.clock = clock
        connect = ConnectOnce(driver.connect)
        self.probe = StemProbe(driver, connect, clock=clock,
                               maximum_field_of_view_nm=maximum_field_of_view_nm)
        self.spectrometer = EelsSpectrometer(driver, connect, clock=clock)
        self.camera = SpectrumCamera(
            driver, connect, directory_provider, clock=clock,
            maximum_exposure_ms=maximum_exposure_ms, dose_budget_e_per_nm2=dose_budget_e_per_nm2,
            probe_footprint_nm=probe_footprint_nm)
        self.safe_state = BeamSafeState(self.make_safe)
        super().__init__(name=name)

    async def make_safe(self) -> str:
        """Blank the beam, repeated until the microscope confirms it; what was done."""
        await self.driver.make_safe()
        return "beam blanked (confirmed by the microscope)"

    async def stop(self, success: bool = False) -> None:
        """Blank the beam: whatever was running, nothing doses the specimen afterwards."""
        await self.make_safe()
