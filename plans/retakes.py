"""Acquisitions lost on the wire are taken again, a bounded number of times.

A scan line or a detector line is not an idempotent query: the channel never repeats
it by itself. The plan can, because it knows the line: nothing of a failed acquisition
was recorded (the device writes its arrays only once the reply is complete), so taking
it again loses nothing and records nothing twice.
"""

from __future__ import annotations

import logging

import bluesky.plan_stubs as bps
from bluesky.protocols import Triggerable
from bluesky.utils import FailedStatus

from vegard.instruments.errors import InstrumentCommunicationError

logger = logging.getLogger(__name__)

RETAKES_PER_LINE = 2
"""Further tries of one line after a communication failure (three acquisitions at most)."""


def failure_cause(error: BaseException) -> BaseException:
    """The device's own exception behind bluesky's `FailedStatus` (or the error itself)."""
    if isinstance(error, FailedStatus) and error.__cause__ is not None:
        return error.__cause__
    return error


def trigger_with_retakes(detector: Triggerable, what: str, retakes: int = RETAKES_PER_LINE):
    """Trigger and wait; retake after an `InstrumentCommunicationError`. Returns retakes used.

    Any other failure, or the last communication failure, is raised as the device raised
    it, so the run's stop document names the instrument, command and reason.
    """
    for attempt in range(retakes + 1):
        try:
            yield from bps.trigger(detector, wait=True)
            return attempt
        except FailedStatus as error:
            cause = failure_cause(error)
            if not isinstance(cause, InstrumentCommunicationError) or attempt == retakes:
                raise cause from None
            logger.warning("%s lost (%s); taking it again (%d of %d)",
                           what, cause, attempt + 1, retakes)
    raise AssertionError("unreachable")
