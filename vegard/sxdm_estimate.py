"""What an operando SXDM protocol will cost at the beamline: time, data and dose.

Worked out from the protocol and the detector profile before anything moves, so a full
protocol (75 × 75 pixels × 30 angles per map for a 15 h charge) can be judged, and its
dry run can report it, without taking 5 million frames.

Timing model: a fly line takes one frame period (exposure + readout dead time) per
pixel plus `LINE_OVERHEAD_S` (piezo return, eta step, arming); with the paper's numbers
this gives ≈ 31 min per 6 × 6 µm² map, as reported (≈ 30 min). Dose: each map exposes
every raster pixel once per rocking angle; the surface dose is fluence × photon
energy × μ/ρ.
"""

from __future__ import annotations

import math
from typing import Any

from vegard.config.profiles import AreaDetectorSettings
from vegard.config.protocols import OperandoSxdmProtocol

LINE_OVERHEAD_S = 0.05
READOUT_DEAD_TIME_S = 2.9e-4
"""Maxipix readout between frames (used when the detector has not been asked)."""
SEARCH_POSITIONS = 5
BYTES_PER_COUNT = 2
JOULE_PER_EV = 1.602176634e-19


def estimate_operando_sxdm(
    protocol: OperandoSxdmProtocol,
    detector: AreaDetectorSettings,
    energy_ev: float = 10_000.0,
    dead_time_s: float = READOUT_DEAD_TIME_S,
) -> dict[str, Any]:
    """Duration, frames, data volume and dose of the whole protocol, at the instrument."""
    nx, ny = protocol.map.pixels
    points = protocol.rocking.points
    period_s = protocol.detector.exposure_s + dead_time_s
    line_s = nx * period_s + LINE_OVERHEAD_S
    search = protocol.peak_search
    search_points = round(2 * search.half_range_deg / search.step_deg) + 1
    search_s = SEARCH_POSITIONS * (search_points * (search.exposure_s + dead_time_s)
                                   + LINE_OVERHEAD_S)
    map_s = ny * points * line_s + search_s
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
        "assumptions": (
            f"line = pixels × (exposure + {dead_time_s * 1e3:.2f} ms readout) + "
            f"{LINE_OVERHEAD_S * 1e3:.0f} ms overhead; charge = 1/C-rate h; maps back to back "
            f"(or every interval_s) until the charge ends; uint16 frames, uncompressed; "
            f"surface dose = fluence × E × μ/ρ"
        ),
    }
