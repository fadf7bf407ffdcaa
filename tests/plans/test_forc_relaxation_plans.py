"""The FORC and time relaxation plans, walked without hardware (`vegard check`): one
prepared acquisition, trigger and event per grid point in grid order, the tip made safe
last; a peak beyond the tip limit refused by the device before the first message."""

from __future__ import annotations

from pathlib import Path

import pytest
from bluesky.utils import Msg

from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol
from vegard.instruments.afm_driver import BandExcitationAfmController
from vegard.instruments.band_excitation_afm_device import BandExcitationAfm
from vegard.instruments.be_spectroscopy_device import SweepBiasLimitError
from vegard.instruments.forc_relaxation_settings import ForcSweepSettings, RelaxationSettings
from vegard.instruments.visa_connection import VisaConnection
from vegard.kinds.protocols import forc_spectroscopy, time_relaxation_spectroscopy
from vegard.plan_check import check_protocol
from vegard.plans.forc_spectroscopy import forc_spectroscopy as forc_plan
from vegard.plans.time_relaxation_spectroscopy import time_relaxation_spectroscopy as relax_plan

REPOSITORY = Path(__file__).resolve().parents[2]
FORC = REPOSITORY / "configs/protocols/forc_spectroscopy.yaml"
RELAXATION = REPOSITORY / "configs/protocols/time_relaxation_spectroscopy.yaml"
SIM_PROFILE = REPOSITORY / "configs/profiles/sim.yaml"


def named(msg: Msg) -> str:
    return getattr(msg.obj, "name", "") or ""


def of(messages: list[Msg], command: str, name: str) -> list[Msg]:
    return [m for m in messages if m.command == command and named(m) == name]


@pytest.mark.parametrize(("path", "device", "key"), [
    (FORC, "afm-forc_sweep", "forc_spectroscopy"),
    (RELAXATION, "afm-relaxation", "time_relaxation"),
])
def test_one_acquisition_per_grid_point_in_grid_order_then_the_tip_made_safe(path, device, key):
    protocol = load_protocol(path)
    messages = check_protocol(protocol, path, load_profile(SIM_PROFILE),
                              profile_source=str(SIM_PROFILE)).messages
    points = protocol.grid.points[0] * protocol.grid.points[1]
    (run,) = [m for m in messages if m.command == "open_run"]
    assert run.kwargs["num_points"] == points and key in run.kwargs
    prepared = [m.args[0] for m in of(messages, "prepare", device)]
    assert len(prepared) == len(of(messages, "trigger", device)) == points
    assert [(p.x_nm, p.y_nm) for p in prepared[:2]] == [(1312.5, 1312.5), (1437.5, 1312.5)]
    assert [m.args[0] for m in of(messages, "set", f"{device}-point_index")] == \
        list(range(points))
    assert [(m.command, named(m)) for m in messages[-2:]] == [("unstage", "afm"), ("stop", "afm")]
    if key == "forc_spectroscopy":
        assert {p.forc for p in prepared} == {ForcSweepSettings(1.0, 5.0, 9, 32, 2, 0.0)}
        assert run.kwargs[key]["peak_v"] == pytest.approx([1 + 0.5 * k for k in range(9)])
        assert len(run.kwargs[key]["dc_bias_v"]) == 9 * 2 * 32
    else:
        assert {p.relaxation for p in prepared} == {RelaxationSettings(4.0, 0.1, 2.0, 64, 4,
                                                                       0.0)}


def afm_limited_to(tmp_path, volts: float) -> BandExcitationAfm:
    connection = VisaConnection("TCPIP::127.0.0.1::9::SOCKET", name="afm")  # never opened
    return BandExcitationAfm(BandExcitationAfmController(connection), lambda: tmp_path,
                             maximum_bias_v=volts, name="afm")


def test_the_devices_refuse_peaks_beyond_the_tip_limit_before_the_plans_send_anything(tmp_path):
    afm = afm_limited_to(tmp_path, 5.5)
    forc = forc_plan(afm, forc_spectroscopy.settings_of(load_protocol(FORC)))
    with pytest.raises(SweepBiasLimitError, match=r"FORC peak \|V_p\| \+ U_ac = 6 V exceeds"):
        next(forc)
    afm = afm_limited_to(tmp_path, 4.5)
    relax = relax_plan(afm, time_relaxation_spectroscopy.settings_of(load_protocol(RELAXATION)))
    with pytest.raises(SweepBiasLimitError, match=r"write pulse \|V_w\| \+ U_ac = 5 V exceeds"):
        next(relax)
