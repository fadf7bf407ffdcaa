"""Time relaxation spectroscopy at the tip: one trigger takes one write/read sequence.

`RelaxationReads` is the BE AFM's relaxation detector path (`afm.relaxation`): `prepare`
moves the tip and sends `BE:RELAX` (read back), and reads the controller's read times;
`trigger` takes baseline reads, the pulse and the relaxation reads in one exchange (the
controller answers after the sequence's instrument time), writes the spectra (reads × bins,
complex64) to HDF5 and publishes the SHO fit of every read with its time from the end of
the pulse, so each event carries one relaxation curve.
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

from .afm_driver import BandExcitationAfmController
from .array_detector import ArrayStreamingDetector
from .be_spectroscopy_device import FIT_FIELDS, SweepBiasLimitError
from .errors import InstrumentCommunicationError
from .forc_relaxation_settings import RelaxationSettings
from .hdf5_stream import ArraySpec
from .readables import readables_in_order
from .replies import read_back_matches


@dataclass(frozen=True)
class RelaxationAcquisition:
    """One point of a relaxation grid: where, which write/read sequence, the AC drive."""

    x_nm: float
    y_nm: float
    relaxation: RelaxationSettings
    drive_amplitude_v: float


class RelaxationReads(ArrayStreamingDetector):
    """A write pulse and the reads after it at a point: spectra to HDF5, fits in events."""

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
        self._acquisition: RelaxationAcquisition | None = None
        self._frequencies_hz = np.zeros(0)
        self._duration_s = 0.0
        float_array = Array1D[np.float64]
        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.point_index = soft_signal_rw(int, 0)
            self.x_nm, self._set_x = soft_signal_r_and_setter(float, units="nm")
            self.y_nm, self._set_y = soft_signal_r_and_setter(float, units="nm")
            self.read_time_s, self._set_times = soft_signal_r_and_setter(float_array, units="s")
            self._fit_setters: dict[str, Callable] = {}
            for quantity, unit in {**FIT_FIELDS, "converged": ""}.items():
                datatype = Array1D[np.bool_] if quantity == "converged" else float_array
                signal, setter = soft_signal_r_and_setter(datatype, units=unit or None)
                setattr(self, quantity, signal)
                self._fit_setters[quantity] = setter
        super().__init__(directory_provider, arrays={}, name=name)

    def check_settings(self, acquisition: RelaxationAcquisition) -> None:
        """Refuse a pulse beyond the profile's tip-bias limit before anything is sent."""
        peak_v = acquisition.relaxation.peak_bias_v + acquisition.drive_amplitude_v
        if peak_v > self.maximum_bias_v:
            raise SweepBiasLimitError(
                f"{self.name}: write pulse |V_w| + U_ac = {peak_v:g} V exceeds the tip bias "
                f"limit {self.maximum_bias_v:g} V")

    @AsyncStatus.wrap
    async def prepare(self, value: RelaxationAcquisition) -> None:
        """Tip to the point; sequence sent and read back; bins, times and duration read."""
        self.check_settings(value)
        controller = self.controller

        async def send() -> None:
            await controller.move_tip(value.x_nm, value.y_nm)
            await controller.set_relaxation(value.relaxation)
            taken = await controller.relaxation()
            x_nm, y_nm = await controller.tip_position_nm()
            if not read_back_matches((*astuple(taken), x_nm, y_nm),
                                     (*astuple(value.relaxation), value.x_nm, value.y_nm)):
                raise InstrumentCommunicationError(
                    self.name, "prepare", f"relaxation not taken: controller reports {taken} "
                    f"at ({x_nm:g}, {y_nm:g}) nm")

        await controller.connection.until_confirmed("relaxation settings", send)
        self._frequencies_hz = await controller.frequencies_hz()
        self._duration_s = await controller.relaxation_duration_s()
        times = await controller.relaxation_read_times_s(value.relaxation.reads)
        self._set_times(np.ascontiguousarray(times, dtype=np.float64))
        self._acquisition = value
        self._set_x(float(value.x_nm))
        self._set_y(float(value.y_nm))
        shape = (value.relaxation.reads, self._frequencies_hz.size)
        if self._array_specs.get("spectra") != ArraySpec(shape, np.complex64):
            self._close_writer()
            self._array_specs = {"spectra": ArraySpec(shape, np.complex64)}

    @property
    def duration_s(self) -> float:
        return self._duration_s

    async def acquire(self) -> dict[str, np.ndarray]:
        acquisition = self._acquisition
        if acquisition is None:
            raise RuntimeError(f"{self.name}: prepare() the relaxation before triggering")
        spectra = await self.controller.acquire_relaxation(
            reads=acquisition.relaxation.reads, bins=self._frequencies_hz.size,
            duration_s=self._duration_s)
        with self.clock.hold("SHO fit of a relaxation"):
            fit = await asyncio.get_running_loop().run_in_executor(
                None, fit_sho, self._frequencies_hz, spectra.astype(np.complex128))
        values = {
            "amplitude_pm": fit.amplitude, "phase_rad": fit.phase_rad,
            "resonance_frequency_hz": fit.resonance_frequency_hz,
            "quality_factor": fit.quality_factor, "r_squared": fit.r_squared,
        }
        for quantity, value in values.items():
            self._fit_setters[quantity](np.ascontiguousarray(value, dtype=np.float64))
        self._fit_setters["converged"](np.ascontiguousarray(fit.converged, dtype=np.bool_))
        return {"spectra": spectra}
