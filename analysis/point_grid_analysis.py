"""What every point-spectroscopy analysis (BE loops, FORC, relaxation, tr-KPFM, c-AFM) does
with the documents: one event per grid point, placed by its `point_index`; a point taken
again keeps its last take; the work is done at the stop. Subclasses say which start-document
contract they read (`metadata_type`), what they keep per point (`allocate`, `take`) and what
they make of it (`stop`). Only documents go in, so the live run and replay agree."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from event_model import DocumentRouter

from .esm_map import json_float
from .figure_process import FigureDrawer
from .run_metadata import PointGridMetadata


def json_values(values: np.ndarray) -> list[float | None]:
    """Flattened, as JSON numbers (NaN → None)."""
    return [json_float(v) for v in np.asarray(values, dtype=float).ravel()]


def finite_mean(values: np.ndarray) -> float | None:
    """Mean over the finite values; None if there are none."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return json_float(finite.mean()) if finite.size else None


class PointGridAnalysis(DocumentRouter):
    """Gathers one event per grid point of the contract's stream; subclasses analyse at stop."""

    metadata_type: ClassVar[type[PointGridMetadata]]

    def __init__(self, figures_directory_for: Callable[[str], Path] | None = None) -> None:
        """`figures_directory_for(run_uid)` says where the figures and maps go."""
        super().__init__()
        self.figures_directory_for = figures_directory_for
        self._figures = FigureDrawer()
        self.result: dict[str, Any] | None = None
        self.latest: dict[str, Any] | None = None
        self._meta: Any = None
        self._stream_of: dict[str, str] = {}
        self.positions_nm = np.zeros((0, 2))

    def allocate(self, meta: Any) -> None:
        """Make the per-point arrays of a new run (NaN: not measured)."""
        raise NotImplementedError

    def take(self, index: int, data: Mapping[str, Any], prefix: str) -> None:
        """Keep point `index`'s readings (data keys start with `prefix-`)."""
        raise NotImplementedError

    def start(self, doc):
        self._meta = self.metadata_type.of(doc)
        self._uid = doc["uid"]
        self.positions_nm = np.full((self._meta.points, 2), np.nan)
        self.allocate(self._meta)

    def descriptor(self, doc):
        self._stream_of[doc["uid"]] = doc.get("name", "primary")

    def event(self, doc):
        meta = self._meta
        if meta is None or self._stream_of.get(doc["descriptor"]) != meta.stream:
            return
        data, prefix = doc["data"], meta.device
        index = int(data[f"{prefix}-point_index"])
        self.take(index, data, prefix)
        self.positions_nm[index] = (data[f"{prefix}-x_nm"], data[f"{prefix}-y_nm"])
        self.latest = {"points_done": int(self.measured().sum()),
                       "points": len(self.positions_nm)}

    def measured(self) -> np.ndarray:
        """Which points have been taken."""
        return np.isfinite(self.positions_nm[:, 0])

    def no_points_result(self, doc, **extra: Any) -> dict[str, Any]:
        """The result of a run with nothing to analyse (no contract, or no point taken)."""
        return {"points": len(self.positions_nm) if self._meta is not None else 0,
                "points_measured": 0, **extra, "exit_status": doc.get("exit_status")}
