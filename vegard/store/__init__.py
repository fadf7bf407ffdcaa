"""The run store: documents appended as they arrive, arrays in HDF5, a catalog of runs."""

from .arrays import ArrayFiller
from .catalog import RunInfo, RunStatus, find_run, list_runs, read_run_info
from .documents import CorruptRunError, TruncatedRunWarning, load_documents
from .layout import arrays_directory, documents_path, run_directory, runs_directory
from .replay import ReplayResult, replay
from .writer import RunWriter

__all__ = [
    "ArrayFiller",
    "CorruptRunError",
    "ReplayResult",
    "RunInfo",
    "RunStatus",
    "RunWriter",
    "TruncatedRunWarning",
    "arrays_directory",
    "documents_path",
    "find_run",
    "list_runs",
    "load_documents",
    "read_run_info",
    "replay",
    "run_directory",
    "runs_directory",
]
