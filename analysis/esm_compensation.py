"""The three-excitation compensation: Vegard strain with the electrostatics taken out.

Per pixel, with the SHO amplitudes of the three band excitations (ESM paper, Fig. 1):

    Ā_LF = (A_LF+ + A_LF−) / 2        a_f = Ā_LF − A_HF  ≈ d1 (Vegard strain at f_LF)

Why it works. The first-harmonic electrostatic force at the LF drive is ∝ C′·(±U_dc − V_cpd)·U_ac
and does not depend on frequency; the amplitude-modulated 10 MHz drive, which ions cannot follow,
gives an electrostatic force ∝ C′·U_ac² at the same contact resonance and no Vegard term. The
subtraction is exact when
  * |V_cpd| ≤ U_dc: then the mean of |U_dc − V_cpd| and |U_dc + V_cpd| is U_dc, so V_cpd cancels
    in Ā_LF and its electrostatic part is ∝ C′·U_dc·U_ac (for |V_cpd| > U_dc the mean is |V_cpd|
    and a residue of the contact potential is left in a_f);
  * U_dc = U_ac: then that frequency-independent electrostatic part of Ā_LF equals the HF
    electrostatic amplitude (the paper uses U_dc = ±U_ac: 1 V, and 2.5 V for the T series);
  * the Vegard and electrostatic responses add in amplitude at the resonance for both DC signs
    (in phase, the model behind the method); partly out of phase, they add as vectors and a_f
    underestimates d1.
The same subtraction removes contact-mechanics / topography cross-talk common to all three
excitations (Kelvin–Voigt contact), since it enters Ā_LF and A_HF alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CompensatedMaps:
    """The three amplitudes and what the compensation makes of them, all in pm, same shape."""

    a_lf_plus_pm: np.ndarray
    a_lf_minus_pm: np.ndarray
    a_lf_pm: np.ndarray
    a_hf_pm: np.ndarray
    a_f_pm: np.ndarray


def compensate(
    a_lf_plus_pm: np.ndarray, a_lf_minus_pm: np.ndarray, a_hf_pm: np.ndarray
) -> CompensatedMaps:
    """Ā_LF = (A_LF+ + A_LF−)/2 and a_f = Ā_LF − A_HF, pixel by pixel (NaN propagates)."""
    plus = np.asarray(a_lf_plus_pm, dtype=float)
    minus = np.asarray(a_lf_minus_pm, dtype=float)
    hf = np.asarray(a_hf_pm, dtype=float)
    a_lf_pm = 0.5 * (plus + minus)
    return CompensatedMaps(
        a_lf_plus_pm=plus,
        a_lf_minus_pm=minus,
        a_lf_pm=a_lf_pm,
        a_hf_pm=hf,
        a_f_pm=a_lf_pm - hf,
    )


def _selected(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    chosen = np.isfinite(values)
    if mask is not None:
        chosen &= np.asarray(mask, dtype=bool)
    return values[chosen]


def region_mean(values: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean over the finite pixels inside `mask` (all if None); NaN when there are none."""
    selected = _selected(values, mask)
    return float(selected.mean()) if selected.size else float("nan")


def region_std(values: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Sample standard deviation (ddof=1) over the finite pixels in `mask`; NaN below two."""
    selected = _selected(values, mask)
    return float(selected.std(ddof=1)) if selected.size > 1 else float("nan")
