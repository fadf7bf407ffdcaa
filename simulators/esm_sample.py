"""Physics of an electrochemical-strain-microscopy (ESM) sample under a band-excitation AFM tip.

The sample is a polycrystalline mixed ionic/electronic conductor (Cu2Mo6S8-like) seen through a
conductive tip in contact. For any sample-fixed position (x, y) in nm the model gives the
topography, the contact resonance (f0, Q) and, for each of the three excitations of the
compensation method, the amplitude of the surface response at that resonance, so an AFM
controller simulator can build complex band-excitation spectra of a whole scan line at once.
Pure numpy/scipy, vectorised over positions; no clocks, no I/O, no randomness after
construction except the noise drawn from the generator passed to `response_spectra`.

Model and working assumptions (the numbers are the defaults of `EsmSample.PARAMETERS`):

Surface. Voronoi grains from a jittered square lattice of seeds (mean equivalent-circle
diameter `grain_size_nm`), periodic with period `FIELD_PERIOD_NM` (8 µm) so that any real
coordinate is defined, even after long drifts; plus one large, nearly round grain
(`large_grain_diameter_nm`, id `LARGE_GRAIN_ID`) near the origin, the area of a temperature
series. Each grain has a height offset and a slight tilt; boundaries are grooves of Gaussian
profile (`grain_boundary_width_nm` is the full width at half maximum of the boundary weight
w, 1 on a boundary, 0 inside a grain); a fixed sum of random Fourier modes adds roughness.
Material properties are per grain and are averaged with the neighbours' values, weighted by
their boundary weights (half-half on a boundary, thirds at a triple junction); the boundary
distance of a neighbour seed is (d_i² − d_0²)/2s with s the lattice spacing, a continuous
function of position, so every material map is continuous (only the heights of the grains
step at their boundaries, inside the grooves).

Contact mechanics. Hertz contact of a sphere (tip radius R) under the normal force F:
a = (3FR / 4E*)^(1/3), contact stiffness k* = 2aE*, with a reduced modulus E* per grain,
softer on boundaries. The contact resonance comes from a lumped oscillator: the cantilever's
contact mode has modal stiffness α·k and modal mass α·k/ω_free², so
f0 = f_free·sqrt(1 + k*/(αk)); α (`contact_mode_stiffness_factor`) is tuned so that f0 is
≈ 250 kHz for the default modulus. The contact is Kelvin–Voigt: a dashpot k*·τ in parallel
with k*, so Q = (αk + k*)/(2π f0 k* τ), lower where τ is longer (grain boundaries).
The detection sensitivity (how much of a surface displacement the optical lever reports)
depends weakly on the contact stiffness, s ∝ k*^γ, normalised to mean 1 over the whole field.

Electrostatics. Capacitive force ½C′(V − V_cpd)², with a position-dependent coupling c
(pm/V², per grain, larger in boundary grooves) and contact potential V_cpd (per grain). Its
first harmonic gives, for LF ⊕ DC±, c·|±U_dc − V_cpd|·U_ac; the amplitude-modulated HF carrier
demodulates to c·U_ac²·(1 + m) with m the calibration mismatch (0: the HF drive is set so
that the mean of the two LF electrostatic terms equals the HF term whenever U_dc = U_ac and
|V_cpd| ≤ U_dc, which makes the compensation exact). All electrostatic terms are frequency
independent.

Vegard strain (ESM paper, Eqs. 1-4). d1 = 2(1+ν)·β·g·(U_ac/η)·sqrt(D(T)/(2π f)): the
concentration swing is limited by charge transfer (Δc/c = U_ac/η, η in volts), the strained
depth is the diffusion length at the drive frequency, g is a grain-orientation factor (1 on
the large grain). D(T) = D(300 K)·exp(−E_A/R·(1/T − 1/300 K)), enhanced on boundaries by a
factor with the same activation energy, so every position has the activation energy E_A and
ln d1 against 1/T has slope −E_A/2R exactly. Eq. 3 is applied as it stands even where the
diffusion length outgrows the tip contact (hot grain boundaries), as the paper's analysis does.
The 10 MHz carrier is too fast for the ions, so HF ⊗ LF carries no Vegard term.

Signal. Each excitation drives the contact resonance with amplitude
A = s·(electrostatic term + Vegard term) and a common phase φ (a constant plus a small
per-grain part): the electrostatic and Vegard terms add in amplitude at the resonance, the
paper's working assumption. The spectrum is the simple harmonic oscillator
A·e^{iφ}·f0²/(f² − i·f·f0/Q − f0²), the convention of `vegard.analysis.sho_fit`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .parameters import Parameter, model_values

EXCITATIONS = ("lf_dc_plus", "lf_dc_minus", "hf_lf")
"""The three-excitation protocol: LF ⊕ DC+, LF ⊕ DC−, HF ⊗ LF."""

FIELD_PERIOD_NM = 8000.0
"""The surface repeats with this period along x and y (the field is ±4 µm around the origin)."""

LARGE_GRAIN_ID = 0
"""Grain id of the large grain; ordinary grains are numbered from 1."""

GAS_CONSTANT_J_PER_MOL_K = 8.314462618
REFERENCE_TEMPERATURE_K = 300.0
"""Temperature at which `diffusion_coefficient_300k_cm2_per_s` is given."""

REFERENCE_AC_V = 2.5
"""U_ac of the paper's temperature series, used for the Δc/c of `ground_truth`."""

_JITTER = 0.35
"""Seed jitter as a fraction of the lattice spacing (uniform, ±)."""
_NEIGHBOURS = 5
"""Seeds looked up per position: the own one and the candidates for the nearest cell edge."""
_GHOST_MARGIN_SPACINGS = 3.0
"""Periodic copies of seeds within this many spacings of the field edge."""
_LARGE_GRAIN_CLEARANCE_SPACINGS = 0.25
"""Ordinary seeds closer than this to the large grain's edge are dropped (no slivers)."""
_LARGE_GRAIN_HARMONICS = (2, 3, 4, 5)
_LARGE_GRAIN_ROUNDNESS = 0.05
"""Relative rms deviation of the large grain's outline from a circle."""
_ROUGHNESS_MODES = 48
_ROUGHNESS_WAVELENGTHS_NM = (15.0, 250.0)
_NORMALISATION_GRID = 96
"""Points per side of the grid over the whole field on which the sensitivity has mean 1."""
_FWHM = 4.0 * math.log(2.0)


@dataclass(frozen=True)
class _Local:
    """Everything the model knows at a set of positions (flat arrays)."""

    height_nm: np.ndarray
    grain_id: np.ndarray
    grain_boundary: np.ndarray
    orientation_factor: np.ndarray
    reduced_modulus_gpa: np.ndarray
    contact_stiffness_n_per_m: np.ndarray
    resonance_frequency_hz: np.ndarray
    quality_factor: np.ndarray
    sensitivity: np.ndarray
    electrostatic_pm_per_v2: np.ndarray
    contact_potential_v: np.ndarray
    response_phase_rad: np.ndarray
    diffusion_enhancement: np.ndarray


_PROPERTY_KEYS = (
    "height_nm",
    "grain_id",
    "grain_boundary",
    "orientation_factor",
    "reduced_modulus_gpa",
    "contact_stiffness_n_per_m",
    "resonance_frequency_hz",
    "quality_factor",
    "sensitivity",
    "electrostatic_pm_per_v2",
    "contact_potential_v",
    "response_phase_rad",
)


class EsmSample:
    """A polycrystalline ESM sample: surface, contact resonance, electrostatics, Vegard strain.

    Immutable after construction (safe to share between threads). Positions are sample-fixed
    coordinates in nm, of any shape, broadcast together; results keep that shape.
    """

    PARAMETERS: tuple[Parameter, ...] = (
        # --- surface
        Parameter("grain_size_nm", 125.0, "nm", 30.0, 1000.0,
                  "mean equivalent-circle diameter of ordinary grains"),
        Parameter("large_grain_diameter_nm", 500.0, "nm", 100.0, 3000.0,
                  "diameter of the single large grain used for temperature series"),
        Parameter("large_grain_x_nm", 40.0, "nm", -2000.0, 2000.0,
                  "x of the large grain's centre"),
        Parameter("large_grain_y_nm", -30.0, "nm", -2000.0, 2000.0,
                  "y of the large grain's centre"),
        Parameter("grain_height_spread_nm", 1.5, "nm", 0.0, 50.0,
                  "standard deviation of the grains' height offsets"),
        Parameter("grain_tilt_spread_rad", 0.01, "rad", 0.0, 0.2,
                  "standard deviation of each grain's surface slope along x and y"),
        Parameter("grain_boundary_groove_depth_nm", 1.5, "nm", 0.0, 20.0,
                  "depth of the groove along grain boundaries"),
        Parameter("grain_boundary_width_nm", 10.0, "nm", 1.0, 100.0,
                  "full width at half maximum of the boundary weight (groove, transport)"),
        Parameter("roughness_nm", 0.3, "nm", 0.0, 10.0,
                  "rms of the short-wavelength roughness (15-250 nm wavelengths)"),
        # --- contact mechanics
        Parameter("normal_force_nn", 10.0, "nN", 0.1, 1000.0,
                  "tip normal force; sets the Hertz contact radius"),
        Parameter("tip_radius_nm", 10.0, "nm", 1.0, 200.0,
                  "radius of the conductive-diamond tip apex"),
        Parameter("cantilever_stiffness_n_per_m", 0.5, "N/m", 0.01, 100.0,
                  "cantilever spring constant k"),
        Parameter("free_resonance_hz", 30000.0, "Hz", 1000.0, 1.0e6,
                  "free resonance of the cantilever"),
        Parameter("contact_mode_stiffness_factor", 4.6, "1", 0.1, 100.0,
                  "modal stiffness of the contact mode in units of k (sets f0; 4.6: ~250 kHz)"),
        Parameter("reduced_modulus_gpa", 80.0, "GPa", 1.0, 1000.0,
                  "mean reduced tip-sample modulus E* of the grains"),
        Parameter("reduced_modulus_spread_gpa", 20.0, "GPa", 0.0, 500.0,
                  "grain-to-grain spread of E* (uniform, ±); must stay below the mean"),
        Parameter("grain_boundary_softening", 0.4, "1", 0.0, 0.95,
                  "fractional loss of E* on a grain boundary"),
        Parameter("kelvin_voigt_time_ns", 8.0, "ns", 0.01, 1000.0,
                  "mean Kelvin-Voigt retardation time of the contact (sets Q; 8 ns: ~80)"),
        Parameter("kelvin_voigt_time_spread", 0.3, "1", 0.0, 0.9,
                  "grain-to-grain relative spread of the retardation time (uniform, ±)"),
        Parameter("grain_boundary_damping_increase", 0.8, "1", 0.0, 20.0,
                  "relative increase of the retardation time on a boundary (1: doubled)"),
        Parameter("sensitivity_stiffness_exponent", 0.1, "1", 0.0, 1.0,
                  "detection sensitivity ∝ (contact stiffness)^exponent, mean 1"),
        # --- electrostatics
        Parameter("electrostatic_pm_per_v2", 2.56, "pm/V²", 0.0, 1000.0,
                  "capacitive coupling: HF⊗LF amplitude per U_ac² (2.56: 16 pm at 2.5 V)"),
        Parameter("electrostatic_grain_spread", 0.1, "1", 0.0, 0.9,
                  "grain-to-grain relative spread of the coupling (uniform, ±)"),
        Parameter("electrostatic_boundary_increase", 0.15, "1", 0.0, 5.0,
                  "relative increase of the coupling in boundary grooves"),
        Parameter("electrostatic_calibration_mismatch", 0.0, "1", -0.9, 10.0,
                  "relative error of the HF drive calibration (0: exact compensation)"),
        Parameter("contact_potential_v", 0.05, "V", -5.0, 5.0,
                  "mean tip-sample contact potential difference V_cpd"),
        Parameter("contact_potential_spread_v", 0.2, "V", 0.0, 5.0,
                  "grain-to-grain spread of V_cpd (uniform, ±)"),
        # --- Vegard strain
        Parameter("poisson_ratio", 0.25, "1", -0.99, 0.5, "Poisson ratio ν"),
        Parameter("vegard_coefficient", 0.03, "1", 0.0, 1.0,
                  "orientation-averaged Vegard coefficient β"),
        Parameter("eta_v", 500.0, "V", 1.0, 1.0e9,
                  "charge-transfer-limited swing: Δc/c = U_ac/η"),
        Parameter("diffusion_coefficient_300k_cm2_per_s", 3.0e-6, "cm²/s", 1.0e-14, 1.0e-1,
                  "chemical diffusion coefficient inside grains at 300 K"),
        Parameter("activation_energy_kj_mol", 27.0, "kJ/mol", 0.0, 300.0,
                  "activation energy of D (grains and boundaries alike)"),
        Parameter("grain_boundary_diffusion_enhancement", 3.0, "1", 1.0, 1000.0,
                  "factor on D on a grain boundary (faster transport)"),
        Parameter("orientation_factor_min", 0.2, "1", 0.0, 2.0,
                  "lowest Vegard orientation factor g of an ordinary grain"),
        Parameter("orientation_factor_max", 0.35, "1", 0.0, 2.0,
                  "highest Vegard orientation factor g of an ordinary grain"),
        Parameter("large_grain_orientation_factor", 1.0, "1", 0.0, 2.0,
                  "Vegard orientation factor g of the large grain"),
        # --- response phase
        Parameter("response_phase_rad", 0.3, "rad", -math.pi, math.pi,
                  "constant phase of the response (drive and detection delays)"),
        Parameter("response_phase_spread_rad", 0.03, "rad", 0.0, 1.0,
                  "standard deviation of the per-grain phase variation"),
    )

    def __init__(
        self,
        parameters: Mapping[str, float] | None = None,
        seed: int | Sequence[int] = 0,
    ) -> None:
        values = model_values(self.PARAMETERS, parameters, "esm_sample")
        _check_consistent(values)
        self.parameters: dict[str, float] = values
        p = values
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)]
        seeds_rng, grains_rng, rough_rng, outline_rng, phase_rng = streams

        # Seeds of the ordinary grains: a jittered square lattice that tiles the period.
        n_side = max(4, round(FIELD_PERIOD_NM / (p["grain_size_nm"] * math.sqrt(math.pi) / 2)))
        spacing = FIELD_PERIOD_NM / n_side
        self._spacing_nm = spacing
        centres = (np.arange(n_side) + 0.5) * spacing - FIELD_PERIOD_NM / 2
        gx, gy = np.meshgrid(centres, centres, indexing="ij")
        jitter = seeds_rng.uniform(-_JITTER, _JITTER, size=(n_side * n_side, 2)) * spacing
        seeds = np.column_stack((gx.ravel(), gy.ravel())) + jitter

        # The large grain: a slightly irregular circle; drop ordinary seeds under it.
        self._large_centre = np.array([p["large_grain_x_nm"], p["large_grain_y_nm"]])
        self._large_radius_nm = p["large_grain_diameter_nm"] / 2
        harmonics = np.array(_LARGE_GRAIN_HARMONICS, dtype=float)
        self._outline_m = harmonics
        self._outline_amplitude = (
            outline_rng.standard_normal(harmonics.size)
            * _LARGE_GRAIN_ROUNDNESS * math.sqrt(2.0 / harmonics.size)
        )
        self._outline_phase = outline_rng.uniform(0.0, 2 * math.pi, harmonics.size)
        rel = _wrap(seeds - self._large_centre)
        edge = self._outline_radius(np.arctan2(rel[:, 1], rel[:, 0]))
        keep = np.hypot(rel[:, 0], rel[:, 1]) > edge + _LARGE_GRAIN_CLEARANCE_SPACINGS * spacing
        seeds = seeds[keep]
        n_ordinary = len(seeds)
        self._n_grains = n_ordinary + 1

        # Periodic copies near the edges, so nearest-seed look-ups see across the seam.
        margin = FIELD_PERIOD_NM / 2 + _GHOST_MARGIN_SPACINGS * spacing
        shifts = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)]) * FIELD_PERIOD_NM
        tiled = (seeds[None, :, :] + shifts[:, None, :]).reshape(-1, 2)
        owner = np.tile(np.arange(1, n_ordinary + 1), len(shifts))
        inside = np.all(np.abs(tiled) <= margin, axis=1)
        self._seeds = tiled[inside]
        self._seed_owner = owner[inside]
        self._tree = cKDTree(self._seeds)

        # Per-grain properties, index = grain id (0: the large grain).
        n = self._n_grains

        def spread() -> np.ndarray:
            return grains_rng.uniform(-1.0, 1.0, n)

        self._grain_height_nm = grains_rng.standard_normal(n) * p["grain_height_spread_nm"]
        self._grain_tilt = grains_rng.standard_normal((n, 2)) * p["grain_tilt_spread_rad"]
        self._grain_modulus_gpa = (
            p["reduced_modulus_gpa"] + p["reduced_modulus_spread_gpa"] * spread())
        self._grain_modulus_gpa[LARGE_GRAIN_ID] = p["reduced_modulus_gpa"]
        self._grain_tau_s = p["kelvin_voigt_time_ns"] * 1e-9 * (
            1.0 + p["kelvin_voigt_time_spread"] * spread())
        self._grain_orientation = grains_rng.uniform(
            p["orientation_factor_min"], p["orientation_factor_max"], n)
        self._grain_orientation[LARGE_GRAIN_ID] = p["large_grain_orientation_factor"]
        self._grain_electrostatic = 1.0 + p["electrostatic_grain_spread"] * spread()
        self._grain_electrostatic[LARGE_GRAIN_ID] = 1.0
        self._grain_cpd_v = p["contact_potential_v"] + p["contact_potential_spread_v"] * spread()
        self._grain_phase_rad = (
            p["response_phase_rad"] + phase_rng.standard_normal(n) * p["response_phase_spread_rad"]
        )

        # Roughness: fixed Fourier modes whose wave vectors fit the period.
        k_unit = 2 * math.pi / FIELD_PERIOD_NM
        low, high = (FIELD_PERIOD_NM / w for w in _ROUGHNESS_WAVELENGTHS_NM[::-1])
        magnitude = np.exp(rough_rng.uniform(math.log(low), math.log(high), _ROUGHNESS_MODES))
        angle = rough_rng.uniform(0.0, math.pi, _ROUGHNESS_MODES)
        self._rough_k = (np.round(np.column_stack(
            (magnitude * np.cos(angle), magnitude * np.sin(angle)))) * k_unit).astype(np.float32)
        self._rough_phase = rough_rng.uniform(0.0, 2 * math.pi, _ROUGHNESS_MODES).astype(
            np.float32)
        self._rough_amplitude = p["roughness_nm"] * math.sqrt(2.0 / _ROUGHNESS_MODES)

        # Hertz prefactor: k* = 2 a E* = 2 (3FR/4)^(1/3) E*^(2/3).
        self._hertz = 2.0 * (0.75 * p["normal_force_nn"] * 1e-9 * p["tip_radius_nm"] * 1e-9) ** (
            1.0 / 3.0)
        self._modal_stiffness = (
            p["contact_mode_stiffness_factor"] * p["cantilever_stiffness_n_per_m"])

        # Sensitivity normalisation: mean exactly 1 on a regular grid over the whole field.
        self._stiffness_norm = 1.0
        grid = (np.arange(_NORMALISATION_GRID) + 0.5) * (
            FIELD_PERIOD_NM / _NORMALISATION_GRID) - FIELD_PERIOD_NM / 2
        stiffness = self._local(grid[:, None], grid[None, :]).contact_stiffness_n_per_m
        exponent = p["sensitivity_stiffness_exponent"]
        if exponent > 0:
            self._stiffness_norm = float(np.mean(stiffness**exponent)) ** (1.0 / exponent)

    # ----------------------------------------------------------------- public API

    def properties(self, x_nm: np.ndarray, y_nm: np.ndarray) -> dict[str, np.ndarray]:
        """Local surface and contact properties at sample-fixed positions (nm).

        Keys: height_nm, grain_id (int), grain_boundary (0..1), orientation_factor,
        reduced_modulus_gpa, contact_stiffness_n_per_m, resonance_frequency_hz, quality_factor,
        sensitivity, electrostatic_pm_per_v2, contact_potential_v, response_phase_rad; all of
        the broadcast shape of x_nm and y_nm.
        """
        shape = np.broadcast_shapes(np.shape(x_nm), np.shape(y_nm))
        local = self._local(x_nm, y_nm)
        return {key: getattr(local, key).reshape(shape) for key in _PROPERTY_KEYS}

    def diffusion_coefficient_m2_per_s(
        self, temperature_k: np.ndarray | float, grain_boundary: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """D(T) (Arrhenius), times the boundary enhancement weighted by `grain_boundary`."""
        t = np.asarray(temperature_k, dtype=float)
        if np.any(t <= 0):
            raise ValueError("temperature_k must be positive")
        enhancement = 1.0 + (self.parameters["grain_boundary_diffusion_enhancement"] - 1.0) * (
            np.asarray(grain_boundary, dtype=float))
        return self._diffusion_grain(t) * enhancement

    def vegard_strain_pm(
        self,
        x_nm: np.ndarray,
        y_nm: np.ndarray,
        temperature_k: np.ndarray | float,
        u_ac_v: float,
        frequency_hz: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """True Vegard strain d1 (pm, no detection sensitivity) at each position.

        `frequency_hz` None evaluates it at each position's own contact resonance f0,
        where the LF excitations measure it.
        """
        shape = np.broadcast_shapes(np.shape(x_nm), np.shape(y_nm))
        local = self._local(x_nm, y_nm)
        if frequency_hz is None:
            frequency = local.resonance_frequency_hz
        else:
            frequency = np.broadcast_to(np.asarray(frequency_hz, dtype=float), shape).ravel()
        temperature = np.broadcast_to(np.asarray(temperature_k, dtype=float), shape).ravel()
        return self._vegard_pm(local, temperature, u_ac_v, frequency).reshape(shape)

    def drive_amplitudes_pm(
        self,
        x_nm: np.ndarray,
        y_nm: np.ndarray,
        temperature_k: np.ndarray | float,
        excitations: Sequence[str],
        u_ac_v: float,
        u_dc_v: float,
    ) -> np.ndarray:
        """SHO amplitude A (pm, sensitivity included) per position and excitation.

        Shape (*positions, len(excitations)). LF ⊕ DC± uses ±u_dc_v; voltages are amplitudes
        of the tip drive (the back electrode is grounded).
        """
        shape = np.broadcast_shapes(np.shape(x_nm), np.shape(y_nm))
        local = self._local(x_nm, y_nm)
        temperature = np.broadcast_to(np.asarray(temperature_k, dtype=float), shape).ravel()
        amplitudes = self._amplitudes(local, temperature, excitations, u_ac_v, u_dc_v)
        return amplitudes.reshape(*shape, len(excitations))

    def response_spectra(
        self,
        x_nm: np.ndarray,
        y_nm: np.ndarray,
        temperature_k: np.ndarray | float,
        excitations: Sequence[str],
        u_ac_v: float,
        u_dc_v: float,
        frequencies_hz: np.ndarray,
        chirp_duration_s: float,
        averages: int,
        noise_pm_per_rthz: float,
        rng: np.random.Generator | None,
    ) -> np.ndarray:
        """Complex band-excitation spectra (pm), shape (*positions, n_excitations, n_bins).

        Each is A·e^{iφ}·f0²/(f² − i·f·f0/Q − f0²) plus complex Gaussian noise of rms
        σ = noise_pm_per_rthz·sqrt(1/chirp_duration_s)/sqrt(averages) per bin, split evenly
        between real and imaginary parts and drawn from `rng` (None: no noise).
        """
        if chirp_duration_s <= 0 or averages < 1:
            raise ValueError("chirp_duration_s must be positive and averages at least 1")
        shape = np.broadcast_shapes(np.shape(x_nm), np.shape(y_nm))
        frequencies = np.asarray(frequencies_hz, dtype=float).ravel()
        local = self._local(x_nm, y_nm)
        temperature = np.broadcast_to(np.asarray(temperature_k, dtype=float), shape).ravel()
        amplitudes = self._amplitudes(local, temperature, excitations, u_ac_v, u_dc_v)
        gain = amplitudes * np.exp(1j * local.response_phase_rad)[:, None]
        spectra = resonance_spectra(
            gain, local.resonance_frequency_hz, local.quality_factor, frequencies,
            chirp_duration_s, averages, noise_pm_per_rthz, rng)
        return spectra.reshape(*shape, len(excitations), frequencies.size)

    def truth_maps(
        self,
        x_nm: np.ndarray,
        y_nm: np.ndarray,
        temperature_k: np.ndarray | float,
        u_ac_v: float,
    ) -> dict[str, np.ndarray]:
        """What an ideal analysis would recover at these positions.

        topography_nm; vegard_strain_pm (d1 at f0, no sensitivity); electrostatic_pm (the
        HF ⊗ LF amplitude at u_ac_v as driven, sensitivity and calibration mismatch
        included); contact_potential_v; resonance_frequency_hz; quality_factor; grain_id;
        grain_boundary; sensitivity.
        """
        shape = np.broadcast_shapes(np.shape(x_nm), np.shape(y_nm))
        local = self._local(x_nm, y_nm)
        temperature = np.broadcast_to(np.asarray(temperature_k, dtype=float), shape).ravel()
        maps = {
            "topography_nm": local.height_nm,
            "vegard_strain_pm": self._vegard_pm(
                local, temperature, u_ac_v, local.resonance_frequency_hz),
            "electrostatic_pm": local.sensitivity * self._hf_electrostatic_pm(local, u_ac_v),
            "contact_potential_v": local.contact_potential_v,
            "resonance_frequency_hz": local.resonance_frequency_hz,
            "quality_factor": local.quality_factor,
            "grain_id": local.grain_id,
            "grain_boundary": local.grain_boundary,
            "sensitivity": local.sensitivity,
        }
        return {key: value.reshape(shape) for key, value in maps.items()}

    def largest_grain_id(self) -> int:
        """Id of the large grain of the temperature series."""
        return LARGE_GRAIN_ID

    def ground_truth(self) -> dict[str, float]:
        """Scalar facts (JSON-able) the analysis should recover."""
        p = self.parameters
        centre = self._local(self._large_centre[0], self._large_centre[1])
        return {
            "activation_energy_kj_mol": p["activation_energy_kj_mol"],
            "diffusion_coefficient_300k_cm2_per_s": p["diffusion_coefficient_300k_cm2_per_s"],
            "poisson_ratio": p["poisson_ratio"],
            "vegard_coefficient": p["vegard_coefficient"],
            "eta_v": p["eta_v"],
            "delta_c_over_c_300k": REFERENCE_AC_V / p["eta_v"],
            "reference_u_ac_v": REFERENCE_AC_V,
            "largest_grain_id": float(LARGE_GRAIN_ID),
            "large_grain_x_nm": float(self._large_centre[0]),
            "large_grain_y_nm": float(self._large_centre[1]),
            "large_grain_diameter_nm": p["large_grain_diameter_nm"],
            "large_grain_orientation_factor": p["large_grain_orientation_factor"],
            "large_grain_vegard_strain_300k_pm": float(self._vegard_pm(
                centre, np.array([REFERENCE_TEMPERATURE_K]), REFERENCE_AC_V,
                centre.resonance_frequency_hz)[0]),
            "large_grain_resonance_frequency_hz": float(centre.resonance_frequency_hz[0]),
            "grain_size_nm": p["grain_size_nm"],
            "grain_boundary_diffusion_enhancement": p["grain_boundary_diffusion_enhancement"],
            "electrostatic_pm_per_v2": p["electrostatic_pm_per_v2"],
            "electrostatic_calibration_mismatch": p["electrostatic_calibration_mismatch"],
            "contact_potential_v": p["contact_potential_v"],
            "field_period_nm": FIELD_PERIOD_NM,
        }

    # ------------------------------------------------------------------ internals

    def _outline_radius(self, theta: np.ndarray) -> np.ndarray:
        wobble = np.cos(theta[..., None] * self._outline_m - self._outline_phase)
        return self._large_radius_nm * (1.0 + wobble @ self._outline_amplitude)

    def _local(self, x_nm: np.ndarray | float, y_nm: np.ndarray | float) -> _Local:
        x, y = np.broadcast_arrays(np.asarray(x_nm, dtype=float), np.asarray(y_nm, dtype=float))
        points = _wrap(np.column_stack((x.ravel(), y.ravel())))
        p = self.parameters
        distance, index = self._tree.query(points, k=_NEIGHBOURS)
        distance = distance.reshape(-1, _NEIGHBOURS)
        index = index.reshape(-1, _NEIGHBOURS)
        first = self._seeds[index[:, 0]]
        # Distance to the bisector with each further seed, (d_i² − d_0²)/2s, taking the seed
        # separation s as the lattice spacing: exact for neighbours one spacing apart, and a
        # continuous function of position (at a triple junction every cell sees the same value).
        to_bisectors = (distance[:, 1:] ** 2 - distance[:, :1] ** 2) / (2.0 * self._spacing_nm)
        width_nm = p["grain_boundary_width_nm"]
        near = np.exp(-_FWHM * (to_bisectors / width_nm) ** 2)
        owner = self._seed_owner[index[:, 0]]
        neighbours = self._seed_owner[index[:, 1:]]
        near_total = near.sum(axis=1)

        rel = _wrap(points - self._large_centre)
        rho = np.hypot(rel[:, 0], rel[:, 1])
        to_edge = rho - self._outline_radius(np.arctan2(rel[:, 1], rel[:, 0]))
        in_large = to_edge < 0
        edge = np.exp(-_FWHM * (to_edge / width_nm) ** 2)
        grain = np.where(in_large, LARGE_GRAIN_ID, owner)
        weight = np.where(in_large, edge, np.maximum(edge, near.max(axis=1, initial=0.0)))

        def blend(per_grain: np.ndarray) -> np.ndarray:
            # Ordinary cells: own value averaged with the neighbours', weighted by their
            # boundary weights (half-half on an edge, thirds at a triple junction); the large
            # grain is blended with that field the same way, so maps stay continuous.
            ordinary = (per_grain[owner] + np.sum(near * per_grain[neighbours], axis=1)) / (
                1.0 + near_total)
            large = per_grain[LARGE_GRAIN_ID]
            return np.where(in_large, large + edge * ordinary, ordinary + edge * large) / (
                1.0 + edge)

        # Topography: grain offset and tilt about the grain's seed, groove, roughness.
        anchor = np.where(in_large[:, None], rel, points - first)
        height = (self._grain_height_nm[grain]
                  + np.sum(self._grain_tilt[grain] * anchor, axis=1)
                  - p["grain_boundary_groove_depth_nm"] * weight)
        if self._rough_amplitude > 0:
            # float32 (phases < 2000 rad, error < 1e-3 rad): the cosines dominate the cost.
            phase = points.astype(np.float32) @ self._rough_k.T + self._rough_phase
            height = height + self._rough_amplitude * np.cos(phase).sum(axis=1, dtype=np.float64)

        # Contact mechanics.
        softening = 1.0 - p["grain_boundary_softening"] * weight
        modulus_gpa = blend(self._grain_modulus_gpa) * softening
        stiffness = self._hertz * (modulus_gpa * 1e9) ** (2.0 / 3.0)
        f0 = p["free_resonance_hz"] * np.sqrt(1.0 + stiffness / self._modal_stiffness)
        tau = blend(self._grain_tau_s) * (1.0 + p["grain_boundary_damping_increase"] * weight)
        q = (self._modal_stiffness + stiffness) / (2 * math.pi * f0 * stiffness * tau)
        exponent = p["sensitivity_stiffness_exponent"]
        sensitivity = (stiffness / self._stiffness_norm) ** exponent

        electrostatic = p["electrostatic_pm_per_v2"] * blend(self._grain_electrostatic) * (
            1.0 + p["electrostatic_boundary_increase"] * weight)
        return _Local(
            height_nm=height,
            grain_id=grain.astype(np.int64),
            grain_boundary=weight,
            orientation_factor=blend(self._grain_orientation),
            reduced_modulus_gpa=modulus_gpa,
            contact_stiffness_n_per_m=stiffness,
            resonance_frequency_hz=f0,
            quality_factor=q,
            sensitivity=sensitivity,
            electrostatic_pm_per_v2=electrostatic,
            contact_potential_v=blend(self._grain_cpd_v),
            response_phase_rad=blend(self._grain_phase_rad),
            diffusion_enhancement=1.0 + (
                p["grain_boundary_diffusion_enhancement"] - 1.0) * weight,
        )

    def _diffusion_grain(self, temperature_k: np.ndarray) -> np.ndarray:
        p = self.parameters
        d_300_m2_per_s = p["diffusion_coefficient_300k_cm2_per_s"] * 1e-4
        barrier = p["activation_energy_kj_mol"] * 1e3 / GAS_CONSTANT_J_PER_MOL_K
        return d_300_m2_per_s * np.exp(-barrier * (1.0 / temperature_k
                                                   - 1.0 / REFERENCE_TEMPERATURE_K))

    def _vegard_pm(
        self, local: _Local, temperature_k: np.ndarray, u_ac_v: float, frequency_hz: np.ndarray
    ) -> np.ndarray:
        if np.any(temperature_k <= 0) or np.any(frequency_hz <= 0):
            raise ValueError("temperature_k and frequency_hz must be positive")
        p = self.parameters
        diffusion = self._diffusion_grain(temperature_k) * local.diffusion_enhancement
        length_m = np.sqrt(diffusion / (2 * math.pi * frequency_hz))
        swing = abs(u_ac_v) / p["eta_v"]
        prefactor = 2.0 * (1.0 + p["poisson_ratio"]) * p["vegard_coefficient"]
        return prefactor * local.orientation_factor * swing * length_m * 1e12

    def _hf_electrostatic_pm(self, local: _Local, u_ac_v: float) -> np.ndarray:
        mismatch = self.parameters["electrostatic_calibration_mismatch"]
        return local.electrostatic_pm_per_v2 * u_ac_v**2 * (1.0 + mismatch)

    def _amplitudes(
        self,
        local: _Local,
        temperature_k: np.ndarray,
        excitations: Sequence[str],
        u_ac_v: float,
        u_dc_v: float,
    ) -> np.ndarray:
        unknown = [name for name in excitations if name not in EXCITATIONS]
        if unknown:
            raise ValueError(f"unknown excitations {unknown}; known: {list(EXCITATIONS)}")
        columns = []
        vegard = None
        for name in excitations:
            if name == "hf_lf":
                columns.append(self._hf_electrostatic_pm(local, u_ac_v))
                continue
            if vegard is None:
                vegard = self._vegard_pm(local, temperature_k, u_ac_v,
                                         local.resonance_frequency_hz)
            dc = u_dc_v if name == "lf_dc_plus" else -u_dc_v
            columns.append(local.electrostatic_pm_per_v2
                           * np.abs(dc - local.contact_potential_v) * abs(u_ac_v) + vegard)
        if not columns:
            return np.empty((local.height_nm.size, 0))
        return np.stack(columns, axis=-1) * local.sensitivity[:, None]


def resonance_spectra(
    gain: np.ndarray,
    resonance_frequency_hz: np.ndarray,
    quality_factor: np.ndarray,
    frequencies_hz: np.ndarray,
    chirp_duration_s: float,
    averages: int,
    noise_pm_per_rthz: float,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """SHO spectra of complex gains (points, k) at each point's resonance, plus noise.

    gain·f0²/(f² − i·f·f0/Q − f0²), complex64 (points, k, bins), with complex Gaussian noise
    of rms σ = noise_pm_per_rthz·sqrt(1/chirp_duration_s)/sqrt(averages) per bin.
    """
    frequencies = np.asarray(frequencies_hz, dtype=float).ravel()
    f0 = np.asarray(resonance_frequency_hz, dtype=float)[:, None]
    q = np.asarray(quality_factor, dtype=float)[:, None]
    resonance = f0**2 / (frequencies**2 - 1j * frequencies * f0 / q - f0**2)
    spectra = (gain[:, :, None] * resonance[:, None, :]).astype(np.complex64)
    sigma = noise_pm_per_rthz * math.sqrt(1.0 / chirp_duration_s) / math.sqrt(averages)
    if rng is not None and sigma > 0:
        noise = rng.standard_normal((*spectra.shape[:-1], 2 * spectra.shape[-1]),
                                    dtype=np.float32).view(np.complex64)
        spectra += noise * np.float32(sigma / math.sqrt(2.0))
    return spectra


def _wrap(points: np.ndarray) -> np.ndarray:
    """Coordinates folded into the field [−P/2, P/2)."""
    half = FIELD_PERIOD_NM / 2
    return (points + half) % FIELD_PERIOD_NM - half


def _check_consistent(values: Mapping[str, float]) -> None:
    """Relations between parameters that their separate ranges cannot express."""
    if values["reduced_modulus_spread_gpa"] >= values["reduced_modulus_gpa"]:
        raise ValueError("esm_sample: reduced_modulus_spread_gpa must be below "
                         "reduced_modulus_gpa")
    if values["orientation_factor_min"] > values["orientation_factor_max"]:
        raise ValueError("esm_sample: orientation_factor_min must not exceed "
                         "orientation_factor_max")
