"""Regenerate the figures README.md shows, from a run made here (or an earlier one).

The README's chart (docs/img/step-commit-cdf.png) and every number quoted beside it come from one
`bench compare` run; this script makes that run, copies the chart the report drew to the path the
README shows, and rewrites the README block between the `readme-figures` markers with the
numbers, the exact command, the schedule hash and the run ids, so a reader can trace each figure
to its run (and its result files). It takes several minutes (three backends, the default
60-second agent-burst workload each) and is not run in CI.

    python scripts/readme_figures.py                  # run the compare, then update the README
    python scripts/readme_figures.py --from DIR       # update from an earlier compare's results

The chart is drawn by the report's own chart function (bench.report.charts.latency_cdf) from
the step-commit histograms stored in each run's summary.json. A run the report would keep out
of its medians (verdict not True, load generator behind its schedule, partial) stops the script
with exit 1, unless --allow-flagged: then the chart labels that curve "flagged" and the README
says why, beside its numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hdrh.histogram import HdrHistogram  # noqa: E402

from bench.report import charts  # noqa: E402
from bench.report.load import Run, load_run  # noqa: E402

README = ROOT / "README.md"
IMAGE = ROOT / "docs" / "img" / "step-commit-cdf.png"
PROVENANCE = IMAGE.with_suffix(".json")  # the same figures, as data, next to the chart
TITLE = "Step-commit latency (checkpoint start -> durable ack): CDF"  # as in the report
BEGIN, END = "<!-- readme-figures:begin -->", "<!-- readme-figures:end -->"
BACKENDS = ("sqlite", "postgres", "temporal")
COMMAND = ["bench", "compare", "--backends", ",".join(BACKENDS), "--workload", "agent-burst"]
COMMAND += ["--seed", "1", "--repeats", "1"]
WHY = {  # what each backend's step ack is: the reading the README gives the curves
    "sqlite": "a SQLite checkpoint is a local fsynced commit",
    "postgres": "Postgres adds a loopback round trip and its own WAL flush",
    "temporal": "Temporal's step ack is an RPC to the dev server, which persists the activity "
    "completion into its history",
}


def run_compare(results: Path) -> None:
    """Run the README's command into ``results`` (its report goes to ``results/report``)."""
    argv = [sys.executable, "-m", "bench.cli", *COMMAND[1:]]
    argv += ["--results-dir", str(results), "--out", str(results / "report"), "--no-progress"]
    print("running:", shlex.join(argv), file=sys.stderr, flush=True)
    done = subprocess.run(argv, cwd=ROOT, check=False)
    if done.returncode not in (0, 1):  # 1: a check failed; reported below, per run
        raise SystemExit(f"bench compare failed with exit code {done.returncode}")


def draw(runs: list[Run], f: dict[str, Any]) -> None:
    """The step-commit CDF of each run, with the report's chart function, to IMAGE."""
    hists: dict[str, tuple[HdrHistogram, int]] = {}
    for r in runs:
        enc = ((r.summary.get("latency") or {}).get("step_commit") or {}).get("hdr")
        if not enc:
            raise SystemExit(f"{r.path}: no step-commit histogram in summary.json")
        flag = "" if f["runs"][r.backend]["in_chart"] else " (flagged)"
        hists[r.backend + flag] = (HdrHistogram.decode(enc), 1)
    fig = charts.latency_cdf(hists, TITLE, charts.colors(list(hists)))
    IMAGE.parent.mkdir(parents=True, exist_ok=True)
    charts.save(fig, IMAGE)


def runs_of(results: Path) -> list[Run]:
    runs = [load_run(p) for p in sorted(results.iterdir()) if (p / "manifest.json").exists()]
    by = {r.backend: r for r in runs}
    missing = [b for b in BACKENDS if b not in by]
    if missing:
        raise SystemExit(f"{results}: no run of {', '.join(missing)}")
    hashes = {r.schedule.get("hash") for r in by.values()}
    if len(hashes) != 1:
        raise SystemExit(f"{results}: runs of different schedules ({hashes})")
    return [by[b] for b in BACKENDS]


def figures(runs: list[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "command": shlex.join(COMMAND),
        "schedule_hash": runs[0].schedule.get("hash"),
        "workload": runs[0].workload,
        "seed": runs[0].schedule.get("seed"),
        "measured_at": runs[0].manifest.get("started_at"),
        "machine": runs[0].manifest.get("machine"),
        "chart": str(IMAGE.relative_to(ROOT)),
        "runs": {},
    }
    for r in runs:
        sc = (r.summary.get("latency") or {}).get("step_commit") or {}
        out["runs"][r.backend] = {
            "run_id": r.run_id,
            "verdict": r.verdict,
            "in_chart": r.steady,  # False: drawn, but labelled "flagged"
            "flag": None if r.steady else (r.apart_reason or "; ".join(r.problems)),
            "step_commit_count": sc.get("count"),
            "step_commit_p50_ms": _ms(sc.get("p50_s")),
            "step_commit_p99_ms": _ms(sc.get("p99_s")),
        }
    return out


def _ms(s: float | None) -> float | None:
    return None if s is None else float(f"{s * 1000:.2g}") if s < 0.01 else round(s * 1000, 1)


def readme_block(f: dict[str, Any]) -> str:
    cmd = f["command"]
    h = f["schedule_hash"]
    parts = []
    for b in BACKENDS:
        x = f["runs"][b]
        fig = f"(median {x['step_commit_p50_ms']:g} ms, p99 {x['step_commit_p99_ms']:g} ms)"
        flag = "" if x["in_chart"] else f" [run flagged: {x['flag']}]"
        parts.append(f"{WHY[b]} {fig}{flag}")
    runs = ", ".join(f"{b} `{f['runs'][b]['run_id']}`" for b in BACKENDS)
    flagged = [b for b in BACKENDS if not f["runs"][b]["in_chart"]]
    caveat = (
        f" Flagged runs ({', '.join(flagged)}) are ones the report would keep out of its "
        "medians: their figures are shown as measured, not as a trustworthy result; rerun the "
        "script on a quiet machine to replace them."
        if flagged
        else ""
    )
    m = f.get("machine") or {}
    return f"""{BEGIN}
`bench compare` and `bench report` write `report.md`, a self-contained `report.html` and PNG
charts. This one comes from `{cmd}` (schedule `{h[:16]}`, one run each, on a
{m.get("cpu_count", "?")}-core machine, {str(f["measured_at"])[:10]}; runs {runs}):

![Step-commit latency CDF for sqlite, postgres and temporal](docs/img/step-commit-cdf.png)

Each curve is one backend's distribution of **step-commit latency**: from the moment a step's
result is ready to the moment it is durable and acknowledged. Read it left to right: the x axis
(log scale) is latency, the y axis the share of checkpoints at or below it; the dotted lines mark
p50 and p99, so where a curve crosses them is that percentile. Further left is faster; a curve
that leans right at the top has a slow tail. Here {parts[0]}, {parts[1]}, and {parts[2]}.
Numbers from one machine and one run: the report gives spreads across repeats.{caveat} The chart and
every number in this paragraph are regenerated by `python scripts/readme_figures.py` (which
runs the command above; `docs/img/step-commit-cdf.json` holds the same figures with the full
schedule hash).
{END}"""


def update_readme(block: str) -> None:
    text = README.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SystemExit(f"{README}: expected one {BEGIN} ... {END} block")
    new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    README.write_text(new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="src", type=Path, help="results of an earlier compare run")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "results" / "readme-figures")
    ap.add_argument("--allow-flagged", action="store_true", help="publish even if a run is flagged")
    args = ap.parse_args(argv)
    if args.src is not None:
        results = args.src
    else:
        results = args.results_dir / time.strftime("%Y%m%d-%H%M%S")
        run_compare(results)
    runs = runs_of(results)
    f = figures(runs)
    flagged = {b: x["flag"] for b, x in f["runs"].items() if not x["in_chart"]}
    if flagged and not args.allow_flagged:
        print(f"not published: flagged runs {flagged} (rerun, or --allow-flagged)", file=sys.stderr)
        return 1
    draw(runs, f)
    PROVENANCE.write_text(json.dumps(f, indent=2) + "\n")
    update_readme(readme_block(f))
    print(f"updated {IMAGE.relative_to(ROOT)}, {PROVENANCE.relative_to(ROOT)} and README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
