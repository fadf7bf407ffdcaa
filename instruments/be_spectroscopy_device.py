"""Band-excitation voltage spectroscopy at the tip: one trigger takes one whole DC sweep.

`VoltageSweep` is the BE AFM's second detector path (`afm.voltage_sweep`): `prepare`
moves the tip to a point and sends the sweep (read back, since a write lost on the wire
would otherwise sweep the wrong bias); `trigger` takes the sweep in one exchange (the
controller answers after the sweep's instrument time), writes the spectra (steps × in/out of
field × bins, complex64) to HDF5 and fits every spectrum with the vectorised SHO fit, so the
event of a point carries per-step arrays of A, φ, f0, Q, r² for both fields. The band, bins,
chirp, averages and U_ac are the AFM's own (`afm.prepare` of a point acquisition).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    StandardReadableFormat,
    soft_signal_r_and_setter,
    soft_signal_rw,
)

from vegard.analysis.sho_fit import fit_sho
from vegard.clock import WALL_CLOCK, InstrumentClock

from .afm_driver import BandExcitationAfmController, DcSweepSettings
from .array_detector import ArrayStreamingDetector
from .errors import InstrumentCommunicationError
from .hdf5_stream import ArraySpec
from .readables import readables_in_order
from .replies import read_back_matches

FIELDS = ("in_field", "out_of_field")
FIT_FIELDS = {
    "amplitude_pm": "pm",
    "phase_rad": "rad",
    "resonance_frequency_hz": "Hz",
    "quality_factor": "",
    "r_squared": "",
}


class SweepBiasLimitError(ValueError):
    """A sweep whose tip voltage would exceed the profile's limit; refused before sending."""


@dataclass(frozen=True)
class SweepAcquisition:
    """One point of a voltage-spectroscopy grid: where, which sweep, and the AC drive."""

    x_nm: float
    y_nm: float
    sweep: DcSweepSettings
    drive_amplitude_v: float


def sweep_peak_bias_v(sweep: DcSweepSettings, drive_amplitude_v: float) -> float:
    """The largest |V_dc| + U_ac the sweep puts on the tip (write or read steps)."""
    return max(abs(sweep.offset_v) + sweep.amplitude_v, abs(sweep.read_bias_v)) + (
        drive_amplitude_v)


class VoltageSweep(ArrayStreamingDetector):
    """The DC sweep at a point as a detector: spectra to HDF5, SHO fits per step in events."""

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
        self._acquisition: SweepAcquisition | None = None
        self._frequencies_hz = np.zeros(0)
        self._duration_s = 0.0
        float_array = Array1D[np.float64]
        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.point_index = soft_signal_rw(int, 0)
            self.x_nm, self._set_x = soft_signal_r_and_setter(float, units="nm")
            self.y_nm, self._set_y = soft_signal_r_and_setter(float, units="nm")
            self._fit_setters: dict[str, dict[str, Callable]] = {}
            for field in FIELDS:
                setters = {}
                for quantity, unit in {**FIT_FIELDS, "converged": ""}.items():
                    datatype = Array1D[np.bool_] if quantity == "converged" else float_array
                    signal, setter = soft_signal_r_and_setter(datatype, units=unit or None)
                    setattr(self, f"{field}_{quantity}", signal)
                    setters[quantity] = setter
                self._fit_setters[field] = setters
        super().__init__(directory_provider, arrays={}, name=name)

    def check_settings(self, acquisition: SweepAcquisition) -> None:
        """Refuse a sweep beyond the profile's tip-bias limit before anything is sent."""
        peak_v = sweep_peak_bias_v(acquisition.sweep, acquisition.drive_amplitude_v)
        if peak_v > self.maximum_bias_v:
            raise SweepBiasLimitError(
                f"{self.name}: sweep |offset| + amplitude + U_ac = {peak_v:g} V exceeds the "
                f"tip bias limit {self.maximum_bias_v:g} V")

    @AsyncStatus.wrap
    async def prepare(self, value: SweepAcquisition) -> None:
        """Tip to the point; sweep sent and read back; bins and sweep duration read."""
        self.check_settings(value)
        controller = self.controller

        async def send() -> None:
            await controller.move_tip(value.x_nm, value.y_nm)
            await controller.set_sweep(value.sweep)
            taken = await controller.sweep()
            x_nm, y_nm = await controller.tip_position_nm()
            if not read_back_matches((*astuple(taken), x_nm, y_nm),
                          (*astuple(value.sweep), value.x_nm, value.y_nm)):
                raise InstrumentCommunicationError(
                    self.name, "prepare", f"sweep not taken: controller reports {taken} at "
                    f"({x_nm:g}, {y_nm:g}) nm")

        await controller.connection.until_confirmed("sweep settings", send)
        self._frequencies_hz = await controller.frequencies_hz()
        self._duration_s = await controller.sweep_duration_s()
        self._acquisition = value
        self._set_x(float(value.x_nm))
        self._set_y(float(value.y_nm))
        shape = (value.sweep.steps, len(FIELDS), self._frequencies_hz.size)
        if self._array_specs.get("spectra") != ArraySpec(shape, np.complex64):
            self._close_writer()
            self._array_specs = {"spectra": ArraySpec(shape, np.complex64)}

    @property
    def duration_s(self) -> float:
        """Instrument time of the prepared sweep, as the controller reports it."""
        return self._duration_s

    async def acquire(self) -> dict[str, np.ndarray]:
        acquisition = self._acquisition
        if acquisition is None:
            raise RuntimeError(f"{self.name}: prepare() the sweep before triggering")
        spectra = await self.controller.acquire_sweep(
            steps=acquisition.sweep.steps, bins=self._frequencies_hz.size,
            duration_s=self._duration_s)
        await self._publish_fits(spectra)
        return {"spectra": spectra}

    async def _publish_fits(self, spectra_pm: np.ndarray) -> None:
        # as the BE device does: off the RunEngine loop, the virtual clock held meanwhile
        with self.clock.hold("SHO fit of a sweep"):
            fit = await asyncio.get_running_loop().run_in_executor(
                None, fit_sho, self._frequencies_hz, spectra_pm.astype(np.complex128))
        for index, field in enumerate(FIELDS):
            setters = self._fit_setters[field]
            values = {
                "amplitude_pm": fit.amplitude[:, index],
                "phase_rad": fit.phase_rad[:, index],
                "resonance_frequency_hz": fit.resonance_frequency_hz[:, index],
                "quality_factor": fit.quality_factor[:, index],
                "r_squared": fit.r_squared[:, index],
            }
            for quantity, value in values.items():
                setters[quantity](np.ascontiguousarray(value, dtype=np.float64))
            setters["converged"](np.ascontiguousarray(fit.converged[:, index], dtype=np.bool_))

