"""A readout taken at one tip position as a detector: `prepare` moves the tip and sends the
waveform (read back), `trigger` takes the whole record in one exchange and publishes it as
one array in the event, beside the point's index and position.

The records are small (a few thousand numbers), so they travel in the events themselves;
BE spectra, which are large, go to HDF5 instead. Subclasses say what is sent and read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

from .afm_driver import BandExcitationAfmController
from .afm_readout_driver import AfmReadoutCommands
from .errors import InstrumentCommunicationError
from .readables import readables_in_order
from .replies import read_back_matches


class ReadoutBiasLimitError(ValueError):
    """A waveform whose bias would exceed the profile's limit; refused before sending."""


@dataclass(frozen=True)
class PointRecord:
    """Where, and the waveform (a `KpfmStepSettings` or an `IvSweepSettings`)."""

    x_nm: float
    y_nm: float
    waveform: Any


class PointReadout(StandardReadable, Preparable, Triggerable):
    """Base of the tr-KPFM and c-AFM detectors of the BE AFM."""

    VALUES_NAME = "values"
    VALUES_UNIT = ""
    WHAT = "readout"

    def __init__(self, controller: BandExcitationAfmController, *, maximum_bias_v: float,
                 name: str = "") -> None:
        self.commands = AfmReadoutCommands(controller)
        self.maximum_bias_v = maximum_bias_v
        self._record: PointRecord | None = None
        self._duration_s = 0.0
        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.point_index = soft_signal_rw(int, 0)
            self.x_nm, self._set_x = soft_signal_r_and_setter(float, units="nm")
            self.y_nm, self._set_y = soft_signal_r_and_setter(float, units="nm")
            values, self._set_values = soft_signal_r_and_setter(
                Array1D[np.float64], units=self.VALUES_UNIT)
            setattr(self, self.VALUES_NAME, values)
        super().__init__(name=name)

    def check_settings(self, record: PointRecord) -> None:
        """Refuse a waveform beyond the profile's tip-bias limit before anything is sent."""
        peak_v = record.waveform.peak_bias_v
        if peak_v > self.maximum_bias_v:
            raise ReadoutBiasLimitError(
                f"{self.name}: {self.WHAT} peak bias {peak_v:g} V exceeds the tip bias limit "
                f"{self.maximum_bias_v:g} V")

    # subclasses: the waveform's commands
    async def _send(self, waveform: Any) -> None:
        raise NotImplementedError

    async def _taken(self) -> tuple:
        raise NotImplementedError

    async def _read_duration_s(self) -> float:
        raise NotImplementedError

    async def _acquire(self, waveform: Any, duration_s: float) -> np.ndarray:
        raise NotImplementedError

    def _sent(self, waveform: Any) -> tuple:
        raise NotImplementedError

    @AsyncStatus.wrap
    async def prepare(self, value: PointRecord) -> None:
        """Tip to the point, bias output on at 0 V (no AC), waveform sent and read back."""
        self.check_settings(value)
        controller = self.commands.controller

        async def send() -> None:
            await controller.move_tip(value.x_nm, value.y_nm)
            await controller.set_bias_ac_v(0.0)
            await controller.set_bias_dc_v(0.0)
            await controller.set_bias_output(True)
            await self._send(value.waveform)
            taken = await self._taken()
            x_nm, y_nm = await controller.tip_position_nm()
            output_on, dc_v, ac_v = await controller.bias()
            if not (output_on and dc_v == 0.0 and ac_v == 0.0 and read_back_matches(
                    (*taken, x_nm, y_nm), (*self._sent(value.waveform), value.x_nm,
                                           value.y_nm))):
                raise InstrumentCommunicationError(
                    self.name, "prepare", f"{self.WHAT} not taken: controller reports "
                    f"{taken} at ({x_nm:g}, {y_nm:g}) nm, bias output {output_on} DC {dc_v:g} V")

        await controller.connection.until_confirmed(f"{self.WHAT} settings", send)
        self._duration_s = await self._read_duration_s()
        self._record = value
        self._set_x(float(value.x_nm))
        self._set_y(float(value.y_nm))

    @property
    def duration_s(self) -> float:
        """Instrument time of the prepared record, as the controller reports it."""
        return self._duration_s

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        record = self._record
        if record is None:
            raise RuntimeError(f"{self.name}: prepare() the {self.WHAT} before triggering")
        values = await self._acquire(record.waveform, self._duration_s)
        self._set_values(np.ascontiguousarray(values, dtype=np.float64))
