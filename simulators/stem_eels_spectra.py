"""Electron energy-loss spectra of a monochromated 60 kV STEM over a LiCoO2 line, from the
zero-loss peak through the vibrational, valence and core losses, on any energy axis.

One physical spectrum is formed and integrated over the channels of whatever axis the
spectrometer is set to, so the three passes of the study (0.4 meV/ch vibrational,
50 meV/ch valence, 100 meV/ch core loss) are the same physics seen at three dispersions.
Every component is an amplitude per pixel times a fixed shape whose cumulative integral is
tabulated once; counts in a channel are differences of that table at the channel edges,
shifted per pixel by the energy drift. That is exact channel integration at any dispersion
and vectorised over pixels (no per-pixel loop).

Per pixel, with N electrons reaching the spectrometer and τ = t/λ (inelastic mean free path
of valence and core losses):

- Zero-loss peak (ZLP): N·e^(−τ)·(1 − p_vib), a Gaussian of the monochromated resolution
  FWHM R = √(slit² + `mono_intrinsic_fwhm_mev`²) plus a Lorentzian wing of the same FWHM
  carrying `zlp_tail_fraction` of the area (the power-law tail a two-window background fit
  removes). R ≈ 8.0 meV at the power-on slit.
- Vibrational losses, N·e^(−τ)·p_k·Voigt_k: Voigt profiles as the paper fits them. Aloof
  ("polaritonic") peaks at 34, 54, 74 meV with probabilities `polariton_loss_probability_at_65nm`
  (summed, shared 1.5 : 0.22 : 1.8 as the paper's initial amplitudes) times the K0 decay of
  each peak's own frequency, in vacuum and on the specimen; impact ("phononic") peaks at
  41, 49 (LDO), 65, 81 meV on the specimen only, ∝ τ and the grain contrast, shared
  1.91 : 1 : 4.53 : 2.16 as the paper's initial amplitudes; the LDO peak at the specimen's
  local centre, its area ∝ Li:Co relative to the bulk (fewer Li, fewer Li oscillators).
  Gaussian widths are the paper's initial σ at 8 meV resolution, de-convolved to intrinsic
  widths and re-convolved with the actual resolution (the 81 meV peak: σ 5.8 meV, inside the
  paper's bound of 6 where its initial guess, 7, is not). Each loss peak has an energy-gain
  twin at −E, weaker by exp(−E/kT) (detailed balance at `specimen_temperature_k`).
- Valence losses: a Drude plasmon (`plasmon_energy_ev`, `plasmon_width_ev`) above the band
  gap, weighted by the collected angular range ln(1 + (β/θ_E)²), normalised to a
  single-scattering distribution s; plural scattering by Poisson statistics,
  N·e^(−τ)·Σ τⁿ/n!·s⁽ⁿ⁾ (n ≤ 8), so the zero-loss fraction is exactly e^(−τ) and the
  log-ratio t/λ = ln(I_total/I_0) holds (to the counts beyond the axis).
- Core losses: Li K (onset 55 eV, a near-edge peak ≈58 eV, hydrogenic E⁻³ tail) and Co M2,3
  (delayed, onset 59.5 eV, maximum ≈64 eV) as fractions of the single scattering:
  f_Li = `li_k_inelastic_fraction`·(Li:Co), f_Co = `co_m23_inelastic_fraction` (one Co per
  formula unit throughout). Their background is the plasmon tail, close to a power law. So
  I_Li/I_Co over fixed windows = (Li:Co)·k with k = f_Li,1·∫σ_Li / f_Co·∫σ_Co a constant of
  the windows: Li:Co relative to the bulk is I_Li/I_Co relative to the bulk, independent of
  thickness. Plural scattering of the edges (edge + plasmon, ≥20 eV above onset) is left out.
- Counting: Poisson noise, then clipping at `camera_saturation_counts` per channel per
  exposure (an integrating camera's full well, summed over the rows of the projection).
  A spectrum summed over n frames has n times one frame's expected counts, Poisson noise
  on the sum, and clips at n × the saturation: each frame fills its own well, which is
  how many frames of a short exposure carry more counts than one long one could.

Dose assumption (the paper gives none): at the defaults, 20 pA for a 1 s exposure
(1.25·10⁸ electrons) on grain A near the boundary (t/λ ≈ 0.5) give ≈3·10⁴ counts in the LDO
peak, with the ZLP maximum (≈3.3·10⁶ per 0.4 meV channel) below the saturation (8·10⁶); in
vacuum the ZLP maximum is ≈5.8·10⁶, so exposures much beyond 1 s saturate the aloof ZLP.

Losses above 200 eV are not modelled (the O K edge at 532 eV is outside all three passes).
The resolution does not broaden the plasmon and the edges (their widths are ≥0.3 eV).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, ndtr, voigt_profile

from .parameters import Parameter, model_values
from .stem_eels_specimen import (
    ELECTRON_REST_ENERGY_KEV,
    FWHM_PER_SIGMA,
    beam_beta,
    dipole_decay,
)

BOLTZMANN_MEV_PER_K = 8.617333262e-2
REFERENCE_RESOLUTION_MEV = 8.0
"""The resolution at which the peak widths of the table are given (the paper's 8 meV)."""
VIBRATIONAL_GRID_MEV = (-600.0, 600.0, 0.05)
"""Where the vibrational peak shapes are tabulated: first, last, step."""
LOSS_GRID_MEV = (0.0, 200_000.0, 5.0)
"""Where valence and core-loss shapes are tabulated."""
PLURAL_ORDERS = 8
"""Plural scattering orders kept (the rest is < 0.4 % of the electrons at t/λ = 3)."""
LDO_TEMPLATE_CENTRE_MEV = 49.0
"""The LDO shape is tabulated here and shifted to each pixel's centre."""
LI_K_ONSET_EV = 55.0
CO_M23_ONSET_EV = 59.5


@dataclass(frozen=True)
class VoigtPeak:
    """One vibrational peak: centre, Gaussian σ at 8 meV resolution, Lorentzian HWHM γ,
    and its share of its group's probability."""

    name: str
    centre_mev: float
    sigma_at_reference_mev: float
    gamma_mev: float
    share: float

    def sigma_mev(self, resolution_fwhm_mev: float) -> float:
        """Gaussian σ seen at resolution R: the intrinsic width convolved with R."""
        reference = REFERENCE_RESOLUTION_MEV / FWHM_PER_SIGMA
        intrinsic_squared = self.sigma_at_reference_mev**2 - reference**2
        return math.sqrt(intrinsic_squared + (resolution_fwhm_mev / FWHM_PER_SIGMA) ** 2)


ALOOF_PEAKS = (
    VoigtPeak("polariton_34", 34.0, 4.0, 1.0, 1.5),
    VoigtPeak("polariton_54", 54.0, 5.0, 1.0, 0.22),
    VoigtPeak("polariton_74", 74.0, 5.5, 1.0, 1.8),
)
"""The aloof peaks; shares are the paper's initial amplitudes (1.5e5, 2.2e4, 1.8e5)."""
PHONON_PEAKS = (
    VoigtPeak("phonon_41", 41.0, 5.5, 0.75, 6.1 / 3.2),
    VoigtPeak("phonon_65", 65.0, 4.5, 0.75, 14.5 / 3.2),
    VoigtPeak("phonon_81", 81.0, 5.8, 0.75, 6.9 / 3.2),
)
"""The impact peaks other than the LDO one, shares relative to it (paper's initial amplitudes)."""
LDO_PEAK = VoigtPeak("ldo", LDO_TEMPLATE_CENTRE_MEV, 6.0, 0.75, 1.0)
"""The LDO peak (centre from the specimen)."""


@dataclass(frozen=True)
class EnergyAxis:
    """Channel i is centred on `offset_mev` + i·`dispersion_mev_per_channel`."""

    offset_mev: float
    dispersion_mev_per_channel: float
    channels: int

    def centres_mev(self) -> np.ndarray:
        return self.offset_mev + self.dispersion_mev_per_channel * np.arange(self.channels)

    def edges_mev(self) -> np.ndarray:
        """The channels' boundaries (channels + 1 values)."""
        steps = np.arange(self.channels + 1) - 0.5
        return self.offset_mev + self.dispersion_mev_per_channel * steps


@dataclass(frozen=True)
class PixelConditions:
    """What the spectrum of each pixel depends on (1-D arrays, one value per pixel)."""

    electrons: np.ndarray
    """Electrons reaching the spectrometer during the exposure."""
    thickness_t_over_lambda: np.ndarray
    impact_parameter_nm: np.ndarray
    """Distance to the vacuum edge in vacuum, 0 on the specimen."""
    in_vacuum: np.ndarray
    grain_contrast: np.ndarray
    ldo_centre_mev: np.ndarray
    lithium_relative: np.ndarray
    """Li:Co relative to the bulk value (scales the LDO peak)."""
    li_to_co: np.ndarray
    energy_shift_mev: np.ndarray
    """Where the ZLP sits (energy drift): every loss moves with it."""

    @property
    def pixels(self) -> int:
        return int(np.asarray(self.electrons).size)


class SpectrumFormation:
    """The spectrum physics: shapes tabulated once, per-pixel amplitudes, counting."""

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("beam_energy_kev", 60.0, "keV", 20.0, 300.0,
                  "accelerating voltage (sets the beam speed in the K0 decay and θ_E)"),
        Parameter("collection_semiangle_mrad", 25.0, "mrad", 1.0, 200.0,
                  "spectrometer collection semi-angle β"),
        Parameter("specimen_temperature_k", 295.0, "K", 1.0, 1500.0,
                  "specimen temperature (energy-gain peaks weaker by exp(−E/kT))"),
        Parameter("mono_intrinsic_fwhm_mev", 2.5, "meV", 0.0, 50.0,
                  "ZLP FWHM with the slit closed to zero (source image, aberrations)"),
        Parameter("zlp_tail_fraction", 0.01, "1", 0.0, 0.2,
                  "share of the ZLP area in its Lorentzian wing"),
        Parameter("ldo_loss_probability_per_t_over_lambda", 8.0e-4, "1", 0.0, 0.05,
                  "LDO phonon loss probability per electron per unit t/λ (bulk Li:Co)"),
        Parameter("polariton_loss_probability_at_65nm", 1.0e-3, "1", 0.0, 0.05,
                  "aloof loss probability of the three polariton peaks together, 65 nm out"),
        Parameter("plasmon_energy_ev", 24.0, "eV", 5.0, 60.0,
                  "Drude plasmon energy of LiCoO2"),
        Parameter("plasmon_width_ev", 18.0, "eV", 0.5, 50.0,
                  "Drude plasmon damping (FWHM of the loss function)"),
        Parameter("band_gap_ev", 2.7, "eV", 0.0, 10.0,
                  "onset of the valence losses"),
        Parameter("li_k_inelastic_fraction", 1.0e-2, "1", 0.0, 0.1,
                  "share of inelastic events that are Li K losses, at Li:Co = 1"),
        Parameter("co_m23_inelastic_fraction", 2.0e-2, "1", 0.0, 0.1,
                  "share of inelastic events that are Co M2,3 losses"),
        Parameter("camera_saturation_counts", 8.0e6, "counts", 1.0, 1.6e7,
                  "counts per channel per exposure at which the camera saturates "
                  "(< 2²⁴: float32 blocks carry counts exactly)"),
    )

    def __init__(self, parameters: Mapping[str, float] | None = None) -> None:
        self.parameters: dict[str, float] = model_values(
            self.PARAMETERS, parameters, "stem spectra")
        self._loss_grid = np.arange(LOSS_GRID_MEV[0], LOSS_GRID_MEV[1] + LOSS_GRID_MEV[2] / 2,
                                    LOSS_GRID_MEV[2])
        self._plural_cdfs, self._li_cdf, self._co_cdf = self._loss_tables()
        self._vibrational_cache: dict[float, dict[str, np.ndarray]] = {}

    # ------------------------------------------------------------------ resolution

    def zlp_fwhm_mev(self, slit_mev: float) -> float:
        """ZLP FWHM the monochromator gives for a slit passing `slit_mev`."""
        return math.hypot(slit_mev, self.parameters["mono_intrinsic_fwhm_mev"])

    # ------------------------------------------------------------------ probabilities

    def polariton_probabilities(
        self, impact_parameter_nm: ArrayLike, cutoff_nm: float
    ) -> np.ndarray:
        """(pixels, 3): aloof loss probability of each polariton peak, K0-decayed."""
        b = np.atleast_1d(np.asarray(impact_parameter_nm, dtype=float))
        total = self.parameters["polariton_loss_probability_at_65nm"]
        shares = np.array([peak.share for peak in ALOOF_PEAKS])
        decay = np.stack([
            dipole_decay(b, peak.centre_mev, self.parameters["beam_energy_kev"], cutoff_nm)
            for peak in ALOOF_PEAKS], axis=-1)
        return total * shares / shares.sum() * decay

    def ldo_probability(self, conditions: PixelConditions) -> np.ndarray:
        """LDO loss probability per electron (zero in vacuum)."""
        c = conditions
        per_tau = self.parameters["ldo_loss_probability_per_t_over_lambda"]
        on = ~np.asarray(c.in_vacuum, dtype=bool)
        return on * per_tau * c.thickness_t_over_lambda * c.grain_contrast * c.lithium_relative

    def phonon_probability(self, conditions: PixelConditions) -> np.ndarray:
        """Loss probability of the 41, 65 and 81 meV peaks together (zero in vacuum)."""
        c = conditions
        per_tau = self.parameters["ldo_loss_probability_per_t_over_lambda"]
        on = ~np.asarray(c.in_vacuum, dtype=bool)
        shares = sum(peak.share for peak in PHONON_PEAKS)
        return on * per_tau * shares * c.thickness_t_over_lambda * c.grain_contrast

    # ------------------------------------------------------------------ spectra

    def components(
        self,
        axis: EnergyAxis,
        conditions: PixelConditions,
        resolution_fwhm_mev: float,
        polariton_cutoff_nm: float,
    ) -> dict[str, np.ndarray]:
        """Expected counts (pixels, channels) of each component: zero_loss, polaritonic,
        phononic (41, 65, 81 meV), ldo, valence (plural plasmon), li_k, co_m23."""
        c = conditions
        p = self.parameters
        edges = axis.edges_mev()
        shift = np.asarray(c.energy_shift_mev, dtype=float).reshape(-1)
        tau = np.asarray(c.thickness_t_over_lambda, dtype=float).reshape(-1)
        electrons = np.asarray(c.electrons, dtype=float).reshape(-1)
        unscattered = electrons * np.exp(-tau)
        tables = self._vibrational_tables(resolution_fwhm_mev)
        grid = tables["grid"]

        polariton = self.polariton_probabilities(c.impact_parameter_nm, polariton_cutoff_nm)
        polaritonic = np.zeros((shift.size, axis.channels))
        vibrational_probability = np.zeros(shift.size)
        for index, peak in enumerate(ALOOF_PEAKS):
            cdf = tables[peak.name]
            polaritonic += polariton[:, index, None] * _binned(edges, shift, grid, cdf)
            vibrational_probability += polariton[:, index] * cdf[-1]
        phonon = self.phonon_probability(c)
        phononic = phonon[:, None] * _binned(edges, shift, grid, tables["phonons"])
        vibrational_probability += phonon * tables["phonons"][-1]
        ldo = self.ldo_probability(c)
        moved = np.asarray(c.ldo_centre_mev, dtype=float).reshape(-1) - LDO_TEMPLATE_CENTRE_MEV
        ldo_shape = (_binned(edges, shift + moved, grid, tables["ldo_loss"])
                     + _binned(edges, shift - moved, grid, tables["ldo_gain"]))
        vibrational_probability += ldo * (tables["ldo_loss"][-1] + tables["ldo_gain"][-1])

        zero_loss = (unscattered * np.clip(1.0 - vibrational_probability, 0.0, 1.0))[:, None] \
            * self._zlp_shape(edges, shift, resolution_fwhm_mev)

        li_fraction = p["li_k_inelastic_fraction"] * np.asarray(c.li_to_co, dtype=float)
        co_fraction = p["co_m23_inelastic_fraction"] * np.ones_like(tau)
        loss_grid = self._loss_grid
        valence = np.zeros((shift.size, axis.channels))
        for order, cdf in enumerate(self._plural_cdfs, start=1):
            weight = unscattered * tau**order / math.factorial(order)
            if order == 1:
                weight = weight * np.clip(1.0 - li_fraction - co_fraction, 0.0, 1.0)
            if np.any(weight > 0):
                valence += weight[:, None] * _binned(edges, shift, loss_grid, cdf)
        single = unscattered * tau
        return {
            "zero_loss": zero_loss,
            "polaritonic": unscattered[:, None] * polaritonic,
            "phononic": unscattered[:, None] * phononic,
            "ldo": (unscattered * ldo)[:, None] * ldo_shape,
            "valence": valence,
            "li_k": (single * li_fraction)[:, None]
            * _binned(edges, shift, loss_grid, self._li_cdf),
            "co_m23": (single * co_fraction)[:, None]
            * _binned(edges, shift, loss_grid, self._co_cdf),
        }

    def expected_counts(
        self,
        axis: EnergyAxis,
        conditions: PixelConditions,
        resolution_fwhm_mev: float,
        polariton_cutoff_nm: float,
    ) -> np.ndarray:
        """Noiseless counts (pixels, channels): the sum of `components`."""
        parts = iter(self.components(
            axis, conditions, resolution_fwhm_mev, polariton_cutoff_nm).values())
        total = next(parts)
        for part in parts:
            total += part
        return total

    def detect(
        self, expected: np.ndarray, rng: np.random.Generator, frames: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """(counts as float32, saturated channels per spectrum): Poisson, then the full well.

        `expected` is the sum over `frames` exposures; the well fills per frame, so the sum
        clips at frames × saturation, and a channel counts as saturated where the frames'
        mean reaches the well."""
        saturation = frames * self.parameters["camera_saturation_counts"]
        counts = rng.poisson(np.clip(expected, 0.0, None)).astype(np.float64)
        saturated = counts >= saturation
        np.minimum(counts, saturation, out=counts)
        return counts.astype(np.float32), saturated.sum(axis=-1)

    # ------------------------------------------------------------------ shapes

    def _zlp_shape(self, edges: np.ndarray, shift: np.ndarray, fwhm_mev: float) -> np.ndarray:
        """Share of the ZLP in each channel: Gaussian core and Lorentzian wing, integrated."""
        tail = self.parameters["zlp_tail_fraction"]
        at = edges[None, :] - shift[:, None]
        sigma = fwhm_mev / FWHM_PER_SIGMA
        lorentzian = 0.5 + np.arctan(at / (fwhm_mev / 2.0)) / math.pi
        cdf = (1.0 - tail) * ndtr(at / sigma) + tail * lorentzian
        return np.diff(cdf, axis=1)

    def _vibrational_tables(self, resolution_fwhm_mev: float) -> dict[str, np.ndarray]:
        """Cumulative integrals of the vibrational shapes (loss and gain twin), per resolution."""
        key = round(float(resolution_fwhm_mev), 9)
        cached = self._vibrational_cache.get(key)
        if cached is not None:
            return cached
        first, last, step = VIBRATIONAL_GRID_MEV
        grid = np.arange(first, last + step / 2, step)
        kt = BOLTZMANN_MEV_PER_K * self.parameters["specimen_temperature_k"]

        def voigt(peak: VoigtPeak, centre: float) -> np.ndarray:
            return voigt_profile(grid - centre, peak.sigma_mev(resolution_fwhm_mev), peak.gamma_mev)

        def twins(peak: VoigtPeak) -> np.ndarray:
            gain = math.exp(-peak.centre_mev / kt)
            return voigt(peak, peak.centre_mev) + gain * voigt(peak, -peak.centre_mev)

        shares = sum(peak.share for peak in PHONON_PEAKS)
        tables = {
            "grid": grid,
            **{peak.name: _cumulative(grid, twins(peak)) for peak in ALOOF_PEAKS},
            "phonons": _cumulative(
                grid, sum(peak.share / shares * twins(peak) for peak in PHONON_PEAKS)),
            "ldo_loss": _cumulative(grid, voigt(LDO_PEAK, LDO_PEAK.centre_mev)),
            "ldo_gain": _cumulative(grid, math.exp(-LDO_PEAK.centre_mev / kt)
                                    * voigt(LDO_PEAK, -LDO_PEAK.centre_mev)),
        }
        if len(self._vibrational_cache) > 16:
            self._vibrational_cache.clear()
        self._vibrational_cache[key] = tables
        return tables

    def single_scattering_valence(self) -> np.ndarray:
        """The plasmon single-scattering distribution s on the loss grid (per meV, area 1)."""
        p = self.parameters
        energy_ev = self._loss_grid / 1000.0
        plasmon, width = p["plasmon_energy_ev"], p["plasmon_width_ev"]
        loss_function = energy_ev * width * plasmon**2 / (
            (energy_ev**2 - plasmon**2) ** 2 + (energy_ev * width) ** 2)
        beta = beam_beta(p["beam_energy_kev"])
        gamma = 1.0 + p["beam_energy_kev"] / ELECTRON_REST_ENERGY_KEV
        theta_e_mrad = np.maximum(energy_ev, 1e-6) / (
            gamma * ELECTRON_REST_ENERGY_KEV * 1e3 * beta**2) * 1e3
        angular = np.log1p((p["collection_semiangle_mrad"] / theta_e_mrad) ** 2)
        onset = expit((energy_ev - p["band_gap_ev"]) / 0.3)
        density = loss_function * angular * onset
        return density / np.trapezoid(density, self._loss_grid)

    def edge_shapes(self) -> tuple[np.ndarray, np.ndarray]:
        """(σ_Li, σ_Co) on the loss grid, per meV, each of area 1."""
        energy_ev = self._loss_grid / 1000.0
        safe = np.maximum(energy_ev, 1.0)
        li = expit((energy_ev - LI_K_ONSET_EV) / 0.4) * (
            (safe / LI_K_ONSET_EV) ** -3.0 + 1.2 * np.exp(-0.5 * ((energy_ev - 58.0) / 1.2) ** 2))
        co = expit((energy_ev - CO_M23_ONSET_EV) / 1.0) * (
            np.exp(-0.5 * ((energy_ev - 64.0) / 4.0) ** 2) + 0.3 * (safe / 64.0) ** -3.0)
        return (li / np.trapezoid(li, self._loss_grid), co / np.trapezoid(co, self._loss_grid))

    def _loss_tables(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Cumulative integrals of s⁽ⁿ⁾ (n = 1 … PLURAL_ORDERS) and of the two edges."""
        # Imported here: scipy.signal costs ~0.3 s, paid by every `vegard` command that only
        # lists this model's parameters.
        from scipy.signal import fftconvolve

        step = LOSS_GRID_MEV[2]
        single = self.single_scattering_valence()
        orders = [single]
        for _ in range(PLURAL_ORDERS - 1):
            orders.append(fftconvolve(orders[-1], single)[: single.size] * step)
        li, co = self.edge_shapes()
        grid = self._loss_grid
        return ([_cumulative(grid, order) for order in orders],
                _cumulative(grid, li), _cumulative(grid, co))


class EnergyDrift:
    """Where the ZLP sits, in instrument time: a slow linear drift and a slow oscillation
    (high-tension and spectrometer supplies, room temperature), of seeded phase."""

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("energy_drift_mev_per_min", 0.05, "meV/min", -10.0, 10.0,
                  "linear drift of the energy scale (ZLP position)"),
        Parameter("energy_drift_oscillation_mev", 0.2, "meV", 0.0, 20.0,
                  "amplitude of the slow oscillation of the ZLP position"),
        Parameter("energy_drift_period_min", 20.0, "min", 0.1, 1.0e5,
                  "period of that oscillation"),
    )

    def __init__(self, parameters: Mapping[str, float], phase_rad: float) -> None:
        self.rate_mev_per_s = parameters["energy_drift_mev_per_min"] / 60.0
        self.amplitude_mev = parameters["energy_drift_oscillation_mev"]
        self.angular_per_s = 2.0 * math.pi / (parameters["energy_drift_period_min"] * 60.0)
        self.phase_rad = phase_rad

    def shift_mev(self, elapsed_s: ArrayLike) -> np.ndarray:
        """ZLP position (meV) after `elapsed_s` instrument seconds."""
        t = np.asarray(elapsed_s, dtype=float)
        return self.rate_mev_per_s * t + self.amplitude_mev * np.sin(
            self.angular_per_s * t + self.phase_rad)


class BeamDamage:
    """Radiolytic Li loss: none below an accumulated-dose budget, exponential beyond it."""

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("damage_dose_budget_e_per_nm2", 3.0e8, "e/nm²", 1.0e3, 1.0e16,
                  "accumulated dose a position takes before it loses Li (3e8: 3e6 e/Å²)"),
        Parameter("damage_li_loss_dose_e_per_nm2", 3.0e8, "e/nm²", 1.0e3, 1.0e16,
                  "dose beyond the budget that leaves 1/e of the Li"),
        Parameter("damage_spread_nm", 1.0, "nm", 0.05, 50.0,
                  "σ of the Gaussian over which a probe's dose spreads (delocalised damage)"),
    )

    def __init__(self, parameters: Mapping[str, float]) -> None:
        self.budget_e_per_nm2 = parameters["damage_dose_budget_e_per_nm2"]
        self.loss_dose_e_per_nm2 = parameters["damage_li_loss_dose_e_per_nm2"]
        self.spread_nm = parameters["damage_spread_nm"]

    def lithium_remaining(self, dose_e_per_nm2: ArrayLike) -> np.ndarray:
        """Fraction of the Li left after that dose."""
        excess = np.clip(np.asarray(dose_e_per_nm2, dtype=float) - self.budget_e_per_nm2,
                         0.0, None)
        return np.exp(-excess / self.loss_dose_e_per_nm2)


def _cumulative(grid: np.ndarray, density: np.ndarray) -> np.ndarray:
    """Cumulative trapezoid integral of `density` on `grid`, starting at 0."""
    steps = 0.5 * (density[1:] + density[:-1]) * np.diff(grid)
    return np.concatenate(([0.0], np.cumsum(steps)))


def _binned(edges: np.ndarray, shift: np.ndarray, grid: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Integral over each channel (pixels, channels) of a shape with cumulative table `cdf`,
    moved by `shift` per pixel; zeros at once when the shape misses the axis."""
    low, high = edges[0] - shift.max(), edges[-1] - shift.min()
    if np.interp(high, grid, cdf) - np.interp(low, grid, cdf) <= 0.0:
        return np.zeros((shift.size, edges.size - 1))
    return np.diff(np.interp(edges[None, :] - shift[:, None], grid, cdf), axis=1)
