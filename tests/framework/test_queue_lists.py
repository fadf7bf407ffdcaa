"""The queue server's lists, generated from the startup module: what clients may run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bluesky_queueserver.manager.profile_ops import (
    load_allowed_plans_and_devices,
    validate_user_group_permissions,
)

from vegard.queue_environment import QueueConfig, plan_names, queue_namespace
from vegard.queue_lists import generate_existing_plans_and_devices, write_permissions

SIM_PROFILE = Path(__file__).resolve().parents[2] / "configs/profiles/sim.yaml"
DEVICES = ["temperature_stage", "afm"]


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lists")
    describe = QueueConfig(profile=str(SIM_PROFILE), devices=DEVICES,
                           data_dir=str(folder / "store"), describe_only=True)
    existing = generate_existing_plans_and_devices(describe.write(folder / "c.json"), folder)
    permissions = write_permissions(folder, plan_names(), DEVICES)
    return existing, permissions


def test_the_generated_lists_hold_exactly_the_offered_plans_and_the_served_devices(lists):
    existing, permissions = lists
    validate_user_group_permissions(yaml.safe_load(permissions.read_text()))
    allowed_plans, allowed_devices = load_allowed_plans_and_devices(
        path_existing_plans_and_devices=str(existing),
        path_user_group_permissions=str(permissions))
    assert set(allowed_plans["primary"]) == {
        "count", "scan", "list_scan", "run_protocol", "temperature_steps"}
    assert set(allowed_devices["primary"]) == set(DEVICES)  # not potentiostat, stem, ...


def test_typed_parameters_reach_the_queue_server(lists):
    existing, _ = lists
    plans = yaml.safe_load(existing.read_text())["existing_plans"]
    parameters = {item["name"]: item for item in plans["temperature_steps"]["parameters"]}
    assert parameters["temperatures_k"]["annotation"]["type"] == "list[float]"
    assert parameters["heater_range"]["annotation"]["type"] == (
        "typing.Literal['low', 'medium', 'high']")
    assert parameters["settle_time_s"]["default"] == "60.0"
    assert plans["run_protocol"]["parameters"][0]["annotation"]["type"] == "str"


def test_a_describe_only_namespace_connects_nothing_and_runs_nothing(tmp_path):
    config = QueueConfig(profile=str(SIM_PROFILE), devices=DEVICES,
                         data_dir=str(tmp_path), describe_only=True)
    namespace = queue_namespace(config)
    assert "RE" not in namespace
    assert set(DEVICES) <= set(namespace)
    with pytest.raises(RuntimeError, match="runs none"):
        next(namespace["temperature_steps"](temperatures_k=[300.0]))
