"""A band-excitation AFM controller, emulated over the `AtomicForceMicroscope` model.

The command set is ours (real BE controllers each have their own); it is
SCPI-shaped so the same base server, driver tooling and error queue apply.
Lengths in nm, voltages in V, frequencies in Hz, times in s.

    SCAN:CENT <x>,<y>     raster centre (scanner frame)       SCAN:CENT?  -> x,y
    SCAN:SIZE <w>,<h>     raster size                          SCAN:SIZE?  -> w,h
    SCAN:PIX <nx>,<ny>    pixels per line, lines               SCAN:PIX?   -> nx,ny
    SCAN:MOVE <x>,<y>     tip to a scanner position            SCAN:POS?   -> x,y
    SCAN:LRAT <Hz>        topography-only line rate            SCAN:LRAT?
    FORC:SETP <nN>        normal-force setpoint (z feedback)   FORC:SETP?
    BIAS:DC <V>           static tip DC bias (±10 V)           BIAS:DC?
    BIAS:AC <V>           drive amplitude U_ac (0-10 V)        BIAS:AC?
    BIAS:OUTP <0|1>       tip bias output                      BIAS:OUTP?
    BE:BAND <lo>,<hi>     excitation band                      BE:BAND?
    BE:BINS <n>           frequency bins (8-1024)              BE:BINS?
    BE:CHIRP <s>          chirp length (1e-4-0.1 s)            BE:CHIRP?
    BE:AVER <n>           averages per excitation (1-1000)     BE:AVER?
    BE:DCOF <V>           U_dc of the LF⊕DC± excitations       BE:DCOF?
    BE:SEQ <e>,<e>,...    excitations LFDCP, LFDCM, HFLF       BE:SEQ?
    BE:FREQ?              bin frequencies: block of float64
    BE:TIME?              instrument time of one BE line (s)
    BE:LINE? <row>        acquire a scan line: block of complex64 (pixels, excitations, bins), pm
    BE:POINT?             acquire at the tip: block of complex64 (excitations, bins), pm
    BE:SWEEP <A>,<offset>,<steps per cycle>,<cycles>,<read bias>
                          DC-modulation sweep 0 → +A → 0 → −A → 0 (+ offset), each DC step
                          followed by a read step; |offset| + A ≤ 10 V  BE:SWEEP?
    BE:STIME?             instrument time of one sweep (s): 2 × steps × chirp × averages
    BE:SPEC?              sweep at the tip: block of complex64 (steps, 2, bins), pm;
                          [:, 0] in-field, [:, 1] out-of-field; one spectrum (first
                          excitation's drive, U_ac) per step
    BE:FORC <Vp first>,<Vp last>,<FORC cycles>,<steps per cycle>,<cycles per FORC>,<read bias>
                          FORC sweep: cycles 0 → +Vp → 0 → −Vp → 0 with Vp stepped evenly
                          from first to last, each cycle repeated, each DC step followed
                          by a read step; 0 < Vp ≤ 10 V                       BE:FORC?
    BE:FTIME?             instrument time of one FORC sweep (s): 2 × steps × chirp × averages
    BE:FSPEC?             FORC sweep at the tip: block of complex64 (steps, 2, bins), pm;
                          [:, 0] in-field, [:, 1] out-of-field
    BE:RELAX <write V>,<write s>,<read s>,<read points>,<baseline points>,<read bias>
                          time relaxation: baseline reads, one write pulse, then read steps
                          of read s / read points each, one spectrum at the start of each
                                                                              BE:RELAX?
    BE:RTIME?             instrument time of one write/read sequence (s)
    BE:RTAX?              read times from the end of the pulse (s; baseline < 0): float64
    BE:RSPEC?             write/read sequence at the tip: block of complex64 (reads, bins), pm
    TOPO:LAST?            heights of the last BE acquisition: block of float64, nm
    TOPO:LINE? <row>      topography-only line (takes 1/line rate): block of float64, nm

tr-KPFM and c-AFM readouts (`afm_readout_commands`, physics in `trkpfm_relaxation`, `cafm_iv`);
after a record the bias output holds the waveform's last bias until set otherwise:

    KPFM:STEP <V>,<before s>,<after s>,<interval s>,<baseline V>
                          lateral bias step: baseline, then the step (|V| ≤ 10 V), CPD
                          sampled every interval (1 ms-10 s)                   KPFM:STEP?
    KPFM:TIME?            instrument time of one record (s): before + after
    KPFM:CPD?             record at the tip: block of float64 (samples,), CPD in V
    CAFM:SWEEP <A>,<offset>,<points per cycle>,<cycles>,<rate V/s>
                          I-V triangle 0 → +A → 0 → −A → 0 (+ offset) at |dV/dt| = rate;
                          |offset| + A ≤ 10 V, points a multiple of 4          CAFM:SWEEP?
    CAFM:RANG <A>         current amplifier full scale (1e-12-1e-5 A)        CAFM:RANG?
    CAFM:TIME?            instrument time of one sweep (s): 4·A·cycles/rate
    CAFM:IV?              sweep at the tip: block of float64 (points,), current in A,
                          each step's mean, clipped at ± full scale

Acquisitions need the bias output on and answer only after their instrument
time has passed on the clock.
"""

from __future__ import annotations

import numpy as np

from vegard.clock import InstrumentClock

from .afm_forc_relaxation import register_commands as register_forc_relaxation_commands
from .afm_model import AfmSettingError, AtomicForceMicroscope
from .afm_readout_commands import register_readout_commands
from .link_costs import LinkCost
from .scpi_server import (
    DATA_OUT_OF_RANGE,
    EXECUTION_ERROR,
    ILLEGAL_PARAMETER_VALUE,
    Instrument,
    ScpiError,
    binary_block,
    parse_floats,
    parse_ints,
    parse_switch,
    require_arguments,
)

WIRE_EXCITATIONS = {"LFDCP": "lf_dc_plus", "LFDCM": "lf_dc_minus", "HFLF": "hf_lf"}
EXCITATION_TOKENS = {name: token for token, name in WIRE_EXCITATIONS.items()}


def _block(values: np.ndarray) -> bytes:
    """Little-endian binary block of an array (what the driver expects)."""
    little = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    return binary_block(little.tobytes())


class AfmControllerEmulator(Instrument):
    """Wire-level emulator: parses controller commands and drives the AFM model."""

    LINK = LinkCost(
        0.005, 1.25e8,
        "a BE controller PC on gigabit "
        "Ethernet; 5 ms per command assumed",
    )
    """What the real link costs (see `link_costs`)."""

    identity = "VEGARD,SIM-BE-AFM,0,0.1"

    def __init__(self, model: AtomicForceMicroscope, clock: InstrumentClock | None = None) -> None:
        super().__init__(clock or model.clock)
        self.model = model
        m = model
        pairs = {
            "SCAN:CENT": (lambda a: m.set_scan_center(*parse_floats(a, 2)),
                          lambda: (m.scan.center_x_nm, m.scan.center_y_nm)),
            "SCAN:SIZE": (lambda a: m.set_scan_size(*parse_floats(a, 2)),
                          lambda: (m.scan.width_nm, m.scan.height_nm)),
            "SCAN:PIX": (lambda a: m.set_pixels(*parse_ints(a, 2)),
                         lambda: (m.scan.pixels_x, m.scan.pixels_y)),
            "SCAN:LRAT": (lambda a: m.set_topography_line_rate(*parse_floats(a, 1)),
                          lambda: (m.topography_line_rate_hz,)),
            "FORC:SETP": (lambda a: m.set_normal_force(*parse_floats(a, 1)),
                          lambda: (m.normal_force_nn,)),
            "BIAS:DC": (lambda a: m.set_bias_dc(*parse_floats(a, 1)), lambda: (m.bias_dc_v,)),
            "BIAS:AC": (lambda a: m.set_bias_ac(*parse_floats(a, 1)), lambda: (m.bias_ac_v,)),
            "BIAS:OUTP": (lambda a: m.set_bias_output(parse_switch(a)),
                          lambda: (int(m.bias_output_on),)),
            "BE:BAND": (lambda a: m.set_band(*parse_floats(a, 2)),
                        lambda: (m.excitation.band_low_hz, m.excitation.band_high_hz)),
            "BE:BINS": (lambda a: m.set_bins(*parse_ints(a, 1)), lambda: (m.excitation.bins,)),
            "BE:CHIRP": (lambda a: m.set_chirp_duration(*parse_floats(a, 1)),
                         lambda: (m.excitation.chirp_duration_s,)),
            "BE:AVER": (lambda a: m.set_averages(*parse_ints(a, 1)),
                        lambda: (m.excitation.averages,)),
            "BE:DCOF": (lambda a: m.set_dc_offset(*parse_floats(a, 1)),
                        lambda: (m.excitation.dc_offset_v,)),
            "BE:SWEEP": (lambda a: m.set_sweep(*_sweep_arguments(a)),
                         lambda: (m.sweep.amplitude_v, m.sweep.offset_v,
                                  m.sweep.steps_per_cycle, m.sweep.cycles,
                                  m.sweep.read_bias_v)),
        }
        for header, (setter, getter) in pairs.items():
            self.register(header, self._setting(setter))
            self.register(header + "?", lambda _, getter=getter: _format(getter()))
        self.register("SCAN:MOVE", self._setting(lambda a: m.move_tip(*parse_floats(a, 2))))
        self.register("SCAN:POS?", lambda _: _format((m.tip_x_nm, m.tip_y_nm)))
        self.register("SCAN:PARK", lambda _: m.park())
        self.register("SCAN:PARK?", lambda _: str(int(m.tip_withdrawn)))
        self.register("BE:SEQ", self._setting(self._set_sequence))
        self.register("BE:SEQ?", lambda _: ",".join(
            EXCITATION_TOKENS[name] for name in m.excitation.sequence))
        self.register("BE:FREQ?", lambda _: _block(m.excitation.frequencies_hz()))
        self.register("BE:TIME?", lambda _: _format((m.be_line_duration_s(),)))
        self.register("BE:LINE?", self._acquire_line)
        self.register("BE:POINT?", self._acquire_point)
        self.register("BE:STIME?", lambda _: _format((m.sweep_duration_s(),)))
        self.register("BE:SPEC?", lambda _: self._acquire(m.sweep_duration_s(),
                                                          m.acquire_sweep))
        self.register("TOPO:LAST?", lambda _: _block(m.last_topography_nm.astype(np.float64)))
        self.register("TOPO:LINE?", self._acquire_topography_line)
        register_readout_commands(self)
        register_forc_relaxation_commands(self)  # BE:FORC..., BE:RELAX...

    def reset(self) -> None:
        self.model.reset()

    # ------------------------------------------------------------------ parsing

    @staticmethod
    def _setting(action):
        def handler(arguments: list[str]) -> None:
            try:
                action(arguments)
            except AfmSettingError as error:
                raise ScpiError(DATA_OUT_OF_RANGE, str(error)) from None

        return handler

    def _set_sequence(self, arguments: list[str]) -> None:
        require_arguments(arguments, 1)
        tokens = [text.upper() for text in arguments]
        unknown = [text for text in tokens if text not in WIRE_EXCITATIONS]
        if unknown:
            raise ScpiError(ILLEGAL_PARAMETER_VALUE,
                            f"unknown excitation(s) {unknown}; allowed {list(WIRE_EXCITATIONS)}")
        self.model.set_sequence([WIRE_EXCITATIONS[token] for token in tokens])

    # ------------------------------------------------------------------ acquisition

    def _acquire(self, duration_s: float, action):
        try:
            self.model.check_can_acquire()
        except AfmSettingError as error:
            raise ScpiError(EXECUTION_ERROR, str(error)) from None
        self.clock.sleep_blocking(duration_s)
        try:
            return _block(action())
        except AfmSettingError as error:
            raise ScpiError(EXECUTION_ERROR, str(error)) from None

    def _acquire_line(self, arguments: list[str]) -> bytes:
        row = parse_ints(arguments, 1)[0]
        self._check_row(row)
        return self._acquire(self.model.be_line_duration_s(),
                             lambda: self.model.acquire_be_line(row))

    def _acquire_point(self, arguments: list[str]) -> bytes:
        return self._acquire(self.model.be_point_duration_s(), self.model.acquire_be_point)

    def _acquire_topography_line(self, arguments: list[str]) -> bytes:
        row = parse_ints(arguments, 1)[0]
        self._check_row(row)
        self.clock.sleep_blocking(self.model.topography_line_duration_s())
        return _block(self.model.acquire_topography_line(row))

    def _check_row(self, row: int) -> None:
        if not 0 <= row < self.model.scan.pixels_y:
            raise ScpiError(DATA_OUT_OF_RANGE,
                            f"row {row} not valid: allowed 0 … {self.model.scan.pixels_y - 1}")


def _sweep_arguments(arguments: list[str]) -> tuple[float, float, int, int, float]:
    """amplitude, offset, steps per cycle, cycles, read bias (the counts whole numbers)."""
    amplitude, offset, steps, cycles, read = parse_floats(arguments, 5)
    if not (float(steps).is_integer() and float(cycles).is_integer()):
        raise ScpiError(ILLEGAL_PARAMETER_VALUE,
                        f"steps per cycle {steps:g} and cycles {cycles:g} must be whole numbers")
    return amplitude, offset, int(steps), int(cycles), read


def _format(values: tuple) -> str:
    return ",".join(f"{value:.9g}" if isinstance(value, float) else str(value) for value in values)
