"""The tr-KPFM and c-AFM commands' reply checks: wrong block sizes and NaN are errors that
name the instrument and the command."""

from __future__ import annotations

import numpy as np
import pytest
from test_afm_driver import run

from vegard.clock import InstrumentClock
from vegard.instruments.afm_readout_driver import AfmReadoutCommands
from vegard.instruments.visa_connection import InstrumentReplyError
from vegard.simulators.scpi_server import Instrument, ScpiServer, binary_block

pytestmark = pytest.mark.simulators("afm")


class BrokenReadouts(Instrument):
    """Answers the readout queries with blocks of the wrong size or NaN."""

    identity = "VEGARD,SIM-BE-AFM,0,broken"

    def __init__(self) -> None:
        super().__init__(InstrumentClock(1.0))
        self.register("KPFM:CPD?", lambda a: binary_block(np.zeros(3, "<f8").tobytes()))
        self.register("CAFM:IV?", lambda a: binary_block(np.full(8, np.nan).tobytes()))


@pytest.mark.parametrize(("body", "message"), [
    (lambda c: AfmReadoutCommands(c).acquire_cpd(samples=4, duration_s=0.0),
     "'KPFM:CPD?' failed: reply '<block of 3 values>' is not 4 values (4,)"),
    (lambda c: AfmReadoutCommands(c).acquire_iv(points=8, duration_s=0.0),
     "'CAFM:IV?' failed: reply '<block with NaN/inf>' is not finite values"),
])
def test_malformed_readout_replies_raise_errors_naming_the_command(body, message):
    with ScpiServer(BrokenReadouts()) as server:
        with pytest.raises(InstrumentReplyError) as caught:
            run(server, body)
    assert message in str(caught.value) and str(caught.value).startswith("afm: ")

