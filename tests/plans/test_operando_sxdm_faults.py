"""SXDM plans against faults injected in a real simulated lab over loopback: a bad fly line
is taken again (each row × angle recorded once), a stalled move is retried, a potential
jump ends the operando run cleanly, and every run ends with the simulators' own truth safe
(cell at open circuit, detector disarmed, no axis moving)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from bluesky.run_engine import call_in_bluesky_event_loop

from vegard.diffraction_geometry import DiffractometerGeometry, bragg_angles, centred_roi
from vegard.instruments.area_detector_device import AreaDetector
from vegard.instruments.area_detector_driver import AreaDetectorDriver
from vegard.instruments.diffractometer_device import (
    Diffractometer,
    channel_access_barrier,
    release_channel_access,
    use_channel_access_environment,
)
from vegard.instruments.potentiostat_device import Potentiostat
from vegard.instruments.potentiostat_driver import PotentiostatDriver
from vegard.instruments.serial_connection import SerialConnection
from vegard.instruments.visa_connection import VisaConnection
from vegard.plans.bragg_peak_search import PeakSearchSettings, spread_positions_um
from vegard.plans.operando_sxdm import ChargeSettings, operando_sxdm
from vegard.plans.rocking_map import RockingMapSettings, raster_axis_um, rocking_map
from vegard.session import make_run_engine
from vegard.simulators.lab import SimulatedLab
from vegard.virtual_clock import VirtualClock

GEOMETRY = DiffractometerGeometry(distance_m=1.5, center_row=255.5, center_col=255.5)
THETA_DEG = float(bragg_angles(2.0409, GEOMETRY.energy_ev))
SETTINGS = RockingMapSettings(
    x_um=raster_axis_um(0.0, 1.6, 4), y_um=raster_axis_um(0.0, 0.8, 2), rocking_points=3,
    rocking_step_deg=0.024, exposure_s=0.01, roi=centred_roi(GEOMETRY, 64, 160))


@contextmanager
def sxdm_lab(parameters: dict[str, dict[str, float]], tmp_path) -> Iterator[dict[str, Any]]:
    """A lab on a virtual clock with the cell, IOC and detector, the devices connected, an
    RE on the clock's loop with the IOC's barrier (as a dry-run session sets them up)."""
    clock = VirtualClock()
    with SimulatedLab(clock, parameters=parameters, seed=5,
                      instruments=["area_detector"]) as lab:
        use_channel_access_environment(lab.client_environment())
        connections = [VisaConnection(lab.addresses["area_detector"], name="area_detector",
                                      clock=clock),
                       SerialConnection(lab.addresses["potentiostat"], name="potentiostat",
                                        clock=clock)]
        detector = AreaDetector(AreaDetectorDriver(connections[0]),
                                lambda: tmp_path, clock=clock, name="area_detector")
        potentiostat = Potentiostat(PotentiostatDriver(connections[1]), clock=clock,
                                    poll_period_s=60.0, name="potentiostat")
        diffractometer = Diffractometer(lab.addresses["diffractometer"][len("ca://"):],
                                        name="diffractometer")
        RE = make_run_engine(clock)
        for device in (detector, potentiostat):
            call_in_bluesky_event_loop(device.connect(timeout=10))
        with clock.hold("connecting over Channel Access"):  # libca's traffic costs no time
            call_in_bluesky_event_loop(diffractometer.connect(timeout=10))
            for pv in lab.clock_sync_pvs():
                barrier = channel_access_barrier(pv)
                call_in_bluesky_event_loop(barrier())
                clock.add_barrier(RE.loop, barrier)
        documents: list[tuple[str, dict]] = []
        RE.subscribe(lambda name, doc: documents.append((name, doc)))
        try:
            yield {"lab": lab, "RE": RE, "detector": detector, "potentiostat": potentiostat,
                   "diffractometer": diffractometer, "documents": documents}
        finally:
            clock.remove_barriers()
            for connection in connections:
                connection.close()
            release_channel_access()


def lines_recorded(documents: list[tuple[str, dict]]) -> Counter:
    primary = {doc["uid"] for name, doc in documents
               if name == "descriptor" and doc["name"] == "primary"}
    return Counter((doc["data"]["area_detector-row"], doc["data"]["area_detector-eta_index"])
                   for name, doc in documents if name == "event" and doc["descriptor"] in primary)


def assert_all_safe(lab: SimulatedLab) -> None:
    states = lab.safe_state()
    assert set(states) == {"potentiostat", "diffractometer", "area_detector"}
    assert all(state["safe"] for state in states.values()), states


@pytest.mark.parametrize(("parameters", "kind", "reason"), [
    ({"area_detector": {"fault_frame_missing_at_s": 1e-3}}, "frame_missing",
     "3 frames for 4 triggers"),
    ({"area_detector": {"fault_frame_saturated_at_s": 1e-3}}, "frame_saturated",
     "at the counter maximum 65535"),
    # lines to the detector: *IDN?, DEAD?, ABOR, STAT?, ROI, EXPO, ROI?, EXPO?, arm, FRAM:DATA?
    ({"area_detector": {"fault_timeout_at_command": 10}}, "timeout", "no reply (timeout)"),
], ids=["frame_missing", "frame_saturated", "wire_timeout_on_frames"])
def test_a_bad_line_is_taken_again_and_recorded_once(parameters, kind, reason, tmp_path,
                                                      caplog) -> None:
    with sxdm_lab(parameters, tmp_path) as setup:
        lab = setup["lab"]
        uid = setup["RE"](rocking_map(setup["diffractometer"], setup["detector"], SETTINGS,
                                      eta_center_deg=THETA_DEG, geometry=GEOMETRY))
        assert uid
        lines = lines_recorded(setup["documents"])
        # every row × angle once, none lost, none twice
        assert lines == Counter({(row, eta): 1 for row in range(2) for eta in range(3)})
        (stop,) = [doc for name, doc in setup["documents"] if name == "stop"]
        assert stop["exit_status"] == "success"
        fired = lab.injected_faults()["area_detector"]
        assert [fault["kind"] for fault in fired] == [kind]
        if kind == "timeout":
            assert fired[0]["line"] == "FRAM:DATA?"
        arms = [c for c in lab.command_log("area_detector") if c == "ARM"]
        assert len(arms) == SETTINGS.lines + 1  # one re-take
        assert "re-taking the line (1 of 2)" in caplog.text and reason in caplog.text
        assert_all_safe(lab)


def test_a_stalled_move_is_retried(tmp_path, caplog) -> None:
    with sxdm_lab({"diffractometer": {"fault_stall_at_s": 1e-3}}, tmp_path) as setup:
        lab = setup["lab"]
        setup["RE"](rocking_map(setup["diffractometer"], setup["detector"], SETTINGS,
                                eta_center_deg=THETA_DEG, geometry=GEOMETRY))
        assert lines_recorded(setup["documents"]) == Counter(
            {(row, eta): 1 for row in range(2) for eta in range(3)})
        (stall,) = lab.injected_faults()["diffractometer"]
        assert stall["kind"] == "stall"
        assert "stalled at" in caplog.text and stall["axis"] in caplog.text
        assert "retrying a stalled move" in caplog.text
        assert abs(stall["stopped_at"] - stall["target"]) > 0.1  # it did stop short
        assert_all_safe(lab)


def test_a_potential_jump_ends_the_operando_run_early_with_the_cell_at_rest(tmp_path) -> None:
    """Lost contact 20 instrument seconds into the charge (several maps): the limit
    is reached; the map under way is completed, no further map is started, the run succeeds
    with a reason saying the limit came early."""
    capacity_mah = 5.0 * 147.0 / 1000.0
    parameters = {"potentiostat": {"fault_potential_jump_at_s": 20.0}}  # maps take ~2.3 s
    with sxdm_lab(parameters, tmp_path) as setup:
        lab = setup["lab"]
        setup["RE"](operando_sxdm(
            setup["potentiostat"], setup["diffractometer"], setup["detector"],
            charge=ChargeSettings(capacity_mah / 15 * 1e-3, 4.9,
                                  expected_capacity_mah=capacity_mah),
            map_settings=SETTINGS,
            search=PeakSearchSettings(spread_positions_um(SETTINGS.x_um, SETTINGS.y_um)[:1],
                                      0.1, 0.025, 0.01, centred_roi(GEOMETRY, 400, 96)),
            geometry=GEOMETRY, first_eta_center_deg=THETA_DEG, first_delta_deg=2 * THETA_DEG,
            max_maps=20))
        (stop,) = [doc for name, doc in setup["documents"] if name == "stop"]
        assert stop["exit_status"] == "success"
        assert "voltage limit 4.9 V reached early" in stop["reason"]
        maps_done = int(stop["reason"].split("after ")[1].split(" maps")[0])
        assert 1 <= maps_done < 20
        assert sum(lines_recorded(setup["documents"]).values()) == maps_done * SETTINGS.lines
        (jump,) = lab.injected_faults()["potentiostat"]
        assert jump["kind"] == "potential_jump" and jump["potential_after_v"] == 4.9
        truth = lab.ground_truth()["potentiostat"]
        assert truth["limit_reached"] and truth["mode"] == "rest"
        assert lab.safe_state()["potentiostat"] == {
            "safe": True, "output_on": False, "current_a": 0.0, "mode": "REST"}
        assert_all_safe(lab)
