"""`vegard` commands in a subprocess, as a user runs them, for the end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def vegard_json(*arguments: str, timeout_s: float = 600.0) -> tuple[dict, str]:
    """(the `--json` summary, stderr) of one `vegard` command; a failure fails the test."""
    capture = subprocess.run(
        [sys.executable, "-m", "vegard.cli", *arguments, "--json"],
        capture_output=True, text=True, timeout=timeout_s, check=False, cwd=REPOSITORY,
    )
    assert capture.returncode == 0, capture.stderr[-3000:]
    return json.loads(capture.stdout.strip().splitlines()[-1]), capture.stderr


def dry_run(data_dir: Path, protocol: Path, *extra: str, timeout_s: float = 600.0
            ) -> tuple[dict, str]:
    return vegard_json("dry-run", str(protocol), "--data-dir", str(data_dir), *extra,
                       timeout_s=timeout_s)
