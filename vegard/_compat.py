"""Every use of a private ophyd-async or aioca API, in one place.

No other vegard module imports a private module of ophyd-async, aioca, bluesky,
event-model or caproto, or names a private attribute of theirs: where the pinned
versions offer no public way, the use is a small named shim here, whose docstring says
what it touches and why. `tests/framework/test_compat.py` checks that the installed versions
are the pinned series and that everything below still has the shape the shims expect,
so a version bump that changes one of them fails there, naming the shim to fix, rather
than in a dry run.

Pinned for: ophyd-async 0.21, aioca 2.1 (see pyproject.toml).

Channel Access is loaded only when asked for (`MotorLogic`, `motor_logic_type`,
`destroy_channel_access_context`): text-protocol instruments import this module too, and
libca costs a fifth of a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ophyd_async.core import SignalMetadata
from ophyd_async.core._signal_backend import make_metadata as _make_metadata

if TYPE_CHECKING:
    from ophyd_async.epics.motor import Motor
    from ophyd_async.epics.motor import MotorFlyableMovableLogic as MotorLogic

__all__ = [
    "SHIMS",
    "MotorLogic",
    "destroy_channel_access_context",
    "motor_logic_signals",
    "motor_logic_type",
    "signal_metadata",
]

SHIMS: dict[str, tuple[str, ...]] = {
    "ophyd-async": ("signal_metadata", "motor_logic_type", "motor_logic_signals"),
    "aioca": ("destroy_channel_access_context",),
}
"""The shims by the distribution whose private API each one relies on."""


def signal_metadata(
    datatype: type | None, units: str | None = None, precision: int | None = None
) -> SignalMetadata:
    """The `SignalMetadata` ophyd-async's own backends give a signal of `datatype`.

    Touches `ophyd_async.core._signal_backend.make_metadata` (private module; the function
    is not exported by `ophyd_async.core`, unlike its neighbours `make_datakey` and
    `SignalDatatypeT`). The soft and derived signal backends build their metadata with it;
    the driver-signal backend does the same so its units and enum `choices` are described
    exactly as a soft signal's. A public rebuild from `SignalMetadata` and `get_enum_cls`
    would be possible but would drift silently if ophyd-async changes what metadata it
    derives from a datatype; this shim breaks loudly instead.
    """
    return _make_metadata(datatype, units, precision)


def motor_logic_signals(motor: Motor) -> dict[str, Any]:
    """The signals an ophyd-async `Motor` gives its move and fly logic, by field name.

    Mirrors the body of the private `Motor._logic` (ophyd_async.epics.motor): the library
    builds a Motor's `MotorFlyableMovableLogic` there and has no public factory that
    builds it with another logic class. A subclass that overrides the public
    `movable_logic`/`flyable_logic` with a `MotorLogic` subclass passes these; the test
    checks they are still exactly what a plain `Motor`'s logic holds.
    """
    return {
        "readback": motor.user_readback,
        "setpoint": motor.user_setpoint,
        "motor_stop": motor.motor_stop,
        "low_limit_travel": motor.low_limit_travel,
        "high_limit_travel": motor.high_limit_travel,
        "dial_low_limit_travel": motor.dial_low_limit_travel,
        "dial_high_limit_travel": motor.dial_high_limit_travel,
        "velocity": motor.velocity,
        "acceleration_time": motor.acceleration_time,
        "motor_done_move": motor.motor_done_move,
        "max_velocity": motor.max_velocity,
        "motor_egu": motor.motor_egu,
    }


def destroy_channel_access_context() -> None:
    """Close every aioca channel and destroy the CA context aioca made.

    Touches `aioca._catools._Context._teardown` (private module and class): it is aioca's
    own exit handler. libca reads EPICS_CA_ADDR_LIST once per context, so pointing the
    process at another IOC means destroying the context; aioca's public
    `purge_channel_caches` closes the channels but keeps the context, and destroying it
    through libca directly would leave aioca holding a dead context (`_Context._ca_context`)
    that it would attach to on the next channel. `_teardown` also forgets it, so the next
    channel makes a fresh context that reads the environment.
    """
    from aioca import _catools

    _catools._Context._teardown()


def motor_logic_type() -> type[MotorLogic]:
    """The class of an ophyd-async `Motor`'s move and fly logic, to subclass.

    Touches `ophyd_async.epics.motor.MotorFlyableMovableLogic`: importable, but left out of
    the module's `__all__` (ophyd-async 0.21 exports only `Motor`, `InstantMotorMock`,
    `MotorLimitsError`, `OffsetMode`, `UseSetMode`), so no public promise. There is no
    public base to subclass instead: a `Motor`'s `movable_logic` and `flyable_logic` are
    public override points, but `Motor.set`, `prepare` and `kickoff` need this class's
    motor-record move, limit check, timeout and fly hooks. `MotorLogic` (this module's
    attribute, loaded on first use) is the same class.
    """
    from ophyd_async.epics.motor import MotorFlyableMovableLogic

    return MotorFlyableMovableLogic


def __getattr__(name: str) -> Any:
    if name == "MotorLogic":
        return motor_logic_type()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
