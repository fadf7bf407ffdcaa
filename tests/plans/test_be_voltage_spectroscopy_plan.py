"""The voltage-spectroscopy plan, walked without hardware (`vegard check`): one prepared
sweep, trigger and event per grid point in grid order, the tip made safe last; a sweep
beyond the tip limit refused before the first message."""

from __future__ import annotations

from pathlib import Path

import pytest
from bluesky.utils import Msg

from vegard.config.errors import ConfigError
from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol
from vegard.instruments.afm_driver import BandExcitationAfmController, DcSweepSettings
from vegard.instruments.band_excitation_afm_device import BandExcitationAfm
from vegard.instruments.be_spectroscopy_device import SweepBiasLimitError
from vegard.instruments.visa_connection import VisaConnection
from vegard.kinds.protocols.be_spectroscopy_settings import settings_of
from vegard.plan_check import check_protocol
from vegard.plans.be_voltage_spectroscopy import be_voltage_spectroscopy

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/be_voltage_spectroscopy.yaml"
SIM_PROFILE = REPOSITORY / "configs/profiles/sim.yaml"


def named(msg: Msg) -> str:
    return getattr(msg.obj, "name", "") or ""


def of(messages: list[Msg], command: str, name: str) -> list[Msg]:
    return [m for m in messages if m.command == command and named(m) == name]


def test_one_sweep_per_grid_point_in_grid_order_then_the_tip_made_safe():
    protocol = load_protocol(PROTOCOL)
    messages = check_protocol(protocol, PROTOCOL, load_profile(SIM_PROFILE),
                              profile_source=str(SIM_PROFILE)).messages
    points = protocol.grid.points[0] * protocol.grid.points[1]
    (run,) = [m for m in messages if m.command == "open_run"]
    assert run.kwargs["plan_name"] == "be_voltage_spectroscopy"
    assert run.kwargs["num_points"] == points
    assert len(run.kwargs["be_spectroscopy"]["dc_bias_v"]) == protocol.sweep.steps_per_cycle
    (band,) = of(messages, "prepare", "afm")
    assert band.args[0].point and band.args[0].excitation.dc_offset_v == 0.0
    sweeps = [m.args[0] for m in of(messages, "prepare", "afm-voltage_sweep")]
    assert len(sweeps) == len(of(messages, "trigger", "afm-voltage_sweep")) == points
    assert sum(1 for m in messages if m.command == "create") == points
    assert [(s.x_nm, s.y_nm) for s in sweeps[:2]] == [(1312.5, 1312.5), (1437.5, 1312.5)]
    assert {s.sweep for s in sweeps} == {DcSweepSettings(8.0, 0.0, 64, 3, 0.0)}
    assert [m.args[0] for m in of(messages, "set", "afm-voltage_sweep-point_index")] == \
        list(range(points))
    assert [(m.command, named(m)) for m in messages[-2:]] == [("unstage", "afm"), ("stop", "afm")]


def test_a_sweep_beyond_the_profiles_tip_limit_is_refused_naming_file_field_and_limit(
        tmp_path):
    text = PROTOCOL.read_text().replace("amplitude_v: 8.0", "amplitude_v: 9.5")
    path = tmp_path / "too_high.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        check_protocol(load_protocol(path), path, load_profile(SIM_PROFILE),
                       profile_source=str(SIM_PROFILE))
    assert str(refused.value) == (
        f"{path}: |sweep.offset_v| + sweep.amplitude_v + excitation.drive_amplitude_v = "
        "10.5 V is not valid: allowed: ≤ 10 V (devices.afm.maximum_bias_v of profile 'sim')")


def test_the_device_refuses_the_sweep_before_the_plan_sends_anything(tmp_path):
    connection = VisaConnection("TCPIP::127.0.0.1::9::SOCKET", name="afm")  # never opened
    afm = BandExcitationAfm(BandExcitationAfmController(connection), lambda: tmp_path,
                            maximum_bias_v=5.0, name="afm")
    plan = be_voltage_spectroscopy(afm, settings_of(load_protocol(PROTOCOL)))
    with pytest.raises(SweepBiasLimitError, match="= 9 V exceeds the tip bias limit 5 V"):
        next(plan)
