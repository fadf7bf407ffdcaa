"""The tr-KPFM and c-AFM plans, walked without hardware (`vegard check`): one prepared
record, trigger and event per grid point in grid order, the tip made safe last; a waveform
beyond the device's tip limit refused before the first message."""

from __future__ import annotations

from pathlib import Path

import pytest
from bluesky.utils import Msg

from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol
from vegard.instruments.afm_driver import BandExcitationAfmController
from vegard.instruments.band_excitation_afm_device import BandExcitationAfm
from vegard.instruments.point_readout import ReadoutBiasLimitError
from vegard.instruments.visa_connection import VisaConnection
from vegard.kinds.protocols import cafm_iv_sweep as cafm_kind
from vegard.kinds.protocols import trkpfm_relaxation as trkpfm_kind
from vegard.plan_check import check_protocol
from vegard.plans.cafm_iv_sweep import cafm_iv_sweep
from vegard.plans.trkpfm_relaxation import trkpfm_relaxation

REPOSITORY = Path(__file__).resolve().parents[2]
SIM_PROFILE = REPOSITORY / "configs/profiles/sim.yaml"
CASES = {
    "trkpfm": (REPOSITORY / "configs/protocols/trkpfm_relaxation.yaml", "afm-cpd_transient",
               "trkpfm"),
    "cafm": (REPOSITORY / "configs/protocols/cafm_iv_sweep.yaml", "afm-iv_curve", "cafm_iv"),
}


def named(msg: Msg) -> str:
    return getattr(msg.obj, "name", "") or ""


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_record_per_grid_point_in_grid_order_then_the_tip_made_safe(case):
    path, detector, key = CASES[case]
    protocol = load_protocol(path)
    messages = check_protocol(protocol, path, load_profile(SIM_PROFILE),
                              profile_source=str(SIM_PROFILE)).messages
    (run,) = [m for m in messages if m.command == "open_run"]
    assert run.kwargs["num_points"] == 9 and run.kwargs[key]["device"] == detector
    records = [m.args[0] for m in messages if m.command == "prepare" and named(m) == detector]
    triggers = [m for m in messages if m.command == "trigger" and named(m) == detector]
    assert len(records) == len(triggers) == 9
    assert sum(1 for m in messages if m.command == "create") == 9
    assert [(r.x_nm, r.y_nm) for r in records[:2]] == [(1300.0, 1300.0), (1500.0, 1300.0)]
    assert (messages[-1].command, named(messages[-1])) == ("stop", "afm")


@pytest.mark.parametrize(("kind", "plan", "message"), [
    (trkpfm_kind, trkpfm_relaxation, "bias step peak bias 5 V exceeds the tip bias limit 4 V"),
    (cafm_kind, cafm_iv_sweep, "I-V sweep peak bias 5 V exceeds the tip bias limit 4 V"),
], ids=["trkpfm", "cafm"])
def test_the_device_refuses_the_waveform_before_the_plan_sends_anything(tmp_path, kind, plan,
                                                                       message):
    connection = VisaConnection("TCPIP::127.0.0.1::9::SOCKET", name="afm")  # never opened
    afm = BandExcitationAfm(BandExcitationAfmController(connection), lambda: tmp_path,
                            maximum_bias_v=4.0, name="afm")
    path = CASES["trkpfm" if kind is trkpfm_kind else "cafm"][0]
    with pytest.raises(ReadoutBiasLimitError, match=message):
        next(plan(afm, kind.settings_of(load_protocol(path))))
