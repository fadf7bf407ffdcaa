"""FORC spectroscopy at the tip: one trigger takes one whole FORC sweep.

`ForcSweep` is the BE AFM's FORC detector path (`afm.forc_sweep`). It is the voltage
sweep's detector with another waveform: `prepare` moves the tip and sends `BE:FORC` (read
back: a lost write would sweep the wrong peaks), `trigger` takes the sweep in one exchange,
writes the spectra (steps × in/out of field × bins, complex64) to HDF5 and publishes the SHO
fit of every spectrum, per step, for both fields.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np
from ophyd_async.core import AsyncStatus

from .be_spectroscopy_device import FIELDS, SweepBiasLimitError, VoltageSweep
from .errors import InstrumentCommunicationError
from .forc_relaxation_settings import ForcSweepSettings
from .hdf5_stream import ArraySpec
from .replies import read_back_matches


@dataclass(frozen=True)
class ForcAcquisition:
    """One point of a FORC grid: where, which FORC sweep, and the AC drive."""

    x_nm: float
    y_nm: float
    forc: ForcSweepSettings
    drive_amplitude_v: float


class ForcSweep(VoltageSweep):
    """The FORC sweep at a point as a detector: spectra to HDF5, SHO fits per step."""

    def check_settings(self, acquisition: ForcAcquisition) -> None:
        """Refuse peaks beyond the profile's tip-bias limit before anything is sent."""
        peak_v = acquisition.forc.peak_bias_v + acquisition.drive_amplitude_v
        if peak_v > self.maximum_bias_v:
            raise SweepBiasLimitError(
                f"{self.name}: FORC peak |V_p| + U_ac = {peak_v:g} V exceeds the tip bias "
                f"limit {self.maximum_bias_v:g} V")

    @AsyncStatus.wrap
    async def prepare(self, value: ForcAcquisition) -> None:
        """Tip to the point; FORC sweep sent and read back; bins and duration read."""
        self.check_settings(value)
        controller = self.controller

        async def send() -> None:
            await controller.move_tip(value.x_nm, value.y_nm)
            await controller.set_forc(value.forc)
            taken = await controller.forc()
            x_nm, y_nm = await controller.tip_position_nm()
            if not read_back_matches((*astuple(taken), x_nm, y_nm),
                                     (*astuple(value.forc), value.x_nm, value.y_nm)):
                raise InstrumentCommunicationError(
                    self.name, "prepare", f"FORC sweep not taken: controller reports {taken} "
                    f"at ({x_nm:g}, {y_nm:g}) nm")

        await controller.connection.until_confirmed("FORC settings", send)
        self._frequencies_hz = await controller.frequencies_hz()
        self._duration_s = await controller.forc_duration_s()
        self._acquisition = value
        self._set_x(float(value.x_nm))
        self._set_y(float(value.y_nm))
        shape = (value.forc.steps, len(FIELDS), self._frequencies_hz.size)
        if self._array_specs.get("spectra") != ArraySpec(shape, np.complex64):
            self._close_writer()
            self._array_specs = {"spectra": ArraySpec(shape, np.complex64)}

    async def acquire(self) -> dict[str, np.ndarray]:
        acquisition = self._acquisition
        if acquisition is None:
            raise RuntimeError(f"{self.name}: prepare() the FORC sweep before triggering")
        spectra = await self.controller.acquire_forc(
            steps=acquisition.forc.steps, bins=self._frequencies_hz.size,
            duration_s=self._duration_s)
        await self._publish_fits(spectra)
        return {"spectra": spectra}
