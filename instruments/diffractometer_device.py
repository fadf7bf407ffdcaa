"""The SXDM diffractometer as an ophyd-async device of EPICS motor records (Channel Access).

Each axis is an `ophyd_async.epics.motor.Motor`, so moves use the motor record's
own protocol: `set()` checks the soft limits before anything is written (a
violation raises `MotorLimitsError` naming the axis and its limits), then puts
VAL with completion, which the record gives back only when the axis is done
(DMOV=1). Stopping writes STOP. A move that ends with the readback further from the
target than the record's retry deadband (RDBD) raises `MotorStalledError`: the record says
done, but the axis is not where it was sent (a stall, lost steps).

Reading timestamps are what Channel Access delivers: the IOC's time of the
record's last update, not the time the client received it. A real IOC stamps
with its own (NTP) wall clock; the simulated IOC stamps with the instrument
clock, so dry-run readings carry instrument time like every other device here.

Which server the client finds is set by the environment (EPICS_CA_ADDR_LIST,
EPICS_CA_AUTO_ADDR_LIST), read by libca when the process creates its first
channel; the simulated IOC's `ca_address_env()` gives the values.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import aioca
from bluesky.protocols import Stoppable
from ophyd_async.core import AsyncStatus, SignalR, StandardReadable, wait_for_value
from ophyd_async.epics.motor import Motor

from vegard._compat import MotorLogic, destroy_channel_access_context, motor_logic_signals

from .errors import MotorStalledError
from .readables import readables_in_order

MOTOR_PV_SUFFIXES: dict[str, str] = {
    "sample_x_um": "SAMX",
    "sample_y_um": "SAMY",
    "eta_deg": "ETA",
    "phi_deg": "PHI",
    "nu_deg": "NU",
    "delta_deg": "DELTA",
    "energy_ev": "ENERGY",
}
"""Record name of each axis after the diffractometer's PV prefix (the beamline's naming)."""

PARK_TIMEOUT_S = 10.0
CA_ADDRESS_SCHEME = "ca://"


@dataclass
class _StallCheckedLogic(MotorLogic):
    """The motor record's move, then the readback compared with the target."""

    deadband: SignalR[float] | None = None
    _tolerance: float | None = None
    stop_requested: bool = False
    """Set by `CheckedMotor.stop`: an axis halted on request is stopped, not stalled (the
    move's put completion can arrive before or after the STOP put's reply)."""

    async def move(self, new_position: float, timeout) -> None:  # type: ignore[override]
        self.stop_requested = False
        await super().move(new_position, timeout)
        if self.stop_requested:
            return  # the Motor reports the stop itself
        if self._tolerance is None and self.deadband is not None:
            self._tolerance = await self.deadband.get_value()  # RDBD does not change
        # a fresh get: a monitor's update of the last RBV can arrive after the put callback
        readback = await self.readback.get_value(cached=False)
        tolerance = self._tolerance or 0.0
        if abs(readback - new_position) > tolerance:
            raise MotorStalledError(self.readback.name, new_position, readback, tolerance)


class CheckedMotor(Motor):
    """An EPICS `Motor` whose `set` fails with `MotorStalledError` if the axis stops short."""

    @cached_property
    def movable_logic(self) -> _StallCheckedLogic:
        """The motor record's logic with the stall check (ophyd-async's public override)."""
        return _StallCheckedLogic(**motor_logic_signals(self), deadband=self.deadband)

    @cached_property
    def flyable_logic(self) -> _StallCheckedLogic:
        """One logic object moves and flies the axis, as in `Motor`."""
        return self.movable_logic

    async def stop(self, success: bool = False) -> None:
        self.movable_logic.stop_requested = True
        await super().stop(success=success)


def pv_prefix_of(address: str) -> str:
    """The PV prefix of a profile address `ca://<prefix>`."""
    if not address.startswith(CA_ADDRESS_SCHEME) or len(address) == len(CA_ADDRESS_SCHEME):
        raise ValueError(f"diffractometer address {address!r} is not ca://<PV prefix>")
    return address[len(CA_ADDRESS_SCHEME):]


def use_channel_access_environment(environment: Mapping[str, str]) -> None:
    """Set EPICS_CA_* for this process and make the next channel read them.

    libca reads its address list once per CA context; a dry run that starts a
    simulated IOC on a fresh port must drop the context an earlier run made
    (aioca has no public reset: `vegard._compat.destroy_channel_access_context`).
    """
    if not environment:
        return
    os.environ.update(environment)
    release_channel_access()


def channel_access_barrier(pv: str):
    """A coroutine factory: one Channel Access read of `pv`, for a virtual clock's barrier.

    The read travels on the same circuit as every other request to that IOC, behind them,
    and its reply comes back behind every earlier reply and update; no timeout (the clock
    keeps its own wall-clock watchdog on a barrier).
    """

    async def barrier() -> object:
        return await aioca.caget(pv, timeout=None)

    return barrier


def release_channel_access() -> None:
    """Close every channel and the CA context now, while the IOC still answers.

    Left to aioca's exit handler after a simulated IOC has stopped, libca waits out its
    connection timeout (30 s) before the process can end.
    """
    destroy_channel_access_context()


class Diffractometer(StandardReadable, Stoppable):
    """Sample piezo x/y (µm), eta, phi, nu, delta (deg) and the X-ray energy (eV)."""

    def __init__(self, prefix: str, name: str = "") -> None:
        with readables_in_order(self):
            self.sample_x_um = CheckedMotor(prefix + MOTOR_PV_SUFFIXES["sample_x_um"])
            self.sample_y_um = CheckedMotor(prefix + MOTOR_PV_SUFFIXES["sample_y_um"])
            self.eta_deg = CheckedMotor(prefix + MOTOR_PV_SUFFIXES["eta_deg"])
            self.phi_deg = CheckedMotor(prefix + MOTOR_PV_SUFFIXES["phi_deg"])
            self.nu_deg = CheckedMotor(prefix + MOTOR_PV_SUFFIXES["nu_deg"])
            self.delta_deg = CheckedMotor(prefix + MOTOR_PV_SUFFIXES["delta_deg"])
            self.energy_ev = CheckedMotor(prefix + MOTOR_PV_SUFFIXES["energy_ev"])
        super().__init__(name=name)

    def _move_signals(self) -> list:
        """What `Motor.set` reads before every move (limits, speed, position, done)."""
        return [
            signal
            for motor in self.motors.values()
            for signal in (motor.low_limit_travel, motor.high_limit_travel,
                           motor.dial_low_limit_travel, motor.dial_high_limit_travel,
                           motor.velocity, motor.acceleration_time, motor.user_readback,
                           motor.motor_done_move)
        ]

    @AsyncStatus.wrap
    async def stage(self) -> None:
        """Also monitor what every move reads first: a fly line moves three axes per pixel
        row, and eight Channel Access gets per move would cost more than the move."""
        await super().stage()
        await asyncio.gather(*(signal.stage() for signal in self._move_signals()))

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        await asyncio.gather(*(signal.unstage() for signal in self._move_signals()))
        await super().unstage()

    @property
    def motors(self) -> dict[str, Motor]:
        """Every axis by its child name."""
        return {name: getattr(self, name) for name in MOTOR_PV_SUFFIXES}

    async def stop(self, success: bool = False) -> None:
        """`bps.stop(diffractometer)`: every axis halted where it is (`safe_park`)."""
        await self.safe_park()

    async def safe_park(self, timeout_s: float = PARK_TIMEOUT_S) -> None:
        """Stop every axis and return once all report done (DMOV=1).

        For a plan's failure path: whatever was moving is halted where it is; a
        `set()` still in progress fails (it did not reach its target).
        """
        motors = self.motors.values()
        await asyncio.gather(*(motor.stop(success=False) for motor in motors))
        await asyncio.gather(
            *(wait_for_value(motor.motor_done_move, 1, timeout=timeout_s) for motor in motors)
        )
