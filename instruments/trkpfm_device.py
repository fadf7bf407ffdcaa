"""tr-KPFM at the tip: one trigger records CPD(t) through a lateral bias step (`KPFM:CPD?`).

The event of a point carries `cpd_v`, one value per sample (baseline samples first, then the
samples after the step); the sample times follow from the step settings in the start document.
"""

from __future__ import annotations

from dataclasses import astuple

import numpy as np

from .afm_readout_driver import KpfmStepSettings
from .point_readout import PointReadout


class CpdTransient(PointReadout):
    VALUES_NAME = "cpd_v"
    VALUES_UNIT = "V"
    WHAT = "tr-KPFM bias step"

    async def _send(self, waveform: KpfmStepSettings) -> None:
        await self.commands.set_kpfm_step(waveform)

    async def _taken(self) -> tuple:
        return astuple(await self.commands.kpfm_step())

    def _sent(self, waveform: KpfmStepSettings) -> tuple:
        return astuple(waveform)

    async def _read_duration_s(self) -> float:
        return await self.commands.kpfm_duration_s()

    async def _acquire(self, waveform: KpfmStepSettings, duration_s: float) -> np.ndarray:
        return await self.commands.acquire_cpd(samples=waveform.samples, duration_s=duration_s)
