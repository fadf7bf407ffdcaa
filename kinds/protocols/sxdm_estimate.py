"""What an operando SXDM protocol will cost at the beamline: time, data and dose.

Worked out from the protocol and the detector profile before anything moves, so a full
protocol (75 × 75 pixels × 30 angles per map for a 15 h charge) can be judged, and its
dry run can report it, without taking 5 million frames.

Timing model: the moves and exchanges the plans make, costed as the end station's motor
records and links do (`EndStationTiming`; its defaults are what the simulators model, so
a dry run's maps take what this predicts). A fly line: the piezo's return at full speed,
the eta step (or, at a new row, eta's return to the first angle) and the y step, together,
each after the put latency; arming (one exchange); the fly at one pixel per frame period
over the run-up, the pixels and half an exposure, with its ramps; the frames' transfer
(two exchanges and the bytes). A peak search: per position, eta back to the start of the
sweep, three exchanges to arm, the sweep at eta's speed, the frames' transfer and two
exchanges to restore the map's ROI and exposure (the detector arm's move to the new 2θ
before it depends on the crystal and is left out). Dose: each map exposes every raster
pixel once per rocking angle; the surface dose is fluence × photon energy × μ/ρ.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from vegard.kinds.instruments.maxipix import AreaDetectorSettings
from vegard.motion import move_duration_s

from .sxdm_settings import OperandoSxdmProtocol

READOUT_DEAD_TIME_S = 2.9e-4
"""Maxipix readout between frames (used when the detector has not been asked)."""
SEARCH_POSITIONS = 5
BYTES_PER_COUNT = 2
JOULE_PER_EV = 1.602176634e-19
FLY_LINE_EXCHANGES = 3
"""Detector exchanges per fly line: arm, frame data, frame times."""
SEARCH_EXCHANGES = 7
"""Per search position: ROI, exposure and arm; frame data and times; ROI and exposure back."""


@dataclass(frozen=True)
class EndStationTiming:
    """What the end station's moves and links cost (the defaults are what the simulated
    IOC and Maxipix model; a test keeps them equal)."""

    eta_velocity_deg_per_s: float = 1.0
    eta_acceleration_time_s: float = 0.2
    piezo_velocity_um_per_s: float = 1000.0
    """Of every piezo move that is not a fly (the plans' `FAST_PIEZO_UM_PER_S`)."""
    piezo_acceleration_time_s: float = 0.002
    put_latency_s: float = 0.002
    """From a move's put to the start of the motion (`diffractometer.ca_put_latency_s`)."""
    detector_turnaround_s: float = 0.001
    detector_bytes_per_s: float = 1e8


def fly_line_s(protocol: OperandoSxdmProtocol, timing: EndStationTiming,
               dead_time_s: float, *, new_row: bool) -> float:
    """One fly line of the rocking map, from its first move to its frames received."""
    nx, ny = protocol.map.pixels
    exposure_s = protocol.detector.exposure_s
    step_um = protocol.map.size_um[0] / nx
    fly_velocity = step_um / (exposure_s + dead_time_s)
    fly_um = nx * step_um + fly_velocity * exposure_s / 2.0  # run-up, pixels, half exposure
    rocking = protocol.rocking
    eta_deg = (rocking.points - 1) * rocking.step_deg if new_row else rocking.step_deg
    y_um = protocol.map.size_um[1] / ny if new_row else 0.0
    move_back_s = timing.put_latency_s + max(
        move_duration_s(fly_um, timing.piezo_velocity_um_per_s, timing.piezo_acceleration_time_s),
        move_duration_s(y_um, timing.piezo_velocity_um_per_s, timing.piezo_acceleration_time_s),
        move_duration_s(eta_deg, timing.eta_velocity_deg_per_s, timing.eta_acceleration_time_s))
    fly_s = timing.put_latency_s + move_duration_s(
        fly_um, fly_velocity, timing.piezo_acceleration_time_s)
    rows, cols = protocol.detector.roi_pixels
    transfer_s = (FLY_LINE_EXCHANGES * timing.detector_turnaround_s
                  + nx * rows * cols * BYTES_PER_COUNT / timing.detector_bytes_per_s)
    return move_back_s + fly_s + transfer_s


def peak_search_s(protocol: OperandoSxdmProtocol, timing: EndStationTiming) -> float:
    """The peak search before a map (without the detector arm's move to the new 2θ)."""
    search = protocol.peak_search
    points = round(2 * search.half_range_deg / search.step_deg) + 1
    sweep_deg = (points - 1) * search.step_deg + 2 * search.step_deg  # with run-up and -out
    eta_s = timing.put_latency_s + move_duration_s(
        sweep_deg, timing.eta_velocity_deg_per_s, timing.eta_acceleration_time_s)
    rows, cols = search.roi_pixels
    transfer_s = (SEARCH_EXCHANGES * timing.detector_turnaround_s
                  + points * rows * cols * BYTES_PER_COUNT / timing.detector_bytes_per_s)
    return SEARCH_POSITIONS * (2 * eta_s + transfer_s)  # back to the start, then the sweep


def estimate_operando_sxdm(
    protocol: OperandoSxdmProtocol,
    detector: AreaDetectorSettings,
    energy_ev: float = 10_000.0,
    dead_time_s: float = READOUT_DEAD_TIME_S,
    timing: EndStationTiming | None = None,
) -> dict[str, Any]:
    """Duration, frames, data volume and dose of the whole protocol, at the instrument."""
    timing = timing or EndStationTiming()
    nx, ny = protocol.map.pixels
    points = protocol.rocking.points
    row_start_s = fly_line_s(protocol, timing, dead_time_s, new_row=True)
    line_s = fly_line_s(protocol, timing, dead_time_s, new_row=False)
    raster_s = ny * (row_start_s + (points - 1) * line_s)
    # from the map's first frame to its last: each later line adds its duration, and the
    # last line's frames follow its first one period apart
    frame_span_s = ((ny - 1) * row_start_s + ny * (points - 1) * line_s
                    + (nx - 1) * (protocol.detector.exposure_s + dead_time_s))
    search_s = peak_search_s(protocol, timing)
    map_s = raster_s + search_s
    charge_s = 3600.0 / protocol.cell.c_rate
    maps = min(protocol.maps.count, math.floor(charge_s / max(map_s, protocol.maps.interval_s)) + 1)
    frames_per_map = nx * ny * points
    rows, cols = protocol.detector.roi_pixels
    bytes_per_map = frames_per_map * rows * cols * BYTES_PER_COUNT
    step_x_um = protocol.map.size_um[0] / nx
    step_y_um = protocol.map.size_um[1] / ny
    photons_per_frame = detector.flux_ph_per_s * protocol.detector.exposure_s
    # Fly lines sweep the beam over each pixel area once per rocking angle.
    pixel_area_um2 = max(step_x_um, detector.beam_size_um) * max(step_y_um, detector.beam_size_um)
    fluence_per_map = points * photons_per_frame / pixel_area_um2  # ph/µm²
    mass_attenuation_m2_per_kg = protocol.material.mass_attenuation_cm2_per_g * 0.1
    dose_per_map_gy = (fluence_per_map * 1e12 * energy_ev * JOULE_PER_EV
                       * mass_attenuation_m2_per_kg)
    return {
        "maps": maps,
        "map_duration_min": map_s / 60.0,
        "raster_duration_s": raster_s,
        "frame_span_s": frame_span_s,
        "search_duration_s": search_s,
        "line_duration_s": line_s,
        "charge_duration_h": charge_s / 3600.0,
        "duration_h": max(charge_s, maps * map_s) / 3600.0,
        "frames_per_map": frames_per_map,
        "frames": maps * frames_per_map,
        "data_volume_per_map_gb": bytes_per_map / 1e9,
        "data_volume_gb": maps * bytes_per_map / 1e9,
        "exposure_per_frame_s": protocol.detector.exposure_s,
        "fluence_per_map_ph_per_um2": fluence_per_map,
        "dose_per_map_mgy": dose_per_map_gy / 1e6,
        "dose_mgy": maps * dose_per_map_gy / 1e6,
        "timing": asdict(timing),
        "assumptions": (
            f"fly line = piezo return ‖ eta step (‖ y step), fly at one pixel per "
            f"(exposure + {dead_time_s * 1e3:.2f} ms readout), {FLY_LINE_EXCHANGES} detector "
            f"exchanges and the frames' bytes, trapezoidal moves after the put latency "
            f"(see `timing`); peak search without the 2θ move; charge = 1/C-rate h; maps "
            f"back to back (or every interval_s) until the charge ends; uint16 frames, "
            f"uncompressed; surface dose = fluence × E × μ/ρ"
        ),
    }
