"""Wire commands of the AFM controller's tr-KPFM and c-AFM readouts (`KPFM:*`, `CAFM:*`),
over the BE controller's channel: settings dataclasses, writes, read-backs, acquisitions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .afm_driver import BandExcitationAfmController

READOUT_DTYPE = "<f8"


@dataclass(frozen=True)
class KpfmStepSettings:
    """A tr-KPFM record: baseline for `before_s`, then the step bias for `after_s`."""

    step_bias_v: float
    before_s: float
    after_s: float
    sample_interval_s: float
    baseline_v: float = 0.0

    @property
    def samples_before(self) -> int:
        return round(self.before_s / self.sample_interval_s)

    @property
    def samples(self) -> int:
        return self.samples_before + round(self.after_s / self.sample_interval_s)

    @property
    def peak_bias_v(self) -> float:
        return max(abs(self.step_bias_v), abs(self.baseline_v))


@dataclass(frozen=True)
class IvSweepSettings:
    """A c-AFM I–V sweep: bipolar triangle at a constant |dV/dt|, repeated."""

    amplitude_v: float
    offset_v: float
    points_per_cycle: int
    cycles: int
    sweep_rate_v_per_s: float

    @property
    def points(self) -> int:
        return self.points_per_cycle * self.cycles

    @property
    def peak_bias_v(self) -> float:
        return abs(self.offset_v) + self.amplitude_v


class AfmReadoutCommands:
    """The readout commands on a `BandExcitationAfmController`'s connection."""

    def __init__(self, controller: BandExcitationAfmController) -> None:
        self.controller = controller

    @property
    def name(self) -> str:
        return self.controller.name

    async def set_kpfm_step(self, step: KpfmStepSettings) -> None:
        await self.controller.connection.write(
            f"KPFM:STEP {step.step_bias_v:.6g},{step.before_s:.6g},{step.after_s:.6g},"
            f"{step.sample_interval_s:.6g},{step.baseline_v:.6g}")

    async def kpfm_step(self) -> KpfmStepSettings:
        return KpfmStepSettings(*await self.controller._floats("KPFM:STEP?", 5))

    async def kpfm_duration_s(self) -> float:
        return await self.controller._float("KPFM:TIME?")

    async def acquire_cpd(self, *, samples: int, duration_s: float) -> np.ndarray:
        """One record at the tip, CPD (V) per sample; the reply comes after `duration_s`."""
        return await self._block("KPFM:CPD?", samples, duration_s)

    async def set_iv_sweep(self, sweep: IvSweepSettings) -> None:
        await self.controller.connection.write(
            f"CAFM:SWEEP {sweep.amplitude_v:.6g},{sweep.offset_v:.6g},{sweep.points_per_cycle},"
            f"{sweep.cycles},{sweep.sweep_rate_v_per_s:.6g}")

    async def iv_sweep(self) -> IvSweepSettings:
        amplitude, offset, points, cycles, rate = await self.controller._floats("CAFM:SWEEP?", 5)
        return IvSweepSettings(amplitude, offset, int(points), int(cycles), rate)

    async def set_current_range_a(self, range_a: float) -> None:
        await self.controller.connection.write(f"CAFM:RANG {range_a:.6g}")

    async def current_range_a(self) -> float:
        return await self.controller._float("CAFM:RANG?")

    async def iv_duration_s(self) -> float:
        return await self.controller._float("CAFM:TIME?")

    async def acquire_iv(self, *, points: int, duration_s: float) -> np.ndarray:
        """One sweep at the tip, current (A) per step; the reply comes after `duration_s`."""
        return await self._block("CAFM:IV?", points, duration_s)

    async def _block(self, command: str, count: int, duration_s: float) -> np.ndarray:
        controller = self.controller
        values = await controller.connection.query_block(
            command, READOUT_DTYPE,
            acquisition_s=controller._acquisition_timeout_s(duration_s))
        return controller._shaped(values, (count,), command)
