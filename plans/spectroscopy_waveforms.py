"""Bias waveforms of the ESM/BE spectroscopy modes, as plain numpy arrays (no bluesky here).

The DC sweep follows the band-excitation convention (BGlib's translators): one full cycle of
`steps_per_cycle` DC steps runs 0 → +A → 0 → −A → 0, every quarter `steps_per_cycle / 4` steps
long and each ramp leaving out its end point, so +A sits at step N/4 and −A at step 3N/4. The
phase shift rolls the full cycle towards later steps by whole quarters (shift 1 starts at −A,
2 at 0 on the way down, 3 at +A); a cycle fraction keeps only the first ½, ¼ or ¾ of the full
cycle, with the full cycle's step size. The offset is added last.

Builders check their arguments and raise ValueError naming the argument, its value and the
allowed range, so a typo in a protocol file fails before anything reaches the tip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Sanity limit only: the instrument profile's own bias limit is checked by the device.
MAX_BIAS_V = 200.0
MAX_STEPS = 1_000_000
CYCLE_FRACTIONS = {"full": 1.0, "half": 0.5, "quarter": 0.25, "three_quarters": 0.75}
PHASE_SHIFTS = (0, 1, 2, 3)


@dataclass(frozen=True)
class DcModulationWaveform:
    """DC-modulation steps: each DC step (in-field) followed by a read step (out-of-field)."""

    bias_v: np.ndarray
    in_field: np.ndarray  # True on the DC steps, False on the read steps

    @property
    def in_field_bias_v(self) -> np.ndarray:
        return self.bias_v[self.in_field]

    @property
    def out_of_field_bias_v(self) -> np.ndarray:
        return self.bias_v[~self.in_field]


@dataclass(frozen=True)
class ForcWaveform:
    """First-order reversal curves: triangular cycles whose peak and trough grow cycle by cycle."""

    bias_v: np.ndarray
    peak_v: np.ndarray  # (forc_cycles,) the positive turning bias of each FORC cycle
    trough_v: np.ndarray  # (forc_cycles,) the negative turning bias of each FORC cycle
    forc_cycle: np.ndarray  # (len(bias_v),) which FORC cycle each step belongs to


@dataclass(frozen=True)
class TimedWaveform:
    """Piecewise-constant bias: step k holds `bias_v[k]` from `time_s[k]` for `duration_s[k]`."""

    time_s: np.ndarray
    bias_v: np.ndarray
    duration_s: np.ndarray
    measure: np.ndarray  # True where the response is recorded

    @property
    def total_duration_s(self) -> float:
        return float(self.time_s[-1] + self.duration_s[-1]) if self.time_s.size else 0.0


def _fail(name: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"{name}={value!r} is outside the allowed range: {allowed}")


def _check_real(name: str, value: float, low: float, high: float, *, open_low: bool = False):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise _fail(name, value, f"{'(' if open_low else '['}{low:g}, {high:g}] (a number)")
    ok_low = value > low if open_low else value >= low
    if not (math.isfinite(value) and ok_low and value <= high):
        raise _fail(name, value, f"{'(' if open_low else '['}{low:g}, {high:g}]")


def _check_int(name: str, value: int, low: int, high: int, multiple_of: int = 1):
    allowed = f"[{low}, {high}]" + (f" and a multiple of {multiple_of}" if multiple_of > 1 else "")
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise _fail(name, value, allowed + " (an integer)")
    if not (low <= value <= high) or value % multiple_of:
        raise _fail(name, value, allowed)


def _check_peak(amplitude_v: float, offset_v: float) -> None:
    if abs(offset_v) + abs(amplitude_v) > MAX_BIAS_V:
        raise _fail("amplitude_v + |offset_v|", abs(offset_v) + abs(amplitude_v),
                    f"[0, {MAX_BIAS_V:g}] V")


def _unit_cycle(steps_per_cycle: int, cycle_fraction: str, phase_shift: int) -> np.ndarray:
    """The triangle of amplitude 1 for one (fractional) cycle, after the phase shift."""
    if not isinstance(cycle_fraction, str) or cycle_fraction not in CYCLE_FRACTIONS:
        raise _fail("cycle_fraction", cycle_fraction, f"one of {sorted(CYCLE_FRACTIONS)}")
    if not isinstance(phase_shift, (int, np.integer)) or isinstance(phase_shift, bool) or (
        phase_shift not in PHASE_SHIFTS
    ):
        raise _fail("phase_shift", phase_shift, "0, 1, 2 or 3 (quarter cycles)")
    fraction = CYCLE_FRACTIONS[cycle_fraction]
    full = steps_per_cycle / fraction
    if not float(full).is_integer() or int(full) % 4:
        raise _fail("steps_per_cycle", steps_per_cycle,
                    f"[4, {MAX_STEPS}] with the full cycle (steps / {fraction:g}) a multiple of 4")
    quarter = int(full) // 4
    ramp = np.arange(quarter) / quarter
    cycle = np.concatenate([ramp, 1.0 - ramp, -ramp, ramp - 1.0])
    return np.roll(cycle, phase_shift * quarter)[:steps_per_cycle]


def bipolar_triangle_v(
    amplitude_v: float,
    offset_v: float = 0.0,
    steps_per_cycle: int = 64,
    cycles: int = 1,
    cycle_fraction: str = "full",
    phase_shift: int = 0,
) -> np.ndarray:
    """DC bias of each step of a bipolar triangular sweep, (steps_per_cycle · cycles,) in V."""
    _check_real("amplitude_v", amplitude_v, 0.0, MAX_BIAS_V, open_low=True)
    _check_real("offset_v", offset_v, -MAX_BIAS_V, MAX_BIAS_V)
    _check_peak(amplitude_v, offset_v)
    _check_int("steps_per_cycle", steps_per_cycle, 4, MAX_STEPS)
    _check_int("cycles", cycles, 1, MAX_STEPS)
    if steps_per_cycle * cycles > MAX_STEPS:
        raise _fail("steps_per_cycle * cycles", steps_per_cycle * cycles, f"[4, {MAX_STEPS}]")
    unit = _unit_cycle(steps_per_cycle, cycle_fraction, phase_shift)
    return np.tile(offset_v + amplitude_v * unit, cycles)


def dc_modulation(dc_bias_v: np.ndarray, read_bias_v: float = 0.0) -> DcModulationWaveform:
    """Interleave each DC step with a read step at `read_bias_v` (in-field, out-of-field, ...)."""
    dc = np.asarray(dc_bias_v, dtype=float)
    if dc.ndim != 1 or dc.size == 0:
        raise _fail("dc_bias_v.shape", dc.shape, "(n_steps,) with n_steps ≥ 1")
    if not np.all(np.isfinite(dc)) or np.max(np.abs(dc)) > MAX_BIAS_V:
        raise _fail("max |dc_bias_v|", float(np.max(np.abs(dc))), f"[0, {MAX_BIAS_V:g}] V")
    _check_real("read_bias_v", read_bias_v, -MAX_BIAS_V, MAX_BIAS_V)
    bias = np.empty(2 * dc.size)
    bias[0::2] = dc
    bias[1::2] = read_bias_v
    in_field = np.zeros(2 * dc.size, dtype=bool)
    in_field[0::2] = True
    return DcModulationWaveform(bias_v=bias, in_field=in_field)


def forc_amplitudes_v(start_v: float, end_v: float, forc_cycles: int) -> np.ndarray:
    """Turning biases of the FORC cycles, stepped evenly from `start_v` to `end_v`."""
    _check_real("start_v", start_v, -MAX_BIAS_V, MAX_BIAS_V)
    _check_real("end_v", end_v, -MAX_BIAS_V, MAX_BIAS_V)
    _check_int("forc_cycles", forc_cycles, 1, 10_000)
    if forc_cycles == 1:
        return np.array([float(start_v)])
    return np.linspace(start_v, end_v, forc_cycles)


def forc_waveform(
    peak_start_v: float,
    peak_end_v: float,
    forc_cycles: int,
    trough_start_v: float | None = None,
    trough_end_v: float | None = None,
    steps_per_cycle: int = 64,
    cycles_per_forc: int = 1,
    phase_shift: int = 0,
) -> ForcWaveform:
    """FORC sweep: in FORC cycle k the triangle turns at peak_v[k] and trough_v[k].

    Troughs default to the negated peaks (a symmetric sweep). Each cycle is the unit triangle
    scaled to amplitude (peak − trough)/2 about (peak + trough)/2, so every cycle starts at its
    own midpoint bias.
    """
    trough_start_v = -peak_start_v if trough_start_v is None else trough_start_v
    trough_end_v = -peak_end_v if trough_end_v is None else trough_end_v
    peaks = forc_amplitudes_v(peak_start_v, peak_end_v, forc_cycles)
    troughs = forc_amplitudes_v(trough_start_v, trough_end_v, forc_cycles)
    if np.any(peaks <= troughs):
        gap_v = float(np.min(peaks - troughs))
        raise _fail("peak_v - trough_v", gap_v, "(0, inf) V in every FORC cycle")
    _check_int("steps_per_cycle", steps_per_cycle, 4, MAX_STEPS)
    _check_int("cycles_per_forc", cycles_per_forc, 1, 10_000)
    if steps_per_cycle * cycles_per_forc * forc_cycles > MAX_STEPS:
        raise _fail("steps_per_cycle * cycles_per_forc * forc_cycles",
                    steps_per_cycle * cycles_per_forc * forc_cycles, f"[4, {MAX_STEPS}]")
    unit = np.tile(_unit_cycle(steps_per_cycle, "full", phase_shift), cycles_per_forc)
    amplitude = (peaks - troughs) / 2.0
    centre = (peaks + troughs) / 2.0
    bias = (centre[:, None] + amplitude[:, None] * unit[None, :]).ravel()
    cycle = np.repeat(np.arange(forc_cycles), unit.size)
    return ForcWaveform(bias_v=bias, peak_v=peaks, trough_v=troughs, forc_cycle=cycle)


def time_relaxation_waveform(
    write_bias_v: float,
    write_duration_s: float,
    read_duration_s: float,
    read_points: int,
    read_bias_v: float = 0.0,
    pulses: int = 1,
    baseline_points: int = 0,
) -> TimedWaveform:
    """Write/read pulse train: a write step, then `read_points` read steps spread over the read.

    Each pulse is `baseline_points` read steps before the pulse (the response it starts
    from), one write step at `write_bias_v` (not recorded), then equal read steps at
    `read_bias_v` covering `read_duration_s`; the relaxation of the response is read on
    those. Baseline steps are as long as the read steps.
    """
    _check_real("write_bias_v", write_bias_v, -MAX_BIAS_V, MAX_BIAS_V)
    _check_real("read_bias_v", read_bias_v, -MAX_BIAS_V, MAX_BIAS_V)
    _check_real("write_duration_s", write_duration_s, 0.0, 3600.0, open_low=True)
    _check_real("read_duration_s", read_duration_s, 0.0, 3600.0, open_low=True)
    _check_int("read_points", read_points, 1, MAX_STEPS)
    _check_int("pulses", pulses, 1, 10_000)
    _check_int("baseline_points", baseline_points, 0, MAX_STEPS)
    per_pulse = baseline_points + read_points + 1
    if pulses * per_pulse > MAX_STEPS:
        raise _fail("pulses * (baseline_points + read_points + 1)", pulses * per_pulse,
                    f"[2, {MAX_STEPS}]")
    read_step_s = read_duration_s / read_points
    reads = np.full(read_points, float(read_bias_v))
    baseline = np.full(baseline_points, float(read_bias_v))
    one_bias = np.concatenate([baseline, [write_bias_v], reads])
    one_duration = np.concatenate([np.full(baseline_points, read_step_s), [write_duration_s],
                                   np.full(read_points, read_step_s)])
    one_measure = np.concatenate([np.ones(baseline_points, dtype=bool), [False],
                                  np.ones(read_points, dtype=bool)])
    duration = np.tile(one_duration, pulses)
    start = np.concatenate([[0.0], np.cumsum(duration)[:-1]])
    return TimedWaveform(time_s=start, bias_v=np.tile(one_bias, pulses), duration_s=duration,
                         measure=np.tile(one_measure, pulses))


def kpfm_bias_step(
    step_bias_v: float,
    before_s: float,
    after_s: float,
    sample_interval_s: float,
    baseline_v: float = 0.0,
) -> TimedWaveform:
    """tr-KPFM bias step: `baseline_v` for `before_s`, then `step_bias_v` for `after_s`.

    Samples every `sample_interval_s` (tr-KPFM resolves ~20 ms); the CPD is recorded throughout,
    so the step time is `before_s` and the relaxation is read on the samples after it.
    """
    _check_real("step_bias_v", step_bias_v, -MAX_BIAS_V, MAX_BIAS_V)
    _check_real("baseline_v", baseline_v, -MAX_BIAS_V, MAX_BIAS_V)
    _check_real("sample_interval_s", sample_interval_s, 0.0, 3600.0, open_low=True)
    _check_real("before_s", before_s, 0.0, 86_400.0)
    _check_real("after_s", after_s, 0.0, 86_400.0, open_low=True)
    n_before = round(before_s / sample_interval_s)
    n_after = round(after_s / sample_interval_s)
    if n_after < 1 or n_before + n_after > MAX_STEPS:
        raise _fail("(before_s + after_s) / sample_interval_s",
                    (before_s + after_s) / sample_interval_s, f"[1, {MAX_STEPS}] samples after "
                    "the step included")
    n = n_before + n_after
    bias = np.where(np.arange(n) < n_before, float(baseline_v), float(step_bias_v))
    return TimedWaveform(time_s=np.arange(n) * sample_interval_s, bias_v=bias,
                         duration_s=np.full(n, float(sample_interval_s)),
                         measure=np.ones(n, dtype=bool))


def iv_triangle(
    amplitude_v: float,
    points_per_cycle: int,
    cycles: int,
    sweep_rate_v_per_s: float,
    offset_v: float = 0.0,
) -> TimedWaveform:
    """c-AFM I–V sweep: the bipolar triangle run at a constant |dV/dt| of `sweep_rate_v_per_s`.

    A cycle sweeps 4·amplitude volts, so it lasts 4·amplitude / rate; the displacement current
    C·dV/dt is then the same magnitude on every ramp.
    """
    _check_real("sweep_rate_v_per_s", sweep_rate_v_per_s, 0.0, 1.0e6, open_low=True)
    _check_int("points_per_cycle", points_per_cycle, 4, MAX_STEPS, multiple_of=4)
    bias = bipolar_triangle_v(amplitude_v, offset_v, points_per_cycle, cycles)
    step_s = 4.0 * amplitude_v / sweep_rate_v_per_s / points_per_cycle
    n = bias.size
    return TimedWaveform(time_s=np.arange(n) * step_s, bias_v=bias,
                         duration_s=np.full(n, step_s), measure=np.ones(n, dtype=bool))


def plot_waveform(ax, waveform, *, label: str | None = None, color: str | None = None):
    """Draw a waveform on matplotlib axes: bias against step number, or against time.

    `waveform` is a bias array (V), a DcModulationWaveform (out-of-field steps marked), a
    ForcWaveform or a TimedWaveform (held steps drawn as steps). Returns the axes.
    """
    if isinstance(waveform, TimedWaveform):
        t = np.append(waveform.time_s, waveform.total_duration_s)
        v = np.append(waveform.bias_v, waveform.bias_v[-1:])
        ax.step(t, v, where="post", label=label, color=color, lw=1.2)
        ax.set_xlabel("time (s)")
    else:
        bias = waveform.bias_v if hasattr(waveform, "bias_v") else np.asarray(waveform, float)
        steps = np.arange(bias.size)
        ax.step(steps, bias, where="post", label=label, color=color, lw=1.2)
        if isinstance(waveform, DcModulationWaveform):
            out = ~waveform.in_field
            ax.plot(steps[out], bias[out], ".", ms=3, color="0.4", label="out-of-field")
        ax.set_xlabel("step")
    ax.set_ylabel("tip bias (V)")
    ax.axhline(0.0, color="0.8", lw=0.6, zorder=0)
    if label is not None:
        ax.legend(loc="best", fontsize="small")
    return ax


def waveform_figure(path: Path, waveforms: dict[str, object], title: str = "") -> Path:
    """Write a PNG with one panel per named waveform (Agg canvas, no screen needed)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 2.2 * max(1, len(waveforms))))
    axes = figure.subplots(max(1, len(waveforms)), 1, squeeze=False)[:, 0]
    for ax, (name, waveform) in zip(axes, waveforms.items(), strict=False):
        plot_waveform(ax, waveform)
        ax.set_title(name, fontsize="medium")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
