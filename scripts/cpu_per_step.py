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
``ls_compacted_mib`` column is what Litestream compacted during the run (its log): a 30 s
level-1 compaction inside a short drive adds ~10 µs/step to Litestream and to SeaweedFS.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

ROLE_ORDER = ("worker", "harness", "litestream", "seaweedfs", "postgres")
FIGURES = ("total", "steps_per_s", "runs_per_s", "harness_peak_rss_mib", "ls_compacted_mib")
_COMPACTED = re.compile(r'msg="compaction complete".* size=(\d+)')


def litestream_compacted_mib(run_dir: Path) -> float:
    """MiB of level files Litestream wrote by compaction during the run (0 without its log)."""
    log = run_dir / "logs" / "litestream.log"
    if not log.is_file():
        return 0.0
    return sum(int(m.group(1)) for m in _COMPACTED.finditer(log.read_text())) / 2**20


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
            fig["ls_compacted_mib"] = litestream_compacted_mib(d)
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
