"""Live (and replayed) analysis of an operando SXDM run: d400, strain and tilt maps while charging.

A cell is charged while one crystal is mapped again and again. Each map is a rocking scan at
every pixel of an x–y raster; the run delivers it as one `primary` event per fly line (one
row y at one rocking angle eta, all x pixels), the area-detector frames of the line in HDF5
(StreamResource/StreamDatum, read with `ArrayFiller`), the potentiostat in a monitored stream.

Centre of mass, incrementally. The COM sums Σ counts·(Q − Q_ref) and Σ counts are linear in
the frames, so each line adds frames(n_x, R·C) @ [Q_e − Q_ref, 1] to per-pixel float64 sums
(`analysis.sxdm_maps.q_sums`): Q_e is the sample-frame Q of the ROI voxels at this line's
eta, phi, nu, delta and energy read-backs, Q_ref is fixed per map (the mean Q of its first
line), so float32 keeps the 10⁻⁴ differences that carry strain and tilt. No map's frames are
ever held in memory (a full map is GBs). Finished maps go through `sxdm_maps` (d, strain,
tilt, mask), exactly as a whole-scan `q_centres` would.

Threads. Reading a line and adding it runs on one worker thread, so the RunEngine's callback
returns at once; a map is finished (maps, figure, npz, charge figure redrawn) on the same
worker when all its ny·points lines have arrived, a later map begins, or the run stops. One
worker, jobs in document order: live and replay add the same numbers in the same order, so
they give the same `.result`.

Charge curve. The monitor's potential and charge (reading timestamps, the instrument clock of
the frames' start times) give each map's potential and charge at its mid time, and the
plateaus of the charge curve as peaks of the incremental capacity dQ/dV
(`incremental_capacity`, `charge_plateaus_v`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from event_model import DocumentRouter

from vegard.diffraction_geometry import DetectorRoi
from vegard.store.arrays import ArrayFiller

from .esm_map import json_float
from .figure_process import FigureDrawer
from .run_metadata import SxdmMetadata
from .sxdm_dask import DaskReducer, LineJob, MapGraph, line_q
from .sxdm_maps import MASK_FRACTION, QGrid, SxdmMaps, centres_from_sums, q_sums, sxdm_maps

MAP_STREAM = "primary"
CHARGE_FIGURE = "sxdm_charge.png"
PLATEAU_BIN_V = 0.001
"""Width of the potential bins the charge increments are sorted into (1 mV)."""
PLATEAU_SMOOTHING_V = 0.004
"""Gaussian sigma of the dQ/dV smoothing: wide enough to average noise and sparse sampling,
narrow enough to keep plateaus 50 mV apart (the two Ni plateaus) separate."""
PLATEAU_PROMINENCE_FRACTION = 0.1
"""A dQ/dV peak counts as a plateau if its prominence is at least this fraction of the
highest peak (the broad Mn3+/Mn4+ start near 4.0-4.1 V stays below: a sloping region)."""
_POTENTIOSTATIC = "potentiostatic"
_DIFFRACTOMETER_AXES = ("eta_deg", "delta_deg", "nu_deg", "phi_deg", "energy_ev")


def map_file_name(index: int) -> str:
    return f"sxdm_map_{index}.npz"


def map_figure_name(index: int) -> str:
    return f"sxdm_map_{index}.png"


# ----------------------------------------------------------------- charge curve (pure numpy)


def incremental_capacity(
    potential_v: Sequence[float],
    charge_mah: Sequence[float],
    *,
    bin_v: float = PLATEAU_BIN_V,
    smoothing_v: float = PLATEAU_SMOOTHING_V,
    counted: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """dQ/dV (mAh/V) on a potential grid (V), from a time-ordered charge curve.

    Each charge increment |Q[i+1] − Q[i]| goes to the potential bin of the mean of its two
    readings, so the result is the charge passed per volt at each potential: the potential
    need not be monotonic (noise, relaxation), and rests (no increment) add nothing. The
    histogram is smoothed by a Gaussian of sigma `smoothing_v`. `counted[i]` False leaves
    out the increments touching reading i (e.g. potentiostatic holds, where charge flows at
    a fixed potential and would make a spurious peak).
    """
    from scipy.ndimage import gaussian_filter1d

    v = np.asarray(potential_v, dtype=float)
    q = np.asarray(charge_mah, dtype=float)
    use = np.isfinite(v) & np.isfinite(q)
    if counted is not None:
        use &= np.asarray(counted, dtype=bool)
    pair = use[:-1] & use[1:]
    if v.size < 2 or not pair.any():
        return np.empty(0), np.empty(0)
    mid_v = 0.5 * (v[:-1] + v[1:])[pair]
    dq = np.abs(np.diff(q))[pair]
    margin = 4.0 * smoothing_v
    low = math.floor((mid_v.min() - margin) / bin_v) * bin_v
    high = math.ceil((mid_v.max() + margin) / bin_v) * bin_v
    edges = np.arange(low, high + 0.5 * bin_v, bin_v)
    if edges.size < 2:
        edges = np.array([low, low + bin_v])
    histogram, edges = np.histogram(mid_v, bins=edges, weights=dq)
    dq_dv = gaussian_filter1d(histogram / bin_v, smoothing_v / bin_v, mode="constant")
    return 0.5 * (edges[:-1] + edges[1:]), dq_dv


def charge_plateaus_v(
    potential_v: Sequence[float],
    charge_mah: Sequence[float],
    *,
    prominence_fraction: float = PLATEAU_PROMINENCE_FRACTION,
    bin_v: float = PLATEAU_BIN_V,
    smoothing_v: float = PLATEAU_SMOOTHING_V,
    counted: Sequence[bool] | None = None,
) -> list[float]:
    """Potentials (V, ascending) of the plateaus: peaks of `incremental_capacity` whose
    prominence is at least `prominence_fraction` of the largest dQ/dV, each refined by a
    parabola through its three highest bins."""
    from scipy.signal import find_peaks

    grid_v, dq_dv = incremental_capacity(
        potential_v, charge_mah, bin_v=bin_v, smoothing_v=smoothing_v, counted=counted
    )
    if dq_dv.size < 3 or not np.max(dq_dv) > 0:
        return []
    peaks, _ = find_peaks(dq_dv, prominence=prominence_fraction * float(np.max(dq_dv)))
    plateaus = []
    for i in peaks:
        shift = 0.0
        if 0 < i < dq_dv.size - 1:
            left, centre, right = dq_dv[i - 1], dq_dv[i], dq_dv[i + 1]
            curvature = left - 2.0 * centre + right
            if curvature < 0:
                shift = 0.5 * (left - right) / curvature
        plateaus.append(float(grid_v[i] + shift * bin_v))
    return sorted(plateaus)


# ----------------------------------------------------------------------- per-map accumulation


@dataclass
class SxdmMapAccumulator:
    """The running COM sums of one map, filled line by line (one eta, one row, all x).

    `sums` (ny, nx, 4) float64 holds Σ counts·(Q − q_ref) and Σ counts per map pixel, over
    the lines added so far; `q_ref` is fixed by the first line (its mean Q over the ROI).
    """

    index: int
    nx: int
    ny: int
    points: int
    sums: np.ndarray = field(init=False)
    q_ref: np.ndarray | None = None
    lines: np.ndarray = field(init=False)
    time_min_s: float = math.inf
    time_max_s: float = -math.inf
    readbacks: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sums = np.zeros((self.ny, self.nx, 4), dtype=np.float64)
        self.lines = np.zeros((self.ny, self.points), dtype=bool)

    def add_line(
        self,
        row: int,
        eta_index: int,
        frames: np.ndarray,
        q_pixels: np.ndarray,
        *,
        threshold_counts: float = 0.0,
    ) -> None:
        """Add the frames (nx, R, C) of one line whose ROI voxels have Q `q_pixels` (R, C, 3)."""
        frames = np.asarray(frames)
        if frames.shape[0] != self.nx:
            raise ValueError(f"map {self.index}: a line of {frames.shape[0]} frames, "
                             f"expected {self.nx}")
        if self.q_ref is None:
            self.q_ref = np.asarray(q_pixels, dtype=float).reshape(-1, 3).mean(axis=0)
        grid = QGrid.from_pixels(q_pixels, q_ref=self.q_ref)
        self.sums[row] += q_sums(frames, grid, threshold_counts=threshold_counts)
        self.lines[row, eta_index] = True

    @property
    def lines_done(self) -> int:
        return int(self.lines.sum())

    @property
    def complete(self) -> bool:
        return bool(self.lines.all())

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """q_com (ny, nx, 3) in Å⁻¹ and integrated counts (ny, nx)."""
        q_ref = np.full(3, np.nan) if self.q_ref is None else self.q_ref
        return centres_from_sums(self.sums, q_ref)

    def maps(self, mask_fraction: float = MASK_FRACTION) -> SxdmMaps:
        q_com, counts = self.centres()
        return sxdm_maps(q_com, counts, mask_fraction=mask_fraction)


@dataclass(frozen=True)
class _Line:
    """What the worker needs to add one line (frames are read there, not here)."""

    map_index: int
    row: int
    eta_index: int
    datum: Mapping[str, Any]
    readbacks: dict[str, float]
    frame_times_s: np.ndarray


def _interpolate(times_s: np.ndarray, values: np.ndarray, when_s: float) -> float:
    use = np.isfinite(times_s) & np.isfinite(values)
    if not use.any() or not np.isfinite(when_s):
        return math.nan
    return float(np.interp(when_s, times_s[use], values[use]))


# ------------------------------------------------------------------------------- the callback


class SxdmOperandoAnalysis(DocumentRouter):
    """Per-map d400 / strain / tilt maps of an operando SXDM run, and its charge curve.

    `figures_for(run_uid)` is the folder for the figures and npz files (None: no files);
    `run_path_for(run_uid)` the run's folder, where array files are looked for if the
    stored paths moved (None: the paths in the documents only).

    `.result` (at stop; plain JSON, NaN → None): maps (one entry per map with lines, in
    map order: map_index, time_span_s [first, last frame start, instrument clock],
      frame_span_s (from the map's first frame start to its last: what `sxdm_estimate`
      predicts as `frame_span_s`),
    potential_v and charge_mah at the mid time, d400_mean_angstrom, microstrain,
    tilt_altitude_max_deg, masked_in_pixels, lines, complete, delta_deg, eta_center_deg,
    figures {"maps": png}, maps_file (npz)); charge (potential_start_v, potential_end_v,
    charge_mah passed, plateaus_v, monitor_points, figure); d400_mean_change_angstrom
    (last map − first); exit_status. Runs without `sxdm` in the start document are
    ignored (result stays None).

    `.finished` (live): the entries of the maps finished so far, by map index.

    `reducer` (`analysis.sxdm_dask.DaskReducer`): the lines are not read here; each map's
    sums are computed when it is finished, as a Dask graph whose tasks read the frame
    ranges of the StreamDatum documents from the files; the result is the same, bit for bit.
    """

    def __init__(
        self,
        figures_for: Callable[[str], Path] | None = None,
        *,
        run_path_for: Callable[[str], Path] | None = None,
        plateau_prominence_fraction: float = PLATEAU_PROMINENCE_FRACTION,
        reducer: DaskReducer | None = None,
    ) -> None:
        super().__init__()
        self.reducer = reducer
        self.figures_for = figures_for
        self._figures = FigureDrawer()
        self.run_path_for = run_path_for
        self.plateau_prominence_fraction = plateau_prominence_fraction
        self.result: dict[str, Any] | None = None
        self._active = False
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- documents

    def start(self, doc):
        self._shutdown()
        self.result = None
        self._active = "sxdm" in doc
        if not self._active:
            return
        self._uid = doc["uid"]
        sxdm = SxdmMetadata.of(doc)
        self._sxdm = sxdm
        self._geometry = sxdm.geometry.model_dump()
        self._roi = DetectorRoi(*sxdm.roi)
        self._x_um = np.asarray(sxdm.map.x_um, dtype=float)
        self._y_um = np.asarray(sxdm.map.y_um, dtype=float)
        self._points = sxdm.rocking.points
        self._detector = sxdm.detector
        self._diffractometer = sxdm.diffractometer
        self._cell_stream = sxdm.cell_stream or "potentiostat_monitor"
        self._mask_fraction = sxdm.mask_fraction
        self._threshold = sxdm.threshold_counts
        self._frames_key = f"{self._detector}-frames"
        run_path = None if self.run_path_for is None else self.run_path_for(self._uid)
        self._filler = ArrayFiller(run_path)
        self._stream_of: dict[str, str] = {}
        self._resource_key: dict[str, str] = {}
        self._pending: dict[str, list[list[Any]]] = {}  # descriptor → [[datum, next row]]
        self._seen: dict[int, set[tuple[int, int]]] = {}
        self._current_map: int | None = None
        self._submitted_finish: set[int] = set()
        self._futures: list[Future] = []
        self._accumulators: dict[int, SxdmMapAccumulator] = {}
        self._graphs: dict[int, MapGraph] = {}
        self.finished: dict[int, dict[str, Any]] = {}
        self._monitor: dict[str, list[Any]] = {"time_s": [], "potential_v": [], "current_a": [],
                                               "charge_mah": [], "mode": []}
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sxdm-operando")

    def descriptor(self, doc):
        if not self._active:
            return
        self._stream_of[doc["uid"]] = doc.get("name", MAP_STREAM)
        self._filler("descriptor", doc)

    def stream_resource(self, doc):
        if not self._active:
            return
        self._resource_key[doc["uid"]] = doc["data_key"]
        self._filler("stream_resource", doc)

    def stream_datum(self, doc):
        if not self._active or self._resource_key.get(doc["stream_resource"]) != self._frames_key:
            return
        start = int(doc["indices"]["start"])
        self._pending.setdefault(doc.get("descriptor", ""), []).append([doc, start])

    def event(self, doc):
        if not self._active:
            return
        self._raise_failures()
        stream = self._stream_of.get(doc["descriptor"])
        if stream == MAP_STREAM:
            self._map_line(doc)
        elif stream == self._cell_stream:
            self._monitor_point(doc)

    def stop(self, doc):
        if not self._active:
            return
        for index in sorted(self._seen):
            self._finish(index)
        try:
            self._wait()
        finally:
            self._shutdown()
            self._filler.close()
        self.result = self._final_result(doc.get("exit_status"))

    # ------------------------------------------------------------------------- live

    def wait(self) -> None:
        """Block until the worker has done everything submitted so far (re-raising a failure),
        figures included."""
        if self._active:
            self._wait()
            self._figures.finished()

    def _wait(self) -> None:
        futures, self._futures = self._futures, []
        for future in futures:
            future.result()

    def _raise_failures(self) -> None:
        """Surface a worker failure at the next document rather than only at stop."""
        still = []
        for future in self._futures:
            if future.done():
                future.result()
            else:
                still.append(future)
        self._futures = still

    def _submit(self, function: Callable[..., Any], *args: Any) -> None:
        assert self._executor is not None
        self._futures.append(self._executor.submit(function, *args))

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _take_datum(self, doc) -> Mapping[str, Any]:
        """The frames of this event: the stream_datum announced for it (by seq_num, else the
        next unused row of the oldest one), narrowed to its one row."""
        pending = self._pending.get(doc["descriptor"]) or self._pending.get("") or []
        seq = int(doc.get("seq_num", 0))
        chosen = None
        for entry in pending:
            seq_nums = entry[0].get("seq_nums") or {}
            first, last = int(seq_nums.get("start", 0)), int(seq_nums.get("stop", 0))
            if first <= seq < last:
                chosen, row = entry, int(entry[0]["indices"]["start"]) + seq - first
                break
        if chosen is None:
            if not pending:
                raise LookupError(f"event {doc['uid']} of the map stream has no frames "
                                  f"(no stream_datum for {self._frames_key} before it)")
            chosen, row = pending[0], pending[0][1]
        datum = chosen[0]
        chosen[1] = row + 1
        if chosen[1] >= int(datum["indices"]["stop"]):
            pending.remove(chosen)
        return {**datum, "indices": {"start": row, "stop": row + 1}}

    def _map_line(self, doc) -> None:
        data = doc["data"]
        p, d = self._detector, self._diffractometer
        index = int(data[f"{p}-map_index"])
        row, eta_index = int(data[f"{p}-row"]), int(data[f"{p}-eta_index"])
        if not (0 <= row < self._y_um.size and 0 <= eta_index < self._points):
            raise ValueError(f"map line row {row}, eta index {eta_index} outside the "
                             f"{self._y_um.size} rows × {self._points} angles of the start "
                             "document")
        datum = self._take_datum(doc)
        if self._current_map is not None and index != self._current_map:
            for earlier in sorted(self._seen):
                if earlier != index:
                    self._finish(earlier)
        self._current_map = index
        seen = self._seen.setdefault(index, set())
        if (row, eta_index) in seen or index in self._submitted_finish:
            return  # a repeated line (or one after its map was closed) is not added twice
        seen.add((row, eta_index))
        readbacks = {axis: float(data[f"{d}-{axis}"]) for axis in _DIFFRACTOMETER_AXES}
        line = _Line(index, row, eta_index, datum, readbacks,
                     np.asarray(data.get(f"{p}-frame_time_s", []), dtype=float).ravel())
        self._submit(self._add_line, line)
        if len(seen) == self._y_um.size * self._points:
            self._finish(index)

    def _monitor_point(self, doc) -> None:
        data, stamps = doc["data"], doc.get("timestamps") or {}
        key = next((k for k in data if k.endswith("-potential_v")), None)
        if key is None:
            return
        prefix = key[: -len("-potential_v")]

        def value(name: str) -> float:
            v = data.get(f"{prefix}-{name}")
            return math.nan if v is None else float(v)

        with self._lock:
            self._monitor["time_s"].append(float(stamps.get(key, doc["time"])))
            self._monitor["potential_v"].append(float(data[key]))
            self._monitor["current_a"].append(value("current_a"))
            self._monitor["charge_mah"].append(value("charge_mah"))
            self._monitor["mode"].append(str(data.get(f"{prefix}-mode", "")))

    def _finish(self, index: int) -> None:
        if index in self._submitted_finish or index not in self._seen:
            return
        self._submitted_finish.add(index)
        self._submit(self._finish_map, index, self._monitor_snapshot())

    def _monitor_snapshot(self) -> dict[str, np.ndarray]:
        with self._lock:
            snapshot = {k: np.asarray(v) for k, v in self._monitor.items()}
        order = np.argsort(snapshot["time_s"], kind="stable")
        return {k: v[order] for k, v in snapshot.items()}

    # ------------------------------------------------------------------------- worker

    def _add_line(self, line: _Line) -> None:
        accumulator = self._accumulators.get(line.map_index)
        if accumulator is None:
            accumulator = self._accumulators[line.map_index] = SxdmMapAccumulator(
                line.map_index, self._x_um.size, self._y_um.size, self._points)
        r = line.readbacks
        geometry = {**self._geometry, "energy_ev": r["energy_ev"]}
        angles = (r["eta_deg"], r["phi_deg"], r["nu_deg"], r["delta_deg"])
        if self.reducer is not None:  # read by a task of the map's graph, at its finish
            if accumulator.q_ref is None:
                q = line_q(geometry, angles, self._roi)
                accumulator.q_ref = q.reshape(-1, 3).mean(axis=0)
            graph = self._graphs.setdefault(line.map_index, MapGraph(
                f"sxdm-{self._uid}-map{line.map_index}", self._y_um.size, self._x_um.size))
            graph.jobs.append(LineJob(
                self._filler.slab_for(line.datum), line.row, geometry, angles,
                tuple(self._sxdm.roi), tuple(float(v) for v in accumulator.q_ref),
                self._threshold))
            accumulator.lines[line.row, line.eta_index] = True
        else:
            frames = self._filler.arrays_for(line.datum)[self._frames_key]
            frames = frames.reshape(-1, *frames.shape[-2:])  # (1, nx, R, C) → (nx, R, C)
            accumulator.add_line(line.row, line.eta_index, frames,
                                 line_q(geometry, angles, self._roi),
                                 threshold_counts=self._threshold)
        times = line.frame_times_s[np.isfinite(line.frame_times_s)]
        if times.size:
            accumulator.time_min_s = min(accumulator.time_min_s, float(times.min()))
            accumulator.time_max_s = max(accumulator.time_max_s, float(times.max()))
        for axis, value in r.items():
            accumulator.readbacks.setdefault(axis, []).append(value)

    def _finish_map(self, index: int, monitor: dict[str, np.ndarray]) -> None:
        accumulator = self._accumulators[index]
        graph = self._graphs.pop(index, None)
        if graph is not None:
            accumulator.sums = self.reducer.map_sums(graph)
        maps = accumulator.maps(self._mask_fraction)
        entry = self._entry(accumulator, maps, monitor)
        if self.figures_for is not None:
            directory = Path(self.figures_for(self._uid))
            entry["maps_file"] = str(self._save_maps(directory / map_file_name(index), maps))
            from .sxdm_figures import sxdm_map_figure

            entry["figures"]["maps"] = str(self._figures.draw(
                sxdm_map_figure,
                directory / map_figure_name(index), maps, self._x_um, self._y_um,
                map_index=index, potential_v=entry["potential_v"],
                charge_mah=entry["charge_mah"],
            ))
        with self._lock:
            self.finished[index] = entry
        if self.figures_for is not None:
            self._charge_figure(monitor, [self.finished[i] for i in sorted(self.finished)])

    def _entry(
        self, accumulator: SxdmMapAccumulator, maps: SxdmMaps, monitor: dict[str, np.ndarray]
    ) -> dict[str, Any]:
        span = (accumulator.time_min_s, accumulator.time_max_s)
        mid_s = 0.5 * (span[0] + span[1]) if np.isfinite(span).all() else math.nan
        readbacks = accumulator.readbacks
        summary = maps.summary()
        in_view = peak_in_view(maps.intensity)
        if not in_view:  # only background photons: the numbers would describe the ROI
            summary = {**summary, "d_mean_angstrom": None, "microstrain": None,
                       "tilt_altitude_max_deg": None}
        return {
            "map_index": accumulator.index,
            "time_span_s": [json_float(span[0]), json_float(span[1])],
            "frame_span_s": json_float(span[1] - span[0]),
            "potential_v": json_float(_interpolate(monitor["time_s"], monitor["potential_v"],
                                                   mid_s)),
            "charge_mah": json_float(_interpolate(monitor["time_s"], monitor["charge_mah"],
                                                  mid_s)),
            "d400_mean_angstrom": json_float(summary["d_mean_angstrom"]),
            "microstrain": json_float(summary["microstrain"]),
            "tilt_altitude_max_deg": json_float(summary["tilt_altitude_max_deg"]),
            "masked_in_pixels": int(summary["masked_in_pixels"]),
            "peak_in_view": in_view,
            "lines": accumulator.lines_done,
            "complete": accumulator.complete,
            "delta_deg": json_float(np.mean(readbacks["delta_deg"])),
            "eta_center_deg": json_float(0.5 * (min(readbacks["eta_deg"])
                                                + max(readbacks["eta_deg"]))),
            "figures": {"maps": None},
            "maps_file": None,
        }

    def _save_maps(self, path: Path, maps: SxdmMaps) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            x_um=self._x_um, y_um=self._y_um,
            d_angstrom=maps.d_angstrom, strain=maps.strain,
            tilt_altitude_deg=maps.tilt_altitude_deg, tilt_azimuth_deg=maps.tilt_azimuth_deg,
            intensity=maps.intensity, mask=maps.mask,
            q_com_inv_angstrom=maps.q_com_inv_angstrom,
        )
        return path

    def _charge_figure(self, monitor: dict[str, np.ndarray], entries: list[dict]) -> Path:
        from .sxdm_figures import charge_curve_figure

        return self._figures.draw(
            charge_curve_figure,
            Path(self.figures_for(self._uid)) / CHARGE_FIGURE,
            time_s=monitor["time_s"], potential_v=monitor["potential_v"],
            map_index=[e["map_index"] for e in entries],
            map_time_span_s=[e["time_span_s"] for e in entries],
            map_potential_v=[e["potential_v"] for e in entries],
            map_d400_angstrom=[e["d400_mean_angstrom"] for e in entries],
            plateaus_v=self._plateaus(monitor),
        )

    # ------------------------------------------------------------------------- at stop

    def _plateaus(self, monitor: dict[str, np.ndarray]) -> list[float]:
        counted = np.asarray([mode != _POTENTIOSTATIC for mode in monitor["mode"]], dtype=bool)
        return charge_plateaus_v(monitor["potential_v"], monitor["charge_mah"], counted=counted,
                                 prominence_fraction=self.plateau_prominence_fraction)

    def _final_result(self, exit_status: str | None) -> dict[str, Any]:
        monitor = self._monitor_snapshot()
        entries = []
        for index in sorted(self.finished):
            entry = dict(self.finished[index])
            span = entry["time_span_s"]
            if None not in span:  # every monitor reading is in now
                mid_s = 0.5 * (span[0] + span[1])
                entry["potential_v"] = json_float(
                    _interpolate(monitor["time_s"], monitor["potential_v"], mid_s))
                entry["charge_mah"] = json_float(
                    _interpolate(monitor["time_s"], monitor["charge_mah"], mid_s))
            entries.append(entry)
        potential = monitor["potential_v"].astype(float)
        charge = monitor["charge_mah"].astype(float)
        finite_charge = charge[np.isfinite(charge)]
        d_means = [e["d400_mean_angstrom"] for e in entries if e["d400_mean_angstrom"] is not None]
        result = {
            "maps": entries,
            "charge": {
                "potential_start_v": json_float(potential[0]) if potential.size else None,
                "potential_end_v": json_float(potential[-1]) if potential.size else None,
                "charge_mah": json_float(finite_charge[-1] - finite_charge[0])
                if finite_charge.size else None,
                "plateaus_v": [json_float(v) for v in self._plateaus(monitor)],
                "monitor_points": int(potential.size),
                "figure": None,
            },
            "d400_mean_change_angstrom": json_float(d_means[-1] - d_means[0])
            if len(d_means) >= 2 else None,
            "exit_status": exit_status,
        }
        if self.figures_for is not None and (entries or potential.size):
            result["charge"]["figure"] = str(self._charge_figure(monitor, entries))
        drawn = {str(path) for path in self._figures.finished()}
        for entry in result.get("maps") or []:
            figures = entry.get("figures") if isinstance(entry, dict) else None
            if figures and figures.get("maps") not in drawn:
                figures["maps"] = None
        if result["charge"]["figure"] not in drawn:
            result["charge"]["figure"] = None
        return result


PEAK_CONTRAST = 10.0
"""A map sees a Bragg peak when its brightest pixel has this many times the counts of its
dimmest tenth (a crystal in part of the field); with the peak outside the ROI every
pixel holds the same few background photons."""


def peak_in_view(intensity: np.ndarray) -> bool:
    """Whether the map's intensity is a crystal's Bragg peak rather than flat background."""
    values = np.asarray(intensity, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0 or values.max() <= 0:
        return False
    return bool(values.max() >= PEAK_CONTRAST * (np.percentile(values, 10) + 1.0))
