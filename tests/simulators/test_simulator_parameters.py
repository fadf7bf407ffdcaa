"""Simulator parameters: defaults, profile values, --set overrides, and refusals that say why."""

from __future__ import annotations

import pytest

from vegard.simulators.lab import default_instruments, parameter_specs
from vegard.simulators.parameters import (
    Parameter,
    SimulatorParameterError,
    parameter_table,
    resolve_parameters,
)

PROFILE = "configs/profiles/sim.yaml"
SPECS = {
    "temperature_stage": [
        Parameter("thermal_mass_j_per_k", 20.0, "J/K", 0.1, 1000.0, "stage heat capacity"),
        Parameter("sensor_noise_k", 0.005, "K", 0.0, 1.0, "reading noise"),
        Parameter("heater_fault", 0.0, "", 0.0, 1.0, "switch: heater open circuit"),
    ]
}


def test_defaults_then_profile_then_overrides() -> None:
    resolved = resolve_parameters(
        SPECS,
        {"temperature_stage": {"thermal_mass_j_per_k": 30.0, "sensor_noise_k": 0.01}},
        ["temperature_stage.thermal_mass_j_per_k=40", "temperature_stage.heater_fault=true"],
        PROFILE,
    )
    assert resolved == {
        "temperature_stage": {
            "thermal_mass_j_per_k": 40.0,
            "sensor_noise_k": 0.01,
            "heater_fault": 1.0,
        }
    }


def test_out_of_range_in_profile_names_file_field_value_and_range() -> None:
    with pytest.raises(SimulatorParameterError) as refused:
        resolve_parameters(
            SPECS, {"temperature_stage": {"thermal_mass_j_per_k": -3}}, [], PROFILE,
            profile_field_prefix="simulators",
        )
    assert str(refused.value) == (
        "configs/profiles/sim.yaml: simulators.temperature_stage.thermal_mass_j_per_k = -3"
        " is out of range: allowed 0.1 … 1000 J/K"
    )


def test_profile_field_defaults_to_where_profiles_keep_simulator_parameters() -> None:
    with pytest.raises(SimulatorParameterError, match=(
        r"^configs/profiles/sim.yaml: simulation\.parameters\.temperature_stage\.sensor_noise_k"
        r" = 2 is out of range: allowed 0 … 1 K$"
    )):
        resolve_parameters(SPECS, {"temperature_stage": {"sensor_noise_k": 2.0}}, [], PROFILE)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("temperature_stage.thermal_mass_j_per_k=-3",
         "--set: temperature_stage.thermal_mass_j_per_k = -3 is out of range: "
         "allowed 0.1 … 1000 J/K"),
        ("temperature_stage.thermal_mass_j_per_k=heavy",
         "--set: temperature_stage.thermal_mass_j_per_k = heavy is not a number: "
         "allowed 0.1 … 1000 J/K"),
        ("temperature_stage.thermal_mass_j_per_k=nan",
         "--set: temperature_stage.thermal_mass_j_per_k = nan is not a number: "
         "allowed 0.1 … 1000 J/K"),
        ("temperature_stage.mass=3",
         "--set: temperature_stage.mass is not a parameter of temperature_stage"),
        ("afm.spring_constant_n_per_m=3",
         "--set: afm is not a simulated instrument (known: temperature_stage)"),
        ("temperature_stage.thermal_mass_j_per_k",
         "--set: 'temperature_stage.thermal_mass_j_per_k' is not of the form"),
    ],
)
def test_bad_overrides_are_refused_naming_source_field_and_value(
    override: str, message: str
) -> None:
    with pytest.raises(SimulatorParameterError) as refused:
        resolve_parameters(SPECS, {}, [override], PROFILE)
    assert str(refused.value).startswith(message)


def test_unknown_parameter_in_profile_names_the_file() -> None:
    with pytest.raises(SimulatorParameterError, match=(
        r"^configs/profiles/sim.yaml: simulation\.parameters\.temperature_stage\.mass "
        r"is not a parameter of temperature_stage \(known: heater_fault, sensor_noise_k, "
    )):
        resolve_parameters(SPECS, {"temperature_stage": {"mass": 1.0}}, [], PROFILE)


def test_error_is_a_value_error() -> None:
    assert issubclass(SimulatorParameterError, ValueError)


def test_parameter_table_shows_given_values_over_defaults() -> None:
    rows = parameter_table(
        parameter_specs(), {"temperature_stage": {"thermal_mass_j_per_k": 42.0}}
    )
    by_name = {(row["instrument"], row["name"]): row for row in rows}
    mass = by_name[("temperature_stage", "thermal_mass_j_per_k")]
    assert mass == {
        "instrument": "temperature_stage",
        "name": "thermal_mass_j_per_k",
        "value": 42.0,
        "unit": "J/K",
        "minimum": 0.1,
        "maximum": 1000.0,
        "description": mass["description"],
    }
    assert mass["description"]
    bath = by_name[("temperature_stage", "bath_temperature_k")]
    assert bath["value"] == 77.0


def test_every_simulator_default_is_within_its_own_range() -> None:
    for instrument, parameters in parameter_specs().items():
        assert instrument in default_instruments()
        for parameter in parameters:
            assert parameter.admits(parameter.default), (instrument, parameter.name)
            assert parameter.unit or parameter.name.endswith(("_switch", "_fault")), parameter
