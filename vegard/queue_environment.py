"""What the queue server's worker holds: the RunEngine, the profile's devices, the plans.

`vegard serve` writes a `QueueConfig` (JSON) and names it in `$VEGARD_QUEUE_CONFIG`;
bluesky-queueserver's RE Manager imports `vegard.queue_startup` in its worker process,
which builds the namespace here: a session on the profile (the RunEngine on the lab's
clock with the run store subscribed, the devices connected), the devices under their
profile names, vegard's plans and bluesky's standard ones. With `describe_only` (how the
lists of plans and devices are generated before the RE Manager starts) the devices are
built but never connected and no RunEngine is made.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vegard.clock import InstrumentClock
from vegard.config.errors import ConfigError
from vegard.config.profiles import SIM_ADDRESS, Profile, load_profile

CONFIG_VARIABLE = "VEGARD_QUEUE_CONFIG"
"""The environment variable naming the JSON file of a `QueueConfig`."""
TILED_KEY_VARIABLE = "VEGARD_TILED_API_KEY"
"""The Tiled key of the live writer (kept out of the configuration file)."""


@dataclass(frozen=True)
class QueueConfig:
    """What the worker needs to know, written by `vegard serve`."""

    profile: str
    """Path of the profile the worker opens (for a sim profile: the served one, whose
    devices are at the served simulators and whose clock follows the served lab)."""
    devices: list[str]
    data_dir: str
    describe_only: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    """Added to the RunEngine's `md` (every run's start document)."""
    tiled_uri: str | None = None
    """Tiled server the runs are written to live (its key: `$VEGARD_TILED_API_KEY`)."""

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def read(cls, path: Path | str) -> QueueConfig:
        return cls(**json.loads(Path(path).read_text()))


def config_from_environment() -> QueueConfig:
    path = os.environ.get(CONFIG_VARIABLE)
    if not path:
        raise ConfigError(
            f"${CONFIG_VARIABLE} is not set: the queue server's startup module is started by "
            "`vegard serve`, which names its configuration there")
    return QueueConfig.read(path)


def _unconnected_devices(profile: Profile, names: list[str]) -> dict[str, Any]:
    """The devices as a session builds them, never connected (for the lists of devices)."""
    from vegard.devices import BuildContext, build_device
    from vegard.registry import instrument_kinds

    def no_arrays_directory() -> Path:
        raise RuntimeError("devices built to be described have no run store")

    context = BuildContext(InstrumentClock(), no_arrays_directory)
    devices = {}
    for name in names:
        settings = profile.devices[name]
        address = settings.address
        if address == SIM_ADDRESS:
            address = instrument_kinds()[settings.driver].placeholder_address
        devices[name] = build_device(name, settings, address, context)
    return devices


def queue_namespace(config: QueueConfig) -> dict[str, Any]:
    """`RE`, the devices by profile name and the allowed plans by name."""
    from vegard.queue_plans import STANDARD_PLANS, vegard_plans
    from vegard.session import Session

    profile = load_profile(config.profile)
    unknown = [name for name in config.devices if name not in profile.devices]
    if unknown:
        raise ConfigError(
            f"{config.profile}: devices {unknown} are not in the profile "
            f"(it has {', '.join(profile.devices)})")
    namespace: dict[str, Any] = {}
    session: Session | None = None

    def session_of() -> Session:
        if session is None:
            raise RuntimeError("this namespace only describes the plans; it runs none")
        return session

    if config.describe_only:
        namespace.update(_unconnected_devices(profile, config.devices))
    else:
        session = Session(
            profile=profile, data_dir=Path(config.data_dir), dry_run=profile.runs_dry(),
            show_progress=False, profile_source=config.profile)
        session.open(config.devices)
        session.run_engine.md.update(config.metadata)
        if config.tiled_uri:
            from vegard.tiled_service import live_writer

            session.run_engine.subscribe(
                live_writer(config.tiled_uri, os.environ.get(TILED_KEY_VARIABLE, "")))
        namespace["RE"] = session.run_engine
        namespace.update(session.devices)
    namespace.update(STANDARD_PLANS)
    namespace.update(vegard_plans(session_of))
    return namespace


def plan_names() -> list[str]:
    """Every plan a queue server offers (the permissions allow exactly these)."""
    from vegard.queue_plans import STANDARD_PLANS, vegard_plans

    return [*STANDARD_PLANS, *vegard_plans(lambda: None)]  # type: ignore[arg-type, return-value]
