"""SXDM reduction on a ≥ 4 GB map: one process against a 2-worker Dask LocalCluster.

Data: the map of `benchmarks/sxdm_analysis.py` (75 positions per line, each a rocking curve
of 30 frames of 64 × 64 uint16, one HDF5 chunk per line), made quickly: `--distinct` lines
are simulated with `simulators.nanodiffraction.frames` and repeated down the map until it
holds `--gb` GB. The file lives in a temporary directory, deleted at the end.

Measured, both from the page cache (the file is read once first):
- single process: each line read with h5py and summed (`q_sums`, the compiled pass), then
  `centres_from_sums` + `sxdm_maps`;
- Dask: `analysis.sxdm_dask.MapGraph`, one task per line reading its own chunk by path
  (`ArraySlab`), lines → rows → map, on a `LocalCluster` of 2 single-threaded worker
  processes on 127.0.0.1; then the same `sxdm_maps`. Peak RSS of each worker
  (`ru_maxrss` in the worker) shows memory bounded by a line, not the map.
The maps must be identical (exact equality of the COM sums and of every map).
Run: `.venv/bin/python benchmarks/sxdm_distributed.py [--gb 4.2]`.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
from sxdm_analysis import DATASET, GEOMETRY, PHASE, X_LI, read_all

from vegard.analysis.sxdm_dask import DaskReducer, LineJob, MapGraph, local_cluster
from vegard.analysis.sxdm_maps import QGrid, centres_from_sums, q_sums, sxdm_maps
from vegard.diffraction_geometry import pixel_q
from vegard.simulators.lmno_crystal import LmnoCrystal
from vegard.simulators.nanodiffraction import detector_setting_for, frames, rocking_eta_deg
from vegard.store.arrays import ArraySlab

N_X = 75


def write_map(path: Path, gigabytes: float, distinct: int) -> tuple[int, dict]:
    """Simulate `distinct` lines, tile them into a map of ≥ `gigabytes`; (lines, setting)."""
    crystal = LmnoCrystal(seed=0)
    setting = detector_setting_for(crystal.d400_mean_angstrom(X_LI, PHASE), GEOMETRY)
    etas = rocking_eta_deg(setting.eta_center_deg)
    rng = np.random.default_rng(0)
    x_um = np.linspace(-2.5, 2.5, N_X)
    line_bytes = N_X * etas.size * setting.roi.n_rows * setting.roi.n_cols * 2
    n_lines = int(np.ceil(gigabytes * 1e9 / line_bytes))
    simulated = []
    for y in np.linspace(-2.5, 2.5, distinct):
        points = np.column_stack((x_um, np.full(N_X, y)))
        line = frames(crystal, X_LI, points, etas, GEOMETRY, setting.roi, setting.nu_deg,
                      setting.delta_deg, 0.01, 1e9, rng)
        simulated.append(np.minimum(line, np.iinfo(np.uint16).max).astype(np.uint16))
    shape = (n_lines, *simulated[0].shape)
    with h5py.File(path, "w") as f:
        data = f.create_dataset(DATASET, shape=shape, dtype=np.uint16, chunks=(1, *shape[1:]))
        for iy in range(n_lines):
            data[iy] = simulated[iy % distinct]
    return n_lines, {"etas": etas, "setting": setting}


def single_process(path: Path, grid: QGrid) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    with h5py.File(path, "r") as f:
        data = f[DATASET]
        line = np.empty(data.shape[1:], dtype=data.dtype)
        sums = np.empty((data.shape[0], data.shape[1], 4))
        for iy in range(data.shape[0]):
            data.read_direct(line, np.s_[iy])
            sums[iy] = q_sums(line, grid)
    return time.perf_counter() - start, sums


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def rss_mb() -> float:
    """This process's resident memory now."""
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=4.2, help="map size in GB (default 4.2)")
    parser.add_argument("--distinct", type=int, default=6, help="simulated lines (default 6)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="sxdm_distributed_"))
    cluster = client = None
    try:
        path = directory / "sxdm_map.h5"
        started = time.perf_counter()
        n_lines, made = write_map(path, args.gb, args.distinct)
        size_mb = path.stat().st_size / 1e6
        setting, etas = made["setting"], made["etas"]
        angles = (tuple(float(e) for e in etas), 0.0, setting.nu_deg, setting.delta_deg)
        q = pixel_q(GEOMETRY, etas, 0.0, setting.nu_deg, setting.delta_deg, setting.roi.rows,
                    setting.roi.cols)
        grid = QGrid.from_pixels(q)
        print(f"map: {n_lines} × {N_X} positions × {etas.size} frames × "
              f"{setting.roi.n_rows}×{setting.roi.n_cols} uint16 = {size_mb:.0f} MB "
              f"({args.distinct} simulated lines tiled; made in "
              f"{time.perf_counter() - started:.1f} s)")
        read_s = read_all(path)  # and the file in the page cache
        print(f"read only (page cache): {size_mb / read_s:.0f} MB/s")

        single_process(path, grid)  # the kernel compiled or loaded
        single_s, single_sums = single_process(path, grid)
        single_maps = sxdm_maps(*centres_from_sums(single_sums, grid.q_ref_inv_angstrom))

        graph = MapGraph("benchmark", n_lines, N_X, [
            LineJob(ArraySlab("frames", str(path), DATASET, iy, iy + 1), iy, asdict(GEOMETRY),
                    angles, (setting.roi.row_start, setting.roi.col_start,
                             setting.roi.n_rows, setting.roi.n_cols),
                    tuple(float(v) for v in grid.q_ref_inv_angstrom))
            for iy in range(n_lines)])
        cluster, client = local_cluster(2)
        reducer = DaskReducer(client)
        before = client.run(peak_rss_mb)
        warm = MapGraph("warm-up", 2, N_X, graph.jobs[:2])
        reducer.map_sums(warm)  # each worker imports and loads the kernel once
        start = time.perf_counter()
        dask_sums = reducer.map_sums(graph)
        dask_s = time.perf_counter() - start
        peaks = client.run(peak_rss_mb)
        now = client.run(rss_mb)
        dask_maps = sxdm_maps(*centres_from_sums(dask_sums, grid.q_ref_inv_angstrom))

        identical = np.array_equal(single_sums, dask_sums) and all(
            np.array_equal(getattr(single_maps, name), getattr(dask_maps, name),
                           equal_nan=True)
            for name in ("q_com_inv_angstrom", "d_angstrom", "strain", "tilt_altitude_deg",
                         "tilt_azimuth_deg", "intensity", "mask"))
        line_mb = single_sums.shape[1] * etas.size * setting.roi.n_rows * setting.roi.n_cols * 2e-6
        print(f"single process: {single_s:6.2f} s  {size_mb / single_s:6.0f} MB/s")
        print(f"dask, 2 workers: {dask_s:6.2f} s  {size_mb / dask_s:6.0f} MB/s  "
              f"({len(graph.jobs)} line tasks of {line_mb:.1f} MB)")
        for address in sorted(peaks):
            print(f"    worker {address}: peak RSS {peaks[address]:.0f} MB, now "
                  f"{now[address]:.0f} MB (peak after start-up "
                  f"{before.get(address, float('nan')):.0f} MB; "
                  f"the map is {size_mb:.0f} MB)")
        print(f"maps identical: {identical}; d mean {dask_maps.d_mean_angstrom:.5f} Å over "
              f"{int(dask_maps.mask.sum())} pixels")
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        shutil.rmtree(directory, ignore_errors=True)
    print(f"workers=2 speedup_vs_single={single_s / dask_s:.2f} identical={int(identical)}")


if __name__ == "__main__":
    main()
