"""Shared fixtures: a simulated lab on loopback with a fast instrument clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vegard.clock import InstrumentClock
from vegard.simulators.lab import SimulatedLab

FAST_SPEEDUP = 2000.0


@pytest.fixture
def lab() -> Iterator[SimulatedLab]:
    """Every simulator served on an ephemeral loopback port, instrument time 2000× wall."""
    with SimulatedLab(InstrumentClock(FAST_SPEEDUP), seed=7) as started:
        yield started
