"""The SXDM centre-of-mass reduction as a Dask task graph over the recorded frame slabs.

A map's COM sums are Σ over its lines of frames(n_x, voxels) @ [Q − Q_ref, 1]. Each line
is one task that opens the HDF5 file by path and reads only its own rows (the frame range
its StreamDatum gives, `ArraySlab`): no frames travel from the client, and a worker holds
one line at a time. The line sums (n_x, 4) go into one task per map row, which adds them
from zero in document order — the order the single-process analysis adds them — then one
task stacks the rows into the map's (n_y, n_x, 4). Same frames, same compiled pass, same
additions in the same order: the sums, and so the maps, are bit for bit those of the
single-process path (`SxdmMapAccumulator.add_line`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import h5py
import numpy as np

from vegard.diffraction_geometry import DetectorRoi, DiffractometerGeometry, pixel_q
from vegard.store.arrays import ArraySlab

from .sxdm_maps import QGrid, q_sums

WORKERS_RANGE = (1, 64)
SCHEDULER_PATTERN = re.compile(r"^tcp://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")


def check_scheduler_address(address: str) -> str:
    """A Dask scheduler address `tcp://host:port`, refused with the allowed shape."""
    match = SCHEDULER_PATTERN.match(address)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError(f"--scheduler = {address!r} is not valid: allowed: tcp://HOST:PORT "
                         "with PORT 1 … 65535 (e.g. tcp://127.0.0.1:8786)")
    return address


def check_workers(workers: int) -> int:
    low, high = WORKERS_RANGE
    if not low <= workers <= high:
        raise ValueError(f"--workers = {workers!r} is not valid: allowed: {low} … {high}")
    return workers


@dataclass(frozen=True)
class LineJob:
    """One fly line: where its frames are and what Q its voxels have (small, picklable)."""

    slab: ArraySlab
    row: int
    geometry: Mapping[str, Any]  # DiffractometerGeometry fields, energy included
    angles_deg: tuple[Any, float, float, float]  # eta (one, or a rocking curve's), phi, nu, delta
    roi: tuple[int, ...]
    q_ref: tuple[float, float, float]
    threshold_counts: float = 0.0


def line_q(geometry: Mapping[str, Any], angles_deg: Sequence[float], roi: DetectorRoi
           ) -> np.ndarray:
    """Sample-frame Q (R, C, 3) of the ROI voxels of one line ((n_eta, R, C, 3) for a
    sequence of eta)."""
    eta, phi, nu, delta = angles_deg
    if isinstance(eta, tuple | list):  # a line holding whole rocking curves
        eta = np.asarray(eta, dtype=float)
    return pixel_q(DiffractometerGeometry(**geometry), eta, phi, nu, delta, roi.rows, roi.cols)


@lru_cache(maxsize=4)
def _grid(geometry: tuple, angles_deg: tuple, roi: tuple, q_ref: tuple) -> QGrid:
    """A worker's Q grid, kept for the next task of the same angles (lines holding whole
    rocking curves share one; computing it costs more than summing an 18 MB line)."""
    q = line_q(dict(geometry), angles_deg, DetectorRoi(*roi))
    return QGrid.from_pixels(q, q_ref=np.array(q_ref))


_buffers = threading.local()


def _line_buffer(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The worker thread's buffer for one line, reused: a fresh 18 MB array per task costs
    its page faults, as long as the sums themselves. A worker holds one line, whatever the
    size of the map."""
    buffer = getattr(_buffers, "line", None)
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        buffer = _buffers.line = np.empty(shape, dtype=dtype)
    return buffer


def line_sums(job: LineJob) -> np.ndarray:
    """Task: read the line's own rows from the file and return its sums (n_x, 4).

    The file is opened per task (≈1 ms of a line's ≈8): an open handle kept in a worker
    broke reads when the same process (an in-process cluster) opened and closed the file
    too — HDF5 shares one file object per process."""
    with h5py.File(job.slab.path, "r", swmr=True) as file:
        dataset = file[job.slab.dataset]
        frames = _line_buffer((job.slab.stop - job.slab.start, *dataset.shape[1:]),
                              dataset.dtype)
        dataset.read_direct(frames, np.s_[job.slab.start:job.slab.stop])
    grid = _grid(tuple(sorted(job.geometry.items())), job.angles_deg, tuple(job.roi),
                 tuple(job.q_ref))
    frames = frames.reshape(-1, *grid.voxel_shape)  # (1, n_x, R, C) → (n_x, R, C)
    return q_sums(frames, grid, threshold_counts=job.threshold_counts)


def row_sums(nx: int, *parts: np.ndarray) -> np.ndarray:
    """Task: one map row's sums, its lines added from zero in document order."""
    total = np.zeros((nx, 4), dtype=np.float64)
    for part in parts:
        total += part
    return total


def stack_rows(nx: int, rows: Sequence[int], *sums: np.ndarray) -> np.ndarray:
    """Task: the map's (n_y, n_x, 4) sums from its row sums; rows without lines stay 0."""
    ny = len(rows)
    out = np.zeros((ny, nx, 4), dtype=np.float64)
    for index, row_total in zip(rows, sums, strict=True):
        if row_total is not None:
            out[index] = row_total
    return out


@dataclass
class MapGraph:
    """The lines of one map, in document order, and the graph that reduces them."""

    name: str
    ny: int
    nx: int
    jobs: list[LineJob] = field(default_factory=list)

    def graph(self) -> tuple[dict[str, Any], str]:
        """(dask graph, key of the (n_y, n_x, 4) result): lines → rows → map."""
        graph: dict[str, Any] = {}
        by_row: dict[int, list[str]] = {}
        for number, job in enumerate(self.jobs):
            key = f"{self.name}-line-{number}"
            graph[key] = (line_sums, job)
            by_row.setdefault(job.row, []).append(key)
        row_keys: list[Any] = []
        for row in range(self.ny):
            if row in by_row:
                key = f"{self.name}-row-{row}"
                graph[key] = (row_sums, self.nx, *by_row[row])
                row_keys.append(key)
            else:
                row_keys.append(None)
        result = f"{self.name}-map"
        graph[result] = (stack_rows, self.nx, list(range(self.ny)), *row_keys)
        return graph, result


class DaskReducer:
    """Runs `MapGraph`s on a `distributed.Client` (a LocalCluster's or a scheduler's)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def map_sums(self, graph: MapGraph) -> np.ndarray:
        tasks, key = graph.graph()
        return np.asarray(self.client.get(tasks, key))


def local_cluster(workers: int) -> tuple[Any, Any]:
    """(cluster, client): `workers` single-threaded worker processes on loopback only."""
    from distributed import Client, LocalCluster

    check_workers(workers)
    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines per worker
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None,
                           silence_logs=logging.WARNING)
    return cluster, Client(cluster)
