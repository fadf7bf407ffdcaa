"""Where a run lives on disk: ``<data_dir>/runs/<uid>/`` and the names inside it.

Kept in one place so that the writer, the catalog, the array filler and the
session agree without importing each other.
"""

from __future__ import annotations

from pathlib import Path

RUNS_DIR = "runs"
DOCUMENTS_FILE = "documents.jsonl"
SUMMARY_FILE = "run.json"
ARRAYS_DIR = "arrays"


def runs_directory(data_dir: Path) -> Path:
    return Path(data_dir) / RUNS_DIR


def run_directory(data_dir: Path, uid: str) -> Path:
    """The folder holding everything recorded for run ``uid``."""
    return runs_directory(data_dir) / uid


def documents_path(run_path: Path) -> Path:
    """The JSON-lines document log of a run; accepts the run folder or the file itself."""
    run_path = Path(run_path)
    return run_path if run_path.suffix == ".jsonl" else run_path / DOCUMENTS_FILE


def arrays_directory(run_path: Path) -> Path:
    """Folder for the run's HDF5 array files."""
    return Path(run_path) / ARRAYS_DIR
