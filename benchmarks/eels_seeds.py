"""The EELS grain-boundary dry run over many simulator seeds: how far the robust pipeline's
boundary shift (on the boundary plane) lands from the simulator's, the pooled region's
from the same pixels' truth, whether its stated errors are honest
(the pull, error / stated error, should scatter with a standard deviation near 1), the
Li:Co change, and the paper's pipeline on the same data.

    .venv/bin/python benchmarks/eels_seeds.py [--seeds 20] [--protocol FILE] [--set X=V]

Each seed is one `vegard dry-run --json` on a copy of the sim profile with that seed (the
virtual clock: the figures do not depend on the machine). Last line:
`seeds=<n> shift_error_mean_mev=<x> shift_error_rms_mev=<x> pull_std=<x> li_to_co_mean=<x>
li_to_co_within_5pp=<n>` (one line).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def dry_run(protocol: Path, profile: Path, data_dir: Path, overrides: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "vegard.cli", "dry-run", str(protocol), "--profile",
         str(profile), "--data-dir", str(data_dir), "--json", "--quiet",
         *(f"--set={value}" for value in overrides)],
        capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, choices=range(2, 201),
                        metavar="N (2-200)")
    parser.add_argument("--protocol", type=Path,
                        default=ROOT / "configs/protocols/eels_licoo2_grain_boundary.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="simulator parameter, as for vegard dry-run "
                             "(e.g. stem.ldo_boundary_shift_mev=0)")
    args = parser.parse_args()
    profile = yaml.safe_load((ROOT / "configs/profiles/sim.yaml").read_text())
    errors, pulls, region_errors, li_to_co, paper = [], [], [], [], []
    print(f"{'seed':>4} {'shift meV':>16} {'pull':>6} {'region meV':>10} {'its truth':>9} "
          f"{'Li:Co':>7} {'paper meV':>9} {'paper at bound':>14}")
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(1, args.seeds + 1):
            profile["simulation"]["seed"] = seed
            path = Path(folder) / f"sim_{seed}.yaml"
            path.write_text(yaml.safe_dump(profile))
            summary = dry_run(args.protocol, path, Path(folder) / "data", args.set)
            analysis, truth = summary["analysis"], summary["ground_truth"]
            shift = analysis["ldo_boundary_shift_mev"]
            stderr = analysis["ldo_boundary_shift_stderr_mev"]
            errors.append(shift - truth["ldo_boundary_shift_mev"])
            pulls.append(errors[-1] / stderr)
            region = analysis["ldo_boundary_region_shift_mev"]
            region_truth = truth["ldo_boundary_shift_region_mean_mev"]
            region_errors.append(region - region_truth)
            li_to_co.append(analysis["li_to_co_boundary_change_fraction"])
            paper_shift = analysis["paper"].get("ldo_boundary_shift_mev")
            paper.append(paper_shift)
            print(f"{seed:>4} {shift:>8.2f} ± {stderr:<5.2f} {pulls[-1]:>6.2f} {region:>10.2f} "
                  f"{region_truth:>9.2f} {li_to_co[-1]:>7.3f} {paper_shift:>9.2f} "
                  f"{analysis['paper'].get('ldo_centre_at_bound_fraction', float('nan')):>14.2f}")
    rms = (sum(e * e for e in errors) / len(errors)) ** 0.5
    li_truth = truth["li_to_co_boundary_change_fraction"]
    within_5pp = sum(abs(v - li_truth) <= 0.05 for v in li_to_co)
    print(f"robust, on the boundary plane (truth {truth['ldo_boundary_shift_mev']:.2f} meV): "
          f"error mean {statistics.mean(errors):+.2f} meV, rms {rms:.2f} meV, within 0.3 meV "
          f"in {sum(abs(e) < 0.3 for e in errors)} of {len(errors)}; pull std "
          f"{statistics.stdev(pulls):.2f}")
    print(f"robust, pooled region vs the same pixels' truth: error mean "
          f"{statistics.mean(region_errors):+.2f} meV, rms "
          f"{(sum(e * e for e in region_errors) / len(region_errors)) ** 0.5:.2f} meV")
    print(f"Li:Co change {statistics.mean(li_to_co):+.3f} ± {statistics.stdev(li_to_co):.3f} "
          f"(truth {li_truth:+.2f}), within 5 pp in {within_5pp} of {len(li_to_co)}; "
          f"paper's shift {statistics.mean(paper):+.2f} ± {statistics.stdev(paper):.2f} meV")
    print(f"seeds={len(errors)} shift_error_mean_mev={statistics.mean(errors):.3f} "
          f"shift_error_rms_mev={rms:.3f} pull_std={statistics.stdev(pulls):.3f} "
          f"li_to_co_mean={statistics.mean(li_to_co):.3f} li_to_co_within_5pp={within_5pp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
