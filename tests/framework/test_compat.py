"""The private ophyd-async and aioca APIs `vegard._compat` relies on are still there.

A version bump that moves, renames or reshapes one fails here, naming the shim in
`vegard/_compat.py` to fix, instead of deep in a dry run. Fast: nothing connects.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import inspect
import re
import tomllib
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from types import CodeType, FunctionType

import pytest

from vegard import _compat

ROOT = Path(__file__).resolve().parents[2]
PRIVATE_OWNERS = ("ophyd_async", "aioca", "bluesky", "event_model", "caproto")
SOURCE_DIRS = ("vegard", "instruments", "plans", "simulators", "analysis", "tests", "benchmarks")


def fix(shim: str) -> str:
    return f"fix the shim vegard._compat.{shim}"


PIN = r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*==\s*([0-9][0-9A-Za-z.]*(\.\*)?)\s*"


def pinned_series() -> dict[str, str]:
    """`name==X.Y.*` (or `==X.Y`) from pyproject's dependencies, by distribution name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        match = re.fullmatch(PIN, requirement)
        assert match, f"pyproject dependency {requirement!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(3)
    return pins


@pytest.mark.parametrize("distribution", sorted(_compat.SHIMS))
def test_installed_version_is_the_pinned_series(distribution: str) -> None:
    pin = pinned_series()[distribution]
    installed = importlib.metadata.version(distribution)
    if pin.endswith(".*"):
        ok = installed == pin[:-2] or installed.startswith(pin[:-1])
    else:
        ok = installed == pin
    assert ok, (
        f"{distribution} {installed} is installed but pyproject pins {pin}: the private API "
        f"under {', '.join(_compat.SHIMS[distribution])} in vegard/_compat.py was checked only "
        f"for the pinned series; re-check those shims (and this test) before moving the pin"
    )


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# -- ophyd-async: signal_metadata --------------------------------------------------------


def test_make_metadata_takes_datatype_units_precision() -> None:
    from ophyd_async.core import StrictEnum, _signal_backend

    make_metadata = getattr(_signal_backend, "make_metadata", None)
    assert callable(make_metadata), (
        f"ophyd_async.core._signal_backend.make_metadata is gone: {fix('signal_metadata')}"
    )
    assert parameters(make_metadata)[:3] == ["datatype", "units", "precision"], (
        f"make_metadata{inspect.signature(make_metadata)} no longer takes "
        f"(datatype, units, precision): {fix('signal_metadata')}"
    )

    class Mode(StrictEnum):
        A = "a"
        B = "b"

    assert _compat.signal_metadata(float, "V") == {"units": "V"}, fix("signal_metadata")
    assert _compat.signal_metadata(Mode)["choices"] == ["a", "b"], fix("signal_metadata")


# -- ophyd-async: motor_logic_type, motor_logic_signals ---------------------------------


def test_motor_logic_class_is_still_the_motor_record_logic() -> None:
    from ophyd_async.core import FlyableLogic, MovableLogic
    from ophyd_async.epics import motor

    logic = getattr(motor, "MotorFlyableMovableLogic", None)
    assert isinstance(logic, type), (
        f"ophyd_async.epics.motor.MotorFlyableMovableLogic is gone: {fix('motor_logic_type')}"
    )
    assert _compat.motor_logic_type() is logic is _compat.MotorLogic
    assert issubclass(logic, MovableLogic) and issubclass(logic, FlyableLogic), (
        f"MotorFlyableMovableLogic no longer both moves and flies: {fix('motor_logic_type')}"
    )
    assert dataclasses.is_dataclass(logic), (
        f"MotorFlyableMovableLogic is no longer a dataclass (vegard subclasses it as one): "
        f"{fix('motor_logic_type')}"
    )
    assert parameters(logic.move) == ["self", "new_position", "timeout"], (
        f"MotorFlyableMovableLogic.move{inspect.signature(logic.move)} changed (vegard's "
        f"stall check overrides it): {fix('motor_logic_type')}"
    )


def test_motor_logic_signals_are_what_a_motor_gives_its_logic() -> None:
    from ophyd_async.epics.motor import Motor

    motor = Motor("COMPAT:M")
    logic = motor.movable_logic
    assert type(logic) is _compat.MotorLogic, (
        f"Motor.movable_logic is a {type(logic).__name__}: {fix('motor_logic_type')}"
    )
    assert logic is motor.flyable_logic, (
        "Motor no longer shares one logic object between movable_logic and flyable_logic "
        "(CheckedMotor does): fix vegard.instruments.diffractometer_device.CheckedMotor"
    )
    library = {field.name: getattr(logic, field.name) for field in dataclasses.fields(logic)}
    ours = _compat.motor_logic_signals(motor)
    assert ours.keys() == library.keys(), (
        f"Motor's logic now has fields {sorted(library.keys() - ours.keys())} vegard does "
        f"not pass and vegard passes {sorted(ours.keys() - library.keys())} it lacks: "
        f"{fix('motor_logic_signals')}"
    )
    for name, signal in ours.items():
        assert signal is library[name], (
            f"Motor gives its logic {library[name]!r} as {name}, vegard {signal!r}: "
            f"{fix('motor_logic_signals')}"
        )


def code_objects(code: CodeType) -> Iterator[CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            yield from code_objects(constant)


def functions_of(cls: type) -> Iterator[tuple[str, FunctionType]]:
    for name, member in vars(cls).items():
        function = getattr(member, "func", None) or getattr(member, "fget", None) \
            or getattr(member, "__func__", None) or member
        function = inspect.unwrap(function) if callable(function) else function
        if isinstance(function, FunctionType):
            yield name, function


def test_motor_reaches_its_logic_only_through_the_public_properties() -> None:
    """CheckedMotor overrides `movable_logic` and `flyable_logic`; a Motor method that
    reached a logic another way (its private `_logic`, say) would bypass the stall check."""
    from ophyd_async.epics.motor import Motor

    for name in ("movable_logic", "flyable_logic"):
        assert isinstance(inspect.getattr_static(Motor, name), cached_property), (
            f"Motor.{name} is no longer a cached_property: "
            "fix vegard.instruments.diffractometer_device.CheckedMotor"
        )
    public = {"movable_logic", "flyable_logic"}
    for cls in Motor.__mro__:
        if not cls.__module__.startswith("ophyd_async"):
            continue
        for name, function in functions_of(cls):
            if name in public:
                continue
            names = {n for code in code_objects(function.__code__) for n in code.co_names}
            other = sorted(n for n in names if n.endswith("_logic") and n not in public)
            assert not other, (
                f"{cls.__qualname__}.{name} uses {other}, not movable_logic/flyable_logic: "
                f"CheckedMotor's override would be bypassed; {fix('motor_logic_signals')} "
                "and vegard.instruments.diffractometer_device.CheckedMotor"
            )


def test_checked_motor_moves_and_flies_with_the_stall_checked_logic() -> None:
    from vegard.instruments.diffractometer_device import CheckedMotor

    motor = CheckedMotor("COMPAT:M")
    logic = motor.movable_logic
    assert isinstance(logic, _compat.MotorLogic) and logic is motor.flyable_logic
    assert logic.deadband is motor.deadband and logic.readback is motor.user_readback


# -- aioca: destroy_channel_access_context -----------------------------------------------


def test_aioca_context_teardown_destroys_and_forgets_the_context() -> None:
    from aioca import _catools

    context = getattr(_catools, "_Context", None)
    assert isinstance(context, type), (
        f"aioca._catools._Context is gone: {fix('destroy_channel_access_context')}"
    )
    teardown = inspect.getattr_static(context, "_teardown", None)
    assert teardown is not None, (
        f"aioca._catools._Context._teardown is gone: {fix('destroy_channel_access_context')}"
    )
    assert isinstance(teardown, classmethod), (
        f"aioca._catools._Context._teardown is no longer a classmethod: "
        f"{fix('destroy_channel_access_context')}"
    )
    assert parameters(context._teardown) == [], (
        f"_Context._teardown{inspect.signature(context._teardown)} takes arguments: "
        f"{fix('destroy_channel_access_context')}"
    )
    for attribute in ("_ca_context", "_should_destroy", "_channel_caches"):
        assert hasattr(context, attribute), (
            f"aioca._catools._Context.{attribute} is gone: "
            f"{fix('destroy_channel_access_context')}"
        )
    names = set(teardown.__func__.__code__.co_names)
    for needed in ("purge_channel_caches", "ca_context_destroy", "_ca_context"):
        assert needed in names, (
            f"_Context._teardown no longer calls/sets {needed} (it must close the channels, "
            f"destroy the CA context and forget it): {fix('destroy_channel_access_context')}"
        )
    ensure = inspect.getattr_static(context, "_ensure_context", None)
    assert ensure is not None and "ca_context_create" in ensure.__func__.__code__.co_names, (
        "aioca no longer makes a fresh CA context once _teardown has forgotten one: "
        f"{fix('destroy_channel_access_context')}"
    )


# -- nobody else names a private API ----------------------------------------------------


OWNERS = "|".join(PRIVATE_OWNERS)
MAYBE_PRIVATE = re.compile(
    r"(?<!\Wself)(?<!\Wcls)\._[A-Za-z]"  # name._attr, but not self._attr
    rf"|\b(?:{OWNERS})(?:\.\w+)*\._"  # a private module
    rf"|\bfrom\s+(?:{OWNERS})[\w.]*\s+import\s+\(?[\w\s,]*?\b_[A-Za-z]"  # a private name
)
"""A quick look for what `private_uses` parses out (superset)."""


def private_uses(path: Path) -> Iterator[str]:
    """Imports of a private module or name of the libraries, and private attributes of
    the modules so imported (what can be seen without running the code)."""
    text = path.read_text()
    if not any(owner in text for owner in PRIVATE_OWNERS) or not MAYBE_PRIVATE.search(text):
        return  # parsing every file would take most of a second
    tree = ast.parse(text, str(path))
    library_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in PRIVATE_OWNERS:
                    library_aliases.add(alias.asname or parts[0])
                    if any(part.startswith("_") for part in parts):
                        yield f"{path}:{node.lineno}: import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] not in PRIVATE_OWNERS:
                continue
            if any(part.startswith("_") for part in parts):
                yield f"{path}:{node.lineno}: from {node.module} import ..."
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield f"{path}:{node.lineno}: from {node.module} import {alias.name}"
                library_aliases.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in library_aliases:
                yield f"{path}:{node.lineno}: {ast.unparse(node)}"


def test_only_compat_names_private_library_api() -> None:
    here = Path(__file__).resolve()
    found = [
        use
        for directory in SOURCE_DIRS
        for path in sorted((ROOT / directory).rglob("*.py"))
        if path.resolve() not in (here, (ROOT / "vegard" / "_compat.py").resolve())
        for use in private_uses(path)
    ]
    assert not found, (
        "private ophyd-async/aioca/bluesky/event-model/caproto API outside vegard/_compat.py "
        "(add a shim there, with a check here):\n" + "\n".join(found)
    )
