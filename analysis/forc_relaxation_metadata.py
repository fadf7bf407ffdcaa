"""The start-document contract of FORC and time relaxation spectroscopy runs (one typed
model per key, written by the plan, read back by the analysis live and in replay; see
`run_metadata`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from .run_metadata import StartKey


class _PointGrid(StartKey):
    """Where the points of a spectroscopy grid are and whose data keys carry them."""

    device: str
    """The detector's name (`<afm>-forc_sweep`, `<afm>-relaxation`): its data-key prefix."""
    points_x: int = Field(ge=1)
    points_y: int = Field(ge=1)
    width_nm: float = Field(ge=0)
    height_nm: float = Field(ge=0)
    center_x_nm: float = 0.0
    center_y_nm: float = 0.0
    u_ac_v: float
    step_duration_s: float = Field(gt=0)
    """One BE spectrum (chirp × averages): the length of a sweep step."""
    stream: str = "primary"

    def extent_nm(self) -> tuple[float, float, float, float]:
        """(x_left, x_right, y_bottom, y_top) of the grid's cells."""
        half_w, half_h = 0.5 * self.width_nm, 0.5 * self.height_nm
        x0, y0 = self.center_x_nm, self.center_y_nm
        return (x0 - half_w, x0 + half_w, y0 - half_h, y0 + half_h)


class ForcMetadata(_PointGrid):
    """What the FORC analysis needs to cut each point's sweep into its FORC cycles."""

    KEY: ClassVar[str] = "forc_spectroscopy"
    peak_v: list[float]
    """The turning bias of each FORC cycle, in the order swept."""
    steps_per_cycle: int = Field(ge=4)
    cycles_per_forc: int = Field(ge=1)
    read_bias_v: float = 0.0
    dc_bias_v: list[float]
    """Every write step of the sweep, in order (forc cycles × repeats × steps per cycle)."""


class RelaxationMetadata(_PointGrid):
    """What the relaxation analysis needs besides each event's read times."""

    KEY: ClassVar[str] = "time_relaxation"
    write_bias_v: float
    write_duration_s: float = Field(gt=0)
    read_duration_s: float = Field(gt=0)
    read_points: int = Field(ge=2)
    baseline_points: int = Field(ge=0)
    read_bias_v: float = 0.0
