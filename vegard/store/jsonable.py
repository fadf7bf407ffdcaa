"""Turn what devices put into documents (numpy scalars and arrays, ...) into plain JSON.

A run must never be lost because a reading had an unusual type, so anything
unknown falls back to its ``str()``. Complex numbers become ``[real, imag]``.
NaN and infinities are written as Python's `json` does (``NaN``, ``Infinity``),
which `json.loads` reads back; a missing reading is better stored than refused.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from pathlib import PurePath
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """``default=`` hook for `json.dumps`: called only for values JSON cannot encode."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        item = value.item()  # longdouble & co. stay numpy: fall back to text
        return str(value) if isinstance(item, np.generic) else item
    if isinstance(value, complex):
        return [value.real, value.imag]
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def dumps(value: Any) -> str:
    """One-line JSON (ASCII only, so a truncated write never splits a character)."""
    return json.dumps(value, default=to_jsonable, separators=(",", ":"))
