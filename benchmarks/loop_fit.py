"""Speed and accuracy of the batched loop fit against BGlib's per-loop `fit_loop`.

Synthesises 10 000 loops (seeded) of the 9-parameter model on the BE default sweep (8 V, 64 DC
steps per cycle, 0.5 V steps): R− uniform in [−1.5, −0.5], switchable response in [1, 3], the
branch centres c− in [−5, −1] V and c+ in [1, 5] V, slope in ±0.02 /V, the four widths in
[0.3, 1.5] V, plus Gaussian noise of rms 5 % of the switchable response. `fit_loops` fits all of
them; BGlib 0.0.6's `fit_loop` fits a sample of them one call per loop, from BGlib's own
`generate_guess`, on the quarter-shifted sweep it expects (only the `fit_loop` calls are timed).

Both are scored on the same definition: the coercive voltage is the bias at which a branch is
half switched, computed from each fit's parameters with `switched_bias` (BGlib reports the
branch centres c± as V±; their errors are printed too, and are large for every fitter, because
with unequal widths c slides along the width ratio at almost no cost in residual).

BGlib's package `__init__` imports numpy_groupies 0.9.7, which fails on numpy 2 (np.object),
so its `be/analysis/utils/be_loop.py` (numpy/scipy only) is loaded from the installed file.
Without BGlib installed (`pip install -e '.[bench]'`) the reference is the same model fitted
per loop with scipy.optimize.curve_fit, and is labelled so.

    .venv/bin/python benchmarks/loop_fit.py [--quick] [--loops 10000] [--sample 200]

Last line: `loops_per_s=<x> speedup_vs_bglib=<y> median_coercive_error_v=<e>
bglib_median_coercive_error_v=<f>`, both medians over the same sample of loops (the median of
`fit_loops` over all loops is printed above it).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np

from vegard.analysis.loop_fit import fit_loops, loop_model, switched_bias
from vegard.plans.spectroscopy_waveforms import bipolar_triangle_v

DC_V = bipolar_triangle_v(8.0, steps_per_cycle=64)
NOISE = 0.05


def synthesise(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Known parameters (n, 9) in BGlib's order and the noisy loops (n, 64)."""
    rng = np.random.default_rng(seed)
    truth = np.column_stack([
        rng.uniform(-1.5, -0.5, n),
        rng.uniform(1.0, 3.0, n),
        rng.uniform(-5.0, -1.0, n),
        rng.uniform(1.0, 5.0, n),
        rng.uniform(-0.02, 0.02, n),
        rng.uniform(0.3, 1.5, (n, 4)),
    ])
    clean = loop_model(DC_V, truth)
    return truth, clean + NOISE * truth[:, 1:2] * rng.standard_normal(clean.shape)


def coercive(parameters: np.ndarray) -> np.ndarray:
    """Half-switched biases (n, 2): descending (V−) and ascending (V+) branch."""
    p = parameters
    return np.column_stack([switched_bias(0.5, p[:, 2], p[:, 5], p[:, 6]),
                            switched_bias(0.5, p[:, 3], p[:, 7], p[:, 8])])


def load_bglib_be_loop():
    """BGlib's be_loop module from the installed file, or None if BGlib is not installed."""
    spec = importlib.util.find_spec("BGlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "be" / "analysis" / "utils" / "be_loop.py"
    module_spec = importlib.util.spec_from_file_location("bglib_be_loop", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def bglib_reference(be_loop) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """BGlib's per-loop fit as a function of one loop; asserts the two models agree."""
    shift = -DC_V.size // 4
    dc_shifted = np.roll(DC_V, shift)
    check = np.array([-1.0, 2.0, -2.0, 3.0, 0.01, 0.5, 1.2, 0.7, 0.4])
    np.testing.assert_allclose(be_loop.loop_fit_function(dc_shifted, check),
                               np.roll(loop_model(DC_V, check), shift), atol=1e-9)

    def fit(loop: np.ndarray, timer: list[float]) -> np.ndarray:
        guess = be_loop.generate_guess(DC_V, loop)
        start = time.perf_counter()
        result, _, _ = be_loop.fit_loop(dc_shifted, np.roll(loop, shift), guess)
        timer.append(time.perf_counter() - start)
        return result.x

    return "BGlib 0.0.6 be_loop.fit_loop", fit


def curve_fit_reference() -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """Fallback: the same model per loop with scipy curve_fit and BGlib-like start and bounds."""
    from scipy.optimize import curve_fit

    lower = [-1e3, -1e3, -1e3, -1e3, -1e-1, 1e-3, 1e-3, 1e-3, 1e-3]
    upper = [1e3, 1e3, 1e3, 1e3, 1e-1, 100, 100, 100, 100]

    def model(_v, *theta):
        return loop_model(DC_V, np.asarray(theta))

    def fit(loop: np.ndarray, timer: list[float]) -> np.ndarray:
        guess = [loop.min(), np.ptp(loop), DC_V.min() / 2, DC_V.max() / 2, 0, 2, 2, 2, 2]
        start = time.perf_counter()
        theta, _ = curve_fit(model, DC_V, loop, p0=guess, bounds=(lower, upper))
        timer.append(time.perf_counter() - start)
        return theta

    return "scipy curve_fit per loop (FALLBACK: BGlib not installed)", fit


def median_abs(values: np.ndarray) -> float:
    return float(np.nanmedian(np.abs(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2000 loops, sample of 50")
    parser.add_argument("--loops", type=int, default=None, help="default 10000 (quick 2000)")
    parser.add_argument("--sample", type=int, default=None, help="default 200 (quick 50)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_loops = args.loops or (2000 if args.quick else 10_000)
    n_sample = min(args.sample or (50 if args.quick else 200), n_loops)

    truth, loops = synthesise(n_loops, args.seed)
    true_coercive = coercive(truth)
    fit_loops(DC_V, loops[:64])  # warm-up
    start = time.perf_counter()
    ours = fit_loops(DC_V, loops)
    ours_s = time.perf_counter() - start
    rate = n_loops / ours_s
    our_params = ours.parameters
    our_error = np.column_stack([ours.coercive_voltage_negative_v,
                                 ours.coercive_voltage_positive_v]) - true_coercive
    print(f"{n_loops} loops of {DC_V.size} DC steps, noise {NOISE:.0%} of the switchable "
          "response")
    print(f"  fit_loops: {ours_s:.2f} s ({rate:.0f} loops/s), converged "
          f"{ours.converged.mean():.1%}, at a bound {ours.at_bound.mean():.1%}, "
          f"median R² {np.median(ours.r_squared):.4f}")
    print(f"    coercive (half-switched) |error| median {median_abs(our_error):.4f} V, p90 "
          f"{np.percentile(np.abs(our_error), 90):.3f} V, p99 "
          f"{np.percentile(np.abs(our_error), 99):.3f} V; centres c± median "
          f"{median_abs(our_params[:, 2:4] - truth[:, 2:4]):.3f} V")
    pulls = our_error[:, 0] / ours.coercive_voltage_negative_error_v
    print(f"    pull of V− (error / standard error): std {np.nanstd(pulls):.2f}")

    rng = np.random.default_rng(args.seed + 1)
    turned = fit_loops(DC_V, (loops + 1j * NOISE * truth[:, 1:2]
                              * rng.standard_normal(loops.shape))
                       * np.exp(1j * rng.uniform(-np.pi, np.pi, (n_loops, 1))))
    turned_error = np.column_stack([turned.coercive_voltage_negative_v,
                                    turned.coercive_voltage_positive_v]) - true_coercive
    print(f"    same loops rotated to random phases (+ quadrature noise): median "
          f"{median_abs(turned_error):.4f} V")

    be_loop = None
    try:
        be_loop = load_bglib_be_loop()
    except Exception as error:  # a broken install: say so and fall back
        print(f"  BGlib could not be loaded ({type(error).__name__}: {error}); falling back")
    label, reference = bglib_reference(be_loop) if be_loop else curve_fit_reference()
    timer: list[float] = []
    sample = np.arange(n_sample)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.array([reference(loops[i], timer) for i in sample])
    ref_rate = n_sample / sum(timer)
    speedup = rate / ref_rate
    their_error = coercive(theirs) - true_coercive[sample]
    print(f"  {label}, one call per loop on {n_sample} of them: {sum(timer):.2f} s in the "
          f"fits ({ref_rate:.1f} loops/s, {1e3 / ref_rate:.0f} ms per loop; all {n_loops} "
          f"would take {n_loops / ref_rate:.0f} s) -> fit_loops is {speedup:.0f}x faster")
    print(f"    coercive (half-switched) |error| median {median_abs(their_error):.4f} V, p90 "
          f"{np.percentile(np.abs(their_error), 90):.3f} V; centres c± (BGlib's V±) median "
          f"{median_abs(theirs[:, 2:4] - truth[sample, 2:4]):.3f} V; loops with an error "
          f"> 0.5 V: {np.mean(np.any(np.abs(their_error) > 0.5, axis=1)):.1%} "
          f"(fit_loops {np.mean(np.any(np.abs(our_error) > 0.5, axis=1)):.1%})")
    print(f"    fit_loops on the same {n_sample}: median "
          f"{median_abs(our_error[sample]):.4f} V")
    ours_ssr = np.sum((loop_model(DC_V, our_params[sample]) - loops[sample]) ** 2, axis=1)
    their_ssr = np.sum((loop_model(DC_V, theirs) - loops[sample]) ** 2, axis=1)
    print(f"    residual of fit_loops against the reference: lower on "
          f"{np.mean(ours_ssr < their_ssr * (1 - 1e-6)):.1%}, higher on "
          f"{np.mean(ours_ssr > their_ssr * (1 + 1e-6)):.1%} (equal within 1e-6 on the rest)")
    print(f"loops_per_s={rate:.0f} speedup_vs_bglib={speedup:.0f} "
          f"median_coercive_error_v={median_abs(our_error[sample]):.4f} "
          f"bglib_median_coercive_error_v={median_abs(their_error):.4f}")


if __name__ == "__main__":
    main()
