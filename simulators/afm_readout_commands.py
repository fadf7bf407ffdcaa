"""The tr-KPFM and c-AFM commands of the emulated AFM controller (see the command table of
`afm_controller_emulator`), registered on it as one block."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cafm_iv import CafmSettingError
from .scpi_server import DATA_OUT_OF_RANGE, ILLEGAL_PARAMETER_VALUE, ScpiError, parse_floats
from .trkpfm_relaxation import KpfmSettingError

if TYPE_CHECKING:
    from .afm_controller_emulator import AfmControllerEmulator


def _setting(action):
    def handler(arguments: list[str]) -> None:
        try:
            action(arguments)
        except (KpfmSettingError, CafmSettingError) as error:
            raise ScpiError(DATA_OUT_OF_RANGE, str(error)) from None

    return handler


def _whole(value: float, name: str) -> int:
    if not float(value).is_integer():
        raise ScpiError(ILLEGAL_PARAMETER_VALUE, f"{name} {value:g} must be a whole number")
    return int(value)


def _format(values: tuple) -> str:
    return ",".join(f"{value:.9g}" if isinstance(value, float) else str(value) for value in values)


def register_readout_commands(emulator: AfmControllerEmulator) -> None:
    """KPFM:STEP/TIME?/CPD? and CAFM:SWEEP/RANG/TIME?/IV? on `emulator`."""
    model = emulator.model
    kpfm, cafm = model.readouts.kpfm, model.readouts.cafm

    def set_sweep(arguments: list[str]) -> None:
        amplitude, offset, points, cycles, rate = parse_floats(arguments, 5)
        cafm.set_sweep(amplitude, offset, _whole(points, "points per cycle"),
                       _whole(cycles, "cycles"), rate)

    emulator.register("KPFM:STEP", _setting(
        lambda a: kpfm.set_step(*parse_floats(a, 5))))
    emulator.register("KPFM:STEP?", lambda _: _format((
        kpfm.step.step_bias_v, kpfm.step.before_s, kpfm.step.after_s,
        kpfm.step.sample_interval_s, kpfm.step.baseline_v)))
    emulator.register("KPFM:TIME?", lambda _: _format((model.readouts.duration_s("kpfm"),)))
    emulator.register("KPFM:CPD?", lambda _: emulator._acquire(
        model.readouts.duration_s("kpfm"), lambda: model.acquire_readout("kpfm")))
    emulator.register("CAFM:SWEEP", _setting(set_sweep))
    emulator.register("CAFM:SWEEP?", lambda _: _format((
        cafm.sweep.amplitude_v, cafm.sweep.offset_v, cafm.sweep.points_per_cycle,
        cafm.sweep.cycles, cafm.sweep.sweep_rate_v_per_s)))
    emulator.register("CAFM:RANG", _setting(lambda a: cafm.set_range(*parse_floats(a, 1))))
    emulator.register("CAFM:RANG?", lambda _: _format((cafm.range_a,)))
    emulator.register("CAFM:TIME?", lambda _: _format((model.readouts.duration_s("cafm"),)))
    emulator.register("CAFM:IV?", lambda _: emulator._acquire(
        model.readouts.duration_s("cafm"), lambda: model.acquire_readout("cafm")))
