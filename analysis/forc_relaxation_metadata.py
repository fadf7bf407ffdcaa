"""The start-document contract of FORC and time relaxation spectroscopy runs (one typed
model per key, written by the plan, read back by the analysis live and in replay; see
`run_metadata`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from .run_metadata import PointGridMetadata


class _PointGrid(PointGridMetadata):
    """A BE point grid: the read excitation and the length of one read."""

    u_ac_v: float
    step_duration_s: float = Field(gt=0)
    """One BE spectrum (chirp × averages): the length of a sweep step."""


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
