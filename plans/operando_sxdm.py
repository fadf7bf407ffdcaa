"""Operando SXDM: charge the cell galvanostatically and map the crystal again and again.

One run for the whole charge. The potentiostat is monitored (its own
`potentiostat_monitor` stream, polled on the instrument clock) from before the
charge starts to the end. Each map is preceded by a Bragg peak search that re-centres
the rocking range and the detector on the peak (recorded in the `alignment` stream),
then flown line by line (`rocking_map_lines`). Maps repeat until the cell reaches its
voltage limit or the map count is reached; a map under way when the limit is reached
is completed (its pixels' rocking curves are whole).

On every exit (success, the limit, an abort or a fault) the cell is left at open
circuit and the detector disarmed; on a failure the diffractometer axes are stopped
where they are. The stop document's `reason` says why a successful run ended: the
voltage limit (flagged "early" when less than `EARLY_CHARGE_FRACTION` of the expected
capacity had passed: lost contact, a dried-out cell) or the map count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import RunEngineControlException
from ophyd_async.core import StandardReadable, soft_signal_rw

from vegard.analysis.run_metadata import ChargeMetadata
from vegard.diffraction_geometry import DiffractometerGeometry
from vegard.instruments.area_detector_device import AreaDetector
from vegard.instruments.potentiostat_device import GalvanostaticCharge, Potentiostat

from .bragg_peak_search import PeakSearchSettings, find_bragg_peak
from .rocking_map import RockingMapSettings, rocking_map_lines, sxdm_metadata

if TYPE_CHECKING:  # Channel Access is loaded only by a session that uses it
    from vegard.instruments.diffractometer_device import Diffractometer

ALIGNMENT_STREAM = "alignment"
EARLY_CHARGE_FRACTION = 0.8
"""A limit reached with less than this share of the expected capacity charged is early."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChargeSettings:
    current_a: float
    voltage_limit_v: float
    expected_capacity_mah: float | None = None
    """Charge the electrode should take up to the limit (None: not judged)."""


class PeakSetting(StandardReadable):
    """The setting a peak search chose for the next map, recorded as `alignment` events."""

    def __init__(self, name: str = "alignment") -> None:
        with self.add_children_as_readables():
            self.map_index = soft_signal_rw(int, 0)
            self.d_angstrom = soft_signal_rw(float, 0.0, units="Å")
            self.eta_center_deg = soft_signal_rw(float, 0.0, units="deg")
            self.delta_deg = soft_signal_rw(float, 0.0, units="deg")
            self.peak_counts = soft_signal_rw(float, 0.0)
        super().__init__(name=name)


def operando_sxdm(
    potentiostat: Potentiostat,
    diffractometer: Diffractometer,
    detector: AreaDetector,
    *,
    charge: ChargeSettings,
    map_settings: RockingMapSettings,
    search: PeakSearchSettings,
    geometry: DiffractometerGeometry,
    first_eta_center_deg: float,
    first_delta_deg: float,
    max_maps: int,
    map_interval_s: float = 0.0,
    first_map_index: int = 0,
    first_map_delay_s: float = 0.0,
    md: dict[str, Any] | None = None,
):
    """Charge and map until the voltage limit or `max_maps`; the cell rests on every exit.

    `first_map_index` numbers the first map; `first_map_delay_s` charges that long before
    it (a dry run of one late map of a long series: `--full-map`)."""
    detector.check_exposure(map_settings.exposure_s)
    detector.check_exposure(search.exposure_s)
    monitor_stream = f"{potentiostat.name}_monitor"
    metadata = {
        "plan_name": "operando_sxdm",
        "progress": {"stream": ALIGNMENT_STREAM, "total": None, "unit": "map"},  # until the limit
        **sxdm_metadata(
            map_settings, geometry, detector, diffractometer, monitor_stream,
            maps_planned=max_maps,
            charge=ChargeMetadata(current_a=charge.current_a,
                                  voltage_limit_v=charge.voltage_limit_v),
            alignment_stream=ALIGNMENT_STREAM,
        ).document(),
        **(md or {}),
    }
    setting = PeakSetting()
    stop = {"reason": f"{max_maps} maps taken"}

    def maps():
        eta_center, delta = first_eta_center_deg, first_delta_deg
        next_start_s = None
        for taken in range(max_maps):
            map_index = first_map_index + taken
            if taken and (yield from _limit_reached(potentiostat)):
                stop["reason"] = yield from _limit_reason(potentiostat, charge, taken)
                logger.info(stop["reason"])
                break
            if not taken and first_map_delay_s > 0:
                yield from bps.sleep(first_map_delay_s)
            if map_interval_s and next_start_s is not None:
                yield from bps.sleep(max(0.0, next_start_s - detector.clock.now()))
            next_start_s = detector.clock.now() + map_interval_s
            peak = yield from find_bragg_peak(
                diffractometer, detector, geometry, search,
                eta_center_deg=eta_center, delta_deg=delta)
            eta_center, delta = peak.eta_center_deg, peak.delta_deg
            yield from bps.mv(diffractometer.delta_deg, delta)  # the map's 2θ
            yield from bps.mv(setting.map_index, map_index, setting.d_angstrom, peak.d_angstrom,
                              setting.eta_center_deg, eta_center, setting.delta_deg, delta,
                              setting.peak_counts, peak.counts)
            yield from bps.trigger_and_read([setting], name=ALIGNMENT_STREAM)
            yield from rocking_map_lines(diffractometer, detector, map_settings,
                                         eta_center_deg=eta_center, map_index=map_index)

    def charge_and_map():
        yield from bps.monitor(potentiostat, name=monitor_stream)
        yield from bps.prepare(detector, map_settings.fly_settings, wait=True)
        yield from bps.mv(potentiostat.technique,
                          GalvanostaticCharge(charge.current_a, charge.voltage_limit_v))
        yield from maps()
        yield from bps.unmonitor(potentiostat)

    @bpp.stage_decorator([detector, diffractometer])
    def inner():
        return (yield from _run_with_stop_reason(charge_and_map(), metadata, stop))

    def make_safe():
        yield from bps.stop(potentiostat)  # at rest: open circuit, confirmed
        yield from bps.stop(detector)

    def on_failure(error):  # the error is raised again after this (auto_raise)
        yield from bps.stop(diffractometer)  # every axis halted where it is

    return (yield from bpp.finalize_wrapper(
        bpp.contingency_wrapper(inner(), except_plan=on_failure), make_safe()))


def _limit_reached(potentiostat: Potentiostat):
    reached = yield from bps.rd(potentiostat.limit_reached)
    return bool(reached)


def _limit_reason(potentiostat: Potentiostat, charge: ChargeSettings, maps_done: int):
    """Why the maps stopped at the limit; "early" if the cell took too little charge."""
    charge_mah = yield from bps.rd(potentiostat.charge_mah)
    reason = (f"voltage limit {charge.voltage_limit_v:g} V reached after {maps_done} maps, "
              f"{charge_mah:.4g} mAh charged")
    expected = charge.expected_capacity_mah
    if expected and charge_mah < EARLY_CHARGE_FRACTION * expected:
        reason = (f"voltage limit {charge.voltage_limit_v:g} V reached early: "
                  f"{charge_mah:.4g} mAh of {expected:.4g} mAh expected "
                  f"({100 * charge_mah / expected:.0f} %), after {maps_done} maps; "
                  "cell at open circuit")
    return reason


def _run_with_stop_reason(plan, metadata: dict[str, Any], stop: dict[str, str]):
    """`bpp.run_wrapper`, whose successful stop document carries `stop["reason"]`."""
    yield from bps.open_run(metadata)

    def close_failed(error):
        if isinstance(error, RunEngineControlException):
            yield from bps.close_run(exit_status=error.exit_status)
        else:
            yield from bps.close_run(exit_status="fail", reason=str(error))

    def close_done():
        yield from bps.close_run(exit_status="success", reason=stop["reason"])

    return (yield from bpp.contingency_wrapper(plan, except_plan=close_failed,
                                               else_plan=close_done))
