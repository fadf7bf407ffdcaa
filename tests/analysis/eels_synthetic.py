"""Synthetic STEM-EELS line scans with known truth, for the EELS analysis tests.

Vibrational pass (0.4 meV/channel): a ZLP (Gaussian of 8 meV FWHM plus a Lorentzian wing of
1 % of its area — a power-law tail ∝ E⁻² at the losses), integrated over each channel and
moved by a per-pixel energy drift; the paper's seven Voigt peaks on top (three aloof
"polaritonic" ones, four "phononic" ones including the LDO peak), whose LDO centre follows a
boundary profile; Poisson counts. Doses follow the project's assumption: ≈3·10⁴ counts in the
LDO peak of a grain pixel. Valence and core-loss passes are simple enough to know t/λ and
Li:Co exactly: Poisson plural scattering of one plasmon shape, and two edges on a power law.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, voigt_profile

DISPERSION_MEV = 0.4
ENERGY_MEV = -40.0 + DISPERSION_MEV * np.arange(400)  # −40 … 119.6 meV
ZLP_FWHM_MEV = 8.0
ZLP_TAIL_FRACTION = 0.01
ZLP_COUNTS = 7.0e7

ALOOF = (  # name, relative area, centre, σ, γ — the paper's aloof initial guesses
    ("polariton_34", 1.5, 34.0, 4.0, 1.0),
    ("polariton_54", 0.22, 54.0, 5.0, 1.0),
    ("polariton_74", 1.8, 74.0, 5.5, 1.0),
)
PHONON = (  # relative to the LDO area; the 81 meV σ inside the paper's bound (5.8, not 7)
    ("phonon_41", 6.1 / 3.2, 41.0, 5.5, 0.75),
    ("ldo", 1.0, 49.0, 6.0, 0.75),
    ("phonon_65", 14.5 / 3.2, 65.0, 4.5, 0.75),
    ("phonon_81", 6.9 / 3.2, 81.0, 5.8, 0.75),
)
LDO_COUNTS = 3.0e4
POLARITON_COUNTS = 6.0e4  # sum of the three aloof areas on the specimen
ALOOF_POLARITON_COUNTS = 1.2e5  # in vacuum, 65 nm out


def zlp_counts(energy_mev: np.ndarray, total: np.ndarray, shift_mev: np.ndarray) -> np.ndarray:
    """(M, N) ZLP counts per channel, exactly integrated over each channel."""
    sigma = ZLP_FWHM_MEV / (2 * np.sqrt(2 * np.log(2)))
    hwhm = ZLP_FWHM_MEV / 2
    edges = np.r_[energy_mev - DISPERSION_MEV / 2, energy_mev[-1] + DISPERSION_MEV / 2]
    at = edges[None, :] - np.asarray(shift_mev, float)[:, None]
    cdf = (1 - ZLP_TAIL_FRACTION) * ndtr(at / sigma) + ZLP_TAIL_FRACTION * (
        0.5 + np.arctan(at / hwhm) / np.pi)
    return np.asarray(total, float)[:, None] * np.diff(cdf, axis=1)


def peak_counts(energy_mev, peaks, areas, centres=None, shift_mev=0.0) -> np.ndarray:
    """(M, N) counts per channel of Voigt peaks; areas (M, K) in counts."""
    areas = np.atleast_2d(areas)
    e = energy_mev[None, :] - np.reshape(shift_mev, (-1, 1))
    out = np.zeros((areas.shape[0], energy_mev.size))
    for k, (_, _, centre, sigma, gamma) in enumerate(peaks):
        c = centre if centres is None or centres[k] is None else np.reshape(centres[k], (-1, 1))
        out += areas[:, k, None] * voigt_profile(e - c, sigma, gamma) * DISPERSION_MEV
    return out


@dataclass(frozen=True)
class LineScan:
    energy_mev: np.ndarray
    spectra: np.ndarray  # (M, N) counts
    aloof_spectrum: np.ndarray  # (N,)
    positions_nm: np.ndarray
    ldo_centre_mev: np.ndarray  # truth per pixel
    boundary_weight: np.ndarray
    shift_mev: np.ndarray  # energy drift per pixel
    expected: np.ndarray  # noiseless spectra


def boundary_weight(positions_nm, position_nm, width_nm, shape="top_hat") -> np.ndarray:
    x = np.asarray(positions_nm, float) - position_nm
    if shape == "gaussian":  # FWHM = width
        return np.exp(-4 * np.log(2) * x**2 / width_nm**2)
    return (np.abs(x) <= width_nm / 2).astype(float)


def line_scan(
    seed: int = 0,
    pixels: int = 41,
    step_nm: float = 0.5,
    ldo_bulk_mev: float = 48.5,
    ldo_shift_mev: float = 1.8,
    boundary_width_nm: float = 3.0,
    shape: str = "top_hat",
    dose: float = 1.0,
    drift_mev: float = 0.3,
    noise: bool = True,
) -> LineScan:
    """A line across a boundary at x = 0, with the LDO centre ldo_bulk + shift·g(x)."""
    rng = np.random.default_rng(seed)
    x = (np.arange(pixels) - (pixels - 1) / 2) * step_nm
    g = boundary_weight(x, 0.0, boundary_width_nm, shape)
    centre = ldo_bulk_mev + ldo_shift_mev * g
    shift = rng.uniform(-drift_mev, drift_mev, pixels)
    e = ENERGY_MEV
    aloof_rel = np.array([p[1] for p in ALOOF])
    phonon_rel = np.array([p[1] for p in PHONON])
    pol = dose * POLARITON_COUNTS * aloof_rel / aloof_rel.sum() * np.ones((pixels, 1))
    pol[:, 0] *= np.where(x < 0, 1.0, 0.6)  # the 34 meV polariton depends on orientation
    ph = dose * LDO_COUNTS * phonon_rel * np.ones((pixels, 1))
    ph *= (1.0 + 0.2 * g)[:, None]  # stronger phonon scattering on the boundary
    zlp = zlp_counts(e, np.full(pixels, dose * ZLP_COUNTS), shift)
    expected = zlp + peak_counts(e, ALOOF, pol, shift_mev=shift) + peak_counts(
        e, PHONON, ph, centres=[None, centre, None, None], shift_mev=shift)
    aloof_expected = zlp_counts(e, np.array([dose * ZLP_COUNTS * 1.6]), np.zeros(1))[0] + \
        peak_counts(e, ALOOF, dose * ALOOF_POLARITON_COUNTS * aloof_rel / aloof_rel.sum())[0]
    if noise:
        spectra = rng.poisson(expected).astype(float)
        aloof = rng.poisson(aloof_expected).astype(float)
    else:
        spectra, aloof = expected.copy(), aloof_expected.copy()
    return LineScan(e, spectra, aloof, x, centre, g, shift, expected)


# -- valence and core loss -------------------------------------------------------------------

VALENCE_EV = -2.0 + 0.05 * np.arange(4000)  # −2 … 198 eV
CORE_EV = 30.0 + 0.1 * np.arange(600)  # 30 … 90 eV


def valence_spectra(t_over_lambda: np.ndarray, seed: int = 0, electrons: float = 1e7):
    """Valence-loss spectra with a known t/λ: Poisson orders of one Drude plasmon (24 eV),
    the n-th order weighted τⁿe^(−τ)/n!, the zero loss a narrow Gaussian at 0 eV."""
    rng = np.random.default_rng(seed)
    tau = np.asarray(t_over_lambda, float)
    e = VALENCE_EV
    zero = round(float(-e[0] / (e[1] - e[0])))
    loss_e = e[zero:]
    loss = np.where(loss_e > 3.0, loss_e * 18.0 * 24.0**2
                    / ((loss_e**2 - 24.0**2) ** 2 + (loss_e * 18.0) ** 2), 0.0)
    loss /= loss.sum()
    zlp = np.exp(-0.5 * (e / 0.05) ** 2)
    zlp /= zlp.sum()
    out = zlp[None, :] * np.ones((tau.size, 1))
    order = np.zeros(loss.size)
    order[0] = 1.0
    factorial = 1.0
    for n in range(1, 12):
        order = np.convolve(order, loss)[: loss.size]
        factorial *= n
        out[:, zero:] += (tau[:, None] ** n / factorial) * order[None, :]
    out *= electrons * np.exp(-tau)[:, None]
    return rng.poisson(out).astype(float), out


def core_spectra(li_to_co: np.ndarray, seed: int = 0, scale: float = 4e4,
                 li_tail: bool = False):
    """Core-loss spectra: a power law A·E⁻³ plus a Li K edge (55–59 eV, optionally with a
    tail into the Co window) ∝ Li:Co and a Co M2,3 edge (59.5–68 eV) of fixed strength.
    Returns (noisy, expected, κ) with κ the Li counts in the Co window per Li-window count."""
    rng = np.random.default_rng(seed)
    e = CORE_EV
    background = scale * 300.0 * (e / 40.0) ** -3.0
    li = np.where((e >= 55.0) & (e <= 59.0), 1.0 - 0.5 * (e - 55.0) / 4.0, 0.0)
    if li_tail:
        li = li + np.where(e > 59.0, 0.5 * (59.0 / np.maximum(e, 1.0)) ** 6, 0.0)
    co = np.where((e >= 59.5) & (e <= 68.0), np.sin(np.pi * (e - 59.5) / 8.5), 0.0)
    li_window = (e >= 55.0) & (e <= 59.0)
    co_window = (e >= 62.0) & (e <= 68.0)
    kappa = li[co_window].sum() / li[li_window].sum()
    ratio = np.asarray(li_to_co, float)
    expected = background + scale * (ratio[:, None] * li * 2.0 + co[None, :])
    return rng.poisson(expected).astype(float), expected, kappa
