"""Driver for a band-excitation AFM controller (scanner, tip bias, BE acquisition).

Acquisition is line-wise: one `BE:LINE?` returns the complex response spectra
of every pixel of a scan line for every excitation, as one binary block, so the
per-pixel cost on the wire and in the framework stays small. Shapes and values
of every reply are checked; a short or malformed block is an error naming the
instrument and command.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InstrumentCommunicationError, InstrumentReplyError
from .forc_relaxation_settings import ForcSweepSettings, RelaxationSettings
from .replies import parse_floats
from .text_driver import TextDriver
from .visa_connection import VisaConnection

EXCITATION_TOKENS = {"lf_dc_plus": "LFDCP", "lf_dc_minus": "LFDCM", "hf_lf": "HFLF"}
EXCITATIONS_BY_TOKEN = {token: name for name, token in EXCITATION_TOKENS.items()}
SPECTRUM_DTYPE = np.dtype("<c8")
HEIGHT_DTYPE = np.dtype("<f8")


@dataclass(frozen=True)
class ScanArea:
    """A raster in scanner coordinates: centre, size (nm) and pixel counts."""

    center_x_nm: float
    center_y_nm: float
    width_nm: float
    height_nm: float
    pixels_x: int
    pixels_y: int


@dataclass(frozen=True)
class BandExcitationSettings:
    """What the controller drives per pixel: band, bins, chirp, averages, ±U_dc, excitations."""

    band_low_hz: float
    band_high_hz: float
    bins: int
    chirp_duration_s: float
    averages: int
    dc_offset_v: float
    excitations: tuple[str, ...]


@dataclass(frozen=True)
class DcSweepSettings:
    """A DC-modulation sweep (`BE:SWEEP`): the bipolar triangle, repeated, each DC step
    followed by a read step at `read_bias_v`."""

    amplitude_v: float
    offset_v: float
    steps_per_cycle: int
    cycles: int
    read_bias_v: float = 0.0

    @property
    def steps(self) -> int:
        return self.steps_per_cycle * self.cycles


@dataclass(frozen=True)
class ScanLine:
    """One BE scan line: spectra (pixels, excitations, bins) in pm, heights in nm."""

    spectra_pm: np.ndarray
    topography_nm: np.ndarray


class BandExcitationAfmController(TextDriver):
    """Coroutines for every controller setting and acquisition vegard uses."""

    connection: VisaConnection

    async def connect(self) -> str:
        return await self.connection.identify("BE-AFM", "a band-excitation AFM")

    # ------------------------------------------------------------------ scanner

    async def set_scan_area(self, area: ScanArea) -> None:
        await self.connection.write(
            f"SCAN:CENT {area.center_x_nm:.4f},{area.center_y_nm:.4f};"
            f"SCAN:SIZE {area.width_nm:.4f},{area.height_nm:.4f};"
            f"SCAN:PIX {area.pixels_x},{area.pixels_y}"
        )

    async def scan_area(self) -> ScanArea:
        command = "SCAN:CENT?;SCAN:SIZE?;SCAN:PIX?"
        cx, cy, w, h, nx, ny = await self._floats_of_replies(command, 6)
        return ScanArea(cx, cy, w, h, int(nx), int(ny))

    async def move_tip(self, x_nm: float, y_nm: float) -> None:
        await self.connection.write(f"SCAN:MOVE {x_nm:.4f},{y_nm:.4f}")

    async def tip_position_nm(self) -> tuple[float, float]:
        x, y = await self._floats("SCAN:POS?", 2)
        return x, y

    async def set_topography_line_rate_hz(self, rate_hz: float) -> None:
        await self.connection.write(f"SCAN:LRAT {rate_hz:.6g}")

    async def topography_line_rate_hz(self) -> float:
        return await self._float("SCAN:LRAT?")

    async def set_normal_force_nn(self, force_nn: float) -> None:
        await self.connection.write(f"FORC:SETP {force_nn:.6g}")

    async def normal_force_nn(self) -> float:
        return await self._float("FORC:SETP?")

    # ------------------------------------------------------------------ tip bias

    async def set_bias_dc_v(self, volts: float) -> None:
        await self.connection.write(f"BIAS:DC {volts:.6g}")

    async def bias_dc_v(self) -> float:
        return await self._float("BIAS:DC?")

    async def set_bias_ac_v(self, volts: float) -> None:
        await self.connection.write(f"BIAS:AC {volts:.6g}")

    async def bias_ac_v(self) -> float:
        return await self._float("BIAS:AC?")

    async def set_bias_output(self, on: bool) -> None:
        await self.connection.write(f"BIAS:OUTP {int(bool(on))}")

    async def bias_output(self) -> bool:
        return bool((await self._ints("BIAS:OUTP?", 1))[0])

    async def make_safe(self) -> tuple[bool, float, float]:
        """Output off, DC and AC to 0 V in one line; returns what the controller then reports."""
        output, dc, ac = await self.connection.until_confirmed("tip bias off", self._unbias)
        return bool(output), dc, ac

    async def park(self) -> None:
        """Tip lifted off the surface, scanner idle, confirmed by the controller."""

        async def lift() -> None:
            await self.connection.write("SCAN:PARK")
            (parked,) = await self._ints("SCAN:PARK?", 1)
            if not parked:
                raise InstrumentCommunicationError(self.name, "SCAN:PARK", "tip not parked")

        await self.connection.until_confirmed("scanner park", lift)

    async def _unbias(self) -> tuple[bool, float, float]:
        command = "BIAS:OUTP 0;BIAS:DC 0;BIAS:AC 0"
        await self.connection.write(command)
        output, dc, ac = await self.bias()
        if output or dc != 0.0 or ac != 0.0:  # refused or lost: say so, so it is sent again
            raise InstrumentCommunicationError(
                self.name, command, f"tip still biased (output {output}, DC {dc:g} V, "
                f"AC {ac:g} V)")
        return output, dc, ac

    async def _last_topography(self) -> np.ndarray:
        """Heights of the last acquisition; only read, so safe to ask again."""
        return await self.connection.query_block("TOPO:LAST?", HEIGHT_DTYPE, idempotent=True)

    async def bias(self) -> tuple[bool, float, float]:
        """(output on, DC V, AC V) as the controller reports them."""
        output, dc, ac = await self._floats_of_replies("BIAS:OUTP?;BIAS:DC?;BIAS:AC?", 3)
        return bool(output), dc, ac

    async def _floats_of_replies(self, command: str, count: int) -> list[float]:
        """The numbers answered to several `;`-joined queries, as one list."""
        return await self.connection.query(
            command, lambda reply: parse_floats(
                reply.replace(";", ","), count, instrument=self.name, command=command))

    # ------------------------------------------------------------------ band excitation

    async def configure(self, settings: BandExcitationSettings) -> None:
        tokens = ",".join(EXCITATION_TOKENS[name] for name in settings.excitations)
        await self.connection.write(
            f"BE:BAND {settings.band_low_hz:.6g},{settings.band_high_hz:.6g};"
            f"BE:BINS {settings.bins};BE:CHIRP {settings.chirp_duration_s:.6g};"
            f"BE:AVER {settings.averages};BE:DCOF {settings.dc_offset_v:.6g};BE:SEQ {tokens}"
        )

    async def settings(self) -> BandExcitationSettings:
        command = "BE:BAND?;BE:BINS?;BE:CHIRP?;BE:AVER?;BE:DCOF?"
        low, high, bins, chirp, averages, dc = await self._floats_of_replies(command, 6)
        tokens_reply = await self.connection.query("BE:SEQ?")
        try:
            excitations = tuple(EXCITATIONS_BY_TOKEN[t.strip()] for t in tokens_reply.split(","))
        except KeyError:
            raise InstrumentReplyError(
                self.name, "BE:SEQ?", tokens_reply, "excitations LFDCP/LFDCM/HFLF") from None
        return BandExcitationSettings(low, high, int(bins), chirp, int(averages), dc, excitations)

    async def frequencies_hz(self) -> np.ndarray:
        return await self.connection.query_block("BE:FREQ?", "<f8", idempotent=True)

    async def line_duration_s(self) -> float:
        return await self._float("BE:TIME?")

    @staticmethod
    def _acquisition_timeout_s(instrument_duration_s: float) -> float:
        """Instrument time a scan line may take beyond its nominal duration before the
        reply counts as lost (on top of the channel's own timeout)."""
        return 1.5 * instrument_duration_s

    async def acquire_line(
        self, row: int, *, pixels: int, excitations: int, bins: int, duration_s: float
    ) -> ScanLine:
        """Take scan line `row`; `duration_s` (instrument time) sizes the reply timeout."""
        command = f"BE:LINE? {row}"
        values = await self.connection.query_block(
            command, SPECTRUM_DTYPE, acquisition_s=self._acquisition_timeout_s(duration_s))
        spectra = self._shaped(values, (pixels, excitations, bins), command)
        heights = self._shaped(await self._last_topography(), (pixels,), "TOPO:LAST?")
        return ScanLine(spectra, heights)

    async def acquire_point(self, *, excitations: int, bins: int, duration_s: float) -> ScanLine:
        command = "BE:POINT?"
        values = await self.connection.query_block(
            command, SPECTRUM_DTYPE, acquisition_s=self._acquisition_timeout_s(duration_s))
        spectra = self._shaped(values, (1, excitations, bins), command)
        heights = self._shaped(await self._last_topography(), (1,), "TOPO:LAST?")
        return ScanLine(spectra, heights)

    async def topography_line(self, row: int, *, pixels: int, duration_s: float) -> np.ndarray:
        command = f"TOPO:LINE? {row}"
        values = await self.connection.query_block(
            command, HEIGHT_DTYPE, acquisition_s=self._acquisition_timeout_s(duration_s))
        return self._shaped(values, (pixels,), command)

    # ------------------------------------------------------------------ voltage spectroscopy

    async def set_sweep(self, sweep: DcSweepSettings) -> None:
        await self.connection.write(
            f"BE:SWEEP {sweep.amplitude_v:.6g},{sweep.offset_v:.6g},{sweep.steps_per_cycle},"
            f"{sweep.cycles},{sweep.read_bias_v:.6g}")

    async def sweep(self) -> DcSweepSettings:
        amplitude, offset, steps, cycles, read = await self._floats("BE:SWEEP?", 5)
        return DcSweepSettings(amplitude, offset, int(steps), int(cycles), read)

    async def sweep_duration_s(self) -> float:
        return await self._float("BE:STIME?")

    async def acquire_sweep(self, *, steps: int, bins: int, duration_s: float) -> np.ndarray:
        """A whole sweep at the tip: spectra (steps, in/out-of-field, bins) in pm; the reply
        comes after the sweep's instrument time `duration_s`, which sizes its timeout."""
        command = "BE:SPEC?"
        values = await self.connection.query_block(
            command, SPECTRUM_DTYPE, acquisition_s=self._acquisition_timeout_s(duration_s))
        return self._shaped(values, (steps, 2, bins), command)

    # ------------------------------------------------------------------ FORC, time relaxation

    async def set_forc(self, forc: ForcSweepSettings) -> None:
        await self.connection.write(
            f"BE:FORC {forc.peak_start_v:.6g},{forc.peak_end_v:.6g},{forc.forc_cycles},"
            f"{forc.steps_per_cycle},{forc.cycles_per_forc},{forc.read_bias_v:.6g}")

    async def forc(self) -> ForcSweepSettings:
        first, last, cycles, steps, repeats, read = await self._floats("BE:FORC?", 6)
        return ForcSweepSettings(first, last, int(cycles), int(steps), int(repeats), read)

    async def forc_duration_s(self) -> float:
        return await self._float("BE:FTIME?")

    async def acquire_forc(self, *, steps: int, bins: int, duration_s: float) -> np.ndarray:
        """A whole FORC sweep at the tip: spectra (steps, in/out-of-field, bins) in pm."""
        command = "BE:FSPEC?"
        values = await self.connection.query_block(
            command, SPECTRUM_DTYPE, acquisition_s=self._acquisition_timeout_s(duration_s))
        return self._shaped(values, (steps, 2, bins), command)

    async def set_relaxation(self, relaxation: RelaxationSettings) -> None:
        r = relaxation
        await self.connection.write(
            f"BE:RELAX {r.write_bias_v:.6g},{r.write_duration_s:.6g},{r.read_duration_s:.6g},"
            f"{r.read_points},{r.baseline_points},{r.read_bias_v:.6g}")

    async def relaxation(self) -> RelaxationSettings:
        write, write_s, read_s, reads, baseline, read = await self._floats("BE:RELAX?", 6)
        return RelaxationSettings(write, write_s, read_s, int(reads), int(baseline), read)

    async def relaxation_duration_s(self) -> float:
        return await self._float("BE:RTIME?")

    async def relaxation_read_times_s(self, reads: int) -> np.ndarray:
        """Read times from the end of the pulse (s), as the controller schedules them."""
        command = "BE:RTAX?"
        values = await self.connection.query_block(command, HEIGHT_DTYPE, idempotent=True)
        return self._shaped(values, (reads,), command)

    async def acquire_relaxation(self, *, reads: int, bins: int, duration_s: float
                                 ) -> np.ndarray:
        """A write/read sequence at the tip: spectra (reads, bins) in pm, after its
        instrument time `duration_s` (which sizes the reply timeout)."""
        command = "BE:RSPEC?"
        values = await self.connection.query_block(
            command, SPECTRUM_DTYPE, acquisition_s=self._acquisition_timeout_s(duration_s))
        return self._shaped(values, (reads, bins), command)
