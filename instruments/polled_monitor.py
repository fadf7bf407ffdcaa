"""Monitoring for instruments that cannot push: poll every reading at a fixed rate.

Text-protocol controllers (temperature controller, potentiostat) have no
subscriptions, so a bluesky `monitor` of such a device is a task that reads it
on the instrument clock. The rate is fixed: the time a read takes on the wire
is not added to the period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bluesky.protocols import Reading

logger = logging.getLogger(__name__)


class PolledMonitor:
    """Mixin for a device with `read()`, `clock` and `poll_period_s`: `subscribe` by polling."""

    def subscribe(self, function: Callable[[dict[str, Reading]], None]) -> None:
        """Poll all readings on the instrument clock and pass them to `function`."""

        async def poll() -> None:
            next_poll_s = self.clock.now()
            while True:
                try:
                    function(await self.read())
                except Exception as error:  # a missed monitor point must not end the run
                    logger.warning("%s: monitor reading failed: %s", self.name, error)
                next_poll_s = max(next_poll_s + self.poll_period_s, self.clock.now())
                await self.clock.sleep(next_poll_s - self.clock.now())

        self._poll_tasks()[function] = asyncio.get_running_loop().create_task(poll())

    @property
    def monitored(self) -> bool:
        """Someone is subscribed: the device is being polled."""
        return bool(self._poll_tasks())

    def clear_sub(self, function: Callable[[dict[str, Reading]], None]) -> None:
        task = self._poll_tasks().pop(function, None)
        if task is not None:
            task.cancel()

    def _poll_tasks(self) -> dict[Callable, asyncio.Task]:
        tasks = self.__dict__.get("_polled_monitor_tasks")
        if tasks is None:
            tasks = self.__dict__["_polled_monitor_tasks"] = {}
        return tasks
