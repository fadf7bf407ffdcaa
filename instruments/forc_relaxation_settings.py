"""What the BE AFM controller runs for FORC and time relaxation spectroscopy (`BE:FORC`,
`BE:RELAX`), as the driver sends and reads them back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ForcSweepSettings:
    """A FORC sweep in DC modulation: symmetric cycles 0 → +V_p → 0 → −V_p → 0, V_p stepped
    evenly from `peak_start_v` to `peak_end_v` over `forc_cycles`, each cycle run
    `cycles_per_forc` times, every DC step followed by a read step at `read_bias_v`."""

    peak_start_v: float
    peak_end_v: float
    forc_cycles: int
    steps_per_cycle: int
    cycles_per_forc: int
    read_bias_v: float = 0.0

    @property
    def steps(self) -> int:
        return self.forc_cycles * self.steps_per_cycle * self.cycles_per_forc

    @property
    def peak_bias_v(self) -> float:
        """The largest |V_dc| the sweep puts on the tip (write or read steps)."""
        return max(abs(self.peak_start_v), abs(self.peak_end_v), abs(self.read_bias_v))


@dataclass(frozen=True)
class RelaxationSettings:
    """A write/read sequence: `baseline_points` reads, one pulse of `write_bias_v` for
    `write_duration_s`, then `read_points` reads over `read_duration_s`, all at
    `read_bias_v`."""

    write_bias_v: float
    write_duration_s: float
    read_duration_s: float
    read_points: int
    baseline_points: int = 4
    read_bias_v: float = 0.0

    @property
    def reads(self) -> int:
        return self.baseline_points + self.read_points

    @property
    def peak_bias_v(self) -> float:
        return max(abs(self.write_bias_v), abs(self.read_bias_v))
