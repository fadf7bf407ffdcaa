"""A LiCoO2 TEM specimen along a STEM-EELS line scan: vacuum, a thin wedge, two grains and
the boundary between them.

The line runs along x (nm), perpendicular to a grain boundary seen edge-on and to the
specimen's vacuum edge; the specimen is one-dimensional in this sense (nothing varies along
y). From low to high x: vacuum, the edge at `vacuum_edge_position_nm`, grain A (the one
oriented on [110]), the boundary plane at `boundary_position_nm`, grain B.

Profiles (numbers are the defaults of `GrainBoundarySpecimen.PARAMETERS`):

- Boundary weight g(x): a Gaussian of full width at half maximum `boundary_width_nm`,
  1 on the boundary plane. The probe blurs it: convolving with a Gaussian probe keeps it
  Gaussian, wider and with a lower peak (same area), which is what a real line scan sees.
- LDO phonon centre: `ldo_centre_mev` + `ldo_boundary_shift_mev`·g(x) (the paper: a
  ≈1.8 meV blue shift at the boundary). The bulk default, 48.5 meV, lies inside the paper's
  "≈47-50 meV" but 0.5 meV below the lower bound (49 meV) of its LDO fit window: a fit
  with the paper's bounds meets that bound in the bulk. Set ≥ 49 to stay inside it.
- Li:Co: `li_to_co_bulk`·(1 + `li_to_co_boundary_change`·g(x)) (the paper: −27 %).
- Thickness t/λ: zero in vacuum, a wedge from `thickness_at_edge_t_over_lambda` rising by
  `thickness_gradient_per_nm`, capped at `thickness_maximum_t_over_lambda`, thinned on the
  boundary by `boundary_thickness_change`·g(x) (ion milling attacks boundaries first; it
  also makes the boundary visible in HAADF, which re-registers drifting scans).
- Grain contrast: grain A 1, grain B `grain_b_contrast` (orientation changes the phonon
  and HAADF intensities), stepping across the boundary as an error function of the same
  width as g.

Aloof (dipole) excitation: a fast electron passing at impact parameter b excites the
polar modes of the specimen with a probability falling as K0(2ωb/v), v the beam speed
(0.446 c at 60 kV): at 34 meV the decay length v/2ω is ≈1.3 µm, so the aloof spectrum
65 nm outside the edge is strong. b is the distance to the edge in vacuum; on the
specimen (and as b → 0) the logarithmic divergence of K0 is cut off at
`polariton_cutoff_impact_nm` (b_eff = √(b² + b_c²)), standing in for the finite probe and
specimen size the formula ignores. `dipole_decay` gives the ratio to the value at the
paper's aloof position, 65 nm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import erf, k0

from .parameters import Parameter, model_values

HBAR_MEV_S = 6.582119569e-13
SPEED_OF_LIGHT_M_PER_S = 299_792_458.0
ELECTRON_REST_ENERGY_KEV = 510.99895
ALOOF_REFERENCE_NM = 65.0
"""Where the paper took its aloof spectrum: ≈65 nm outside the specimen."""
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

MATERIAL_KEYS = ("ldo_centre_mev", "li_to_co", "thickness_t_over_lambda", "grain_contrast",
                 "boundary_weight", "grain_b_fraction")
"""Profile values that mean nothing in vacuum (`truth` sets them to NaN there)."""


def beam_beta(beam_energy_kev: float) -> float:
    """v/c of an electron accelerated through `beam_energy_kev` (0.446 at 60 kV)."""
    gamma = 1.0 + beam_energy_kev / ELECTRON_REST_ENERGY_KEV
    return math.sqrt(1.0 - 1.0 / gamma**2)


def dipole_decay(
    impact_parameter_nm: ArrayLike,
    energy_mev: float,
    beam_energy_kev: float,
    cutoff_nm: float,
    reference_nm: float = ALOOF_REFERENCE_NM,
) -> np.ndarray:
    """K0(2ω b_eff/v) / K0(2ω b_ref/v): the aloof excitation of a mode of energy
    `energy_mev` at impact parameter b, relative to its value at `reference_nm`."""
    wavenumber_per_nm = (
        2.0 * (energy_mev / HBAR_MEV_S)
        / (beam_beta(beam_energy_kev) * SPEED_OF_LIGHT_M_PER_S) * 1e-9
    )
    b = np.hypot(np.asarray(impact_parameter_nm, dtype=float), cutoff_nm)
    reference = math.hypot(reference_nm, cutoff_nm)
    return np.asarray(k0(wavenumber_per_nm * b) / k0(wavenumber_per_nm * reference))


class GrainBoundarySpecimen:
    """Profiles of a LiCoO2 bicrystal wedge along x; immutable, no randomness."""

    PARAMETERS: tuple[Parameter, ...] = (
        Parameter("vacuum_edge_position_nm", -120.0, "nm", -5000.0, 5000.0,
                  "x of the specimen's vacuum edge (vacuum below it) when nothing has drifted"),
        Parameter("boundary_position_nm", 0.0, "nm", -5000.0, 5000.0,
                  "x of the grain-boundary plane (seen edge-on), above the vacuum edge"),
        Parameter("boundary_width_nm", 3.0, "nm", 0.2, 100.0,
                  "full width at half maximum of the boundary profile (shift, Li loss)"),
        Parameter("ldo_centre_mev", 48.5, "meV", 40.0, 56.0,
                  "bulk centre of the Li-dominated optical (LDO) phonon peak"),
        Parameter("ldo_boundary_shift_mev", 1.8, "meV", -10.0, 10.0,
                  "LDO peak shift on the boundary plane (positive: blue shift)"),
        Parameter("li_to_co_bulk", 1.0, "1", 0.05, 1.5,
                  "Li:Co atomic ratio inside the grains"),
        Parameter("li_to_co_boundary_change", -0.27, "1", -0.95, 1.0,
                  "relative change of Li:Co on the boundary plane (−0.27: 27 % less Li)"),
        Parameter("thickness_at_edge_t_over_lambda", 0.05, "1", 0.0, 3.0,
                  "relative thickness t/λ at the vacuum edge"),
        Parameter("thickness_gradient_per_nm", 0.004, "1/nm", 0.0, 0.1,
                  "increase of t/λ per nm away from the edge (wedge)"),
        Parameter("thickness_maximum_t_over_lambda", 1.2, "1", 0.01, 3.0,
                  "t/λ where the wedge levels off"),
        Parameter("boundary_thickness_change", -0.05, "1", -0.5, 0.5,
                  "relative thickness change on the boundary plane (preferential milling)"),
        Parameter("grain_b_contrast", 0.9, "1", 0.1, 3.0,
                  "phonon and HAADF intensity of grain B relative to grain A (orientation)"),
        Parameter("polariton_cutoff_impact_nm", 5.0, "nm", 0.1, 100.0,
                  "impact parameter cutting off the K0 divergence (on and near the specimen)"),
    )

    def __init__(self, parameters: Mapping[str, float] | None = None) -> None:
        values = model_values(self.PARAMETERS, parameters, "stem specimen")
        if not values["vacuum_edge_position_nm"] < values["boundary_position_nm"]:
            raise ValueError(
                "stem specimen: vacuum_edge_position_nm "
                f"({values['vacuum_edge_position_nm']:g} nm) must be below "
                f"boundary_position_nm ({values['boundary_position_nm']:g} nm): the boundary "
                "lies inside the specimen")
        self.parameters: dict[str, float] = values

    def boundary_sigma_nm(self, probe_fwhm_nm: float = 0.0) -> float:
        """Standard deviation of the boundary profile as a probe of that FWHM sees it."""
        return math.hypot(self.parameters["boundary_width_nm"], probe_fwhm_nm) / FWHM_PER_SIGMA

    def profile(self, position_nm: ArrayLike, probe_fwhm_nm: float = 0.0) -> dict[str, np.ndarray]:
        """Every profile at positions x (any shape), as a probe of FWHM `probe_fwhm_nm` sees
        them. Material values continue into vacuum (they multiply zero thickness there)."""
        p = self.parameters
        x = np.asarray(position_nm, dtype=float)
        sigma = self.boundary_sigma_nm(probe_fwhm_nm)
        intrinsic_sigma = p["boundary_width_nm"] / FWHM_PER_SIGMA
        u = x - p["boundary_position_nm"]
        weight = (intrinsic_sigma / sigma) * np.exp(-0.5 * (u / sigma) ** 2)
        grain_b = 0.5 * (1.0 + erf(u / (sigma * math.sqrt(2.0))))
        from_edge = x - p["vacuum_edge_position_nm"]
        in_vacuum = from_edge < 0.0
        wedge = np.minimum(
            p["thickness_at_edge_t_over_lambda"] + p["thickness_gradient_per_nm"] * from_edge,
            p["thickness_maximum_t_over_lambda"],
        )
        thickness = np.where(
            in_vacuum, 0.0, wedge * (1.0 + p["boundary_thickness_change"] * weight))
        return {
            "position_nm": x,
            "in_vacuum": in_vacuum,
            "impact_parameter_nm": np.where(in_vacuum, -from_edge, 0.0),
            "thickness_t_over_lambda": thickness,
            "boundary_weight": weight,
            "grain_b_fraction": grain_b,
            "grain_contrast": 1.0 + (p["grain_b_contrast"] - 1.0) * grain_b,
            "ldo_centre_mev": p["ldo_centre_mev"] + p["ldo_boundary_shift_mev"] * weight,
            "li_to_co": p["li_to_co_bulk"] * (1.0 + p["li_to_co_boundary_change"] * weight),
        }

    def truth(self, position_nm: ArrayLike, probe_fwhm_nm: float = 0.0) -> dict[str, np.ndarray]:
        """`profile` with the material values NaN in vacuum (nothing is there to measure)."""
        values = self.profile(position_nm, probe_fwhm_nm)
        vacuum = values["in_vacuum"]
        for key in MATERIAL_KEYS:
            values[key] = np.where(vacuum, np.nan, values[key])
        values["thickness_t_over_lambda"] = np.where(
            vacuum, 0.0, values["thickness_t_over_lambda"])
        return values

    def ground_truth(self) -> dict[str, Any]:
        """Scalar facts the analysis should recover (JSON-able)."""
        p = self.parameters
        at_boundary = self.profile(np.array([p["boundary_position_nm"]]))
        return {
            "vacuum_edge_position_nm": p["vacuum_edge_position_nm"],
            "boundary_position_nm": p["boundary_position_nm"],
            "boundary_width_nm": p["boundary_width_nm"],
            "ldo_centre_bulk_mev": p["ldo_centre_mev"],
            "ldo_centre_boundary_mev": p["ldo_centre_mev"] + p["ldo_boundary_shift_mev"],
            "ldo_boundary_shift_mev": p["ldo_boundary_shift_mev"],
            "li_to_co_bulk": p["li_to_co_bulk"],
            "li_to_co_boundary": p["li_to_co_bulk"] * (1.0 + p["li_to_co_boundary_change"]),
            "li_to_co_boundary_change": p["li_to_co_boundary_change"],
            "thickness_at_boundary_t_over_lambda":
                float(at_boundary["thickness_t_over_lambda"][0]),
        }
