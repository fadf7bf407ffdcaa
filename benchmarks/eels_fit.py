"""Speed and accuracy of the batched Voigt fit against lmfit on the paper's 7-peak model.

Synthesises transmitting vibrational spectra on the paper's axis (0.4 meV/channel, fitted
over 20–100 meV) from the paper's model as truth: three aloof ("polaritonic") Voigt peaks
with known, fixed shapes, four more ("phononic") peaks with the paper's initial values as
truth (the 81 meV σ set to 5.8, inside the paper's bound of 6, and the LDO centre drawn
uniformly in 49.5–51.5 meV, inside its box 49–52), areas scaled to 3·10⁴ counts in the LDO
peak (the project's dose assumption), on a power-law ZLP tail; Poisson counts. The known tail
is subtracted and both fitters get the same data, weights (1/√counts), bounds (the paper's)
and starts (the paper's guesses, moved 1 % of the box inside where they are outside or on a
bound — as `paper_pipeline` does): 19 free parameters per spectrum.

It times `fit_voigt_peaks` on all spectra at once and lmfit one spectrum at a time (as the
paper did), and prints both fits' errors of the LDO centre against the truth.

    .venv/bin/python benchmarks/eels_fit.py [--spectra 2000] [--lmfit-spectra 8] [--seed 0]

Last line: `spectra_per_s=<n> speedup_vs_lmfit=<x>` (speedup "nan" without lmfit).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.special import voigt_profile

from vegard.analysis.eels_voigt_fit import FIXED, FREE, VoigtPeak, fit_voigt_peaks

DISPERSION_MEV = 0.4
ENERGY_MEV = np.arange(20.0, 100.0 + 1e-9, DISPERSION_MEV)
LDO_COUNTS = 3.0e4
TAIL_COUNTS_PER_CHANNEL_AT_50_MEV = 140.0
INF = math.inf

# name, truth (area in paper units, centre, σ, γ), lower, upper, paper start
ALOOF = (
    ("polariton_34", (1.5e5, 34.0, 4.0, 1.0)),
    ("polariton_54", (2.2e4, 54.0, 5.0, 1.0)),
    ("polariton_74", (1.8e5, 74.0, 5.5, 1.0)),
)
PHONON = (
    ("phonon_41", (6.1e4, 41.0, 5.5, 0.75), (0, 39, 3.1, 0.1), (INF, 42, 6, 2), 41.0, 5.5),
    ("ldo", (3.2e4, 50.5, 6.0, 0.75), (0, 49, 3.1, 0.1), (INF, 52, 6, 2), 49.0, 6.0),
    ("phonon_65", (1.45e5, 65.0, 4.5, 0.75), (0, 65, 3.1, 0.1), (INF, 68, 6, 2), 65.0, 4.5),
    ("phonon_81", (6.9e4, 81.0, 5.8, 0.75), (0, 79, 3.1, 0.1), (INF, 82, 6, 2), 81.0, 7.0),
)


def synthesise(count: int, seed: int):
    """(truth LDO centres, counts per meV after the known tail, their variance)."""
    rng = np.random.default_rng(seed)
    scale = LDO_COUNTS / 3.2e4
    ldo = rng.uniform(49.5, 51.5, count)
    e = ENERGY_MEV
    expected = np.zeros((count, e.size))
    for _, (a, c, s, g) in ALOOF:
        expected += scale * a * voigt_profile(e - c, s, g) * DISPERSION_MEV
    for name, (a, c, s, g), *_ in PHONON:
        centre = ldo[:, None] if name == "ldo" else c
        expected += scale * a * voigt_profile(e - centre, s, g) * DISPERSION_MEV
    tail = TAIL_COUNTS_PER_CHANNEL_AT_50_MEV * (e / 50.0) ** -2.0
    counts = rng.poisson(expected + tail).astype(float)
    signal = (counts - tail) / DISPERSION_MEV
    variance = np.maximum(counts, 1.0) / DISPERSION_MEV**2
    return ldo, signal, variance


def _start(value: float, low: float, high: float) -> float:
    width = high - low
    return float(np.clip(value, low + 0.01 * width, high - 0.01 * width))


def paper_starts() -> list[tuple[str, tuple, tuple, tuple, tuple]]:
    """(name, start (A, c, σ, γ), lower, upper, modes) of the 7 peaks, areas in counts."""
    scale = LDO_COUNTS / 3.2e4
    out = []
    for name, (a, c, s, g) in ALOOF:
        out.append((name, (scale * a, c, s, g), (0, -INF, 1e-3, 0), (INF,) * 4,
                    (FREE, FIXED, FIXED, FIXED)))
    for name, (a, _, _, g), lower, upper, c0, s0 in PHONON:
        start = (scale * a, _start(c0, lower[1], upper[1]), _start(s0, lower[2], upper[2]),
                 _start(g, lower[3], upper[3]))
        out.append((name, start, lower, upper, (FREE,) * 4))
    return out


def fit_batched(signal, variance):
    peaks = [VoigtPeak(n, *start, lower=lo, upper=hi, modes=modes)
             for n, start, lo, hi, modes in paper_starts()]
    fit = fit_voigt_peaks(ENERGY_MEV, signal, peaks, variance=variance)
    return fit.value("ldo", "centre_mev"), fit.bound_hit("ldo", "centre_mev")


def lmfit_model():
    """The paper's lmfit model: seven VoigtModels, γ freed from σ."""
    import lmfit

    model = None
    for name, *_ in paper_starts():
        part = lmfit.models.VoigtModel(prefix=f"{name}_")
        model = part if model is None else model + part
    params = model.make_params()
    for name, start, lower, upper, modes in paper_starts():
        for (par, value), lo, hi, mode in zip(
                zip(("amplitude", "center", "sigma", "gamma"), start, strict=True),
                lower, upper, modes, strict=True):
            p = params[f"{name}_{par}"]
            p.set(value=value, vary=(mode == FREE), expr="")
            if mode == FREE:
                p.set(min=lo, max=hi)
    return model, params


def fit_lmfit(signal, variance):
    model, params = lmfit_model()
    centres, at_bound, evaluations = [], [], []
    for y, var in zip(signal, variance, strict=True):
        result = model.fit(y, params.copy(), x=ENERGY_MEV, weights=1.0 / np.sqrt(var))
        c = result.params["ldo_center"].value
        centres.append(c)
        at_bound.append(min(c - 49.0, 52.0 - c) < 1e-6 * 3.0)
        evaluations.append(result.nfev)
    return np.array(centres), np.array(at_bound), np.array(evaluations)


def error_line(label, centres, truth, at_bound):
    err = centres - truth
    print(f"  {label:28s} LDO centre error: median |err| {np.median(np.abs(err)):.3f} meV, "
          f"rms {np.sqrt(np.mean(err**2)):.3f} meV, mean {np.mean(err):+.3f} meV; "
          f"at a bound {np.mean(at_bound):.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spectra", type=int, default=2000, help="spectra for the batched fit")
    parser.add_argument("--lmfit-spectra", type=int, default=8,
                        help="spectra fitted with lmfit (each takes seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    truth, signal, variance = synthesise(args.spectra, args.seed)
    fit_batched(signal[:16], variance[:16])  # warm-up
    start = time.perf_counter()
    ours, ours_bound = fit_batched(signal, variance)
    ours_s = time.perf_counter() - start
    rate = args.spectra / ours_s
    print(f"paper's 7-peak model, 19 free parameters, {ENERGY_MEV.size} channels, "
          f"{LDO_COUNTS:.0e} LDO counts")
    print(f"  fit_voigt_peaks: {args.spectra} spectra in {ours_s:.2f} s = {rate:.0f} spectra/s")
    error_line("fit_voigt_peaks (all)", ours, truth, ours_bound)

    try:
        import lmfit
    except ImportError:
        print("  lmfit not installed: its column is skipped (pip install lmfit)")
        print(f"spectra_per_s={rate:.0f} speedup_vs_lmfit=nan")
        return
    n = min(args.lmfit_spectra, args.spectra)
    start = time.perf_counter()
    theirs, theirs_bound, nfev = fit_lmfit(signal[:n], variance[:n])
    lm_s = time.perf_counter() - start
    lm_rate = n / lm_s
    print(f"  lmfit {lmfit.__version__}, one spectrum per call: {n} spectra in {lm_s:.1f} s = "
          f"{lm_rate:.3f} spectra/s (median {np.median(nfev):.0f} model evaluations)")
    error_line(f"lmfit (first {n})", theirs, truth[:n], theirs_bound)
    error_line(f"fit_voigt_peaks (first {n})", ours[:n], truth[:n], ours_bound[:n])
    print(f"spectra_per_s={rate:.0f} speedup_vs_lmfit={rate / lm_rate:.0f}")


if __name__ == "__main__":
    main()
