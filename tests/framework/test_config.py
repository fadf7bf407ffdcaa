"""Profiles and protocols are refused with file, field, value and allowed range."""

from pathlib import Path

import pytest

from vegard.config.errors import ConfigError
from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/temperature_steps.yaml"


def edited(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text, f"test setup: {old!r} not in {source}"
    path = tmp_path / source.name
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    "profile", sorted((REPOSITORY / "configs/profiles").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_profiles_load(profile: Path):
    assert load_profile(profile).devices["temperature_stage"].driver == "lakeshore336"


def test_shipped_protocol_loads():
    protocol = load_protocol(PROTOCOL)
    assert protocol.temperature_stage.temperatures_k == [250.0, 300.0, 350.0]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("[250, 300, 350]", "[250, 500]",
         "temperature_stage.temperatures_k[1] = 500 is not valid: allowed: value ≤ 400.0 K"),
        ("ramp_rate_k_per_min: 10", "ramp_rate_k_per_min: -2",
         "temperature_stage.ramp_rate_k_per_min = -2 is not valid: allowed: value > 0.0 K/min"),
        ("  settle_time_s: 60\n", "",
         "temperature_stage.settle_time_s is missing (required field)"),
        ("heater_range: high", "heater_range: blazing",
         "temperature_stage.heater_range = 'blazing' is not valid: "
         "allowed: 'low', 'medium' or 'high'"),
        ("heater_range: high", "heater_range: high\n  colour: red",
         "temperature_stage.colour is not a known field"),
        ("settle_tolerance_k: 0.1", "settle_tolerance_k: lots",
         "temperature_stage.settle_tolerance_k = 'lots' is not valid"),
        ("protocol: temperature_steps", "protocol: levitation",
         "protocol = 'levitation' is not valid: allowed: one of be_voltage_spectroscopy, "
         "cafm_iv_sweep, eels_grain_boundary, esm_map, esm_temperature_series, "
         "forc_spectroscopy, operando_sxdm, temperature_steps, "
         "time_relaxation_spectroscopy, trkpfm_relaxation"),
    ],
)
def test_bad_protocol_message_names_file_field_value_and_range(tmp_path, old, new, expected):
    path = edited(tmp_path, PROTOCOL, old, new)
    with pytest.raises(ConfigError) as caught:
        load_protocol(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message


def test_yaml_aliases_are_refused(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text("a: &a [1, 1]\nb: [*a, *a]\nprotocol: temperature_steps\n")
    with pytest.raises(ConfigError, match="aliases are not allowed"):
        load_protocol(path)


def test_non_mapping_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_protocol(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_protocol(tmp_path / "absent.yaml")


def test_profile_safe_temperature_must_lie_in_stage_range(tmp_path):
    source = REPOSITORY / "configs/profiles/sim.yaml"
    path = edited(tmp_path, source, "safe_temperature_k: 295", "safe_temperature_k: 500")
    expected = r"sim.yaml: devices.temperature_stage: safe_temperature_k = 500"
    with pytest.raises(ConfigError, match=expected):
        load_profile(path)


ESM_MAP = REPOSITORY / "configs/protocols/esm_room_temperature.yaml"
ESM_SERIES = REPOSITORY / "configs/protocols/esm_temperature_series.yaml"


@pytest.mark.parametrize(
    ("source", "old", "new", "expected"),
    [
        (ESM_MAP, "drive_amplitude_v: 1.0", "drive_amplitude_v: 12",
         "excitation.drive_amplitude_v = 12 is not valid: allowed: value ≤ 10.0"),
        (ESM_MAP, "band_hz: [80000, 320000]", "band_hz: [320000, 80000]",
         "band_hz: low edge 320000 Hz must be below high edge 80000 Hz"),
        (ESM_MAP, "band_hz: [80000, 320000]", "band_hz: [80000, 3000000]",
         "excitation.band_hz[1] = 3000000 is not valid: allowed: value ≤ 2000000.0"),
        (ESM_MAP, "pixels: [64, 64]", "pixels: [0, 64]",
         "map.pixels[0] = 0 is not valid: allowed: value ≥ 1"),
        (ESM_MAP, "averages: 20", "averages: 20\n  gain: 11",
         "excitation.gain is not a known field"),
        (ESM_SERIES, "[250, 275, 300, 325, 350, 375, 400]", "[250, 275, 450]",
         "temperature_stage.temperatures_k[2] = 450 is not valid: allowed: value ≤ 400.0"),
        (ESM_SERIES, "[250, 275, 300, 325, 350, 375, 400]", "[300]",
         "temperature_stage.temperatures_k"),
        (ESM_SERIES, "region: largest_grain", "region: smallest_grain",
         "region"),
        (ESM_SERIES, "size_factor: 1.5", "size_factor: 9",
         "drift_tracking.size_factor = 9 is not valid: allowed: value ≤ 4.0"),
    ],
)
def test_bad_esm_protocols_name_file_field_value_and_range(tmp_path, source, old, new, expected):
    path = edited(tmp_path, source, old, new)
    with pytest.raises(ConfigError) as caught:
        load_protocol(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message
