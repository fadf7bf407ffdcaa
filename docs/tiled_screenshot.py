"""Screenshots of Tiled's web UI for a run recorded through `vegard serve`.

    .venv/bin/python docs/tiled_screenshot.py [--out docs/figures]

Serves the sim profile's stage and AFM (free loopback ports, a temporary run store),
runs a small ESM room-temperature map through the queue (HTTP API, with the key), then
points headless Chromium (`chromium-headless-shell` or `chromium` on PATH; Debian:
`apt-get install chromium-headless-shell`) at Tiled's pages for that run: the run (its
streams) and the `primary` stream's BE spectra array. Prints what it wrote.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.http import REManagerAPI

REPOSITORY = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def small_map(path: Path) -> Path:
    data = yaml.safe_load((REPOSITORY / "configs/protocols/esm_room_temperature.yaml")
                          .read_text())
    data["map"].update(pixels=[16, 16], size_nm=[200, 200])
    data["excitation"]["averages"] = 2
    data["temperature_stage"]["settle_time_s"] = 10
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def screenshot(browser: str, url: str, path: Path) -> None:
    subprocess.run(
        [browser, "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1400,900", "--virtual-time-budget=15000", f"--screenshot={path}", url],
        check=True, capture_output=True, timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPOSITORY / "docs" / "figures"))
    args = parser.parse_args()
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if browser is None:
        print(f"no headless Chromium on PATH (looked for {', '.join(BROWSERS)})",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    with tempfile.TemporaryDirectory(prefix="vegard-screenshot-") as folder:
        serve = subprocess.Popen(
            [sys.executable, "-m", "vegard.cli", "serve", "--devices", "temperature_stage,afm",
             "--speedup", "1000", "--data-dir", f"{folder}/store", "--zmq-control-port", "0",
             "--zmq-info-port", "0", "--http-port", "0", "--tiled-port", "0"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "VEGARD_API_KEY": key})
        try:
            printed = {}
            assert serve.stdout is not None
            for line in serve.stdout:
                name, _, value = line.strip().partition(" ")
                printed[name] = value
                if name == "ready":
                    break
            manager = REManagerAPI(http_server_uri=printed["http"])
            manager.set_authorization_key(api_key=key)
            manager.environment_open()
            manager.wait_for_idle(timeout=120)
            manager.item_add(BPlan("run_protocol", str(small_map(Path(folder) / "esm.yaml"))))
            manager.queue_start()
            manager.wait_for_idle(timeout=300)
            (item,) = manager.history_get()["items"][-1:]
            (uid,) = item["result"]["run_uids"]
            pages = {
                "tiled_run.png": f"{printed['tiled']}/ui/browse/{uid}",
                "tiled_be_spectra.png": f"{printed['tiled']}/ui/browse/{uid}/primary/afm-spectra",
            }
            for file_name, url in pages.items():
                screenshot(browser, f"{url}?api_key={key}", out / file_name)
                print(f"{out / file_name}: {url} (run {uid}, {item['result']['exit_status']})")
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
