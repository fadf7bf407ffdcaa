"""The start-document contract of the tr-KPFM and c-AFM grid runs (written by their plans,
read by their analyses, live and in replay): one typed model per key, as `run_metadata`."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from .run_metadata import StartKey


class PointGridMetadata(StartKey):
    """Where the points of a grid are, and which detector's keys carry them."""

    KEY: ClassVar[str] = "point_grid"
    device: str
    """The detector's name (`<afm>-cpd_transient`, `<afm>-iv_curve`): its data keys' prefix."""
    points_x: int = Field(ge=1)
    points_y: int = Field(ge=1)
    width_nm: float = Field(ge=0)
    height_nm: float = Field(ge=0)
    center_x_nm: float = 0.0
    center_y_nm: float = 0.0
    stream: str = "primary"

    def extent_nm(self) -> tuple[float, float, float, float]:
        half_w, half_h = 0.5 * self.width_nm, 0.5 * self.height_nm
        x0, y0 = self.center_x_nm, self.center_y_nm
        return (x0 - half_w, x0 + half_w, y0 - half_h, y0 + half_h)

    @property
    def points(self) -> int:
        return self.points_x * self.points_y


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
