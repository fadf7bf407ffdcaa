"""c-AFM at the tip: one trigger takes a whole I–V sweep (`CAFM:IV?`) with the current
amplifier at its full-scale range.

The event of a point carries `current_a`, one value per step of the sweep (the biases follow
from the sweep settings in the start document) and the range, so clipped readings can be told.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np

from .afm_readout_driver import IvSweepSettings
from .point_readout import PointReadout

NANOAMPERES_PER_A = 1e9
"""The range is compared in nA (read-backs are compared to ~1e-4 absolute)."""


@dataclass(frozen=True)
class IvMeasurement:
    """The sweep and the current amplifier's full scale (A)."""

    sweep: IvSweepSettings
    current_range_a: float

    @property
    def peak_bias_v(self) -> float:
        return self.sweep.peak_bias_v


class IvCurve(PointReadout):
    VALUES_NAME = "current_a"
    VALUES_UNIT = "A"
    WHAT = "c-AFM I-V sweep"

    async def _send(self, waveform: IvMeasurement) -> None:
        await self.commands.set_iv_sweep(waveform.sweep)
        await self.commands.set_current_range_a(waveform.current_range_a)

    async def _taken(self) -> tuple:
        range_a = await self.commands.current_range_a()
        return (*astuple(await self.commands.iv_sweep()), range_a * NANOAMPERES_PER_A)

    def _sent(self, waveform: IvMeasurement) -> tuple:
        return (*astuple(waveform.sweep), waveform.current_range_a * NANOAMPERES_PER_A)

    async def _read_duration_s(self) -> float:
        return await self.commands.iv_duration_s()

    async def _acquire(self, waveform: IvMeasurement, duration_s: float) -> np.ndarray:
        return await self.commands.acquire_iv(points=waveform.sweep.points, duration_s=duration_s)
