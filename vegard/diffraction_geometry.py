"""Geometry of an ID01-style four-circle diffractometer with an area detector (pure numpy).

Shared by the nanodiffraction simulator (which must place Bragg peaks on detector pixels) and
the SXDM analysis (which must turn pixels back into reciprocal space), so that both sides use
one set of conventions. They are those of xrayutilities, so a test can check this module
against `xrayutilities.HXRD(...).Ang2Q.area`.

Conventions
-----------
Laboratory frame: x along the incident beam, z up, y = z × x (to the left, looking
downstream). Angles in degrees, lengths of reciprocal vectors in Å⁻¹ with |Q| = 2π/d.

Sample circles (outer → inner): eta about −y, phi about −z. xrayutilities:
``QConversion(['y-', 'z-'], ['z-', 'y-'], [1, 0, 0])``. At eta = phi = 0 the sample frame
coincides with the laboratory frame; the sample's surface normal is +z, so a positive eta
raises the downstream edge of the sample: eta is the incidence angle on a flat sample.

Detector circles (outer → inner): nu about −z, delta about −y. At nu = delta = 0 the arm
points along +x; positive delta moves the detector up, positive nu toward −y.

Detector: a flat pixel array at `distance_m` along the arm, perpendicular to it. The pixel
(`center_row`, `center_col`) is where the direct beam lands at delta = nu = 0. At zero
detector angles the row index grows downwards (−z) and the column index grows along −y
(to the right, looking downstream at the detector). In xrayutilities this is
``Ang2Q.init_area('z-', 'y-', cch1=center_row, cch2=center_col, Nch1=rows, Nch2=cols,
pwidth1=pixel_size_m, pwidth2=pixel_size_m, distance=distance_m)``: channel 1 is the row,
channel 2 the column. (ID01's own scripts often use 'y+'; that is the mirror image, columns
growing toward +y. This module uses −y.)

Q vectors are returned in the sample frame: the laboratory Q = k_f − k_i rotated back by the
sample circles, i.e. the frame attached to the sample that equals the laboratory frame at
eta = phi = 0. Symmetric reflection: Q along the sample's +z needs nu = 0, phi = 0,
eta = θ and delta = 2θ, and the Bragg peak then lands on (`center_row`, `center_col`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HC_EV_ANGSTROM = 12398.419843320026
"""h·c in eV·Å (CODATA 2018, the value scipy.constants gives)."""

PixelIndex = slice | np.ndarray | list[int] | None


@dataclass(frozen=True, kw_only=True)
class DiffractometerGeometry:
    """Detector distance, pixel layout and photon energy of the diffractometer."""

    distance_m: float
    pixel_size_m: float = 55e-6
    pixels: tuple[int, int] = (512, 512)
    center_row: float
    center_col: float
    energy_ev: float = 10000.0

    @property
    def wavelength_angstrom(self) -> float:
        return HC_EV_ANGSTROM / self.energy_ev

    @property
    def k_inv_angstrom(self) -> float:
        """|k| = 2π/λ, the radius of the Ewald sphere."""
        return 2.0 * math.pi / self.wavelength_angstrom

    @property
    def pixel_q_step_inv_angstrom(self) -> float:
        """Reciprocal-space size of one pixel near the detector centre (k·pixel/distance)."""
        return self.k_inv_angstrom * self.pixel_size_m / self.distance_m


@dataclass(frozen=True)
class DetectorRoi:
    """A rectangular region of interest on the detector, in pixel indices."""

    row_start: int
    col_start: int
    n_rows: int
    n_cols: int

    @property
    def rows(self) -> slice:
        return slice(self.row_start, self.row_start + self.n_rows)

    @property
    def cols(self) -> slice:
        return slice(self.col_start, self.col_start + self.n_cols)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_cols)


def centred_roi(geometry: DiffractometerGeometry, rows: int, cols: int) -> DetectorRoi:
    """A `rows` × `cols` ROI centred on the direct-beam pixel (clipped to the detector): where
    a symmetric setting puts the Bragg peak."""
    row0 = int(np.clip(round(geometry.center_row - (rows - 1) / 2), 0, geometry.pixels[0] - rows))
    col0 = int(np.clip(round(geometry.center_col - (cols - 1) / 2), 0, geometry.pixels[1] - cols))
    return DetectorRoi(row0, col0, rows, cols)


def rocking_angles_deg(center_deg: float, points: int, step_deg: float) -> np.ndarray:
    """`points` angles `step_deg` apart, centred on `center_deg`."""
    return center_deg + step_deg * (np.arange(points) - (points - 1) / 2.0)


def rotation_minus_y(angle_deg: np.ndarray | float) -> np.ndarray:
    """Right-handed rotation about −y by the angle(s); shape (..., 3, 3)."""
    a = np.radians(np.asarray(angle_deg, dtype=float))
    c, s = np.cos(a), np.sin(a)
    zero, one = np.zeros_like(a), np.ones_like(a)
    return np.stack(
        [np.stack([c, zero, -s], -1), np.stack([zero, one, zero], -1), np.stack([s, zero, c], -1)],
        axis=-2,
    )


def rotation_minus_z(angle_deg: np.ndarray | float) -> np.ndarray:
    """Right-handed rotation about −z by the angle(s); shape (..., 3, 3)."""
    a = np.radians(np.asarray(angle_deg, dtype=float))
    c, s = np.cos(a), np.sin(a)
    zero, one = np.zeros_like(a), np.ones_like(a)
    return np.stack(
        [np.stack([c, s, zero], -1), np.stack([-s, c, zero], -1), np.stack([zero, zero, one], -1)],
        axis=-2,
    )


def sample_to_lab(eta_deg: np.ndarray | float, phi_deg: float = 0.0) -> np.ndarray:
    """Matrices taking sample-frame vectors to the laboratory frame; shape (..., 3, 3)."""
    return rotation_minus_y(eta_deg) @ rotation_minus_z(phi_deg)


def detector_to_lab(nu_deg: float, delta_deg: float) -> np.ndarray:
    """Matrix taking detector-arm vectors (arm along +x at zero angles) to the lab frame."""
    return rotation_minus_z(nu_deg) @ rotation_minus_y(delta_deg)


def _indices(index: PixelIndex, count: int) -> np.ndarray:
    if index is None:
        return np.arange(count)
    if isinstance(index, slice):
        return np.arange(count)[index]
    return np.asarray(index)


def pixel_positions_m(
    geometry: DiffractometerGeometry, rows: PixelIndex = None, cols: PixelIndex = None
) -> np.ndarray:
    """Pixel centres in the detector-arm frame (arm along +x), metres; shape (n_rows, n_cols, 3).

    Row index grows along −z, column index along −y (see the module docstring).
    """
    r = _indices(rows, geometry.pixels[0]).astype(float)
    c = _indices(cols, geometry.pixels[1]).astype(float)
    down_m = (r - geometry.center_row) * geometry.pixel_size_m
    right_m = (c - geometry.center_col) * geometry.pixel_size_m
    position = np.empty((r.size, c.size, 3))
    position[..., 0] = geometry.distance_m
    position[..., 1] = -right_m[None, :]
    position[..., 2] = -down_m[:, None]
    return position


def lab_q(
    geometry: DiffractometerGeometry,
    nu_deg: float,
    delta_deg: float,
    rows: PixelIndex = None,
    cols: PixelIndex = None,
) -> np.ndarray:
    """Q = k_f − k_i of each pixel in the laboratory frame, Å⁻¹; shape (n_rows, n_cols, 3)."""
    position = pixel_positions_m(geometry, rows, cols) @ detector_to_lab(nu_deg, delta_deg).T
    k = geometry.k_inv_angstrom
    q = k * position / np.linalg.norm(position, axis=-1, keepdims=True)
    q[..., 0] -= k
    return q


def pixel_q(
    geometry: DiffractometerGeometry,
    eta_deg: np.ndarray | float,
    phi_deg: float,
    nu_deg: float,
    delta_deg: float,
    rows: PixelIndex = None,
    cols: PixelIndex = None,
) -> np.ndarray:
    """Sample-frame Q of each pixel (Å⁻¹, 2π/d convention) for one or several eta values.

    `rows` and `cols` are index arrays or slices (a region of interest), both default to the
    whole detector. Shape (n_rows, n_cols, 3) for a scalar eta, else (*eta.shape, n_rows,
    n_cols, 3).
    """
    q_lab = lab_q(geometry, nu_deg, delta_deg, rows, cols)
    to_lab = sample_to_lab(eta_deg, phi_deg)
    # Sample-frame vector = to_labᵀ · q_lab, for every eta and pixel.
    return np.einsum("...ji,rcj->...rci", to_lab, q_lab)


def bragg_angles(d_angstrom: float | np.ndarray, energy_ev: float) -> float | np.ndarray:
    """Bragg angle θ (degrees) of lattice planes with spacing d at this photon energy."""
    wavelength = HC_EV_ANGSTROM / energy_ev
    return np.degrees(np.arcsin(wavelength / (2.0 * np.asarray(d_angstrom))))


def detector_angles_for_specular(d_angstrom: float, energy_ev: float) -> tuple[float, float]:
    """(eta, delta) in degrees that bring Q along the sample's +z into the Bragg condition.

    With nu = phi = 0 this is eta = θ, delta = 2θ, and the peak lands on the pixel
    (`center_row`, `center_col`) of any geometry.
    """
    theta = float(bragg_angles(d_angstrom, energy_ev))
    return theta, 2.0 * theta


def bragg_eta_deg(
    geometry: DiffractometerGeometry,
    q_sample: np.ndarray,
    phi_deg: float = 0.0,
    eta_near_deg: float | None = None,
) -> float:
    """The eta at which a sample-frame reciprocal vector meets the Ewald sphere.

    Of the two solutions the one nearer `eta_near_deg` is returned (default: the Bragg
    angle of |q|, i.e. the low-incidence branch of a near-specular reflection).
    """
    q = rotation_minus_z(phi_deg) @ np.asarray(q_sample, dtype=float)
    q_norm = float(np.linalg.norm(q))
    k = geometry.k_inv_angstrom
    # Lab x of R_{-y}(eta)·q is qx·cos(eta) − qz·sin(eta) = A·cos(eta + beta); the Ewald
    # condition |k_i + Q| = k needs it to equal −|Q|²/2k.
    amplitude = math.hypot(q[0], q[2])
    beta = math.atan2(q[2], q[0])
    ratio = -(q_norm**2) / (2.0 * k * amplitude)
    if abs(ratio) > 1.0:
        raise ValueError("this reciprocal vector cannot reach the Ewald sphere by rotating eta")
    base = math.acos(ratio)
    candidates = np.degrees(np.array([base - beta, -base - beta]))
    candidates = (candidates + 180.0) % 360.0 - 180.0
    if eta_near_deg is None:
        eta_near_deg = float(bragg_angles(2.0 * math.pi / q_norm, geometry.energy_ev))
    return float(candidates[np.argmin(np.abs(candidates - eta_near_deg))])


def pixel_of_q(
    geometry: DiffractometerGeometry,
    q_sample: np.ndarray,
    eta_deg: float,
    phi_deg: float,
    nu_deg: float,
    delta_deg: float,
) -> tuple[float, float]:
    """(row, col), fractional, where the ray k_i + Q hits the detector plane.

    On the Ewald sphere (eta from `bragg_eta_deg`) this is where the Bragg peak lands.
    """
    q_lab = sample_to_lab(eta_deg, phi_deg) @ np.asarray(q_sample, dtype=float)
    ray = q_lab + np.array([geometry.k_inv_angstrom, 0.0, 0.0])
    in_arm = detector_to_lab(nu_deg, delta_deg).T @ ray
    if in_arm[0] <= 0:
        raise ValueError("the ray points away from the detector")
    scale = geometry.distance_m / in_arm[0]
    row = geometry.center_row - in_arm[2] * scale / geometry.pixel_size_m
    col = geometry.center_col - in_arm[1] * scale / geometry.pixel_size_m
    return float(row), float(col)


def tilt_altitude_azimuth_deg(
    vectors: np.ndarray, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Angle of each vector from `mean` and its direction around `mean`, in degrees.

    The one tilt convention of the simulator's truth and the analysis: the azimuth's
    reference axis is sample +x projected perpendicular to the mean, the second axis
    mean × that, so for a mean near +z a tilt toward +x is 0° and toward +y is 90°.
    """
    mean = np.asarray(mean, dtype=float)
    mean = mean / np.linalg.norm(mean)
    e1 = np.array([1.0, 0.0, 0.0]) - mean[0] * mean
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(mean, e1)
    vectors = np.asarray(vectors, dtype=float)
    unit = vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
    altitude = np.degrees(np.arccos(np.clip(unit @ mean, -1.0, 1.0)))
    azimuth = np.degrees(np.arctan2(unit @ e2, unit @ e1))
    return altitude, azimuth
