"""Acquisitions and moves that went wrong are taken again, a bounded number of times.

A scan line or a detector line is not an idempotent query: the channel never repeats
it by itself. The plan can, because it knows the line: nothing of a failed acquisition
was recorded (the devices write their arrays only once a line is complete and good), so
taking it again loses nothing and records nothing twice. The same holds for a move whose
axis stalled short of its target.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.protocols import Triggerable
from bluesky.utils import FailedStatus, Msg

from vegard.instruments.errors import InstrumentCommunicationError, MotorStalledError

logger = logging.getLogger(__name__)

RETAKES_PER_LINE = 2
"""Further tries of one line after a failure that taking it again can cure (three
acquisitions at most)."""

Plan = Generator[Msg, Any, Any]


def failure_cause(error: BaseException) -> BaseException:
    """The device's own exception behind bluesky's `FailedStatus` (or the error itself)."""
    if isinstance(error, FailedStatus) and error.__cause__ is not None:
        return error.__cause__
    return error


def with_retakes(
    take: Callable[[], Plan],
    what: str,
    retakable: tuple[type[BaseException], ...],
    *,
    retakes: int = RETAKES_PER_LINE,
    before_retake: Callable[[], Plan] | None = None,
    message: str = "{what} lost ({cause}); taking it again ({attempt} of {retakes})",
):
    """Run `take()`; after a failure whose device error is `retakable`, log `message`, run
    `before_retake()` and take it again, at most `retakes` times. Returns what `take()`
    returned.

    Any other failure, or the last retakable one, is raised as the device raised it, so the
    run's stop document names the instrument, command and reason.
    """
    for attempt in range(retakes + 1):
        try:
            return (yield from take())
        except Exception as error:  # re-raised below unless taking it again can help
            cause = failure_cause(error)
            if not isinstance(cause, retakable) or attempt == retakes:
                raise cause from None
            logger.warning(message.format(
                what=what, cause=cause, attempt=attempt + 1, retakes=retakes))
            if before_retake is not None:
                yield from before_retake()
    raise AssertionError("unreachable")


def trigger_with_retakes(detector: Triggerable, what: str):
    """Trigger and wait; a trigger lost on the wire (`InstrumentCommunicationError`) is
    taken again."""
    return (yield from with_retakes(
        lambda: bps.trigger(detector, wait=True), what, (InstrumentCommunicationError,)))


def mv_retrying(*args):
    """`bps.mv`, repeated once if an axis stalled short of its target (a second stall, or
    any other failure, fails the plan)."""
    return (yield from with_retakes(
        lambda: bps.mv(*args), "move", (MotorStalledError,), retakes=1,
        message="retrying a stalled move: {cause}"))
