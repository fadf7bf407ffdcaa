"""The AFM controller's non-BE readouts: tr-KPFM (CPD after a bias step) and c-AFM (current
on a triangular sweep), each a channel with its own physics module, settings and truth.

Both drive the controller's bias output during their waveform and leave it holding the
waveform's last bias (as a controller does until told otherwise), so a plan must unbias the
tip itself: the `safe_state` truth then shows whether it did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .cafm_iv import CafmChannel, MemristiveContact
from .trkpfm_relaxation import KpfmChannel, SurfacePotentialRelaxation

READOUT_PARAMETERS = (*SurfacePotentialRelaxation.PARAMETERS, *MemristiveContact.PARAMETERS)
MODES = ("kpfm", "cafm")


def _subset(parameters, values: Mapping[str, float]) -> dict[str, float]:
    names = {parameter.name for parameter in parameters}
    return {name: value for name, value in values.items() if name in names}


class AfmReadouts:
    """The two channels over one AFM model's parameter values."""

    def __init__(self, values: Mapping[str, float], seed: int | Sequence[int] = 0) -> None:
        self.kpfm = KpfmChannel(SurfacePotentialRelaxation(
            _subset(SurfacePotentialRelaxation.PARAMETERS, values), seed=seed), seed=seed)
        self.cafm = CafmChannel(MemristiveContact(
            _subset(MemristiveContact.PARAMETERS, values), seed=seed), seed=seed)

    def reset(self) -> None:
        self.kpfm.reset()
        self.cafm.reset()

    def duration_s(self, mode: str) -> float:
        return self.kpfm.step.duration_s() if mode == "kpfm" else self.cafm.sweep.duration_s()

    def acquire(self, mode: str, local: Mapping[str, np.ndarray], sample_x_nm: float,
                sample_y_nm: float, temperature_k: float) -> tuple[np.ndarray, float]:
        """(the record, the bias the output holds afterwards)."""
        if mode == "kpfm":
            values = self.kpfm.acquire(local, sample_x_nm, sample_y_nm, temperature_k)
            return values, float(self.kpfm.step.step_bias_v)
        values = self.cafm.acquire(local, sample_x_nm, sample_y_nm, temperature_k)
        return values, float(self.cafm.sweep.bias_v()[-1])

    def truth_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"trkpfm.{name}": v for name, v in self.kpfm.truth().items()}
        arrays.update({f"cafm.{name}": v for name, v in self.cafm.truth().items()})
        return arrays

    def ground_truth(self) -> dict[str, Any]:
        truth: dict[str, Any] = {}
        if kpfm := self.kpfm.ground_truth():
            truth["trkpfm"] = kpfm
        if cafm := self.cafm.ground_truth():
            truth["cafm"] = cafm
        return truth
