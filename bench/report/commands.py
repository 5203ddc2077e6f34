"""The `bench report` subcommand: argument parsing and dispatch, wired into ``bench.cli``.

Errors are raised as ``ConfigError`` (a ``DurabenchError``): ``bench.cli`` is the only place
that prints them and turns them into exit code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

COMMAND = "report"
# same value as bench.report.build.DEFAULT_TARGET_RUNS_PER_S; not imported from there because
# that module pulls in matplotlib, and every `bench` command would pay for it at start-up
DEFAULT_TARGET_RUNS_PER_S = 10.0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="charts and tables (report.md, report.html, PNGs) from result directories",
        description="Build a report from result directories (results/<run-id>/) and crash / "
        "sweep group files (results/<stamp>-crash.json, -sweep.json, whose trial directories "
        "are included). All inputs must share one schedule (same workload, seed and "
        "rate-scale), or be one workload and seed at several rate-scales (a load series: each "
        "rate-scale is its own configuration, and the exposure section draws exposure against "
        "offered load); partial or failed runs are flagged and kept out of the aggregates.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR_OR_GROUP_JSON",
        help="result directories and/or crash/sweep group .json files",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("report"),
        help="output directory for report.md, report.html and *.png (default ./report)",
    )
    p.add_argument(
        "--prices",
        type=Path,
        default=None,
        help="price table (TOML, same format as prices/default.toml; default: that file)",
    )
    p.add_argument(
        "--target-runs-per-s",
        type=float,
        default=DEFAULT_TARGET_RUNS_PER_S,
        help=f"load the monthly cost is computed for (default {DEFAULT_TARGET_RUNS_PER_S:g})",
    )
    p.set_defaults(func=dispatch)
    add_rpo_budget(p)


def add_rpo_budget(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rpo-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="mark configurations whose measured loss (RPO) or promised bound exceeds this "
        "many seconds, naming a swept setting that measured within it",
    )


def dispatch(args: argparse.Namespace, console: Console) -> int | None:
    """Run `bench report` if it is the chosen command; None otherwise."""
    if getattr(args, "cmd", None) != COMMAND:
        return None
    from bench.report.build import build

    out = build(args.inputs, args.out, args.prices, args.target_runs_per_s, args.rpo_budget)
    console.print(f"report: {out['markdown']}  {out['html']}  ({len(out) - 2} chart(s))")
    print(f"results: {out['html']}", file=sys.stderr)
    return 0
