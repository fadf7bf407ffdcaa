"""The SXDM reduction as a Dask graph: tasks read their own frame ranges from the file by
path and give the single-process sums bit for bit; bad scheduler / worker options are
refused before anything starts."""

from __future__ import annotations

from dataclasses import asdict

import h5py
import numpy as np
import pytest

from vegard.analysis.sxdm_dask import DaskReducer, LineJob, MapGraph, line_q
from vegard.analysis.sxdm_operando import SxdmMapAccumulator
from vegard.cli import main
from vegard.diffraction_geometry import DetectorRoi, DiffractometerGeometry
from vegard.store.arrays import ArraySlab

GEOMETRY = DiffractometerGeometry(distance_m=1.4, center_row=255.0, center_col=260.0)
ROI = DetectorRoi(230, 240, 12, 16)
NX, NY, N_ETA = 5, 3, 4


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict:
    """A small map as the detector writer records it: one line (n_x frames) per row of
    `/data/frames`, lines in acquisition order (eta outer, y inner), sparse Poisson counts."""
    path = tmp_path_factory.mktemp("frames") / "detector.h5"
    rng = np.random.default_rng(5)
    lines = []
    with h5py.File(path, "w") as file:
        data = file.create_dataset("/data/frames", shape=(NY * N_ETA, NX, *ROI.shape),
                                   dtype=np.uint16, chunks=(2, NX, *ROI.shape),
                                   compression="lzf")
        for number in range(NY * N_ETA):
            eta_index, row = divmod(number, NY)
            data[number] = rng.poisson(0.05 + 3.0 * (eta_index == 2), (NX, *ROI.shape))
            lines.append((number, row, eta_index, 10.0 + 0.05 * eta_index))
    return {"path": str(path), "lines": lines}


def jobs_and_reference(recorded: dict, threshold: float) -> tuple[MapGraph, np.ndarray]:
    accumulator = SxdmMapAccumulator(0, NX, NY, N_ETA)
    graph = MapGraph("test-map", NY, NX)
    with h5py.File(recorded["path"], "r") as file:
        data = file["/data/frames"]
        for number, row, eta_index, eta in recorded["lines"]:
            angles = (eta, 0.0, 0.5, 20.0)
            q = line_q(asdict(GEOMETRY), angles, ROI)
            accumulator.add_line(row, eta_index, data[number], q, threshold_counts=threshold)
            graph.jobs.append(LineJob(
                ArraySlab("frames", recorded["path"], "/data/frames", number, number + 1),
                row, asdict(GEOMETRY), angles, (ROI.row_start, ROI.col_start, ROI.n_rows,
                                                ROI.n_cols),
                tuple(accumulator.q_ref), threshold))
    return graph, accumulator.sums


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_the_graph_gives_the_single_process_sums_bit_for_bit(recorded, threshold) -> None:
    from distributed import Client, LocalCluster

    graph, reference = jobs_and_reference(recorded, threshold)
    tasks, _ = graph.graph()
    assert sum(k.startswith("test-map-line-") for k in tasks) == NY * N_ETA  # one per line
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        sums = DaskReducer(client).map_sums(graph)
    assert sums.shape == (NY, NX, 4) and reference[..., 3].min() > 0
    np.testing.assert_array_equal(sums, reference)


@pytest.mark.parametrize("arguments, message", [
    (["--scheduler", "http://127.0.0.1:8786"], "--scheduler = 'http://127.0.0.1:8786'"),
    (["--scheduler", "tcp://127.0.0.1:99999"], "PORT 1 … 65535"),
    (["--workers", "0"], "--workers = 0 is not valid: allowed: 1 … 64"),
    (["--workers", "65"], "--workers = 65 is not valid: allowed: 1 … 64"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"], "give one of the two"),
])
def test_bad_dask_options_are_refused_before_anything_runs(
        arguments, message, tmp_path, capsys) -> None:
    code = main(["analyze", "no-such-run", "--data-dir", str(tmp_path), *arguments])
    assert code == 2
    assert message in capsys.readouterr().err
