"""Hostile replies to the drivers' parsers (property-based).

Whatever an instrument (or a noisy line) answers, a parser gives finite numbers or an
`InstrumentReplyError` naming instrument, command and reply: never a NaN in the data,
never a bare ValueError/KeyError out of the RunEngine.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vegard.instruments.afm_driver import BandExcitationAfmController, ScanArea
from vegard.instruments.area_detector_driver import AreaDetectorDriver
from vegard.instruments.errors import InstrumentCommunicationError, InstrumentReplyError
from vegard.instruments.lakeshore336_driver import (
    HeaterRange,
    LakeShore336Driver,
    PidGains,
    RampSetting,
)
from vegard.instruments.potentiostat_driver import CellMode, CellReading, PotentiostatDriver
from vegard.instruments.replies import parse_float, parse_floats, parse_ints

INSTRUMENT = "fake instrument"
COMMAND = "MEAS:ALL?"
EXAMPLES = settings(max_examples=300, deadline=None)

number_texts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats().map(lambda v: f"{v:.3e}"),
    st.integers().map(str),
    st.integers(min_value=-3, max_value=3).map(str),
    st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e999", "-1e999", "0x10", "1_0", " 1 ",
                     "", "+", "-", ".", "1e", "٣", "1.5", "ARMED", "REST", "LFDCP", "\x00"]),
    st.text(max_size=8),
)
replies = st.one_of(
    st.text(max_size=60),
    st.lists(number_texts, max_size=8).map(",".join),
    st.tuples(st.lists(number_texts, max_size=6).map(",".join), number_texts).map(";".join),
    st.lists(number_texts, min_size=1, max_size=7).map(";".join),
)


def assert_names_everything(error: InstrumentReplyError, commands: list[str]) -> None:
    """The message a scientist reads says which instrument, which command, which reply."""
    message = str(error)
    assert error.instrument == INSTRUMENT and INSTRUMENT in message
    assert error.command in commands and repr(error.command) in message
    assert isinstance(error.reply, str) and repr(error.reply) in message


def finite(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


@EXAMPLES
@given(reply=replies)
def test_parse_float(reply: str):
    try:
        value = parse_float(reply, instrument=INSTRUMENT, command=COMMAND)
    except InstrumentReplyError as error:
        assert_names_everything(error, [COMMAND])
        assert repr(reply) in str(error)
    else:
        assert isinstance(value, float) and math.isfinite(value)


@pytest.mark.parametrize(
    ("parse", "acceptable"),
    [(parse_floats, lambda v: isinstance(v, float) and math.isfinite(v)),
     (parse_ints, lambda v: type(v) is int)],
    ids=["floats", "ints"],
)
@EXAMPLES
@given(reply=replies, count=st.integers(min_value=1, max_value=6))
def test_parse_number_lists(parse, acceptable, reply: str, count: int):
    try:
        values = parse(reply, count, instrument=INSTRUMENT, command=COMMAND)
    except InstrumentReplyError as error:
        assert_names_everything(error, [COMMAND])
    else:
        assert len(values) == count and all(acceptable(v) for v in values)


def test_parsers_accept_and_refuse_what_they_should():
    """Anchors, so the properties above cannot pass by refusing everything."""
    assert parse_floats("1.5, -2e3", 2, instrument=INSTRUMENT, command=COMMAND) == [1.5, -2000.0]
    assert parse_ints("3,0", 2, instrument=INSTRUMENT, command=COMMAND) == [3, 0]
    for bad in ("nan", "inf", "1e999", "1.5,2", ""):
        with pytest.raises(InstrumentReplyError, match=INSTRUMENT):
            parse_ints(bad, 1, instrument=INSTRUMENT, command=COMMAND)


class FakeConnection:
    """A line channel whose every query is answered with one given text (no wire)."""

    name = INSTRUMENT

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.queries: list[str] = []

    async def query(self, command: str, parse: Callable[[str], Any] | None = None, *,
                    idempotent: bool = True) -> Any:
        self.queries.append(command)
        return self.reply if parse is None else parse(self.reply)

    async def write(self, command: str) -> None:
        pass

    def allow_compound_queries(self, max_line_chars: int) -> None:
        pass  # each query is answered on its own here

    async def until_confirmed(self, what: str, factory: Callable[[], Any], **_: Any) -> Any:
        return await factory()  # one attempt: the reply would be the same each time


def outcome(make: Callable[[FakeConnection], Coroutine[Any, Any, Any]], reply: str) -> Any:
    """Run one driver coroutine against `reply`; a refusal must name instrument and command."""
    connection = FakeConnection(reply)
    try:
        return asyncio.run(make(connection))
    except InstrumentReplyError as error:
        assert_names_everything(error, connection.queries)
        return error


@EXAMPLES
@given(reply=replies)
def test_potentiostat_read_all(reply: str):
    result = outcome(lambda c: PotentiostatDriver(c).read_all(), reply)
    if isinstance(result, CellReading):
        assert finite(result.potential_v, result.current_a, result.charge_mah)
        assert isinstance(result.mode, CellMode) and isinstance(result.limit_reached, bool)


@EXAMPLES
@given(reply=replies)
def test_potentiostat_flags_and_mode(reply: str):
    flag = outcome(lambda c: PotentiostatDriver(c).limit_reached(), reply)
    assert isinstance(flag, (bool, InstrumentReplyError))
    if isinstance(flag, bool):
        assert reply.strip() in ("0", "1") or float(reply) in (0.0, 1.0)
    mode = outcome(lambda c: PotentiostatDriver(c).mode(), reply)
    assert isinstance(mode, (CellMode, InstrumentReplyError))


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("4.1,0.0001,0.5,1;0", CellReading(4.1, 0.0001, 0.5, CellMode.GALVANOSTATIC, False)),
     ("4.1,0.0001,0.5,7;0", None), ("4.1,nan,0.5,1;0", None), ("4.1,0.0001,0.5,1;2", None),
     ("4.1,0.0001,0.5,1", None)],
)
def test_potentiostat_read_all_examples(reply: str, expected: CellReading | None):
    result = outcome(lambda c: PotentiostatDriver(c).read_all(), reply)
    if expected is None:
        assert isinstance(result, InstrumentReplyError)
    else:
        assert result == expected


@EXAMPLES
@given(reply=replies)
def test_lakeshore_structured_replies(reply: str):
    heater = outcome(lambda c: LakeShore336Driver(c).heater_range(), reply)
    assert isinstance(heater, (HeaterRange, InstrumentReplyError))
    ramp = outcome(lambda c: LakeShore336Driver(c).ramp(), reply)
    if isinstance(ramp, RampSetting):
        assert finite(ramp.rate_k_per_min)
    else:
        assert isinstance(ramp, InstrumentReplyError)
    pid = outcome(lambda c: LakeShore336Driver(c).pid(), reply)
    if isinstance(pid, PidGains):
        assert finite(pid.proportional, pid.integral, pid.derivative)
    else:
        assert isinstance(pid, InstrumentReplyError)


def test_lakeshore_heater_range_examples():
    assert outcome(lambda c: LakeShore336Driver(c).heater_range(), "3") == HeaterRange("high")
    for bad in ("4", "-1", "1.0", "high", ""):
        assert isinstance(outcome(lambda c: LakeShore336Driver(c).heater_range(), bad),
                          InstrumentReplyError)


@EXAMPLES
@given(reply=replies)
def test_area_detector_replies(reply: str):
    size = outcome(lambda c: AreaDetectorDriver(c).size_pixels(), reply)
    assert isinstance(size, (tuple, InstrumentReplyError))
    if isinstance(size, tuple):
        assert all(type(v) is int for v in size)
    exposure = outcome(lambda c: AreaDetectorDriver(c).exposure_s(), reply)
    assert isinstance(exposure, InstrumentReplyError) or finite(exposure)
    state = outcome(lambda c: AreaDetectorDriver(c).state(), reply)
    assert isinstance(state, str)
    armed = outcome(lambda c: AreaDetectorDriver(c).arm_internal(3), reply)
    if reply.strip().upper() == "ARMED":
        assert armed is None
    else:
        assert isinstance(armed, InstrumentReplyError)


@EXAMPLES
@given(reply=replies)
def test_afm_controller_replies(reply: str):
    area = outcome(lambda c: BandExcitationAfmController(c).scan_area(), reply)
    if isinstance(area, ScanArea):
        assert finite(area.center_x_nm, area.center_y_nm, area.width_nm, area.height_nm)
        assert type(area.pixels_x) is int and type(area.pixels_y) is int
    else:
        assert isinstance(area, InstrumentReplyError)
    try:
        safe = outcome(lambda c: BandExcitationAfmController(c).make_safe(), reply)
    except InstrumentCommunicationError as error:  # a biased read-back is refused, never kept
        assert "tip still biased" in str(error)
    else:
        assert isinstance(safe, InstrumentReplyError) or safe == (False, 0.0, 0.0)
    band = outcome(lambda c: BandExcitationAfmController(c).settings(), reply)
    assert not isinstance(band, BaseException) or isinstance(band, InstrumentReplyError)
    output = outcome(lambda c: BandExcitationAfmController(c).bias_output(), reply)
    assert isinstance(output, (bool, InstrumentReplyError))
