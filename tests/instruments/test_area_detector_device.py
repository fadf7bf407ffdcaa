"""The area-detector device against the simulated Maxipix: the dose budget is enforced
before anything is sent, and a fly line whose triggers never came fails naming why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vegard.diffraction_geometry import DetectorRoi
from vegard.instruments.area_detector_device import (
    AreaDetector,
    DoseBudgetError,
    FlyLineSettings,
    LineTransferError,
)
from vegard.instruments.area_detector_driver import AreaDetectorDriver, PositionTrigger
from vegard.instruments.visa_connection import VisaConnection
from vegard.simulators.lab import SimulatedLab
from vegard.virtual_clock import VirtualClock

pytestmark = pytest.mark.simulators("area_detector")

ROI = DetectorRoi(224, 176, 64, 160)


@pytest.fixture(scope="module")
def lab() -> Iterator[SimulatedLab]:
    with SimulatedLab(VirtualClock(), seed=3, instruments=["area_detector"]) as started:
        yield started


def run(lab: SimulatedLab, body, tmp_path):
    async def main():
        connection = VisaConnection(lab.addresses["area_detector"], name="area_detector",
                                    clock=lab.clock)
        detector = AreaDetector(AreaDetectorDriver(connection),
                                lambda: tmp_path, clock=lab.clock, maximum_exposure_s=0.01,
                                name="area_detector")
        await detector.connect(timeout=5)
        try:
            return await body(detector)
        finally:
            connection.close()

    loop = lab.clock.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def test_exposure_beyond_the_dose_budget_is_refused_before_sending(lab, tmp_path) -> None:
    lab.instruments["area_detector"].clear_command_log()

    async def body(detector):
        with pytest.raises(DoseBudgetError, match=r"0.02 s per frame .* ≤ 0.01 s"):
            await detector.prepare(FlyLineSettings(ROI, 0.02, 10))

    run(lab, body, tmp_path)
    assert not [c for c in lab.command_log("area_detector") if c.startswith(("EXPO ", "ARM"))]


def test_missing_triggers_fail_with_the_detectors_reason_and_disarm(lab, tmp_path) -> None:
    async def body(detector):
        await detector.prepare(FlyLineSettings(ROI, 0.01, 10))
        # the piezo never moves: no trigger position is passed
        await detector.arm_line(PositionTrigger("sample_x_um", 1.0, 0.1, 10))
        with pytest.raises(LineTransferError, match=r"line map 0 row 0 eta 0: .*0 of 10 triggers"):
            await detector.trigger()
        await detector.stop()
        return await detector.driver.state()

    assert run(lab, body, tmp_path) == "IDLE"
