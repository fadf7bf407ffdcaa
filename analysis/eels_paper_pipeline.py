"""The paper's EELS pipeline, as its Methods describe it: ZLP maximum to 0, two-window
power-law background, normalisation by the ZLP integral over ±2.5 meV, three aloof Voigt
peaks fitted first and then fixed, four more for each transmitting spectrum with the
paper's bounds and starts, peak counts chosen by reduced χ².

Why two. The paper's model (3 aloof Voigt peaks fitted once and fixed, 4 more fitted per
spectrum with 16 free shape parameters) leaves the LDO centre of one spectrum nearly
undetermined: the LDO peak (≈49 meV, σ ≈ 6 meV) sits between the 41 meV phonon and the weak
54 meV polariton, and moving it trades against their amplitudes and against all widths. The
Cramér–Rao bound of that centre at ≈3·10⁴ LDO counts is tens of meV — the bound box decides
where it ends, and a small bias of the two-window ZLP background moves it by meV. So
`paper_pipeline` reproduces the paper's numbers and says where its model is inconsistent;
`eels_robust_pipeline` removes the degeneracies that physics allows to remove.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from . import eels_preprocessing as pre
from .eels_boundary import (
    estimate_boundary,
)
from .eels_fit_steps import (
    LDO,
    PAPER_ALOOF_PEAKS,
    PAPER_FWHM_BOUNDS_MEV,
    PAPER_PHONON_PEAKS,
    Window,
    _bound_notes,
    _choose_count,
    _fit,
    _fwhm_box_warning,
    _intensities,
    _paper_peak,
    _plain,
    _prepare_pixels,
    _prepare_pools,
    _residual_peak,
    _restart,
    _window_mask,
    li_to_co_profile,
    thickness_profile,
)
from .eels_voigt_fit import (
    FIXED,
    FREE,
    VoigtPeak,
)


@dataclass(frozen=True)
class PaperEelsResult:
    """The paper's procedure, per pixel. Amplitudes are areas per ZLP count; `warnings`
    says where the paper's model is inconsistent and what was done about it."""

    positions_nm: np.ndarray
    zlp_zero_mev: np.ndarray
    zlp_counts: np.ndarray
    peak_names: tuple[str, ...]
    peak_values: np.ndarray  # (M, K, 4) amplitude, centre_mev, sigma_mev, gamma_mev
    peak_stderr: np.ndarray
    peak_at_bound: np.ndarray
    ldo_centre_mev: np.ndarray
    ldo_centre_stderr_mev: np.ndarray
    ldo_centre_at_bound: np.ndarray
    reduced_chi_square: np.ndarray
    polaritonic_intensity_per_zlp: np.ndarray
    phononic_intensity_per_zlp: np.ndarray
    aloof_peaks: dict[str, tuple[float, float, float, float]]
    aloof_peak_count: int
    additional_peak_count: int
    aloof_candidates_reduced_chi_square: dict[int, float]
    additional_candidates_reduced_chi_square: dict[int, float]
    boundary_index: int
    ldo_boundary_shift_mev: float
    fwhm_outside_stated_bounds: int
    t_over_lambda: np.ndarray | None
    li_to_co_relative: np.ndarray | None
    warnings: tuple[str, ...]

    def summary(self) -> dict[str, float | int | list]:
        """JSON-friendly scalars (and the warnings) for a run's stop document."""
        return {
            "ldo_boundary_shift_mev": _plain(self.ldo_boundary_shift_mev),
            "ldo_centre_ends_mean_mev": _plain(np.nanmean(self.ldo_centre_mev[[0, -1]])),
            "ldo_centre_at_bound_pixels": int(np.count_nonzero(self.ldo_centre_at_bound)),
            "aloof_peak_count": self.aloof_peak_count,
            "additional_peak_count": self.additional_peak_count,
            "boundary_index": self.boundary_index,
            "median_reduced_chi_square": _plain(np.nanmedian(self.reduced_chi_square)),
            "fwhm_outside_stated_bounds": self.fwhm_outside_stated_bounds,
            "warnings": list(self.warnings),
        }


def paper_pipeline(
    energy_mev: np.ndarray,
    spectra: np.ndarray,
    positions_nm: np.ndarray,
    aloof_spectrum: np.ndarray,
    *,
    background_windows_mev: Sequence[Window] = ((14.0, 20.0), (100.0, 120.0)),
    fit_window_mev: Window = (20.0, 100.0),
    boundary_position_nm: float | None = None,
    valence: tuple[np.ndarray, np.ndarray] | None = None,
    core: tuple[np.ndarray, np.ndarray] | None = None,
    select_peak_counts: bool = True,
) -> PaperEelsResult:
    """The paper's Methods, step by step, on a vibrational line scan (counts, M × N).

    ZLP maximum → 0 (whole channels); two-window power-law background on the raw counts;
    division by the ZLP counts in −2.5 … 2.5 meV (channel centres); the aloof spectrum fitted
    with 3 Voigt peaks (2–4 tried, chosen by reduced χ²) whose centres and widths are then
    fixed; 4 more peaks per transmitting spectrum (3–5 tried on the line's summed spectrum);
    the paper's bounds and guesses. The background windows and the fit window are not given
    in the paper (ours are defaults). The paper's inconsistent starts (81 meV σ 7 above its
    bound 6; LDO centre 49 — and 65 meV centre 65 — on their lower bounds) are moved 1 % of
    their box inside and reported in `warnings`, as is the mismatch of its σ/γ box with its
    FWHM range. The LDO shift is the paper's comparison: the pixel nearest the boundary
    against the mean of the line's two ends.
    """
    warnings: list[str] = [_fwhm_box_warning()]
    e = np.asarray(energy_mev, dtype=float)
    counts = np.atleast_2d(np.asarray(spectra, dtype=float))
    aloof_counts = np.atleast_2d(np.asarray(aloof_spectrum, dtype=float))
    zero = pre.zlp_zero_at_maximum(e, counts)
    trans = _prepare_pixels(e, counts, zero, background_windows_mev, False, True)
    aloof = _prepare_pixels(e, aloof_counts, pre.zlp_zero_at_maximum(e, aloof_counts),
                            background_windows_mev, False, True)
    a_mask = _window_mask(aloof.energies, fit_window_mev)
    t_mask = _window_mask(trans.energies, fit_window_mev)

    # Aloof: 3 peaks (2 and 4 tried), all four parameters free.
    base = [_paper_peak(n, i, lo, hi, warnings=warnings) for n, i, lo, hi in PAPER_ALOOF_PEAKS]
    aloof_fits = {3: _fit(aloof, a_mask, base)}
    if select_peak_counts:
        aloof_fits[2] = _fit(aloof, a_mask, [p for p in base if p.name != "polariton_54"])
        extra = _residual_peak(aloof_fits[3], aloof, a_mask, "polariton_extra")
        aloof_fits[4] = _fit(aloof, a_mask, [*_restart(aloof_fits[3], base), extra],
                             scale=False)
    n_aloof = _choose_count(aloof_fits)
    fa = aloof_fits[n_aloof]
    aloof_peaks = {name: tuple(float(v) for v in fa.values[0, k])
                   for k, name in enumerate(fa.peak_names)}
    warnings += _bound_notes(fa, "paper aloof fit")

    # Transmitting: aloof shapes fixed, their areas free; 4 more peaks (3 and 5 tried).
    paper_area = {name: initial[0] for name, initial, _, _ in PAPER_ALOOF_PEAKS}
    fixed_aloof = [VoigtPeak(name, paper_area.get(name, v[0] / fa.values[0, 0, 0] * 1.5e5),
                             *v[1:], modes=(FREE, FIXED, FIXED, FIXED))
                   for name, v in aloof_peaks.items()]
    phonons = [_paper_peak(n, i, lo, hi, warnings=warnings)
               for n, i, lo, hi in PAPER_PHONON_PEAKS]
    chosen, n_add, cand_red = phonons, 4, {}
    if select_peak_counts:
        every = np.ones((1, counts.shape[0]))
        summed = _prepare_pools(e, counts, zero, every, background_windows_mev, False, True,
                                trans.zlp_counts)
        s_mask = _window_mask(summed.energies, fit_window_mev)
        cands = {4: _fit(summed, s_mask, fixed_aloof + phonons)}
        areas = {n: float(cands[4].value(n, "amplitude")[0]) for n in cands[4].peak_names
                 if n.startswith("phonon")}
        three = [p for p in phonons if p.name != min(areas, key=areas.get)]
        cands[3] = _fit(summed, s_mask, fixed_aloof + three)
        extra = _residual_peak(cands[4], summed, s_mask, "phonon_extra")
        cands[5] = _fit(summed, s_mask, [*_restart(cands[4], fixed_aloof + phonons), extra],
                        scale=False)
        # The extra peak as found on the summed spectrum, its area relative to the LDO's
        # expressed in the paper's units, so that the per-pixel scaling treats it alike.
        f5 = cands[5]
        relative = f5.value("phonon_extra", "amplitude")[0] / f5.value(LDO, "amplitude")[0]
        five = [*phonons, replace(extra, amplitude=float(relative) * PAPER_PHONON_PEAKS[1][1][0],
                                  centre_mev=float(f5.value("phonon_extra", "centre_mev")[0]))]
        n_add = _choose_count(cands)
        chosen = {3: three, 4: phonons, 5: five}[n_add]
        cand_red = {n: float(f.reduced_chi_square[0]) for n, f in cands.items()}
    fit = _fit(trans, t_mask, fixed_aloof + chosen)
    warnings += _bound_notes(fit, "paper transmitting fits")
    fwhm = fit.fwhm_mev[:, len(fixed_aloof):]
    outside = int(np.count_nonzero((fwhm < PAPER_FWHM_BOUNDS_MEV[0] - 1e-9)
                                   | (fwhm > PAPER_FWHM_BOUNDS_MEV[1] + 1e-9)))
    m = counts.shape[0]
    if LDO in fit.peak_names:
        ldo, ldo_err = fit.value(LDO, "centre_mev"), fit.error(LDO, "centre_mev")
        ldo_bound = fit.bound_hit(LDO, "centre_mev")
    else:
        warnings.append("paper model: the chosen peak set has no LDO peak")
        ldo, ldo_err, ldo_bound = np.full(m, np.nan), np.full(m, np.nan), np.zeros(m, bool)

    polaritonic = _intensities(fit, [p.name for p in fixed_aloof])
    phononic = _intensities(fit, [p.name for p in chosen])
    x = np.asarray(positions_nm, dtype=float)
    li_co = li_to_co_profile(core)
    if boundary_position_nm is None:
        source = li_co[0] if li_co is not None else phononic
        boundary_position_nm = estimate_boundary(x, source)[0]
        warnings.append(f"boundary position estimated at {boundary_position_nm:.2f} nm from "
                        + ("Li:Co" if li_co is not None else "the phononic intensity"))
    b = int(np.argmin(np.abs(x - boundary_position_nm)))
    return PaperEelsResult(
        positions_nm=x, zlp_zero_mev=zero, zlp_counts=trans.zlp_counts,
        peak_names=fit.peak_names, peak_values=fit.values, peak_stderr=fit.stderr,
        peak_at_bound=fit.at_bound, ldo_centre_mev=ldo, ldo_centre_stderr_mev=ldo_err,
        ldo_centre_at_bound=ldo_bound, reduced_chi_square=fit.reduced_chi_square,
        polaritonic_intensity_per_zlp=polaritonic, phononic_intensity_per_zlp=phononic,
        aloof_peaks=aloof_peaks, aloof_peak_count=n_aloof, additional_peak_count=n_add,
        aloof_candidates_reduced_chi_square={
            n: float(f.reduced_chi_square[0]) for n, f in aloof_fits.items()},
        additional_candidates_reduced_chi_square=cand_red, boundary_index=b,
        ldo_boundary_shift_mev=float(ldo[b] - 0.5 * (ldo[0] + ldo[-1])),
        fwhm_outside_stated_bounds=outside, t_over_lambda=thickness_profile(valence),
        li_to_co_relative=None if li_co is None else li_co[0], warnings=tuple(warnings),
    )



# -- robust ----------------------------------------------------------------------------------

