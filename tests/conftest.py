"""Shared fixtures: a simulated lab on loopback with a fast instrument clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bluesky import RunEngine
from virtual_engines import close_run_engine

from vegard.clock import InstrumentClock
from vegard.simulators.lab import SimulatedLab
from vegard.virtual_clock import VirtualClock

FAST_SPEEDUP = 2000.0


def _needed(request: pytest.FixtureRequest) -> list[str] | None:
    """The simulators a test names with `@pytest.mark.simulators("afm", ...)` (and the
    models they are coupled to come with them); unmarked: every simulator."""
    marker = request.node.get_closest_marker("simulators")
    return list(marker.args) if marker is not None else None


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[SimulatedLab]:
    """The test's simulators served on ephemeral loopback ports, instrument time 2000× wall."""
    with SimulatedLab(InstrumentClock(FAST_SPEEDUP), seed=7,
                      instruments=_needed(request)) as started:
        yield started


@pytest.fixture
def virtual_lab(request: pytest.FixtureRequest) -> Iterator[SimulatedLab]:
    """The test's simulators on a virtual clock: run the test's coroutines on
    `virtual_lab.clock.new_event_loop()` and give its connections `clock=`; outcomes then
    do not depend on the machine's load."""
    with SimulatedLab(VirtualClock(), seed=7, instruments=_needed(request)) as started:
        yield started


@pytest.fixture
def RE() -> Iterator[RunEngine]:
    """A RunEngine whose event loop is stopped and closed after the test."""
    engine = RunEngine({}, call_returns_result=True)
    yield engine
    close_run_engine(engine)
