"""`vegard check`: every shipped protocol's plan walked on canned readings, without hardware.

Each test asserts facts about the messages that a broken plan would not send: the
temperatures in the protocol's order, one AFM line per trigger, the cell's technique set
once and the cell and detector made safe at the end, no frames for an estimate-only run.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from functools import cache
from pathlib import Path

import pytest
from bluesky import RunEngine
from bluesky.utils import Msg

from vegard.cli import main
from vegard.config.profiles import load_profile
from vegard.config.protocols import load_protocol
from vegard.instruments.band_excitation_afm_device import EXCITATIONS
from vegard.instruments.potentiostat_device import GalvanostaticCharge
from vegard.kinds.protocols.operando_sxdm import charge_current_a
from vegard.plan_check import (
    CannedReadings,
    PlanCheck,
    PlanCheckError,
    check_protocol,
    summarize,
)
from vegard.registry import protocol_kind
from vegard.simulators.lab import SimulatedLab

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOLS = REPOSITORY / "configs/protocols"
SIM_PROFILE = REPOSITORY / "configs/profiles/sim.yaml"
SMALL_SXDM = Path(__file__).with_name("operando_small.yaml")


@cache
def checked(path: Path, profile_path: Path = SIM_PROFILE) -> PlanCheck:
    """One check per protocol file, shared by the tests that read it."""
    return check_protocol(load_protocol(path), path, load_profile(profile_path),
                          profile_source=str(profile_path))


def named(msg: Msg) -> str:
    return getattr(msg.obj, "name", "") or ""


def of(messages: list[Msg], command: str, name: str | None = None) -> list[Msg]:
    return [m for m in messages if m.command == command and (name is None or named(m) == name)]


def index_of(messages: list[Msg], command: str, name: str | None = None) -> list[int]:
    return [i for i, m in enumerate(messages)
            if m.command == command and (name is None or named(m) == name)]


def stream_events(messages: list[Msg], stream: str) -> int:
    return sum(1 for m in messages if m.command == "create" and m.kwargs.get("name") == stream)


def test_temperature_steps_sets_the_protocols_temperatures_in_order_then_the_final_one():
    path = PROTOCOLS / "temperature_steps.yaml"
    protocol = load_protocol(path)
    messages = checked(path).messages
    settings = protocol.temperature_stage
    assert [m.args[0] for m in of(messages, "set", "temperature_stage")] == \
        settings.temperatures_k == [250, 300, 350]
    assert len(of(messages, "open_run")) == 1 and stream_events(messages, "primary") == 3
    (monitor,), (unmonitor,) = index_of(messages, "monitor"), index_of(messages, "unmonitor")
    moves = index_of(messages, "set", "temperature_stage")
    assert monitor < moves[0] and moves[-1] < unmonitor
    # success: the final temperature after the run closed, the safe state not needed
    (close,) = index_of(messages, "close_run")
    final = of(messages[close:], "set", "temperature_stage-setpoint_k")
    assert [m.args[0] for m in final] == [settings.final_temperature_k]
    assert not of(messages, "set", "temperature_stage-safe_state")
    assert [m.args[0].name for m in of(messages, "set", "temperature_stage-heater_range")] \
        == ["HIGH"]


def test_esm_room_temperature_one_run_one_trigger_per_line_of_three_excitations():
    path = PROTOCOLS / "esm_room_temperature.yaml"
    protocol = load_protocol(path)
    messages = checked(path).messages
    lines = protocol.map.pixels[1]
    (run,) = of(messages, "open_run")
    assert run.kwargs["plan_name"] == "three_excitation_map"
    (prepare,) = of(messages, "prepare", "afm")
    assert prepare.args[0].excitation.excitations == EXCITATIONS and len(EXCITATIONS) == 3
    assert prepare.args[0].drive_amplitude_v == protocol.excitation.drive_amplitude_v
    triggers = index_of(messages, "trigger", "afm")
    rows = index_of(messages, "set", "afm-row")
    assert len(triggers) == lines == stream_events(messages, "primary")
    assert [messages[i].args[0] for i in rows] == list(range(lines))
    assert all(row < trigger for row, trigger in zip(rows, triggers, strict=True))
    # held at 300 K before the first line; the tip left safe last, outside the run
    (hold,) = of(messages, "set", "temperature_stage")
    assert hold.args[0] == 300
    assert index_of(messages, "set", "temperature_stage")[0] < triggers[0]
    assert [(m.command, named(m)) for m in messages[-2:]] == [("unstage", "afm"), ("stop", "afm")]


def test_esm_temperature_series_a_tracked_map_per_temperature_in_one_run():
    path = PROTOCOLS / "esm_temperature_series.yaml"
    protocol = load_protocol(path)
    messages = checked(path).messages
    temperatures = protocol.temperature_stage.temperatures_k
    lines = protocol.map.pixels[1]
    assert len(of(messages, "open_run")) == 1  # the whole series is one run
    moves = index_of(messages, "set", "temperature_stage")
    assert [messages[i].args[0] for i in moves] == temperatures
    images = index_of(messages, "trigger", "afm-tracking_image")
    maps = index_of(messages, "prepare", "afm")
    assert len(images) == len(maps) == len(temperatures)
    assert [m.args[0] for m in of(messages, "set", "afm-map_index")] == \
        list(range(len(temperatures)))
    triggers = index_of(messages, "trigger", "afm")
    assert len(triggers) == lines * len(temperatures)
    for step, (move, image, prepare) in enumerate(zip(moves, images, maps, strict=True)):
        end = moves[step + 1] if step + 1 < len(moves) else len(messages)
        assert move < image < prepare < end  # settle, re-find the area, then map
        assert sum(prepare < t < end for t in triggers) == lines
    # the same image every time: zero drift, maps at the protocol's centre
    assert stream_events(messages, "drift_tracking") == len(temperatures)
    assert {m.args[0] for m in of(messages, "set", "tracking-offset_x_nm")} == {0.0}
    assert {m.args[0].area.center_x_nm for m in of(messages, "prepare", "afm")} == {0.0}
    (close,) = index_of(messages, "close_run")
    assert [m.args[0] for m in of(messages[close:], "set", "temperature_stage-setpoint_k")] \
        == [protocol.temperature_stage.final_temperature_k]
    assert (messages[-1].command, named(messages[-1])) == ("stop", "afm")


def test_sxdm_operando_maps_until_the_count_with_the_charge_started_once_and_safe_exit():
    path = PROTOCOLS / "sxdm_operando_lmno.yaml"
    protocol = load_protocol(path)
    check = checked(path)
    messages = check.messages
    maps = protocol.maps.count
    (run,) = of(messages, "open_run")
    assert run.kwargs["plan_name"] == "operando_sxdm"
    (close,) = index_of(messages, "close_run")
    assert messages[close].kwargs == {"exit_status": "success", "reason": f"{maps} maps taken"}
    assert stream_events(messages, "alignment") == maps
    lines = protocol.map.pixels[1] * protocol.rocking.points
    assert stream_events(messages, "primary") == maps * lines
    assert len(of(messages, "trigger", "area_detector")) == maps * lines
    (technique,) = of(messages, "set", "potentiostat-technique")
    assert technique.args[0] == GalvanostaticCharge(charge_current_a(protocol),
                                                    protocol.cell.voltage_limit_v)
    (monitor,) = index_of(messages, "monitor", "potentiostat")
    assert monitor < messages.index(technique) < index_of(messages, "trigger", "area_detector")[0]
    # the limit is asked before every map but the first; the maps are the interval apart
    assert len(of(messages, "read", "potentiostat-limit_reached")) == maps - 1
    assert [m.args[0] for m in of(messages, "sleep")] == [protocol.maps.interval_s] * (maps - 1)
    # after the run: cell at rest, detector disarmed; the axes are stopped only on failure
    stops = [named(m) for m in of(messages[close:], "stop")]
    assert stops == ["potentiostat", "area_detector"]
    assert not of(messages, "stop", "diffractometer")
    summary = summarize(check)
    assert summary["runs"][0]["reason"] == f"{maps} maps taken"


def test_sxdm_full_size_dry_run_is_the_estimate_only_no_detector_frames():
    path = PROTOCOLS / "sxdm_operando_lmno_full.yaml"
    check = checked(path)
    messages = check.messages
    assert check.dry_run
    (run,) = check.start_documents()
    assert run["plan_name"] == "operando_sxdm_estimate"
    assert run["sxdm_estimate"]["frames"] > 1_000_000
    assert not of(messages, "trigger") and not of(messages, "set")
    assert [named(m) for m in of(messages, "read")] == ["potentiostat", "diffractometer"]


def small_sxdm_check(**reads) -> PlanCheck:
    """The small operando protocol with some canned readings replaced."""
    protocol = load_protocol(SMALL_SXDM)
    profile = load_profile(SIM_PROFILE)

    def canned(protocol, bench) -> CannedReadings:
        return protocol_kind(protocol).canned_readings(protocol, bench) | CannedReadings(
            reads=reads)

    return check_protocol(protocol, SMALL_SXDM, profile, {"operando_sxdm": canned})


def test_eels_aloof_then_three_registered_passes_each_after_a_saturation_test_then_blanked():
    path = PROTOCOLS / "eels_licoo2_grain_boundary.yaml"
    protocol = load_protocol(path)
    messages = checked(path).messages
    (run,) = of(messages, "open_run")
    assert run.kwargs["plan_name"] == "eels_grain_boundary"
    assert stream_events(messages, "aloof") == protocol.aloof.spectra
    assert stream_events(messages, "registration") == 3
    for name in ("vibrational", "valence_loss", "core_loss"):
        assert stream_events(messages, name) == 1
    # each pass's spectrometer is set before its line, and the line is the protocol's
    offsets = [m.args[0] for m in of(messages, "set", "stem-spectrometer-energy_offset_mev")]
    assert offsets == [p.energy_offset_mev for p in
                       (protocol.vibrational, protocol.vibrational, protocol.valence_loss,
                        protocol.core_loss)]
    lines = [m.args[0] for m in of(messages, "prepare", "stem-camera")
             if hasattr(m.args[0], "pixels")]
    assert {line.pixels for line in lines} == {protocol.line.pixels}
    assert [line.exposure_ms for line in lines] == [
        protocol.registration.exposure_ms, protocol.vibrational.exposure_ms,
        protocol.registration.exposure_ms, protocol.valence_loss.exposure_ms,
        protocol.registration.exposure_ms, protocol.core_loss.exposure_ms]
    # frames summed per pixel on the vibrational pass only; registration lines take one
    assert [line.frames for line in lines] == [1, protocol.vibrational.frames, 1, 1, 1, 1]
    assert protocol.vibrational.frames > 1
    # a saturation test (peak and saturation read) before the aloof spectrum and each pass
    assert len(of(messages, "read", "stem-camera-peak_counts")) == 4
    # the beam is blanked last, outside the run
    (close,) = index_of(messages, "close_run")
    assert [named(m) for m in of(messages[close:], "stop")] == ["stem"]


def test_the_plan_decides_on_the_canned_readings_a_limit_reached_ends_the_maps():
    check = small_sxdm_check(**{"potentiostat.limit_reached": True,
                                "potentiostat.charge_mah": 0.1})
    messages = check.messages
    assert stream_events(messages, "alignment") == 1
    (close,) = of(messages, "close_run")
    assert close.kwargs["exit_status"] == "success"
    assert "voltage limit 4.9 V reached early: 0.1 mAh" in close.kwargs["reason"]


def test_a_plan_that_fails_is_reported_with_its_clean_up():
    with pytest.raises(PlanCheckError, match="no counts in the search volume") as failed:
        small_sxdm_check(**{"area_detector.search.counts": lambda: [0] * 25 * 400 * 96})
    messages = failed.value.check.messages
    (close,) = of(messages, "close_run")
    assert close.kwargs["exit_status"] == "fail"
    assert [named(m) for m in of(messages, "stop")] == \
        ["diffractometer", "potentiostat", "area_detector"]


def socket_count() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def test_no_simulator_socket_or_thread_devices_at_a_listening_port_are_never_opened(
        tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise AssertionError("a plan check made a RunEngine or started simulators")

    monkeypatch.setattr(RunEngine, "__init__", refused)
    monkeypatch.setattr(SimulatedLab, "start", refused)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    addresses = {
        "temperature_stage": f"TCPIP0::127.0.0.1::{port}::SOCKET",
        "afm": f"TCPIP0::127.0.0.1::{port}::SOCKET",
        "potentiostat": f"socket://127.0.0.1:{port}",
        "diffractometer": "ca://NOWHERE:",
        "area_detector": f"TCPIP0::127.0.0.1::{port}::SOCKET",
        "stem": f"TCPIP0::127.0.0.1::{port}::SOCKET",
    }
    lines, device = [], None
    for line in SIM_PROFILE.read_text().splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.strip().endswith(":"):
            device = line.strip()[:-1]
        if line.strip().startswith("address: sim"):
            line = f"    address: '{addresses[device]}'"
        lines.append(line)
    profile = tmp_path / "listening.yaml"
    profile.write_text("\n".join(lines) + "\n")
    threads, sockets = set(threading.enumerate()), socket_count()
    try:
        for path in (PROTOCOLS / "esm_temperature_series.yaml", SMALL_SXDM):
            check = checked(path, profile)
            assert not check.dry_run  # real addresses: checked as `vegard run` runs it
            assert [run["exit_status"] for run in summarize(check)["runs"]] == ["success"]
        sim = check_protocol(load_protocol(SMALL_SXDM), SMALL_SXDM, load_profile(SIM_PROFILE))
        assert sim.dry_run and len(sim.start_documents()) == 1
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
        assert set(threading.enumerate()) <= threads  # none new (older ones may end)
        assert socket_count() == sockets
    finally:
        listener.close()


def test_cli_prints_the_summary_and_json(capsys):
    path = str(PROTOCOLS / "temperature_steps.yaml")
    assert main(["check", path]) == 0
    out = capsys.readouterr().out
    assert "set temperature_stage → 250, 300, 350 K (3×)" in out
    assert "create/save primary ×3" in out
    assert "outside runs" in out and "set temperature_stage-setpoint_k → 295 K (1×)" in out
    assert len(out.splitlines()) < 40
    assert main(["check", path, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["sets"]["temperature_stage"] == [250, 300, 350]
    assert payload["verbs"]["set"] == 8 and payload["messages"] == sum(payload["verbs"].values())
    (run,) = payload["runs"]
    assert run["plan_name"] == "temperature_steps" and run["exit_status"] == "success"
    assert payload["outside_runs"]["verbs"] == {"set": 1, "wait": 1}


def test_cli_shows_the_beamline_estimate_of_an_estimate_only_run(capsys):
    assert main(["check", str(PROTOCOLS / "sxdm_operando_lmno_full.yaml")]) == 0
    assert "at the beamline:" in capsys.readouterr().out


def test_cli_refuses_a_temperature_above_the_stages_maximum(tmp_path, capsys):
    profile = tmp_path / "cool.yaml"
    text = SIM_PROFILE.read_text()
    assert "maximum_temperature_k: 400" in text
    profile.write_text(text.replace("maximum_temperature_k: 400", "maximum_temperature_k: 320"))
    code = main(["check", str(PROTOCOLS / "temperature_steps.yaml"), "--profile", str(profile)])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("vegard: ") and "temperatures_k[2] = 350 is not valid" in line
    assert "≤ 320 K" in line


def test_cli_refuses_a_profile_without_the_devices_the_protocol_needs(capsys):
    code = main(["check", str(PROTOCOLS / "sxdm_operando_lmno.yaml"),
                 "--profile", str(REPOSITORY / "configs/profiles/example-real.yaml")])
    assert code == 2
    assert "devices.potentiostat is missing" in capsys.readouterr().err
