"""Does the Evaluate page's estimate hold? Runs one evaluation plan in this process (default: standard
AutoAttack Linf, eps 0.1, on the bundled pgd-linf model, 100 test images, with the gradient-masking
checks) and prints, at each report, the share of image-attacks done, the bar (cost share) and the
time the page would say is left against the time that was truly left.

    python benchmarks/evaluation_progress.py [--count 100] [--model pgd-linf] [--no-sanity]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advcore.evaluation import plans  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--model", default="pgd-linf")
    parser.add_argument("--no-sanity", action="store_true")
    args = parser.parse_args()
    plan = plans.Plan.from_dict({
        "models": [{"label": args.model, "path": str(ROOT / "assets" / "models" / args.model / "model.keras")}],
        "attacks": [{"name": "AutoAttack", "method": "autoattack", "options": {"norm": "linf"}}],
        "eps": {"linf": [0.1]}, "count": args.count, "batch_size": 500, "sanity": not args.no_sanity})
    reports = []
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        plans.run_plan(plan, Path(out), report=lambda r: reports.append((time.perf_counter() - began, r)))
        total = time.perf_counter() - began
    print(f"{args.model}, {args.count} images, AutoAttack Linf eps 0.1: {total:.1f} s in all, "
          f"{len(reports)} reports, {reports[-1][1]['total']} image-attacks")
    print(f"{'at s':>7} {'units':>6} {'bar':>6} {'said left s':>12} {'truly left s':>13}  stage")
    worst = 0.0
    for at, report in reports:
        fraction = report["fraction"]
        said = report["elapsed"] * (1 - fraction) / fraction if fraction else float("nan")
        truly = total - at
        if fraction and at > 0.1 * total:
            worst = max(worst, abs(said - truly) / total)
        print(f"{at:7.1f} {report['done'] / report['total']:6.1%} {fraction:6.1%} {said:12.1f} {truly:13.1f}  "
              f"{report['cell']} · {report.get('stage', '')}")
    print(f"after the first 10% of the time, the estimate is off by at most {worst:.0%} of the whole run")


if __name__ == "__main__":
    main()
