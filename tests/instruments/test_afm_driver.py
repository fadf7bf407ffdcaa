"""The BE AFM driver's reply checks: wrong block sizes, non-block replies, NaN, safe state."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from vegard.clock import InstrumentClock
from vegard.instruments.afm_driver import BandExcitationAfmController
from vegard.instruments.visa_connection import InstrumentReplyError, VisaConnection
from vegard.simulators.scpi_server import Instrument, ScpiServer, binary_block

pytestmark = pytest.mark.simulators("afm")


class BrokenController(Instrument):
    """Answers BE queries with blocks of the wrong size, text, or NaN."""

    identity = "VEGARD,SIM-BE-AFM,0,broken"

    def __init__(self) -> None:
        super().__init__(InstrumentClock(1.0))
        self.register("BE:LINE?", lambda a: binary_block(np.zeros(7, "<c8").tobytes()))
        self.register("BE:POINT?", lambda a: "1.0,2.0")
        self.register("TOPO:LINE?", lambda a: binary_block(np.full(4, np.nan).tobytes()))
        self.register("BE:SPEC?", lambda a: binary_block(np.zeros(5, "<c8").tobytes()))
        self.register("BE:FSPEC?", lambda a: binary_block(np.zeros(5, "<c8").tobytes()))
        self.register("BE:RSPEC?", lambda a: binary_block(np.full(6, np.nan, "<c8").tobytes()))


def run(server, body):
    async def main():
        connection = VisaConnection(server.visa_address, name="afm", timeout_s=0.5)
        controller = BandExcitationAfmController(connection)
        await controller.connect()
        try:
            return await body(controller)
        finally:
            connection.close()

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (lambda c: c.acquire_line(0, pixels=4, excitations=3, bins=8, duration_s=0.0),
         "'BE:LINE? 0' failed: reply '<block of 7 values>' is not 96 values (4, 3, 8)"),
        (lambda c: c.acquire_point(excitations=3, bins=8, duration_s=0.0),
         "'BE:POINT?' failed"),
        (lambda c: c.topography_line(0, pixels=4, duration_s=0.0),
         "is not finite values"),
        (lambda c: c.acquire_sweep(steps=4, bins=8, duration_s=0.0),
         "'BE:SPEC?' failed: reply '<block of 5 values>' is not 64 values (4, 2, 8)"),
        (lambda c: c.acquire_forc(steps=4, bins=8, duration_s=0.0),
         "'BE:FSPEC?' failed: reply '<block of 5 values>' is not 64 values (4, 2, 8)"),
        (lambda c: c.acquire_relaxation(reads=3, bins=2, duration_s=0.0),
         "is not finite values"),
    ],
)
def test_malformed_replies_raise_errors_naming_instrument_and_command(body, message):
    with ScpiServer(BrokenController()) as server:
        with pytest.raises(InstrumentReplyError) as caught:
            run(server, body)
    assert message in str(caught.value)
    assert str(caught.value).startswith("afm: ")


def test_make_safe_reports_what_the_simulated_controller_confirms(lab):
    model = lab.models["afm"]
    model.set_bias_dc(3.0)
    model.set_bias_output(True)
    connection = VisaConnection(lab.addresses["afm"], name="afm")
    controller = BandExcitationAfmController(connection)

    async def main():
        await controller.connect()
        try:
            return await controller.make_safe()
        finally:
            connection.close()

    assert asyncio.run(main()) == (False, 0.0, 0.0)
    assert model.tip_bias_v == 0.0
