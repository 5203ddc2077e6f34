"""CPU microseconds per committed step, per process, from finished runs' ``summary.json``.

Procedure (repeatable; the figures are benchmarks, not tests):

    bench run --backend sqlite --workers 1 --workload workloads/cpu-probe.toml --time-scale 0 \\
        [--synchronous NORMAL] --results-dir /tmp/cpu --no-progress
    bench baseline --backend sqlite --synchronous NORMAL --seconds 5
    bench baseline --backend sqlite --synchronous FULL --seconds 5
    bench baseline --backend postgres --clients 4 --seconds 5   # pgbench -c 4: the peer of
                                                                 # 2 workers on one server
    python scripts/cpu_per_step.py /tmp/cpu/<run-id> [more run dirs ...]

Each run's ``resources`` hold every role's CPU seconds during the drive (schedule start to the
end of the drain: ``cpu_s_during_drive``, sampled by the harness from /proc); ``steps.committed``
is the number of step-committed acks in the history, all of which fall in the drive. The table
divides one by the other: CPU µs per step for the worker(s), the harness, Litestream and
SeaweedFS, and their sum. With several run dirs (interleaved rounds, A B A B ...) it prints each
run, then the median [min..max] per label (``--label`` names a group; default: the backend and
its synchronous setting). Machine load changes the figures: note ``uptime`` beside them.

``workloads/cpu-probe.toml`` (4000 runs/s for 4 s) keeps one worker saturated for the whole
window; the built-in ``capacity`` (1000 runs/s) does not on sqlite NORMAL, so its steps/s is the
offered rate, not the capacity, and every process's idle polling lands on fewer steps. The
``runs_per_submit_tx`` column (sqlite, postgres) is how many runs the harness's submit
batches held on average; on sqlite a batch a worker did not take (``--submit-via client``, or
no answer) is a transaction of the harness's own, with a commit (at FULL an fsync) on its CPU;
on postgres every batch is one transaction of the harness's. The
``ls_compacted_mib`` column is what Litestream compacted inside the drive (its log; 0 also
when there is no Litestream): its level-1 compaction runs every 30 s, so a short drive may or
may not hold one, and the figures of Litestream and SeaweedFS move with it. They also fall as
steps/s rises (part of their work is per second: a sync and an upload each second), so compare
them at similar throughput.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROLE_ORDER = ("worker", "harness", "litestream", "seaweedfs", "postgres")
FIGURES = (
    "total",
    "steps_per_s",
    "runs_per_s",
    "harness_peak_rss_mib",
    "ls_compacted_mib",
    "runs_per_submit_tx",
)
_COMPACTED = re.compile(r'time=(\S+) .*msg="compaction complete".* size=(\d+)')


def litestream_compacted_mib(run_dir: Path, summary: dict[str, Any]) -> float | None:
    """MiB of level files Litestream wrote by compaction inside the drive (its log's wall-clock
    times against the manifest's start plus the drive's history times, to ~10 ms); None
    without a Litestream log or the times to place it."""
    log = run_dir / "logs" / "litestream.log"
    manifest = run_dir / "manifest.json"
    start_t, end_t = summary.get("schedule_start_t"), (summary.get("window") or {}).get("end_t")
    if not log.is_file() or not manifest.is_file() or start_t is None or end_t is None:
        return None
    started = datetime.fromisoformat(json.loads(manifest.read_text())["started_at"])
    lo, hi = started + timedelta(seconds=start_t), started + timedelta(seconds=end_t)
    total = 0
    for m in _COMPACTED.finditer(log.read_text()):
        if lo <= datetime.fromisoformat(m.group(1).replace("Z", "+00:00")) <= hi:
            total += int(m.group(2))
    return total / 2**20


def role_group(role: str) -> str:
    """``worker-0``, ``worker-1`` -> ``worker``; other roles as they are."""
    return role.split("-")[0] if role.startswith("worker-") else role


def per_step(summary: dict[str, Any]) -> dict[str, float]:
    """CPU µs per committed step for each role group, plus ``total``, ``steps_per_s`` and
    ``runs_per_s`` (throughput over the measured window)."""
    steps = summary["steps"]["committed"]
    if not steps:
        raise ValueError("no step was committed: nothing to divide by")
    out: dict[str, float] = {}
    for role, r in summary["resources"].items():
        cpu = r.get("cpu_s_during_drive")
        if cpu is None:
            continue
        g = role_group(role)
        out[g] = out.get(g, 0.0) + cpu * 1e6 / steps
    out["total"] = sum(out.values())
    t = summary.get("throughput", {})
    out["steps_per_s"] = t.get("steps_per_s", 0.0)
    out["runs_per_s"] = t.get("runs_per_s", 0.0)
    out["harness_peak_rss_mib"] = (
        summary["resources"].get("harness", {}).get("peak_rss_hwm_bytes", 0) / 2**20
    )
    txs = (summary.get("backend_metrics") or {}).get("submit_transactions")
    if txs:  # the harness's submit batches (sqlite: a worker's transaction or its own)
        out["runs_per_submit_tx"] = summary["runs"]["accepted"] / txs
    return out


def load(run_dir: Path) -> tuple[str, dict[str, Any]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    manifest_path = run_dir / "manifest.json"
    label = summary.get("backend", "?")
    if manifest_path.is_file():
        cfg = json.loads(manifest_path.read_text()).get("backend_config") or {}
        if cfg.get("synchronous"):
            label += f" {cfg['synchronous']}"
    return label, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="result directories (with summary.json)")
    ap.add_argument("--label", action="append", help="label per run dir, in the same order")
    args = ap.parse_args(argv)
    if args.label and len(args.label) != len(args.runs):
        print("error: give one --label per run dir", file=sys.stderr)
        return 2
    rows: list[tuple[str, dict[str, float]]] = []
    for i, d in enumerate(args.runs):
        try:
            label, summary = load(d)
            fig = per_step(summary)
            mib = litestream_compacted_mib(d, summary)
            if mib is not None:
                fig["ls_compacted_mib"] = mib
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {d}: {e}", file=sys.stderr)
            return 2
        rows.append((args.label[i] if args.label else label, fig))
    present = {k for _, fig in rows for k in fig} - set(FIGURES)
    roles = [r for r in ROLE_ORDER if r in present] + sorted(present - set(ROLE_ORDER))
    cols = [*roles, *FIGURES]
    print("label\trun\t" + "\t".join(cols))
    for (label, fig), d in zip(rows, args.runs, strict=True):
        print(f"{label}\t{d.name}\t" + "\t".join(f"{fig.get(c, 0.0):.1f}" for c in cols))
    groups: dict[str, list[dict[str, float]]] = {}
    for label, fig in rows:
        groups.setdefault(label, []).append(fig)
    print("\nmedian [min..max] per label (CPU µs per committed step; throughput per s)")
    for label, figs in groups.items():
        cells = []
        for c in cols:
            xs = [f.get(c, 0.0) for f in figs]
            cells.append(f"{c}={statistics.median(xs):.1f} [{min(xs):.1f}..{max(xs):.1f}]")
        print(f"{label} (n={len(figs)}): " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
