"""The operando SXDM protocol: refused before anything moves when it exceeds the profile,
and its beamline estimate (duration, data volume, dose) from the paper's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from vegard.config.errors import ConfigError
from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol
from vegard.kinds.protocols.operando_sxdm import (
    charge_current_a,
    check_operando_sxdm,
    map_settings_of,
)
from vegard.kinds.protocols.sxdm_estimate import estimate_operando_sxdm
from vegard.registry import bench_for

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/sxdm_operando_lmno.yaml"
FULL = REPOSITORY / "configs/protocols/sxdm_operando_lmno_full.yaml"
PROFILE = load_profile(REPOSITORY / "configs/profiles/sim.yaml")


def bench_of(protocol):
    return bench_for(protocol, PROFILE, "sim.yaml")


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = PROTOCOL.read_text()
    assert old in text
    path = tmp_path / "edited.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_shipped_protocols_pass_the_profile_checks() -> None:
    for path in (PROTOCOL, FULL):
        protocol = load_protocol(path)
        check_operando_sxdm(protocol, bench_of(protocol), path)
    # C/15 of 5 mg at 147 mAh/g
    assert charge_current_a(load_protocol(PROTOCOL)) == pytest.approx(49e-6, rel=1e-9)


@pytest.mark.parametrize("old, new, expected", [
    ("exposure_s: 0.01              # per frame", "exposure_s: 0.02 #",
     "detector.exposure_s = 0.02 s is not valid: allowed: ≤ 0.01 s per frame (dose budget"),
    ("c_rate: C/15", "c_rate: 5",
     "cell.c_rate = 5 gives 0.003675 A, which is not valid: allowed: ≤ 0.001 A"),
    ("voltage_limit_v: 4.9", "voltage_limit_v: 5.5",
     "cell.voltage_limit_v = 5.5 V is not valid: allowed: ≤ 5 V"),
    ("roi_pixels: [64, 160]", "roi_pixels: [64, 600]",
     "detector.roi_pixels[1] = 600 is not valid: allowed: value ≤ 512"),
    ("center_um: [0.0, 0.0]", "center_um: [48.0, 0.0]",
     "map x: |center| + size/2 = 50.25 µm is not valid: allowed: ≤ 50 µm"),
])
def test_limits_are_refused_naming_file_field_value_and_range(tmp_path, old, new, expected):
    path = edited(tmp_path, old, new)
    with pytest.raises(ConfigError) as error:
        check_operando_sxdm(load_protocol(path), bench_of(load_protocol(path)), path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_malformed_c_rate_is_a_validation_error(tmp_path) -> None:
    path = edited(tmp_path, "c_rate: C/15", "c_rate: C/zero")
    with pytest.raises(ConfigError, match="c_rate"):
        load_protocol(path)


def test_raster_pixels_are_centred_in_the_field() -> None:
    settings = map_settings_of(load_protocol(PROTOCOL), bench_of(load_protocol(PROTOCOL)))
    assert len(settings.x_um) == 32 and settings.pixel_step_um == pytest.approx(4.5 / 32)
    assert settings.x_um[0] == pytest.approx(-2.25 + 4.5 / 64) and settings.y_um[-1] == (
        pytest.approx(4.5 / 2 - 4.5 / 64))
    assert settings.roi.shape == (64, 160)
    # centred on the direct-beam pixel
    assert settings.roi.row_start + 31.5 == pytest.approx(255.5, abs=0.5)


def test_full_size_estimate_matches_the_paper() -> None:
    """6 × 6 µm² in 80 nm steps, 30 angles, 10 ms: 29 min of frames per map (paper: ~30 min)
    and, on the simulated end station, 0.11 s per eta step on each of the 2250 lines."""
    estimate = estimate_operando_sxdm(load_protocol(FULL), PROFILE.devices["area_detector"])
    assert estimate["frames_per_map"] == 75 * 75 * 30
    assert 34 <= estimate["map_duration_min"] <= 38  # 29 min of frames, 2250 eta steps
    assert estimate["maps"] == 26 and estimate["charge_duration_h"] == pytest.approx(15.0)
    # 168 750 frames × 128 × 192 px × 2 B
    assert estimate["data_volume_per_map_gb"] == pytest.approx(168_750 * 128 * 192 * 2 / 1e9)
    # fluence per map: 30 × 10⁷ photons over each (0.08 µm)² pixel
    assert estimate["fluence_per_map_ph_per_um2"] == pytest.approx(30 * 1e7 / 0.08**2)
    assert estimate["dose_mgy"] == pytest.approx(26 * estimate["dose_per_map_mgy"])


def test_the_estimate_costs_the_end_station_as_the_simulators_model_it() -> None:
    """A dry run takes what the estimate predicts only while both cost moves and links alike."""
    from vegard.kinds.protocols.sxdm_estimate import READOUT_DEAD_TIME_S, EndStationTiming
    from vegard.plans.rocking_map import FAST_PIEZO_UM_PER_S
    from vegard.simulators.diffractometer_ioc_emulator import (
        DIFFRACTOMETER_MOTORS,
        SimulatedDiffractometer,
    )
    from vegard.simulators.maxipix_emulator import MaxipixEmulator

    timing = EndStationTiming()
    motors = {spec.name: spec for spec in DIFFRACTOMETER_MOTORS}
    assert (timing.eta_velocity_deg_per_s, timing.eta_acceleration_time_s) == (
        motors["eta_deg"].velocity, motors["eta_deg"].acceleration_time_s)
    assert timing.piezo_acceleration_time_s == motors["sample_x_um"].acceleration_time_s
    assert timing.piezo_velocity_um_per_s == FAST_PIEZO_UM_PER_S
    put = {p.name: p.default for p in SimulatedDiffractometer.PARAMETERS}["ca_put_latency_s"]
    assert timing.put_latency_s == put
    link = MaxipixEmulator.LINK
    assert (timing.detector_turnaround_s, timing.detector_bytes_per_s) == (
        link.turnaround_s, link.bytes_per_s)
    from vegard.simulators.sxdm_endstation_model import SxdmEndStation

    dead = {p.name: p.default for p in SxdmEndStation.PARAMETERS}["readout_dead_time_s"]
    assert READOUT_DEAD_TIME_S == dead
