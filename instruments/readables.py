"""Readable children in the order a device declares them.

ophyd-async's `add_children_as_readables` finds the new children with a set difference of
their names, so their order — the order `read()` gathers them, and so the order their
queries leave on a text wire — follows the names' string hashes, which change with every
process. On a virtual clock each exchange costs its link time, so one run read a stage's
heater output 20 ms after another did: a different controller tick, a different value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ophyd_async.core import Device, StandardReadable, StandardReadableFormat


@contextmanager
def readables_in_order(
    device: StandardReadable, format: StandardReadableFormat = StandardReadableFormat.CHILD
) -> Iterator[None]:
    """Like `add_children_as_readables`, in declaration order (plain child devices only)."""
    before = dict(device.children())
    yield
    added = [child for name, child in device.children()
             if name not in before and isinstance(child, Device)]
    device.add_readables(added, format)
