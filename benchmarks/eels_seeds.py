"""The EELS grain-boundary dry run over many simulator seeds: how far the robust pipeline's
boundary shift lands from the truth it can measure, whether its stated errors are honest
(the pull, error / stated error, should scatter with a standard deviation near 1), the
Li:Co change, and the paper's pipeline on the same data.

    .venv/bin/python benchmarks/eels_seeds.py [--seeds 20] [--protocol FILE] [--set X=V]

Each seed is one `vegard dry-run --json` on a copy of the sim profile with that seed (the
virtual clock: the figures do not depend on the machine). Last line:
`seeds=<n> shift_error_mean_mev=<x> shift_error_rms_mev=<x> pull_std=<x> li_to_co_mean=<x>`.
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
    errors, pulls, li_to_co, paper = [], [], [], []
    print(f"{'seed':>4} {'shift meV':>16} {'truth meV':>9} {'pull':>6} {'Li:Co':>7} "
          f"{'paper meV':>9} {'paper at bound':>14}")
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(1, args.seeds + 1):
            profile["simulation"]["seed"] = seed
            path = Path(folder) / f"sim_{seed}.yaml"
            path.write_text(yaml.safe_dump(profile))
            summary = dry_run(args.protocol, path, Path(folder) / "data", args.set)
            analysis, truth = summary["analysis"], summary["ground_truth"]
            shift = analysis["ldo_boundary_shift_mev"]
            stderr = analysis["ldo_boundary_shift_stderr_mev"]
            measurable = truth["ldo_boundary_shift_region_mean_mev"]
            errors.append(shift - measurable)
            pulls.append((shift - measurable) / stderr)
            li_to_co.append(analysis["li_to_co_boundary_change_fraction"])
            paper_shift = analysis["paper"].get("ldo_boundary_shift_mev")
            paper.append(paper_shift)
            print(f"{seed:>4} {shift:>8.2f} ± {stderr:<5.2f} {measurable:>9.2f} {pulls[-1]:>6.2f} "
                  f"{li_to_co[-1]:>7.3f} {paper_shift:>9.2f} "
                  f"{analysis['paper'].get('ldo_centre_at_bound_fraction', float('nan')):>14.2f}")
    rms = (sum(e * e for e in errors) / len(errors)) ** 0.5
    print(f"robust: error vs the measurable truth mean {statistics.mean(errors):+.2f} meV, rms "
          f"{rms:.2f} meV, within 0.3 meV in {sum(abs(e) < 0.3 for e in errors)} of {len(errors)}; "
          f"pull std {statistics.stdev(pulls):.2f}")
    print(f"Li:Co change {statistics.mean(li_to_co):+.3f} ± {statistics.stdev(li_to_co):.3f} "
          f"(truth {truth['li_to_co_boundary_change_fraction']:+.2f}); paper's shift "
          f"{statistics.mean(paper):+.2f} ± {statistics.stdev(paper):.2f} meV")
    print(f"seeds={len(errors)} shift_error_mean_mev={statistics.mean(errors):.3f} "
          f"shift_error_rms_mev={rms:.3f} pull_std={statistics.stdev(pulls):.3f} "
          f"li_to_co_mean={statistics.mean(li_to_co):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
