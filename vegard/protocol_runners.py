"""From a validated protocol to a plan and its analysis, one entry per protocol kind.

The same analysis factory serves the live run and `vegard replay`, so the two
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bluesky.utils import Msg

from vegard.analysis.esm_map import EsmMapAnalysis
from vegard.analysis.esm_temperature_series import EsmTemperatureSeriesAnalysis
from vegard.analysis.sxdm_operando import SxdmOperandoAnalysis
from vegard.analysis.temperature_steps import TemperatureStepsAnalysis
from vegard.clock import InstrumentClock
from vegard.config.errors import ConfigError
from vegard.config.profiles import Profile
from vegard.config.protocols import (
    EsmMapProtocol,
    EsmTemperatureSeriesProtocol,
    Protocol,
    TemperatureStepsProtocol,
)
from vegard.instruments.afm_controller import ScanArea
from vegard.instruments.lakeshore336 import HeaterRange
from vegard.operando_sxdm_runner import (
    DEVICES,
    EstimateReport,
    check_operando_sxdm,
    ground_truth_maps,
    plan_operando_sxdm,
)
from vegard.plans.band_excitation import (
    map_settings,
    three_excitation_map,
)
from vegard.plans.esm_temperature_series import (
    TRACKING_STREAM,
    DriftTrackingSettings,
    esm_temperature_series,
)
from vegard.plans.temperature_steps import temperature_steps

FiguresFor = Callable[[str], Path]


class Analysis:
    """What protocol analyses share: a document callback with a `result` dict."""

    result: dict[str, Any] | None

    def __call__(self, name: str, doc: dict) -> Any: ...


@dataclass(frozen=True)
class ProtocolRunner:
    devices: Callable[[Any], tuple[str, ...]]
    """The profile devices a protocol needs (some need the stage only when they use it)."""
    check: Callable[[Any, Profile, Path], None]
    plan: Callable[[Any, dict[str, Any], Profile, dict[str, Any]], Generator[Msg, Any, Any]]
    analyses: Callable[[FiguresFor | None], list[Analysis]]
    ground_truth: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    """Dry runs: extra truth from the simulator lab given the analysis result
    (`{"maps": [...], "arrays": {name: array}}`; arrays go to the truth file)."""


def _check_stage_temperatures(
    temperatures_k: dict[str, float], profile: Profile, path: Path
) -> None:
    """Every protocol temperature (field → value) within the profile stage's rated range."""
    stage = profile.devices.temperature_stage
    if stage is None:
        raise ConfigError(f"profile {profile.profile!r}: devices.temperature_stage is missing")
    low, high = stage.minimum_temperature_k, stage.maximum_temperature_k
    for field, value in temperatures_k.items():
        if not low <= value <= high:
            raise ConfigError(
                f"{path}: {field} = {value:g} is not valid: "
                f"allowed: {low:g} ≤ value ≤ {high:g} K (profile {profile.profile!r})"
            )


def _check_temperature_steps(protocol: TemperatureStepsProtocol, profile: Profile, path: Path):
    _check_stage_temperatures(
        {
            f"temperature_stage.temperatures_k[{index}]": value
            for index, value in enumerate(protocol.temperature_stage.temperatures_k)
        },
        profile,
        path,
    )


def _plan_temperature_steps(protocol: TemperatureStepsProtocol, devices, profile, md):
    settings = protocol.temperature_stage
    return temperature_steps(
        devices["temperature_stage"],
        settings.temperatures_k,
        settings.settle_tolerance_k,
        settings.settle_time_s,
        ramp_rate_k_per_min=settings.ramp_rate_k_per_min,
        heater_range=HeaterRange(settings.heater_range),
        final_temperature_k=settings.final_temperature_k,
        safe_temperature_k=profile.devices.temperature_stage.safe_temperature_k,
        md=md,
    )


def _check_afm(
    protocol: EsmMapProtocol | EsmTemperatureSeriesProtocol,
    profile: Profile,
    path: Path,
    scan_size_factor: float = 1.0,
) -> None:
    """Tip voltages and the raster (and any larger tracking raster) within the profile."""
    afm = profile.devices.afm
    if afm is None:
        raise ConfigError(f"profile {profile.profile!r}: devices.afm is missing")
    drive = protocol.excitation
    peak_v = drive.drive_amplitude_v + drive.dc_offset_v
    if peak_v > afm.maximum_bias_v:
        raise ConfigError(
            f"{path}: excitation.drive_amplitude_v + excitation.dc_offset_v = {peak_v:g} V "
            f"is not valid: allowed: ≤ {afm.maximum_bias_v:g} V "
            f"(devices.afm.maximum_bias_v of profile {profile.profile!r})"
        )
    half_range_nm = afm.scan_range_nm / 2
    for axis, center, size in zip("xy", protocol.map.center_nm, protocol.map.size_nm, strict=True):
        reach_nm = abs(center) + size * scan_size_factor / 2
        if reach_nm > half_range_nm:
            raise ConfigError(
                f"{path}: map {axis}: |center| + size × {scan_size_factor:g}/2 = {reach_nm:g} nm "
                f"is not valid: allowed: ≤ {half_range_nm:g} nm "
                f"(scanner range of profile {profile.profile!r})"
            )


def _check_esm_map(protocol: EsmMapProtocol, profile: Profile, path: Path):
    _check_afm(protocol, profile, path)
    if protocol.temperature_stage is not None:
        _check_stage_temperatures(
            {"temperature_stage.temperature_k": protocol.temperature_stage.temperature_k},
            profile,
            path,
        )


def _map_settings(protocol: EsmMapProtocol | EsmTemperatureSeriesProtocol):
    area = protocol.map
    drive = protocol.excitation
    return map_settings(
        ScanArea(*area.center_nm, *area.size_nm, *area.pixels),
        drive_amplitude_v=drive.drive_amplitude_v,
        dc_offset_v=drive.dc_offset_v,
        band_hz=drive.band_hz,
        bins=drive.bins,
        chirp_duration_s=drive.chirp_duration_s,
        averages=drive.averages,
    )


def _plan_esm_map(protocol: EsmMapProtocol, devices, profile, md):
    settings = _map_settings(protocol)
    hold = protocol.temperature_stage
    if hold is None:
        return three_excitation_map(devices["afm"], settings, md=md)
    # a series of one temperature, without drift tracking: settle, then map
    return esm_temperature_series(
        devices["afm"],
        devices["temperature_stage"],
        [hold.temperature_k],
        settings,
        settle_tolerance_k=hold.settle_tolerance_k,
        settle_time_s=hold.settle_time_s,
        tracking=None,
        ramp_rate_k_per_min=hold.ramp_rate_k_per_min,
        safe_temperature_k=profile.devices.temperature_stage.safe_temperature_k,
        md={**md, "plan_name": "three_excitation_map"},
    )


def _check_esm_series(protocol: EsmTemperatureSeriesProtocol, profile: Profile, path: Path):
    tracking = protocol.drift_tracking
    _check_afm(protocol, profile, path, tracking.size_factor if tracking.enabled else 1.0)
    settings = protocol.temperature_stage
    temperatures = {
        f"temperature_stage.temperatures_k[{index}]": value
        for index, value in enumerate(settings.temperatures_k)
    }
    if settings.final_temperature_k is not None:
        temperatures["temperature_stage.final_temperature_k"] = settings.final_temperature_k
    _check_stage_temperatures(temperatures, profile, path)


def _plan_esm_series(protocol: EsmTemperatureSeriesProtocol, devices, profile, md):
    settings = protocol.temperature_stage
    tracking = protocol.drift_tracking
    region = (
        {"kind": "largest_grain"} if protocol.region == "largest_grain"
        else {"kind": "disk", **protocol.region.model_dump(mode="json")}
    )
    series = {
        "temperatures_k": list(settings.temperatures_k),
        "region": region,
        "material": protocol.material.model_dump(mode="json"),
        "drive_frequency_hz": protocol.drive_frequency_hz,
        "tracking_stream": TRACKING_STREAM,
    }
    return esm_temperature_series(
        devices["afm"],
        devices["temperature_stage"],
        settings.temperatures_k,
        _map_settings(protocol),
        settle_tolerance_k=settings.settle_tolerance_k,
        settle_time_s=settings.settle_time_s,
        tracking=DriftTrackingSettings(
            size_factor=tracking.size_factor, pixels=tracking.pixels,
            line_rate_hz=tracking.line_rate_hz,
        ) if tracking.enabled else None,
        ramp_rate_k_per_min=settings.ramp_rate_k_per_min,
        final_temperature_k=settings.final_temperature_k,
        safe_temperature_k=profile.devices.temperature_stage.safe_temperature_k,
        md={**md, "esm_series": series},
    )


RUNNERS: dict[str, ProtocolRunner] = {
    "esm_temperature_series": ProtocolRunner(
        devices=lambda protocol: ("afm", "temperature_stage"),
        check=_check_esm_series,
        plan=_plan_esm_series,
        analyses=lambda figures_for: [EsmTemperatureSeriesAnalysis(figures_for)],
    ),
    "esm_map": ProtocolRunner(
        devices=lambda protocol: (
            ("afm", "temperature_stage") if protocol.temperature_stage else ("afm",)
        ),
        check=_check_esm_map,
        plan=_plan_esm_map,
        analyses=lambda figures_for: [EsmMapAnalysis(figures_for)],
    ),
    "operando_sxdm": ProtocolRunner(
        devices=lambda protocol: DEVICES,
        check=check_operando_sxdm,
        plan=plan_operando_sxdm,
        analyses=lambda figures_for: [SxdmOperandoAnalysis(figures_for), EstimateReport()],
        ground_truth=ground_truth_maps,
    ),
    "temperature_steps": ProtocolRunner(
        devices=lambda protocol: ("temperature_stage",),
        check=_check_temperature_steps,
        plan=_plan_temperature_steps,
        analyses=lambda figures_for: [TemperatureStepsAnalysis(figures_for)],
    ),
}


def runner_for(protocol: Protocol) -> ProtocolRunner:
    return RUNNERS[protocol.protocol]


def checked_runner(
    protocol: Protocol, profile: Profile, protocol_path: Path, profile_source: str
) -> tuple[ProtocolRunner, tuple[str, ...]]:
    """The protocol's runner and the profile devices it needs, once the protocol is within
    the profile's limits and the profile has every one of them: what a run (or a dry run,
    or `vegard check`) refuses before anything is built."""
    runner = runner_for(protocol)
    runner.check(protocol, profile, protocol_path)
    device_names = tuple(runner.devices(protocol))
    for name in device_names:
        if getattr(profile.devices, name, None) is None:
            raise ConfigError(
                f"{profile_source}: devices.{name} is missing "
                f"(protocol {protocol.protocol!r} needs it)"
            )
    return runner, device_names


def run_metadata(protocol: Protocol, path: Path) -> dict[str, Any]:
    """What every run's start document says about the protocol that made it."""
    return {
        "protocol": str(path),
        "protocol_kind": protocol.protocol,
        "sample": protocol.sample,
        "protocol_settings": protocol.model_dump(mode="json"),
    }


def session_metadata(
    protocol: Protocol, path: Path, profile: Profile, *, dry_run: bool, clock: InstrumentClock
) -> dict[str, Any]:
    """`run_metadata` and what a session adds: the profile, dry or real, and the clock."""
    return {
        **run_metadata(protocol, path),
        "profile": profile.profile,
        "dry_run": dry_run,
        "instrument_clock": {
            "kind": clock.describe(), "started_s": clock.now(),
            **({} if clock.virtual else {"speedup": clock.speedup}),
        },
    }


def merged_analysis(analyses: list[Analysis]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for analysis in analyses:
        merged.update(analysis.result or {})
    return merged
