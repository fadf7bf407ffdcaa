"""The variable-temperature stage as an ophyd-async device.

`set(T)` completes only when the stage has *settled*: the control temperature
stayed within `settle_tolerance_k` of the setpoint for `settle_time_s`
(instrument time). That is the condition a scientist waits for before imaging,
and the device reports how long it took (`settling_time_s`).

The device is also `Subscribable`: while monitored it polls the controller on
the instrument clock, so a plan can record temperature and heater output as a
monitored stream without a separate loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bluesky.protocols import Movable, Reading, Stoppable, Subscribable
from ophyd_async.core import (
    AsyncStatus,
    Device,
    StandardReadable,
    StandardReadableFormat,
    WatchableAsyncStatus,
    WatcherUpdate,
    soft_signal_r_and_setter,
    soft_signal_rw,
)

from vegard.clock import WALL_CLOCK, InstrumentClock

from .driver_signal import ConnectOnce, driver_signal_r, driver_signal_rw
from .errors import InstrumentCommunicationError
from .lakeshore336_driver import HeaterRange, LakeShore336Driver
from .polled_monitor import PolledMonitor
from .readables import readables_in_order

logger = logging.getLogger(__name__)


MONITOR_READING_GRACE = 1.5
"""Poll periods a settle waits for the monitor's next reading before reading itself."""


class TemperatureOutOfRangeError(ValueError):
    """A setpoint outside the stage's rated range; refused before it is sent."""


class TemperatureNotSettledError(TimeoutError):
    """The stage did not settle within the allowed instrument time."""


@dataclass
class SettleWindow:
    """Since when every control-temperature reading has been within tolerance.

    Fed by *every* reading the device takes (its own polls and the monitor's), so
    "settled" means no recorded reading left the band during the hold.
    """

    setpoint_k: float
    tolerance_k: float
    in_band_since_s: float | None = None
    _waiters: list[asyncio.Future[float]] = field(default_factory=list, repr=False)

    def observe(self, temperature_k: float, time_s: float) -> None:
        if abs(temperature_k - self.setpoint_k) > self.tolerance_k:
            self.in_band_since_s = None
        elif self.in_band_since_s is None:
            self.in_band_since_s = time_s
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(temperature_k)

    async def next_reading_k(self) -> float:
        """The next control temperature any reading of the device observes."""
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    def held_for_s(self, now_s: float) -> float:
        return 0.0 if self.in_band_since_s is None else now_s - self.in_band_since_s


class SafeState(Device, Movable):
    """Leaving the stage safe, as a plan says it: `bps.mv(stage.safe_state, 295.0)`.

    Setting it runs `TemperatureStage.make_safe` with that safe temperature; `action`
    then says what was done (a setpoint, or the heater switched off)."""

    def __init__(self, make_safe: Callable[[float], Awaitable[str]], name: str = "") -> None:
        self._make_safe = make_safe
        self.action, self._set_action = soft_signal_r_and_setter(str, "")
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def set(self, value: float) -> None:
        self._set_action(await self._make_safe(float(value)))


class TemperatureStage(PolledMonitor, StandardReadable, Subscribable, Stoppable):
    """Control temperature, sample temperature, heater output, setpoint and ramp."""

    def __init__(
        self,
        controller: LakeShore336Driver,
        *,
        clock: InstrumentClock = WALL_CLOCK,
        minimum_temperature_k: float = 200.0,
        maximum_temperature_k: float = 400.0,
        poll_period_s: float = 2.0,
        settle_timeout_s: float = 3600.0,
        name: str = "",
    ) -> None:
        self.controller = controller
        self.clock = clock
        self.minimum_temperature_k = minimum_temperature_k
        self.maximum_temperature_k = maximum_temperature_k
        self.poll_period_s = poll_period_s
        self.settle_timeout_s = settle_timeout_s
        self._connect_controller = ConnectOnce(controller.connect)
        self._stop_requested = False
        self._settle_window: SettleWindow | None = None

        address = controller.connection.address
        common = {"connect": self._connect_controller, "clock": clock}
        with readables_in_order(self, StandardReadableFormat.HINTED_UNCACHED_SIGNAL):
            self.temperature_k = driver_signal_r(
                float, controller.temperature_k, units="K",
                source=f"visa://{address}/KRDG?{controller.control_input}", **common,
            )
        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.sample_temperature_k = driver_signal_r(
                float, controller.sample_temperature_k, units="K",
                source=f"visa://{address}/KRDG?{controller.sample_input}", **common,
            )
            self.heater_output_percent = driver_signal_r(
                float, controller.heater_output_percent, units="%",
                source=f"visa://{address}/HTR?{controller.output}", **common,
            )
            self.setpoint_k = driver_signal_rw(
                float, controller.setpoint_k, controller.set_setpoint_k, units="K",
                source=f"visa://{address}/SETP{controller.output}", **common,
            )
            self.settling_time_s, self._set_settling_time_s = soft_signal_r_and_setter(
                float, initial_value=0.0, units="s"
            )
        with readables_in_order(self, StandardReadableFormat.CONFIG_SIGNAL):
            self.ramp_rate_k_per_min = driver_signal_rw(
                float, controller.ramp_rate_k_per_min, controller.set_ramp_rate_k_per_min,
                units="K/min", source=f"visa://{address}/RAMP{controller.output}", **common,
            )
            self.heater_range = driver_signal_rw(
                HeaterRange, controller.heater_range, controller.set_heater_range,
                source=f"visa://{address}/RANGE{controller.output}", **common,
            )
            self.settle_tolerance_k = soft_signal_rw(float, 0.1, units="K")
            self.settle_time_s = soft_signal_rw(float, 60.0, units="s")
        self.safe_state = SafeState(self.make_safe)
        super().__init__(name=name)

    async def read(self) -> dict[str, Reading]:
        """The readings; while settling, the control temperature is judged too (the
        monitor's polls come through here, so no recorded reading escapes the band)."""
        readings = await super().read()
        if self._settle_window is not None:
            self._settle_window.observe(readings[self.temperature_k.name]["value"],
                                        self.clock.now())
        return readings

    async def _next_control_temperature_k(self, window: SettleWindow) -> float:
        """While monitored, the monitor's next reading: it polls at the settle loop's own
        period, and a second poll of the same controller would only double the traffic.
        Unmonitored, or if the monitor's reading does not come (it failed), our own."""
        if self.monitored:
            try:
                return await asyncio.wait_for(
                    window.next_reading_k(), MONITOR_READING_GRACE * self.poll_period_s)
            except TimeoutError:
                pass
        temperature_k = await self.temperature_k.get_value()
        window.observe(temperature_k, self.clock.now())
        return temperature_k

    def check_setpoint(self, setpoint_k: float) -> None:
        low, high = self.minimum_temperature_k, self.maximum_temperature_k
        if not low <= setpoint_k <= high:
            raise TemperatureOutOfRangeError(
                f"{self.name}: setpoint {setpoint_k:g} K is outside the stage's rated range "
                f"{low:g}–{high:g} K"
            )

    @WatchableAsyncStatus.wrap
    async def set(self, setpoint_k: float):
        """Go to `setpoint_k` and wait until settled; yields progress updates."""
        self.check_setpoint(setpoint_k)
        self._stop_requested = False
        tolerance_k = await self.settle_tolerance_k.get_value()
        hold_s = await self.settle_time_s.get_value()
        initial_k = await self.temperature_k.get_value()
        started = self.clock.now()
        window = SettleWindow(setpoint_k, tolerance_k)
        await self.setpoint_k.set(setpoint_k)
        self._settle_window = window
        try:
            while True:
                current_k = await self._next_control_temperature_k(window)
                now = self.clock.now()
                yield WatcherUpdate(
                    current=current_k, initial=initial_k, target=setpoint_k,
                    name=self.name, unit="K", precision=3, time_elapsed=now - started,
                )
                if window.in_band_since_s is not None and window.held_for_s(now) >= hold_s:
                    break
                if self._stop_requested:
                    raise RuntimeError(f"{self.name}: move to {setpoint_k:g} K was stopped")
                if now - started > self.settle_timeout_s:
                    raise TemperatureNotSettledError(
                        f"{self.name}: not settled within ±{tolerance_k:g} K of {setpoint_k:g} K "
                        f"after {self.settle_timeout_s:g} s (instrument time); last reading "
                        f"{current_k:.3f} K"
                    )
                if not self.monitored:
                    await self.clock.sleep(self.poll_period_s)
        finally:
            self._settle_window = None
        self._set_settling_time_s(window.in_band_since_s - started)

    async def make_safe(self, safe_temperature_k: float) -> str:
        """Leave the stage safe unattended; returns what was done.

        In its rated range the stage is sent to `safe_temperature_k`. Beyond it (a heater
        runaway) or unreadable, a setpoint cannot be trusted to act: the heater is switched
        off. Both are retried until the controller confirms them.
        """
        controller = self.controller
        try:
            temperature_k: float | None = await controller.temperature_k()
        except InstrumentCommunicationError:
            temperature_k = None
        if temperature_k is not None and (
            self.minimum_temperature_k <= temperature_k <= self.maximum_temperature_k
        ):
            await controller.connection.until_confirmed(
                "safe setpoint", lambda: controller.set_setpoint_k(safe_temperature_k))
            return f"setpoint {safe_temperature_k:g} K (stage at {temperature_k:.2f} K)"
        await controller.connection.until_confirmed(
            "heater off", lambda: controller.set_heater_range(HeaterRange.OFF))
        shown = "unreadable" if temperature_k is None else f"{temperature_k:.2f} K"
        return f"heater off (stage {shown}, rated {self.minimum_temperature_k:g}–" \
               f"{self.maximum_temperature_k:g} K)"

    async def stop(self, success: bool = False) -> None:
        """Stop waiting for a settle; the controller keeps its last setpoint."""
        self._stop_requested = True

