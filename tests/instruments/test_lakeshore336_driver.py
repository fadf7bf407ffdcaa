"""The LakeShore 336 driver over pyvisa-py against the simulator on loopback."""

from __future__ import annotations

import asyncio

import pytest

from vegard.clock import InstrumentClock
from vegard.instruments.lakeshore336_driver import HeaterRange, LakeShore336Driver
from vegard.instruments.visa_connection import (
    InstrumentCommunicationError,
    InstrumentReplyError,
    VisaConnection,
)
from vegard.simulators.scpi_server import Instrument, ScpiServer

pytestmark = pytest.mark.simulators("temperature_stage")


def driver_for(address: str, timeout_s: float = 2.0) -> LakeShore336Driver:
    connection = VisaConnection(address, name="temperature_stage", timeout_s=timeout_s)
    return LakeShore336Driver(connection)


def test_driver_reads_and_writes_the_simulated_controller(lab):
    driver = driver_for(lab.addresses["temperature_stage"])

    async def exchange():
        identity = await driver.connect()
        temperature_k = await driver.temperature_k()
        await driver.set_ramp_rate_k_per_min(5.0)
        await driver.set_heater_range(HeaterRange.MEDIUM)
        await driver.set_setpoint_k(310.0)
        return identity, temperature_k, await driver.ramp(), await driver.heater_range()

    try:
        identity, temperature_k, ramp, heater_range = asyncio.run(exchange())
    finally:
        driver.connection.close()
    truth = lab.ground_truth()["temperature_stage"]
    assert "MODEL336" in identity
    noise_k = truth["parameters"]["sensor_noise_k"]
    assert abs(temperature_k - 295.0) < 10 * noise_k + 0.05
    assert ramp.enabled and ramp.rate_k_per_min == pytest.approx(5.0)
    assert heater_range is HeaterRange.MEDIUM
    assert truth["target_setpoint_k"] == pytest.approx(310.0)
    assert truth["heater_range"] == 2
    assert "SETP 1,310.0000" in lab.command_log("temperature_stage")


class Babbler(Instrument):
    """A controller whose temperature reply is not a number."""

    identity = "LSCI,MODEL336,BABBLER,0"

    def __init__(self, clock):
        super().__init__(clock)
        self.register("KRDG?", lambda arguments: "banana")


def test_malformed_reply_is_an_error_naming_instrument_command_and_reply():
    with ScpiServer(Babbler(InstrumentClock())) as server:
        driver = driver_for(server.visa_address)

        async def read():
            await driver.connect()
            return await driver.temperature_k()

        with pytest.raises(InstrumentReplyError) as caught:
            asyncio.run(read())
        driver.connection.close()
    message = str(caught.value)
    assert "temperature_stage" in message and "KRDG? A" in message and "banana" in message


def test_unanswered_query_times_out_with_a_clear_error(lab):
    connection = VisaConnection(lab.addresses["temperature_stage"], name="stage", timeout_s=0.2)
    connection.open_blocking()
    try:
        with pytest.raises(InstrumentCommunicationError, match=r"stage: 'NOSUCH\?' .*timeout"):
            connection.query_blocking("NOSUCH?")
    finally:
        connection.close()


def test_connecting_to_a_closed_port_fails_with_the_address():
    driver = driver_for("TCPIP0::127.0.0.1::1::SOCKET", timeout_s=0.5)
    expected = r"refused.*TCPIP0::127.0.0.1::1::SOCKET"
    with pytest.raises(InstrumentCommunicationError, match=expected):
        asyncio.run(driver.connect())
