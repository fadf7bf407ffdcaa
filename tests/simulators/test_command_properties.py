"""Hostile command lines to the SCPI emulators (property-based).

Whatever a client sends, an emulator answers or queues a SCPI error: no exception
escapes `handle_line`, no command hangs, nothing is logged as an emulator bug, and
after `*RST` the instrument still identifies itself.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vegard.clock import InstrumentClock
from vegard.simulators.lab import SimulatedLab
from vegard.simulators.scpi_server import Instrument

EMULATED = ("temperature_stage", "afm", "potentiostat", "area_detector")
SPEEDUP = 1e6
"""Instrument seconds per wall second: an acquisition of an instrument hour takes 4 ms."""
WALL_LIMIT_S = 5.0
"""No line may take longer (the slowest legal acquisitions are far below this at 1e6)."""
ERROR_ENTRY = re.compile(r'^-\d{3},".*"$')
EXAMPLES = 600
QUEUE_READERS = {"*CLS", "SYST:ERR?", "SYSTEM:ERROR?", "SYST:ERR:NEXT?", "SYSTEM:ERROR:NEXT?"}
"""Commands that empty the queue: an undefined header before them leaves no trace."""

words = st.sampled_from([
    "0", "1", "2", "3", "-1", "ON", "OFF", "A", "B", "C", "REST", "GALV", "POT", "INT", "POS",
    "SAMX", "SAMY", "ETA", "LFDCP", "LFDCM", "HFLF", "nan", "inf", "-inf", "1e999", "1e-320",
    "0.01", "300", "1e308", "99999999999", "", " ", "#", "\"", "'", "?", "*",
])
arguments = st.one_of(
    words,
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.integers(min_value=0, max_value=600).map(str),
    st.floats(min_value=0, max_value=1).map(lambda v: f"{v:.3g}"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-1e4, max_value=1e4).map(lambda v: f"{v:.6g}"),
    st.text(alphabet=st.characters(blacklist_characters=",;\n"), max_size=12),
)


def headers_of(instrument: Instrument) -> list[str]:
    return sorted(instrument._handlers)


def command_lines(headers: list[str]) -> st.SearchStrategy[str]:
    """Registered headers (any case) with random arguments, several per line, or any text."""
    header = st.one_of(
        st.sampled_from(headers),
        st.sampled_from(headers).map(str.lower),
        st.sampled_from(headers).map(lambda h: h.rstrip("?") if h.endswith("?") else h + "?"),
    )
    command = st.tuples(header, st.lists(arguments, max_size=5)).map(
        lambda pair: f"{pair[0]} {','.join(pair[1])}".rstrip())
    return st.one_of(
        st.lists(command, min_size=1, max_size=4).map(";".join),
        st.text(max_size=80),
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[SimulatedLab]:
    """The emulators as `SimulatedLab` builds them, models and peers included; never served."""
    built = SimulatedLab(InstrumentClock(SPEEDUP), instruments=EMULATED, seed=3)
    yield built


def exercise(instrument: Instrument, lines: list[str], caplog: pytest.LogCaptureFixture) -> None:
    """Hostile lines in a row (settings then acquisitions), each checked, from power-on."""
    instrument.handle_line("*RST;*CLS")
    for line in lines:
        exercise_line(instrument, line, caplog)
    instrument.handle_line("*RST")
    assert instrument.handle_line("*IDN?") == instrument.identity.encode()


def exercise_line(instrument: Instrument, line: str, caplog: pytest.LogCaptureFixture) -> None:
    """One line: bounded, no escape, no logged emulator bug, undefined headers queued."""
    instrument.handle_line("*CLS")
    caplog.clear()
    commands = [c.strip() for c in line.strip().split(";") if c.strip()]
    start = time.monotonic()
    reply = instrument.handle_line(line)
    elapsed_s = time.monotonic() - start
    assert elapsed_s < WALL_LIMIT_S, f"{line!r} took {elapsed_s:.1f} s"
    assert reply is None or isinstance(reply, bytes)
    bugs = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bugs, f"{line!r}: emulator bug: {bugs[0].getMessage()}\n{bugs[0].exc_text}"
    errors = instrument.errors()
    assert all(ERROR_ENTRY.match(entry) for entry in errors), errors
    headers = [re.split(r"\s+", c)[0].upper() for c in commands]
    unknown = [h for h in headers if h not in instrument._handlers]
    if unknown and not any(h in QUEUE_READERS for h in headers):
        assert any(entry.startswith("-113,") for entry in errors), (unknown, errors)


SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("name", EMULATED)
def test_hostile_lines(name: str, lab: SimulatedLab, caplog: pytest.LogCaptureFixture):
    instrument = lab.instruments[name]

    @SETTINGS
    @given(lines=st.lists(command_lines(headers_of(instrument)), min_size=1, max_size=6))
    def run(lines: list[str]) -> None:
        exercise(instrument, lines, caplog)

    run()


@pytest.mark.parametrize("name", EMULATED)
def test_bad_input_is_queued_with_a_scpi_code(name: str, lab: SimulatedLab):
    """Anchors: an unknown header and a non-number each leave a coded entry."""
    instrument = lab.instruments[name]
    instrument.handle_line("*CLS")
    assert instrument.handle_line("NO:SUCH:HEADER 1") is None
    assert instrument.errors() == ['-113,"Undefined header;NO:SUCH:HEADER"']
    instrument.handle_line("*CLS")
    setting = next(h for h in headers_of(instrument) if not h.endswith("?")
                   and not h.startswith("*") and h not in ("ARM", "ABOR"))
    instrument.handle_line(f"{setting} not-a-number,x,y,z,w,v")
    (entry,) = instrument.errors()
    assert ERROR_ENTRY.match(entry) and not entry.startswith("0,")
