"""The start-document contract of the tr-KPFM and c-AFM grid runs (written by their plans,
read by their analyses, live and in replay): one typed model per key, as `run_metadata`."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from .run_metadata import PointGridMetadata


class TrKpfmMetadata(PointGridMetadata):
    """A tr-KPFM grid: the bias step of every record and what the fit needs."""

    KEY: ClassVar[str] = "trkpfm"
    step_bias_v: float
    baseline_v: float
    sample_interval_s: float = Field(gt=0)
    samples_before: int = Field(ge=0)
    samples: int = Field(ge=2)
    interelectrode_distance_um: float = Field(gt=0)
    """d of D = d²/τ."""
    fit_start_s: float = Field(ge=0)
    """Samples closer than this to the step are left out of the fit (the KPFM loop's lag)."""

    def time_since_step_s(self) -> np.ndarray:
        return (np.arange(self.samples) - self.samples_before) * self.sample_interval_s


class CafmIvMetadata(PointGridMetadata):
    """A c-AFM grid: the bias of every step of one cycle, cycles, step time, amplifier range."""

    KEY: ClassVar[str] = "cafm_iv"
    bias_v: list[float]
    """The biases of one cycle, in the order swept."""
    cycles: int = Field(ge=1)
    step_duration_s: float = Field(gt=0)
    sweep_rate_v_per_s: float = Field(gt=0)
    current_range_a: float = Field(gt=0)
