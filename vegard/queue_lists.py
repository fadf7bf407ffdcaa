"""The two files the RE Manager needs, generated at serve time (never kept by hand).

- `existing_plans_and_devices.yaml`: bluesky-queueserver's own generator
  (`qserver-list-plans-devices`) run on `vegard.queue_startup` in describe-only mode, so
  the lists are what the worker's namespace holds, without connecting an instrument.
- `user_group_permissions.yaml`: the plans `vegard.queue_environment.plan_names` offers
  and the devices served, by exact name, to the `primary` group (the one `qserver` and
  the HTTP server's single-user key act as); nothing else, and no functions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from vegard.queue_environment import CONFIG_VARIABLE

EXISTING_FILE = "existing_plans_and_devices.yaml"
PERMISSIONS_FILE = "user_group_permissions.yaml"
STARTUP_MODULE = "vegard.queue_startup"
GENERATE_TIMEOUT_S = 120.0
"""Wall time the generator gets (imports of bluesky and the device classes)."""


def console_script(name: str) -> str:
    """A console script of this interpreter's environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (pip install -e '.[test]')")
    return found


def generate_existing_plans_and_devices(describe_config: Path, directory: Path) -> Path:
    """Run queueserver's generator on the startup module (`describe_config`: a
    describe-only `QueueConfig`); the path of the file it wrote."""
    capture = subprocess.run(
        [console_script("qserver-list-plans-devices"), "--startup-module", STARTUP_MODULE,
         "--file-dir", str(directory), "--file-name", EXISTING_FILE],
        env={**os.environ, CONFIG_VARIABLE: str(describe_config)},
        capture_output=True, text=True, timeout=GENERATE_TIMEOUT_S, check=False)
    path = directory / EXISTING_FILE
    if capture.returncode != 0 or not path.is_file():
        raise RuntimeError(
            "qserver-list-plans-devices failed on the startup module: "
            f"{(capture.stderr or capture.stdout).strip()[-2000:]}")
    return path


def permissions(plans: Sequence[str], devices: Sequence[str]) -> dict:
    """The user-group permissions: these plans and these devices (with their signals)."""

    def exact(name: str) -> str:
        return f":^{re.escape(name)}$"

    return {"user_groups": {
        "root": {
            "allowed_plans": [None], "forbidden_plans": [":^_"],
            "allowed_devices": [None], "forbidden_devices": [":^_:?.*"],
            "allowed_functions": [None], "forbidden_functions": [":^_"],
        },
        "primary": {
            "allowed_plans": [exact(name) for name in plans],
            "forbidden_plans": [None],
            "allowed_devices": [f"{exact(name)}:?.*" for name in devices],
            "forbidden_devices": [None],
            "allowed_functions": [],
            "forbidden_functions": [":.*"],
        },
    }}


def write_permissions(directory: Path, plans: Sequence[str], devices: Sequence[str]) -> Path:
    path = directory / PERMISSIONS_FILE
    path.write_text(yaml.safe_dump(permissions(plans, devices), sort_keys=False))
    return path
