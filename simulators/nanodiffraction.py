"""Area-detector frames of a scanning X-ray nanodiffraction (SXDM) rocking scan.

For each beam position on an `LmnoCrystal`, each rocking angle eta and each pixel of a
detector region of interest, the expected photon counts of the (400) Bragg peak(s), then
Poisson noise. The reciprocal-space picture: the detector at angles (nu, delta) and the
sample at (eta, phi) place every pixel at a sample-frame Q (`vegard.diffraction_geometry`,
xrayutilities conventions); the crystal puts intensity around each phase's reciprocal
lattice point G = (2π/d400)·n, n the local (400) normal. The counts of a pixel are that
intensity at its Q.

Model and working assumptions (numbers are the defaults of `NanoBeam.PARAMETERS` and of the
crystal's diffraction parameters):

Footprint. The 80 nm beam (`beam_fwhm_um`, Gaussian) meets the surface at the incidence
angle eta, so its footprint is stretched along the beam's projection on the surface by
1/sin(eta) (`footprint_elongation_switch`). The crystal state is sampled at the centre and
`footprint_ring_points` points of an ellipse, equal weights, spaced so that the samples
have the footprint's second moments.

Peak shape. Per position and phase, one 3-D Gaussian in Q: its centre is the
footprint-weighted mean of G (weights: beam × scattering strength × phase fraction); its
covariance is the intrinsic shape plus the spread of G over the footprint. The intrinsic
shape is radial sigma sqrt(`radial_resolution_sigma_inv_angstrom`² + (|G|·microstrain)²)
along G and transverse sigma |G|·sqrt(`angular_resolution_sigma_deg`² + mosaic²) (radians)
across it: the reciprocal-space resolution (2.5·10⁻⁴ Å⁻¹) and the beam convergence plus the
crystal's local mosaic spread.

Counts. The peak of a strength-1 position holds `peak_frame_counts_per_photon` ×
flux × exposure counts summed over the frame at the rocking maximum (0.5·10⁻³: 5·10³ counts
for 10 ms at 10⁹ ph/s), scaled by strength × fraction; the footprint spread widens the peak
at constant integrated intensity. A flat background of `background_counts_per_pixel_per_photon`
× flux × exposure per pixel (scattering from the cell window and electrolyte) is added.
Poisson noise: peak pixels are drawn from their expectation (those expecting < 10⁻⁶ counts
stay at zero); background photons are scattered uniformly at random, which is Poisson per
pixel.

Motion blur. In a fly scan the beam moves during the exposure; `frames(..., path_um=...)`
samples the footprint around each of the beam's positions over equal parts of the
exposure, so the single Gaussian is drawn around the mean G over the swept area and widened
by its spread (`footprint_g` gives that mean G, the ground truth of the frame).

Speed. The Gaussian's exponent is a quadratic polynomial in the laboratory Q of the pixel,
so the exponents of all positions, angles and pixels are matrix products of per-(position,
angle) coefficients with 10 fixed pixel monomials. (Position, angle) pairs whose peak stays
negligible over the ROI (checked on a coarse pixel grid with a safe margin), such as the
other phase's peak far outside the ROI, are skipped. One scan line of 75 positions × 30
angles × 64 × 64 pixels takes ≈ 0.1-0.15 s.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from vegard.diffraction_geometry import (
    DetectorRoi,
    DiffractometerGeometry,
    centred_roi,
    detector_angles_for_specular,
    lab_q,
    rocking_angles_deg,
    sample_to_lab,
)

from .lmno_crystal import PHASES, LmnoCrystal, tilt_normal
from .parameters import Parameter, model_values

ROCKING_POINTS = 30
ROCKING_STEP_DEG = 0.016
"""The paper's rocking scan: 30 angles, 0.016° apart."""

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_EXPONENT_FLOOR = -40.0
"""Peak terms below e^-40 (≈ 4·10⁻¹⁸ counts) are set to zero; exp never meets denormals."""
_SMALLEST_EXPECTED_COUNTS = 1e-6
_COARSE_STEP = 4
_COARSE_MARGIN = 30.0
"""How far (in the exponent) the peak may rise between coarse pixels: with the peak's
narrowest sigma ≈ 1.3 pixels, a relevant peak (within ≈ 7 sigma of the ROI) gains at most
≈ 20 over 2 pixels."""
_CHUNK_ROWS = 256


class NanoBeam:
    """The focused beam and detector response: footprint, resolution, background."""

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("beam_fwhm_um", 0.08, "µm", 0.005, 2.0,
                  "full width at half maximum of the focused beam"),
        Parameter("footprint_elongation_switch", 1.0, "1", 0.0, 1.0,
                  "1: stretch the footprint by 1/sin(incidence) along the beam"),
        Parameter("footprint_ring_points", 6.0, "1", 0.0, 24.0,
                  "crystal samples on the footprint ellipse besides the centre (0: centre only)"),
        Parameter("radial_resolution_sigma_inv_angstrom", 2.5e-4, "1/Å", 1e-6, 0.01,
                  "reciprocal-space resolution along Q (sigma)"),
        Parameter("angular_resolution_sigma_deg", 0.02, "deg", 0.0, 1.0,
                  "angular resolution across Q from the beam convergence (sigma)"),
        Parameter("background_counts_per_pixel_per_photon", 1.0e-9, "1", 0.0, 1e-5,
                  "flat background per pixel and frame per incident photon"),
    )

    def __init__(self, parameters: Mapping[str, float] | None = None) -> None:
        values = model_values(self.PARAMETERS, parameters, "nano_beam")
        self.parameters: dict[str, float] = values

    def footprint(self, eta_deg: float, phi_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Sample offsets (µm, shape (n, 2)) and weights (sum 1) covering the footprint."""
        p = self.parameters
        sigma = p["beam_fwhm_um"] / _FWHM_PER_SIGMA
        beam = sample_to_lab(eta_deg, phi_deg).T @ np.array([1.0, 0.0, 0.0])
        along = beam[:2] / max(np.linalg.norm(beam[:2]), 1e-12)
        stretch = 1.0
        if p["footprint_elongation_switch"] >= 0.5:
            stretch = 1.0 / max(abs(beam[2]), 0.05)
        ring = round(p["footprint_ring_points"])
        offsets = [np.zeros(2)]
        if ring:
            radius = sigma * math.sqrt(2.0 * (ring + 1) / ring)
            across = np.array([-along[1], along[0]])
            for angle in 2.0 * math.pi * np.arange(ring) / ring:
                offsets.append(radius * (stretch * math.cos(angle) * along
                                         + math.sin(angle) * across))
        weights = np.full(len(offsets), 1.0 / len(offsets))
        return np.array(offsets), weights


class DetectorSetting(NamedTuple):
    """Detector and sample angles that put a specular (400) peak in the middle of an ROI."""

    nu_deg: float
    delta_deg: float
    eta_center_deg: float
    roi: DetectorRoi


def detector_setting_for(
    d400_angstrom: float,
    geometry: DiffractometerGeometry,
    roi_shape: tuple[int, int] = (64, 64),
) -> DetectorSetting:
    """Symmetric setting for planes of spacing d (e.g. `crystal.d400_mean_angstrom(x)`).

    nu = 0, delta = 2θ, eta centre = θ; the peak lands on the direct-beam pixel, and the
    ROI is centred there (clipped to the detector).
    """
    eta, delta = detector_angles_for_specular(d400_angstrom, geometry.energy_ev)
    return DetectorSetting(0.0, delta, eta, centred_roi(geometry, *roi_shape))


def rocking_eta_deg(
    eta_center_deg: float, points: int = ROCKING_POINTS, step_deg: float = ROCKING_STEP_DEG
) -> np.ndarray:
    """Rocking angles centred on `eta_center_deg`."""
    return rocking_angles_deg(eta_center_deg, points, step_deg)


@dataclass(frozen=True)
class _Peaks:
    """One Gaussian per (position, phase) that scatters: centre, precision, log amplitude."""

    position: np.ndarray  # (k,) index of the beam position
    centre: np.ndarray  # (k, 3) sample-frame Q, Å⁻¹
    precision: np.ndarray  # (k, 3, 3)
    log_amplitude: np.ndarray  # (k,) expected counts at the centre (log)


class FootprintG(NamedTuple):
    """One phase's reciprocal vectors over the footprints of n beam positions."""

    g: np.ndarray
    """(n, 3) footprint-weighted mean G, sample frame, Å⁻¹ (NaN where the phase is absent)."""
    weight: np.ndarray
    """(n,) footprint-weighted strength × phase fraction (0 where absent)."""
    covariance: np.ndarray
    """(n, 3, 3) spread of G over the footprint (zero where absent)."""


def footprint_g(
    crystal: LmnoCrystal,
    x_li: float,
    points_xy_um: np.ndarray,
    eta_deg: float,
    *,
    beam: NanoBeam | None = None,
    phi_deg: float = 0.0,
    path_um: np.ndarray | None = None,
) -> dict[str, FootprintG]:
    """What the frames at these positions are drawn around: phase → `FootprintG`.

    Weights: beam × scattering strength × phase fraction over the footprint at incidence
    `eta_deg`. `path_um` (n, m, 2), if given, are the beam's offsets from each point at m
    equally long parts of the exposure (motion blur): the footprint is sampled around each.
    """
    beam = beam or NanoBeam()
    points = np.asarray(points_xy_um, dtype=float).reshape(-1, 2)
    n = points.shape[0]
    offsets, beam_weight = beam.footprint(eta_deg, phi_deg)
    if path_um is None:
        samples = points[:, None, :] + offsets[None, :, :]  # (n, s, 2)
    else:
        path = np.asarray(path_um, dtype=float).reshape(n, -1, 2)
        samples = (points[:, None, None, :] + path[:, :, None, :]
                   + offsets[None, None, :, :]).reshape(n, -1, 2)
        beam_weight = np.tile(beam_weight, path.shape[1]) / path.shape[1]
    state = crystal.maps(x_li, samples)
    normal = tilt_normal(state["tilt_x_deg"], state["tilt_y_deg"])  # (n, s, 3)
    result = {}
    for phase in PHASES:
        weight = beam_weight * state["strength"] * state[f"{phase}_fraction"]  # (n, s)
        total = weight.sum(axis=1)
        g_mean, covariance = np.full((n, 3), np.nan), np.zeros((n, 3, 3))
        active = np.flatnonzero(total > 0)
        if active.size:
            w = weight[active] / total[active, None]
            g = (2.0 * math.pi / state[f"{phase}_d400_angstrom"][active])[..., None] * (
                normal[active])
            g_mean[active] = np.einsum("ns,nsi->ni", w, g)
            spread = g - g_mean[active][:, None, :]
            covariance[active] = np.einsum("ns,nsi,nsj->nij", w, spread, spread)
        result[phase] = FootprintG(g_mean, total, covariance)
    return result


def _peaks(
    crystal: LmnoCrystal,
    x_li: float,
    points: np.ndarray,
    beam: NanoBeam,
    geometry: DiffractometerGeometry,
    eta_mean_deg: float,
    phi_deg: float,
    photons: float,
    path_um: np.ndarray | None = None,
    footprint: Mapping[str, FootprintG] | None = None,
) -> _Peaks:
    c = crystal.parameters
    b = beam.parameters
    k = geometry.k_inv_angstrom
    pixel_area = geometry.pixel_q_step_inv_angstrom**2
    if footprint is None:
        footprint = footprint_g(crystal, x_li, points, eta_mean_deg, beam=beam,
                                phi_deg=phi_deg, path_um=path_um)
    position, centre, precision, log_amplitude = [], [], [], []
    for phase in PHASES:
        active = np.flatnonzero(footprint[phase].weight > 0)
        if active.size == 0:
            continue
        g_mean = footprint[phase].g[active]
        footprint_cov = footprint[phase].covariance[active]
        total = footprint[phase].weight[active]
        g_norm = np.linalg.norm(g_mean, axis=-1)
        unit = g_mean / g_norm[:, None]
        sigma_r = np.sqrt(b["radial_resolution_sigma_inv_angstrom"] ** 2
                          + (g_norm * c["microstrain_sigma"]) ** 2)
        sigma_t = g_norm * math.radians(math.hypot(b["angular_resolution_sigma_deg"],
                                                   c["mosaic_sigma_deg"]))
        along = unit[:, :, None] * unit[:, None, :]
        intrinsic = (sigma_r**2)[:, None, None] * along + (sigma_t**2)[:, None, None] * (
            np.eye(3) - along)
        covariance = intrinsic + footprint_cov
        # Counts summed over the frame through the peak centre: 2πA·σr·σt²/√(nᵀΣn)/pixel,
        # with n the exit-beam direction, at 90° − θ from G.
        sin_theta = np.clip(g_norm / (2.0 * k), 0.0, 1.0)
        exit_spread = np.sqrt(sigma_r**2 * sin_theta**2 + sigma_t**2 * (1.0 - sin_theta**2))
        frame_counts = c["peak_frame_counts_per_photon"] * photons * total
        amplitude = frame_counts * pixel_area * exit_spread / (2.0 * math.pi * sigma_r
                                                               * sigma_t**2)
        widening = np.sqrt(np.linalg.det(intrinsic) / np.linalg.det(covariance))
        position.append(active)
        centre.append(g_mean)
        precision.append(np.linalg.inv(covariance))
        with np.errstate(divide="ignore"):  # a crystal that does not scatter: log 0 = -inf
            log_amplitude.append(np.log(amplitude * widening))
    if not position:
        empty = np.zeros((0, 3))
        return _Peaks(np.zeros(0, dtype=int), empty, np.zeros((0, 3, 3)), np.zeros(0))
    return _Peaks(np.concatenate(position), np.concatenate(centre),
                  np.concatenate(precision), np.concatenate(log_amplitude))


def expected_counts(
    crystal: LmnoCrystal,
    x_li: float,
    points_xy_um: np.ndarray,
    eta_deg_values: np.ndarray,
    geometry: DiffractometerGeometry,
    roi: DetectorRoi,
    nu_deg: float,
    delta_deg: float,
    exposure_s: float,
    flux_ph_per_s: float,
    *,
    beam: NanoBeam | None = None,
    phi_deg: float = 0.0,
    background: bool = True,
    path_um: np.ndarray | None = None,
) -> np.ndarray:
    """Noise-free counts, shape (n_points, n_eta, roi_rows, roi_cols), float64.

    `path_um` as in `frames`.
    """
    beam = beam or NanoBeam()
    points = np.asarray(points_xy_um, dtype=float).reshape(-1, 2)
    etas = np.atleast_1d(np.asarray(eta_deg_values, dtype=float))
    photons = exposure_s * flux_ph_per_s
    out = _peak_counts(crystal, x_li, points, etas, geometry, roi, nu_deg, delta_deg, photons,
                       beam, phi_deg, path_um)
    if background:
        out += beam.parameters["background_counts_per_pixel_per_photon"] * photons
    return out


def frames(
    crystal: LmnoCrystal,
    x_li: float,
    points_xy_um: np.ndarray,
    eta_deg_values: np.ndarray,
    geometry: DiffractometerGeometry,
    roi: DetectorRoi,
    nu_deg: float,
    delta_deg: float,
    exposure_s: float,
    flux_ph_per_s: float,
    rng: np.random.Generator,
    *,
    beam: NanoBeam | None = None,
    phi_deg: float = 0.0,
    path_um: np.ndarray | None = None,
    footprint: Mapping[str, FootprintG] | None = None,
) -> np.ndarray:
    """Photon counts (uint32), shape (n_points, n_eta, roi_rows, roi_cols), Poisson noise.

    `path_um` (n_points, m, 2), optional: the beam's offsets from each point at the middle
    of m equal parts of the exposure (a fly scan's motion blur). The footprint is then
    sampled around each, so the peak is drawn around the mean G over the swept area.
    `footprint`: `footprint_g` of the same points, mean eta, phi and path, if the caller
    has it already (it is the costly part of a short line).
    """
    beam = beam or NanoBeam()
    points = np.asarray(points_xy_um, dtype=float).reshape(-1, 2)
    etas = np.atleast_1d(np.asarray(eta_deg_values, dtype=float))
    photons = exposure_s * flux_ph_per_s
    peak = _peak_counts(crystal, x_li, points, etas, geometry, roi, nu_deg, delta_deg, photons,
                        beam, phi_deg, path_um, footprint).ravel()
    counts = np.zeros(peak.size, dtype=np.uint32)
    lit = np.flatnonzero(peak > _SMALLEST_EXPECTED_COUNTS)
    counts[lit] = rng.poisson(peak[lit])
    background = beam.parameters["background_counts_per_pixel_per_photon"] * photons
    if background > 0:
        hits = rng.integers(0, peak.size, rng.poisson(background * peak.size))
        pixel, photons_in_pixel = np.unique(hits, return_counts=True)
        counts[pixel] += photons_in_pixel.astype(np.uint32)
    return counts.reshape(points.shape[0], etas.size, *roi.shape)


def _peak_counts(
    crystal: LmnoCrystal,
    x_li: float,
    points: np.ndarray,
    etas: np.ndarray,
    geometry: DiffractometerGeometry,
    roi: DetectorRoi,
    nu_deg: float,
    delta_deg: float,
    photons: float,
    beam: NanoBeam,
    phi_deg: float,
    path_um: np.ndarray | None = None,
    footprint: Mapping[str, FootprintG] | None = None,
) -> np.ndarray:
    n_pixels = roi.n_rows * roi.n_cols
    out = np.zeros((points.shape[0], etas.size, n_pixels))
    peaks = _peaks(crystal, x_li, points, beam, geometry, float(etas.mean()), phi_deg, photons,
                   path_um, footprint)
    if peaks.position.size == 0:
        return out.reshape(points.shape[0], etas.size, *roi.shape)

    # Pixel monomials of the centred laboratory Q: the exponent is linear in them.
    origin, monomials = _pixel_monomials(geometry, float(nu_deg), float(delta_deg), roi)

    # Per (peak, eta): the Gaussian in the laboratory frame, centred on `origin`.
    rotation = sample_to_lab(etas, phi_deg)  # (e, 3, 3)
    centre = np.einsum("eij,kj->kei", rotation, peaks.centre) - origin  # (k, e, 3)
    precision = np.einsum("eia,kab,ejb->keij", rotation, peaks.precision, rotation)
    pc = np.einsum("keij,kej->kei", precision, centre)
    constant = np.einsum("kei,kei->ke", centre, pc)
    coefficients = -0.5 * np.concatenate(
        (precision[..., [0, 1, 2], [0, 1, 2]], precision[..., [0, 0, 1], [1, 2, 2]],
         -2.0 * pc, constant[..., None]),
        axis=-1,
    )
    coefficients[..., 9] += peaks.log_amplitude[:, None]
    coefficients = coefficients.reshape(-1, 10)  # row k·e + eta index

    # Skip (peak, eta) pairs that stay negligible everywhere in the ROI, judged on every
    # `_COARSE_STEP`-th pixel and the ROI's edges; the margin covers the peak falling
    # between sampled pixels (see `_COARSE_MARGIN`).
    coarse = _coarse_pixels(roi)
    reach = (coefficients @ monomials[:, coarse]).max(axis=1)
    needed = reach > _EXPONENT_FLOOR - _COARSE_MARGIN
    target = (peaks.position[:, None] * etas.size + np.arange(etas.size)).ravel()
    flat_out = out.reshape(-1, n_pixels)
    # A position appears once per phase: add phase by phase so targets never repeat.
    bounds = np.append(np.flatnonzero(np.diff(peaks.position) <= 0) + 1, peaks.position.size)
    start = 0
    for end in bounds:
        rows = start * etas.size + np.flatnonzero(needed[start * etas.size:end * etas.size])
        for chunk in np.array_split(rows, max(1, rows.size // _CHUNK_ROWS)):
            exponent = coefficients[chunk] @ monomials
            np.maximum(exponent, _EXPONENT_FLOOR, out=exponent)
            values = np.exp(exponent)
            np.putmask(values, exponent <= _EXPONENT_FLOOR, 0.0)
            flat_out[target[chunk]] += values
        start = end
    return out.reshape(points.shape[0], etas.size, *roi.shape)


@functools.lru_cache(maxsize=16)
def _pixel_monomials(
    geometry: DiffractometerGeometry, nu_deg: float, delta_deg: float, roi: DetectorRoi
) -> tuple[np.ndarray, np.ndarray]:
    """(origin, (10, pixels) monomials) of the ROI's centred laboratory Q; kept for the
    latest few settings (a fly scan asks for the same ones line after line). Read-only."""
    q_lab = lab_q(geometry, nu_deg, delta_deg, roi.rows, roi.cols).reshape(-1, 3)
    origin = q_lab.mean(axis=0)
    x, y, z = (q_lab - origin).T
    monomials = np.stack((x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z,
                          x, y, z, np.ones_like(x)))  # (10, pixels)
    origin.flags.writeable = False
    monomials.flags.writeable = False
    return origin, monomials


def _coarse_pixels(roi: DetectorRoi) -> np.ndarray:
    """Flat indices of every `_COARSE_STEP`-th ROI pixel, edges included."""
    rows = np.union1d(np.arange(0, roi.n_rows, _COARSE_STEP), [roi.n_rows - 1])
    cols = np.union1d(np.arange(0, roi.n_cols, _COARSE_STEP), [roi.n_cols - 1])
    return (rows[:, None] * roi.n_cols + cols[None, :]).ravel()
