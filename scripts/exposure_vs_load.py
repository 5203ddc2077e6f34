"""Exposure against offered load: the same workload at increasing ``--rate-scale`` on each
backend configuration, one ``bench run`` per point, then a chart of exposure p50 / p99 / max
against offered runs/s, a CSV and a JSON of the points.

    python scripts/exposure_vs_load.py --out /tmp/load \\
        --config "sqlite" --config "postgres --standby async" --rate-scales 1,4,16

Every point is a normal run directory under OUT/runs (its summary.json has the figures, its
exposure_series.csv the acks at risk over time); a run that failed or was partial is listed
with its verdict, never dropped silently.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd


def run_point(config: str, scale: float, args: argparse.Namespace, runs_dir: Path) -> Path:
    argv = [sys.executable, "-m", "bench.cli", "run", "--backend", *shlex.split(config)]
    argv += ["--workload", args.workload, "--rate-scale", f"{scale:g}"]
    argv += ["--time-scale", f"{args.time_scale:g}", "--seed", str(args.seed)]
    argv += ["--results-dir", str(runs_dir), "--no-progress"]
    print("$", shlex.join(argv[1:]), file=sys.stderr, flush=True)
    out = subprocess.run(argv, capture_output=True, text=True)
    lines = (out.stdout + "\n" + out.stderr).splitlines()  # `results:` goes to stderr
    dirs = [x.split("results:", 1)[1].strip() for x in lines if x.startswith("results:")]
    dirs = [d for d in dirs if d and Path(d, "summary.json").exists()]
    if not dirs:
        raise SystemExit(f"error: no result for {config} x{scale:g}: {out.stderr[-2000:]}")
    return Path(dirs[-1])


def point(label: str, scale: float, run_dir: Path) -> dict[str, Any]:
    s = json.loads((run_dir / "summary.json").read_text())
    e = s.get("exposure") or {}
    ex = e.get("exposure_s") or {}
    res = e.get("resolution_s") or {}
    return {
        "label": label,
        "rate_scale": scale,
        "offered": s.get("offered_rate_per_s"),
        "runs_per_s": (s.get("throughput") or {}).get("runs_per_s"),
        "acks": e.get("acks"),
        "p50": ex.get("p50"),
        "p99": ex.get("p99"),
        "max": ex.get("max"),
        "at_risk_peak": e.get("at_risk_peak"),
        "oldest_at_risk_max_s": e.get("oldest_at_risk_max_s"),
        "never_covered": e.get("acks_never_covered"),
        "resolution_s": (res.get("period_p99") or 0) + (res.get("read_p99") or 0),
        "wal_bytes_end": (s.get("backend_metrics") or {}).get("wal_bytes"),
        "verdict": s.get("verdict"),
        "warnings": len(s.get("warnings") or []),
        "run_dir": str(run_dir),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", help="backend and its options, e.g. 'sqlite'")
    ap.add_argument("--rate-scales", default="1,4,16")
    ap.add_argument("--workload", default="steady")
    ap.add_argument("--time-scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    configs = args.config or ["sqlite", "postgres --standby async"]
    try:
        scales = [float(x) for x in args.rate_scales.split(",")]
    except ValueError:
        print(f"error: --rate-scales must be numbers, got {args.rate_scales!r}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    points = []
    for config in configs:
        for scale in scales:
            points.append(point(config, scale, run_point(config, scale, args, args.out / "runs")))
            print(json.dumps(points[-1]), file=sys.stderr, flush=True)
    (args.out / "exposure_vs_load.json").write_text(json.dumps(points, indent=1))
    pd.DataFrame(points).to_csv(args.out / "exposure_vs_load.csv", index=False)
    from bench.report import charts
    from bench.report.exposure import vs_load

    usable = [p for p in points if p["p99"] is not None and p["offered"]]
    if usable:
        title = (
            f"Exposure vs offered load (workload {args.workload}, time-scale {args.time_scale:g})"
        )
        charts.save(vs_load(usable, title), args.out / "exposure_vs_load.png")
    cols = ["label", "offered", "runs_per_s", "p50", "p99", "max", "at_risk_peak"]
    cols += ["resolution_s", "verdict"]
    print(pd.DataFrame(points)[cols].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
