"""The band-excitation AFM as an ophyd-async device: one trigger takes one scan line.

`prepare(AcquisitionSettings)` sends the raster, the band and the tip drive to
the controller and sizes the HDF5 datasets; each `trigger()` then takes the
line named by the `row` signal (or, for a one-pixel acquisition, the point under
the tip), writes its spectra to HDF5 and fits every spectrum with the vectorised
SHO fit. The event of that line carries the fit results and the topography as
arrays of one value per pixel, so a 64 × 64 map is 64 events, not 4096.

The tip bias is a hazard to the sample: `make_safe()` switches the output off and
puts DC and AC to 0 V, and reports what the controller then says.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
from bluesky.protocols import Preparable, Triggerable
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
    soft_signal_rw,
)

from vegard.analysis.sho_fit import fit_sho
from vegard.clock import WALL_CLOCK, InstrumentClock

from .afm_driver import (
    EXCITATION_TOKENS,
    BandExcitationAfmController,
    BandExcitationSettings,
    ScanArea,
)
from .array_detector import ArrayStreamingDetector
from .be_spectroscopy_device import VoltageSweep
from .cafm_device import IvCurve
from .driver_signal import ConnectOnce, driver_signal_r
from .errors import InstrumentCommunicationError
from .forc_sweep_device import ForcSweep
from .hdf5_stream import ArraySpec
from .readables import readables_in_order
from .relaxation_device import RelaxationReads
from .replies import read_back_matches as _close
from .trkpfm_device import CpdTransient

EXCITATIONS = tuple(EXCITATION_TOKENS)
FIT_FIELDS = {
    "amplitude_pm": "pm",
    "resonance_frequency_hz": "Hz",
    "quality_factor": "",
    "phase_rad": "rad",
    "r_squared": "",
}


class BiasLimitError(ValueError):
    """A tip voltage beyond what the profile allows for this sample; refused before sending."""


@dataclass(frozen=True)
class AcquisitionSettings:
    """Everything one map (or one point) needs from the controller."""

    area: ScanArea
    excitation: BandExcitationSettings
    drive_amplitude_v: float
    point: bool = False

    @property
    def pixels_per_line(self) -> int:
        return 1 if self.point else self.area.pixels_x


@functools.cache
def _sho_fitter() -> ThreadPoolExecutor:
    """One thread for every AFM's fits: lines are fitted in order, one at a time."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sho-fit")


class BandExcitationAfm(ArrayStreamingDetector):
    """Scanner, tip bias and band-excitation response; fit results per pixel."""

    def __init__(
        self,
        controller: BandExcitationAfmController,
        directory_provider: Callable[[], Path],
        *,
        clock: InstrumentClock = WALL_CLOCK,
        maximum_bias_v: float = 10.0,
        name: str = "",
    ) -> None:
        self.controller = controller
        self.clock = clock
        self.maximum_bias_v = maximum_bias_v
        self._connect_controller = ConnectOnce(controller.connect)
        self._settings: AcquisitionSettings | None = None
        self._frequencies_hz = np.zeros(0)
        self._line_duration_s = 0.0
        address = controller.connection.address
        common = {"connect": self._connect_controller, "clock": clock}
        float_array = Array1D[np.float64]

        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.row = soft_signal_rw(int, 0)
            self.map_index = soft_signal_rw(int, 0)
            self.topography_nm, self._set_topography = soft_signal_r_and_setter(
                float_array, units="nm")
            self.fits: dict[str, dict[str, object]] = {}
            self._fit_setters: dict[str, dict[str, Callable]] = {}
            for excitation in EXCITATIONS:
                signals, setters = {}, {}
                for field, unit in {**FIT_FIELDS, "converged": ""}.items():
                    datatype = Array1D[np.bool_] if field == "converged" else float_array
                    signal, setter = soft_signal_r_and_setter(datatype, units=unit or None)
                    setattr(self, f"{excitation}_{field}", signal)
                    signals[field], setters[field] = signal, setter
                self.fits[excitation] = signals
                self._fit_setters[excitation] = setters
        with readables_in_order(self, StandardReadableFormat.CONFIG_SIGNAL):
            self.tip_bias_dc_v = driver_signal_r(
                float, controller.bias_dc_v, units="V", source=f"visa://{address}/BIAS:DC",
                **common)
            self.drive_amplitude_v = driver_signal_r(
                float, controller.bias_ac_v, units="V", source=f"visa://{address}/BIAS:AC",
                **common)
            self.normal_force_nn = driver_signal_r(
                float, controller.normal_force_nn, units="nN",
                source=f"visa://{address}/FORC:SETP", **common)
        self.tracking_image = TrackingImage(self.topography_image)
        self.voltage_sweep = VoltageSweep(
            controller, directory_provider, clock=clock, maximum_bias_v=maximum_bias_v)
        self.cpd_transient = CpdTransient(controller, maximum_bias_v=maximum_bias_v)
        self.iv_curve = IvCurve(controller, maximum_bias_v=maximum_bias_v)
        self.forc_sweep = ForcSweep(
            controller, directory_provider, clock=clock, maximum_bias_v=maximum_bias_v)
        self.relaxation = RelaxationReads(
            controller, directory_provider, clock=clock, maximum_bias_v=maximum_bias_v)
        super().__init__(directory_provider, arrays={}, name=name)

    # ------------------------------------------------------------------ setup

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """A new file per run for the line spectra and for the sweeps (a child device is
        not staged by bluesky: it stages the root)."""
        await super().stage()
        await self.voltage_sweep.stage()
        await self.forc_sweep.stage()
        await self.relaxation.stage()

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        await super().unstage()
        await self.voltage_sweep.unstage()
        await self.forc_sweep.unstage()
        await self.relaxation.unstage()

    def check_settings(self, settings: AcquisitionSettings) -> None:
        """Refuse tip voltages beyond the profile's limit before anything is sent."""
        peak_v = settings.drive_amplitude_v + settings.excitation.dc_offset_v
        if peak_v > self.maximum_bias_v:
            raise BiasLimitError(
                f"{self.name}: U_ac + U_dc = {peak_v:g} V exceeds the tip bias limit "
                f"{self.maximum_bias_v:g} V")

    @AsyncStatus.wrap
    async def prepare(self, value: AcquisitionSettings) -> None:
        """Send raster, band and drive; read back the bin frequencies and line duration."""
        self.check_settings(value)
        self._close_writer()
        controller = self.controller
        await controller.connection.until_confirmed(
            "acquisition settings", lambda: self._send_settings(value))
        self._frequencies_hz = await controller.frequencies_hz()
        if self._frequencies_hz.size != value.excitation.bins:
            raise RuntimeError(
                f"{self.name}: controller reports {self._frequencies_hz.size} bins, "
                f"asked for {value.excitation.bins}")
        self._line_duration_s = await controller.line_duration_s()
        if value.point:  # the point is the one-pixel raster's centre
            await controller.move_tip(value.area.center_x_nm, value.area.center_y_nm)
        self._settings = value
        shape = (value.pixels_per_line, len(value.excitation.excitations), value.excitation.bins)
        self._array_specs = {"spectra": ArraySpec(shape, np.complex64)}

    async def _send_settings(self, value: AcquisitionSettings) -> None:
        """Send raster, band and drive, then read them back: a write lost on the wire (a
        dropped connection takes it silently) must not leave the map on the wrong raster."""
        controller = self.controller
        await controller.set_scan_area(value.area)
        await controller.configure(value.excitation)
        await controller.set_bias_ac_v(value.drive_amplitude_v)
        await controller.set_bias_dc_v(0.0)
        await controller.set_bias_output(True)
        area, excitation = await controller.scan_area(), await controller.settings()
        output_on, dc_v, ac_v = await controller.bias()
        taken = (
            _close(astuple(area), astuple(value.area))
            and _close(astuple(excitation)[:-1], astuple(value.excitation)[:-1])
            and excitation.excitations == tuple(value.excitation.excitations)
            and output_on and dc_v == 0.0 and _close((ac_v,), (value.drive_amplitude_v,))
        )
        if not taken:
            raise InstrumentCommunicationError(
                self.name, "prepare", f"settings not taken: controller reports {area}, "
                f"{excitation}, bias output {output_on} DC {dc_v:g} V AC {ac_v:g} V")

    @property
    def frequencies_hz(self) -> np.ndarray:
        return self._frequencies_hz

    @property
    def settings(self) -> AcquisitionSettings | None:
        return self._settings

    async def make_safe(self) -> tuple[bool, float, float]:
        """Tip bias output off, DC and AC at 0 V; (output, dc_v, ac_v) as read back."""
        return await self.controller.make_safe()

    async def stop(self, success: bool = True) -> None:
        """Leave the sample safe (a plan's `bps.stop(afm)`): bias output off at 0 V, then
        the tip parked off the surface; each repeated until the controller confirms it. The
        tip is parked even when the unbiasing could not be confirmed (lost replies): the
        commands may still have been obeyed, and a parked tip is safer either way."""
        try:
            await self.make_safe()
        finally:
            await self.controller.park()

    # ------------------------------------------------------------------ acquisition

    async def acquire(self) -> dict[str, np.ndarray]:
        settings = self._settings
        if settings is None:
            raise RuntimeError(f"{self.name}: prepare() the acquisition before triggering")
        excitation = settings.excitation
        if settings.point:
            line = await self.controller.acquire_point(
                excitations=len(excitation.excitations), bins=excitation.bins,
                duration_s=self._line_duration_s)
        else:
            line = await self.controller.acquire_line(
                await self.row.get_value(), pixels=settings.area.pixels_x,
                excitations=len(excitation.excitations), bins=excitation.bins,
                duration_s=self._line_duration_s)
        await self._publish_fits(line.spectra_pm, excitation.excitations)
        self._set_topography(np.asarray(line.topography_nm, dtype=np.float64))
        return {"spectra": line.spectra_pm}

    async def _publish_fits(self, spectra_pm: np.ndarray, excitations: tuple[str, ...]) -> None:
        # Off the RunEngine loop, so monitors keep their polls on time at the instrument
        # while a line is fitted; a virtual clock is held meanwhile (computation costs no
        # instrument time, and a dry run's answer does not depend on how long it took).
        spectra = spectra_pm.astype(np.complex128)
        with self.clock.hold("SHO fit of a line"):
            fit = await asyncio.get_running_loop().run_in_executor(
                _sho_fitter(), fit_sho, self._frequencies_hz, spectra)
        pixels = spectra_pm.shape[0]
        for excitation in EXCITATIONS:
            setters = self._fit_setters[excitation]
            if excitation in excitations:
                index = excitations.index(excitation)
                values = {
                    "amplitude_pm": fit.amplitude[:, index],
                    "resonance_frequency_hz": fit.resonance_frequency_hz[:, index],
                    "quality_factor": fit.quality_factor[:, index],
                    "phase_rad": fit.phase_rad[:, index],
                    "r_squared": fit.r_squared[:, index],
                }
                converged = fit.converged[:, index]
            else:
                values = {field: np.full(pixels, np.nan) for field in FIT_FIELDS}
                converged = np.zeros(pixels, dtype=bool)
            for field, value in values.items():
                setters[field](np.ascontiguousarray(value, dtype=np.float64))
            setters["converged"](np.ascontiguousarray(converged, dtype=np.bool_))

    async def topography_image(self, area: ScanArea, line_rate_hz: float) -> np.ndarray:
        """A topography-only image (lines × pixels, nm) of `area`, with the tip unbiased.

        Fast (no band excitation), for re-finding an area after the sample drifted.
        The next `prepare()` sends the map's raster again.
        """
        await self.make_safe()
        controller = self.controller
        await controller.set_scan_area(area)
        await controller.set_topography_line_rate_hz(line_rate_hz)
        lines = [
            await controller.topography_line(
                row, pixels=area.pixels_x, duration_s=1.0 / line_rate_hz)
            for row in range(area.pixels_y)
        ]
        return np.stack(lines)


@dataclass(frozen=True)
class TrackingImageSettings:
    """A fast topography image for drift tracking: where, and at what line rate."""

    area: ScanArea
    line_rate_hz: float


class TrackingImage(StandardReadable, Preparable, Triggerable):
    """The AFM's fast, unbiased topography image as a detector a plan can drive with
    messages: `prepare(TrackingImageSettings)`, `trigger()`, then read `image_nm` (lines ×
    pixels, flattened row by row; `shape` gives them)."""

    def __init__(
        self, take_image: Callable[[ScanArea, float], Awaitable[np.ndarray]], name: str = ""
    ) -> None:
        self._take_image = take_image  # the AFM's, not the AFM: a Device here is a child
        self._settings: TrackingImageSettings | None = None
        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.image_nm, self._set_image = soft_signal_r_and_setter(
                Array1D[np.float64], units="nm")
        self.lines, self._set_lines = soft_signal_r_and_setter(int, 0)
        self.pixels, self._set_pixels = soft_signal_r_and_setter(int, 0)
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def prepare(self, value: TrackingImageSettings) -> None:
        if not value.line_rate_hz > 0:
            raise ValueError(f"{self.name}: line rate {value.line_rate_hz!r} Hz must be > 0")
        self._settings = value

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        settings = self._settings
        if settings is None:
            raise RuntimeError(f"{self.name}: prepare() the tracking image before triggering")
        image = await self._take_image(settings.area, settings.line_rate_hz)
        self._set_lines(int(image.shape[0]))
        self._set_pixels(int(image.shape[1]))
        self._set_image(np.ascontiguousarray(image.ravel(), dtype=np.float64))
