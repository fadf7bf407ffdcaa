"""A monochromated STEM with a vibrational EELS spectrometer on the wire (Nion HERMES-like),
emulated over the `MonochromatedStem` model.

Nion Swift drives its microscopes through Python (named controls, `SetVal`/`GetVal`, scan
and camera objects), not a text protocol; this SCPI-shaped command set is ours, in the
vocabulary of those controls, so the same base server, driver tooling and error queue
apply. Fractions are of the field of view ((0, 0) one corner, (0.5, 0.5) the centre), as
Swift gives probe positions; energies in meV unless named otherwise; times in ms for camera
and scan settings, s for durations. Blocks are IEEE 488.2 definite-length, little-endian.

    *IDN?                     VEGARD,SIM-NION-HERMES-STEM,0,0.1
    *RST                      power-on settings, beam blanked (the specimen keeps its dose)
    PROBE:POS <x>,<y>         parked probe position, fractions 0 … 1       PROBE:POS?  -> x,y
    PROBE:BLANK <ON|OFF|1|0>  beam blanker (power-on: ON)                  PROBE:BLANK? -> 1|0
    PROBE:CURRENT?            probe current, pA (∝ the monochromator slit)
    SCAN:FOV <nm>             field of view, 1 … 20000 nm                  SCAN:FOV?
    SCAN:LINE <x0>,<y0>,<x1>,<y1>,<n>
                              line scan from start to end (fractions, both inclusive), n
                              pixels (1 … SCAN:MAXPIX?)                    SCAN:LINE? -> same
    SCAN:MAXPIX?              most pixels a line may have (1024 at 2048 channels: 8 MB)
    SCAN:FLYBACK_MS <ms>      flyback after a line, 0 … 10000 ms           SCAN:FLYBACK_MS?
    SCAN:TIME?                instrument seconds one line scan takes: pixels × frames ×
                              (exposure + read-out), then flyback
    SCAN:ACQ?                 acquire the line, camera-synchronised: block of float32 counts,
                              n × channels, pixel-major (sum-projected spectra, each the
                              sum of its frames)
    HAADF:LAST?               HAADF of the last acquisition: block of float32, one value per
                              pixel (electrons onto the annular detector, over its frames)
    CAM:EXPOSURE_MS <ms>      exposure per frame, 0.1 … 60000 ms           CAM:EXPOSURE_MS?
    CAM:FRAMES <n>            frames summed per spectrum, 1 … 1000 (power-on 1)
                                                                           CAM:FRAMES?
    CAM:READOUT_MS?           camera read-out after each exposure (each frame), ms
    CAM:CHANNELS?             channels per spectrum
    CAM:SATURATION?           counts per channel per exposure at which the camera clips (a
                              sum of n frames clips at n times that)
    CAM:TIME?                 instrument seconds one point spectrum takes: frames ×
                              (exposure + read-out)
    CAM:ACQ?                  point spectrum at the parked probe: block of float32 counts,
                              channels (the sum of its frames)
    SPEC:DISPERSION <meV/ch>  energy per channel, 0.01 … 2000 meV/ch       SPEC:DISPERSION?
    SPEC:OFFSET <meV>         energy loss at the centre of channel 0, −10000 … 2000000 meV
                                                                           SPEC:OFFSET?
    SPEC:AXIS?                channel-centre energies: block of float64, meV
    MONO:SLIT <meV>           energy width the monochromator slit passes, 1 … 300 meV
                                                                           MONO:SLIT?
    MONO:FWHM?                ZLP FWHM that slit gives, meV
    SETVAL <name>,<value>     a named control, as Swift's SetVal
    GETVAL? <name>            its value, as Swift's GetVal
    CTRL:LIST?                the named controls: EELS_MagneticShift,C10,exposure_ms

Named controls (their units are ours, chosen to match the commands above):
EELS_MagneticShift, eV: the energy offset (SPEC:OFFSET / 1000); C10, nm: defocus (widens
the probe by 2αC10); exposure_ms, ms: the camera exposure (CAM:EXPOSURE_MS).

Acquisitions answer only after their instrument time (SCAN:TIME?, CAM:TIME?) has passed on
the clock. With the beam blanked they still run and return zeros (a dark reference): nothing
reaches the specimen. Refused settings go on the error queue as −222 (out of range) or −224
(unknown name or switch word), with the range in the message.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vegard.clock import InstrumentClock

from .link_costs import LinkCost
from .scpi_server import (
    DATA_OUT_OF_RANGE,
    ILLEGAL_PARAMETER_VALUE,
    Instrument,
    ScpiError,
    binary_block,
    parse_float,
    parse_floats,
    parse_int,
    parse_ints,
    parse_switch,
    require_arguments,
)
from .stem_eels_model import MonochromatedStem, StemSettingError

NAMED_CONTROLS = ("EELS_MagneticShift", "C10", "exposure_ms")
"""The Swift-style named controls SETVAL/GETVAL? know (case-insensitive)."""


def _block(values: np.ndarray) -> bytes:
    """Little-endian binary block of an array (what the driver expects)."""
    little = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    return binary_block(little.tobytes())


def _format(values: tuple) -> str:
    return ",".join(f"{value:.9g}" if isinstance(value, float) else str(value) for value in values)


class NionStemEmulator(Instrument):
    """Wire-level emulator of a Nion HERMES-like STEM and its EELS camera."""

    LINK = LinkCost(
        0.002, 1.0e8,
        "the microscope PC on gigabit Ethernet (about 100 MB/s of payload); "
        "2 ms per command assumed",
    )
    """What the real link costs (see `link_costs`)."""

    identity = "VEGARD,SIM-NION-HERMES-STEM,0,0.1"

    def __init__(self, model: MonochromatedStem, clock: InstrumentClock | None = None) -> None:
        super().__init__(clock or model.clock)
        self.model = model
        m = model

        def s():  # the settings object is replaced on *RST: look it up on every query
            return m.settings

        pairs = {
            "PROBE:POS": (lambda a: m.set_probe_position(*parse_floats(a, 2)),
                          lambda: (s().probe_x, s().probe_y)),
            "PROBE:BLANK": (lambda a: m.set_beam_blanked(parse_switch(a)),
                            lambda: (int(s().beam_blanked),)),
            "SCAN:FOV": (lambda a: m.set_field_of_view(*parse_floats(a, 1)),
                         lambda: (s().field_of_view_nm,)),
            "SCAN:LINE": (self._set_line,
                          lambda: (s().line.start_x, s().line.start_y, s().line.end_x,
                                   s().line.end_y, s().line.pixels)),
            "SCAN:FLYBACK_MS": (lambda a: m.set_flyback(*parse_floats(a, 1)),
                                lambda: (s().line.flyback_ms,)),
            "CAM:EXPOSURE_MS": (lambda a: m.set_exposure(*parse_floats(a, 1)),
                                lambda: (s().exposure_ms,)),
            "CAM:FRAMES": (lambda a: m.set_frames(*parse_ints(a, 1)),
                           lambda: (s().frames,)),
            "SPEC:DISPERSION": (lambda a: m.set_dispersion(*parse_floats(a, 1)),
                                lambda: (s().dispersion_mev_per_channel,)),
            "SPEC:OFFSET": (lambda a: m.set_energy_offset(*parse_floats(a, 1)),
                            lambda: (s().energy_offset_mev,)),
            "MONO:SLIT": (lambda a: m.set_mono_slit(*parse_floats(a, 1)),
                          lambda: (s().mono_slit_mev,)),
        }
        for header, (setter, getter) in pairs.items():
            self.register(header, self._setting(setter))
            self.register(header + "?", lambda _, getter=getter: _format(getter()))
        self.register("PROBE:CURRENT?", lambda _: _format((m.beam_current_pa(),)))
        self.register("MONO:FWHM?", lambda _: _format((m.zlp_fwhm_mev(),)))
        self.register("CAM:READOUT_MS?",
                      lambda _: _format((float(m.parameters["camera_readout_ms"]),)))
        self.register("CAM:CHANNELS?", lambda _: str(m.channels))
        self.register("CAM:SATURATION?", lambda _: _format((float(m.saturation_counts),)))
        self.register("CAM:TIME?", lambda _: _format((m.point_duration_s(),)))
        self.register("SCAN:TIME?", lambda _: _format((m.line_duration_s(),)))
        self.register("SCAN:MAXPIX?", lambda _: str(m.max_line_pixels()))
        self.register("SPEC:AXIS?", lambda _: _block(m.energy_axis().centres_mev()))
        self.register("CAM:ACQ?", lambda _: self._acquire(m.point_duration_s(), m.acquire_point))
        self.register("SCAN:ACQ?", lambda _: self._acquire(
            m.line_duration_s(), lambda started_s: m.acquire_line(started_s)[0]))
        self.register("HAADF:LAST?", lambda _: _block(m.last_haadf.astype(np.float32)))
        self.register("SETVAL", self._setting(self._set_value))
        self.register("GETVAL?", self._get_value)
        self.register("CTRL:LIST?", lambda _: ",".join(NAMED_CONTROLS))

    def reset(self) -> None:
        self.model.reset()

    # ------------------------------------------------------------------ parsing

    @staticmethod
    def _setting(action: Callable[[list[str]], object]) -> Callable[[list[str]], None]:
        def handler(arguments: list[str]) -> None:
            try:
                action(arguments)
            except StemSettingError as error:
                raise ScpiError(DATA_OUT_OF_RANGE, str(error)) from None

        return handler

    def _set_line(self, arguments: list[str]) -> None:
        require_arguments(arguments, 5)
        start_x, start_y, end_x, end_y = (parse_float(text) for text in arguments[:4])
        self.model.set_line(start_x, start_y, end_x, end_y, parse_int(arguments[4]))

    @staticmethod
    def _control(name: str) -> str:
        for known in NAMED_CONTROLS:
            if known.upper() == name.upper():
                return known
        raise ScpiError(ILLEGAL_PARAMETER_VALUE,
                        f"unknown control {name!r}: known {', '.join(NAMED_CONTROLS)}")

    def _set_value(self, arguments: list[str]) -> None:
        require_arguments(arguments, 2)
        control, value = self._control(arguments[0]), parse_float(arguments[1])
        m = self.model
        if control == "EELS_MagneticShift":
            m.set_energy_offset(value * 1000.0)
        elif control == "C10":
            m.set_defocus(value)
        else:
            m.set_exposure(value)

    def _get_value(self, arguments: list[str]) -> str:
        require_arguments(arguments, 1)
        control = self._control(arguments[0])
        s = self.model.settings
        value = {"EELS_MagneticShift": s.energy_offset_mev / 1000.0, "C10": s.defocus_c10_nm,
                 "exposure_ms": s.exposure_ms}[control]
        return _format((float(value),))

    # ------------------------------------------------------------------ acquisition

    def _acquire(self, duration_s: float, action: Callable[[float], np.ndarray]) -> bytes:
        """Acquire from now (the model dates every pixel from the start), then reply once
        the acquisition's instrument time has passed. Computing first keeps the model's
        dose bookkeeping right if its truth is read while the camera is still exposing."""
        data = action(self.clock.now())
        self.clock.sleep_blocking(duration_s)
        return _block(data.astype(np.float32))
