"""The potentiostat of an operando cell as an ophyd-async device.

An operando experiment charges the cell for hours while another instrument images it, so
the potentiostat is mostly *monitored*: `subscribe()` polls potential, current, charge,
mode and the cut-off flag on the instrument clock, one exchange per poll, and a plan
records them as a monitored stream beside the images. `read()` uses the same single
exchange, so every reading of one event comes from one instant.

Plans start and end techniques through `start_charge`, `hold_potential` and `rest`;
`stop()` (e.g. on abort) opens the circuit, the cell's safe state.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bluesky.protocols import Movable, Reading, Stoppable, Subscribable
from ophyd_async.core import AsyncStatus, Device, StandardReadable, StandardReadableFormat

from vegard.clock import WALL_CLOCK, InstrumentClock

from .driver_signal import ConnectOnce, driver_signal_r, driver_signal_rw
from .polled_monitor import PolledMonitor
from .potentiostat_driver import CellMode, CellReading, PotentiostatDriver, SettingOutOfRangeError
from .readables import readables_in_order

logger = logging.getLogger(__name__)


def c_rate_current_a(c_rate: float, *, active_mass_mg: float,
                     capacity_mah_per_g: float = 147.0) -> float:
    """The current of a C-rate for an electrode (C/15 → `c_rate=1/15`: full charge in 15 h)."""
    return c_rate * active_mass_mg * capacity_mah_per_g * 1e-6


@dataclass(frozen=True)
class GalvanostaticCharge:
    """Constant current (> 0) until the potential reaches the limit."""

    current_a: float
    voltage_limit_v: float


@dataclass(frozen=True)
class PotentialHold:
    potential_v: float


Technique = GalvanostaticCharge | PotentialHold


class CellTechnique(Device, Movable):
    """What the cell is doing, as a plan sets it: `bps.mv(potentiostat.technique,
    GalvanostaticCharge(...))`. Done when the instrument has taken it; `bps.stop` on the
    potentiostat puts the cell at rest."""

    def __init__(self, start: Callable[[Technique], Awaitable[None]], name: str = "") -> None:
        self._start = start
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def set(self, value: Technique) -> None:
        await self._start(value)


class Potentiostat(PolledMonitor, StandardReadable, Subscribable, Stoppable):
    """Potential, current, charge and technique of one cell channel."""

    def __init__(
        self,
        driver: PotentiostatDriver,
        *,
        clock: InstrumentClock = WALL_CLOCK,
        poll_period_s: float = 10.0,
        name: str = "",
    ) -> None:
        self.driver = driver
        self.clock = clock
        self.poll_period_s = poll_period_s
        self._connect_driver = ConnectOnce(driver.connect)

        address = driver.connection.address
        common = {"connect": self._connect_driver, "clock": clock}

        def source(command: str) -> str:
            return f"{address}#{command}"

        with readables_in_order(self, StandardReadableFormat.HINTED_UNCACHED_SIGNAL):
            self.potential_v = driver_signal_r(
                float, driver.potential_v, units="V", source=source("MEAS:VOLT?"), **common)
            self.current_a = driver_signal_r(
                float, driver.current_a, units="A", source=source("MEAS:CURR?"), **common)
            self.charge_mah = driver_signal_r(
                float, driver.charge_mah, units="mAh", source=source("MEAS:CHAR?"), **common)
        with readables_in_order(self, StandardReadableFormat.UNCACHED_SIGNAL):
            self.mode = driver_signal_r(CellMode, driver.mode, source=source("MODE?"), **common)
            self.limit_reached = driver_signal_r(
                bool, driver.limit_reached, source=source("STAT:LIM?"), **common)
        with readables_in_order(self, StandardReadableFormat.CONFIG_SIGNAL):
            self.voltage_limit_v = driver_signal_rw(
                float, driver.voltage_limit_v, driver.set_voltage_limit_v, units="V",
                source=source("VLIM"), **common)
            self.current_setpoint_a = driver_signal_rw(
                float, driver.current_setpoint_a, driver.set_current_setpoint_a, units="A",
                source=source("CURR"), **common)
            self.potential_setpoint_v = driver_signal_rw(
                float, driver.potential_setpoint_v, driver.set_potential_setpoint_v, units="V",
                source=source("VOLT"), **common)
        self.technique = CellTechnique(self.start)
        super().__init__(name=name)

    # ------------------------------------------------------------------ techniques

    async def start(self, technique: Technique) -> None:
        if isinstance(technique, GalvanostaticCharge):
            await self.start_charge(technique.current_a, technique.voltage_limit_v)
        elif isinstance(technique, PotentialHold):
            await self.hold_potential(technique.potential_v)
        else:
            raise TypeError(f"{self.name}: no technique {technique!r}")

    async def start_charge(self, current_a: float, voltage_limit_v: float) -> None:
        """Galvanostatic charge at `current_a` (> 0) until the potential reaches the limit."""
        if not current_a > 0:
            raise SettingOutOfRangeError(
                f"{self.name}: a charge needs a positive current, got {current_a:g} A")
        await self.driver.start_galvanostatic(current_a, voltage_limit_v)

    async def hold_potential(self, potential_v: float) -> None:
        await self.driver.hold_potential(potential_v)

    async def rest(self) -> CellReading:
        """Open circuit, confirmed by the instrument (mode REST, zero current)."""
        return await self.driver.rest()

    async def stop(self, success: bool = False) -> None:
        """Open the circuit: whatever was running, the cell is left at rest."""
        await self.rest()

    # ------------------------------------------------------------------ reading

    async def read(self) -> dict[str, Reading]:
        """All readings from one `MEAS:ALL?;STAT:LIM?` exchange, stamped on the instrument clock."""
        cell = await self.driver.read_all()
        stamp_s = self.clock.now()
        values = {
            self.potential_v: cell.potential_v,
            self.current_a: cell.current_a,
            self.charge_mah: cell.charge_mah,
            self.mode: cell.mode,
            self.limit_reached: cell.limit_reached,
        }
        return {
            signal.name: Reading(value=value, timestamp=stamp_s, alarm_severity=0)
            for signal, value in values.items()
        }

