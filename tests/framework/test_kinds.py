"""Kinds as units: found through their entry points, a profile of named devices of any
kinds (two detectors), protocol roles bound to devices, and plain refusals."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import yaml

from vegard.cli import main
from vegard.config.errors import ConfigError
from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol
from vegard.registry import bench_for, instrument_kinds, protocol_kinds
from vegard.simulators.lab import plan_lab

REPOSITORY = Path(__file__).resolve().parents[2]
SIM_PROFILE = REPOSITORY / "configs/profiles/sim.yaml"
SXDM = REPOSITORY / "configs/protocols/sxdm_operando_lmno.yaml"


def test_every_shipped_kind_is_found_through_its_entry_point() -> None:
    assert set(instrument_kinds()) == {
        "lakeshore336", "be_afm", "scpi_potentiostat", "epics_motors", "maxipix", "nion_stem"}
    assert set(protocol_kinds()) == {
        "temperature_steps", "esm_map", "esm_temperature_series", "operando_sxdm",
        "eels_grain_boundary", "be_voltage_spectroscopy", "trkpfm_relaxation",
        "cafm_iv_sweep", "forc_spectroscopy", "time_relaxation_spectroscopy"}
    for driver, kind in instrument_kinds().items():
        assert kind.settings.model_fields["driver"].default == driver


def two_detector_profile(tmp_path: Path) -> Path:
    data = yaml.safe_load(SIM_PROFILE.read_text())
    data["devices"]["wide_detector"] = {**data["devices"]["area_detector"], "pixels": [256, 256],
                                        "direct_beam_pixel": [127.5, 127.5]}
    path = tmp_path / "two_detectors.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_profile_may_hold_two_detectors_and_a_protocol_picks_one(tmp_path) -> None:
    profile = load_profile(two_detector_profile(tmp_path))
    assert profile.drivers()["wide_detector"] == profile.drivers()["area_detector"] == "maxipix"
    protocol = load_protocol(SXDM)
    # by name: the device called like the role
    assert bench_for(protocol, profile, "p").names["area_detector"] == "area_detector"
    chosen = protocol.model_copy(update={"devices": {"area_detector": "wide_detector"}})
    bench = bench_for(chosen, profile, "p")
    assert bench.names["area_detector"] == "wide_detector"
    assert tuple(bench.settings["area_detector"].pixels) == (256, 256)
    assert bench.where("area_detector", "pixels") == "devices.wide_detector.pixels of profile 'sim'"


def test_the_simulated_lab_of_two_detectors_shares_one_cell_and_diffractometer() -> None:
    plan = plan_lab({"area_detector": "maxipix", "wide_detector": "maxipix"})
    assert list(plan.drivers) == ["potentiostat", "diffractometer", "area_detector",
                                  "wide_detector"]
    assert plan.peers["wide_detector"] == plan.peers["area_detector"] == {
        "potentiostat": "potentiostat", "diffractometer": "diffractometer"}


def test_a_role_played_by_a_device_of_another_kind_is_refused(tmp_path) -> None:
    profile = load_profile(SIM_PROFILE)
    protocol = load_protocol(SXDM).model_copy(update={"devices": {"area_detector": "afm"}})
    with pytest.raises(ConfigError, match=r"devices.afm.driver = 'be_afm' is not valid for the "
                                          r"area_detector .* allowed: 'maxipix'"):
        bench_for(protocol, profile, "sim.yaml")
    protocol = load_protocol(SXDM).model_copy(update={"devices": {"detector": "afm"}})
    with pytest.raises(ConfigError, match=r"^sxdm.yaml: devices\.detector is not a role of "
                                          r"protocol 'operando_sxdm' \(roles: "):
        bench_for(protocol, profile, "sim.yaml", "sxdm.yaml")


@pytest.mark.parametrize(("entry", "message"), [
    ({"address": "sim"}, "devices.stage.driver is missing (required field; one of: be_afm"),
    ({"driver": "lakeshore999", "address": "sim"},
     "devices.stage.driver = 'lakeshore999' is not valid: allowed: one of be_afm"),
    ({"driver": "lakeshore336", "address": "sim", "timeout_s": 0},
     "devices.stage.timeout_s = 0 is not valid: allowed: value > 0"),
])
def test_profile_device_errors_name_the_file_the_device_and_the_field(
    tmp_path, entry, message
) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump({"profile": "lab", "devices": {"stage": entry}}))
    with pytest.raises(ConfigError) as refused:
        load_profile(path)
    assert str(refused.value).startswith(f"{path}: ") and message in str(refused.value)


@pytest.mark.slow
def test_a_protocol_runs_on_a_profile_that_names_its_afm_otherwise(tmp_path) -> None:
    """The role `afm` is played by the profile's only be_afm device, called `tip` here: the
    simulator, the data keys and the analysis all follow the name."""
    data = yaml.safe_load(SIM_PROFILE.read_text())
    data["devices"]["tip"] = data["devices"].pop("afm")
    data["simulation"]["ports"]["tip"] = data["simulation"]["ports"].pop("afm")
    profile = tmp_path / "tip.yaml"
    profile.write_text(yaml.safe_dump(data))
    protocol = REPOSITORY / "configs/protocols/esm_room_temperature.yaml"
    variant = yaml.safe_load(protocol.read_text())
    variant["map"]["pixels"] = [16, 8]
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(variant))
    output = tmp_path / "out.txt"
    with output.open("w") as stream, contextlib.redirect_stdout(stream):
        code = main(["dry-run", str(small), "--profile", str(profile), "--json", "--quiet",
                     "--data-dir", str(tmp_path / "store")])
    summary = json.loads(output.read_text().splitlines()[-1])
    assert code == 0, summary
    assert "tip" in summary["ground_truth"] and "afm" not in summary["ground_truth"]
    assert summary["analysis"]["pixels_fitted"] == 16 * 8
