"""The Python API: a profile's instruments, connected, with a RunEngine, for IPython.

    import bluesky.plans as bp
    import vegard

    with vegard.open_lab("configs/profiles/sim.yaml") as lab:
        lab.run_engine(bp.count([lab.devices["temperature_stage"]], num=3))
        lab.run_protocol("configs/protocols/temperature_steps.yaml")

For a sim profile the simulators are started on the virtual clock (or `paced=` times wall
time, to watch), for a real one the instruments are connected at their addresses. Every
run goes to the run store under `data_dir`; leaving the `with` block closes the devices
and stops the simulators, whatever happened inside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bluesky import RunEngine

from vegard.clock import InstrumentClock
from vegard.config.errors import ConfigError
from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol
from vegard.session import Session
from vegard.simulators.lab import SimulatedLab


@dataclass
class OpenLab:
    """What `open_lab` hands out."""

    devices: dict[str, Any]
    """Connected devices by their profile names."""
    run_engine: RunEngine
    """On the lab's clock, with the run store subscribed."""
    clock: InstrumentClock
    simulators: SimulatedLab | None
    """The simulated lab (ground truth, parameters), or None at real instruments."""
    data_dir: Path
    _session: Session

    def run_protocol(self, protocol_path: str | Path) -> dict[str, Any]:
        """Run a protocol file on these devices with the checks of `vegard run`; the
        summary `vegard run --json` prints."""
        path = Path(protocol_path)
        protocol = load_protocol(path)
        bench = self._session.check(protocol, path)
        missing = [name for name in bench.names.values() if name not in self.devices]
        if missing:
            raise ConfigError(
                f"{path}: protocol {protocol.protocol!r} needs devices {missing}, "
                f"not opened (opened: {sorted(self.devices)})")
        return self._session.run_protocol(protocol, path, bench).summary


@contextmanager
def open_lab(
    profile_path: str | Path,
    *,
    devices: Sequence[str] | None = None,
    data_dir: str | Path = "vegard-data",
    simulator_overrides: Sequence[str] = (),
    paced: float | None = None,
) -> Iterator[OpenLab]:
    """Connect a profile's devices (`devices`: only these; default all of the profile's).

    `simulator_overrides` are `--set` strings (`temperature_stage.sensor_noise_k=0.01`);
    `paced` runs a sim profile's clock at that many times wall time instead of the
    virtual clock."""
    path = Path(profile_path)
    profile = load_profile(path)
    names = list(devices) if devices is not None else profile.device_names()
    session = Session(
        profile=profile, data_dir=Path(data_dir).resolve(),
        dry_run=profile.runs_dry(),
        simulator_overrides=list(simulator_overrides), speedup=paced, show_progress=False,
        profile_source=str(path),
    )
    session.open(names)
    try:
        yield OpenLab(devices=dict(session.devices), run_engine=session.run_engine,
                      clock=session.clock, simulators=session.lab,
                      data_dir=session.data_dir, _session=session)
    finally:
        session.close()
