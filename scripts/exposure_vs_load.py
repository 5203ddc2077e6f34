"""Exposure against offered load: the same workload at increasing ``--rate-scale`` on each
backend configuration (one ``bench run`` per point), then ``bench report`` over all of them,
whose exposure section draws exposure p50 / p99 / max and the peak of acks at risk against
offered runs/s per configuration (bench/report/exposure.py). A thin wrapper: the same as
running the ``bench run`` lines it prints, then ``bench report OUT/runs/* --out OUT/report``.

    python scripts/exposure_vs_load.py --out /tmp/load \\
        --config "sqlite" --config "postgres --standby async" --rate-scales 1,4,16
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path


def bench(*argv: str) -> int:
    print("$ bench", shlex.join(argv), file=sys.stderr, flush=True)
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv]).returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", help="backend and its options, e.g. 'sqlite'")
    ap.add_argument("--rate-scales", default="1,4,16")
    ap.add_argument("--workload", default="steady")
    ap.add_argument("--time-scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    try:
        scales = [float(x) for x in args.rate_scales.split(",")]
    except ValueError:
        print(f"error: --rate-scales must be numbers, got {args.rate_scales!r}", file=sys.stderr)
        return 2
    runs = args.out / "runs"
    for config in args.config or ["sqlite", "postgres --standby async"]:
        for scale in scales:
            # a run whose checks fail still has its figures: the report flags it, so go on
            rc = bench(
                "run",
                "--backend",
                *shlex.split(config),
                *("--workload", args.workload, "--rate-scale", f"{scale:g}"),
                *("--time-scale", f"{args.time_scale:g}", "--seed", str(args.seed)),
                *("--results-dir", str(runs), "--no-progress"),
            )
            if rc == 2:  # bad input: nothing ran
                return 2
    dirs = sorted(str(p) for p in runs.iterdir() if (p / "summary.json").exists())
    return bench("report", *dirs, "--out", str(args.out / "report"))


if __name__ == "__main__":
    sys.exit(main())
