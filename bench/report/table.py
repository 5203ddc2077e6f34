"""The summary table `bench run` prints at the end (from summary.json + manifest.json only)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from backends.base import registered


def _ms(x: Any) -> str:
    return "-" if x is None else f"{x * 1000:,.1f}"


def _num(x: Any, fmt: str = ",.1f") -> str:
    return "-" if x is None else format(x, fmt)


def _mib(x: Any) -> str:
    return "-" if not x else f"{x / 2**20:,.1f}"


# size: a flat sequence of console tables over summary.json; not split in this change.
def render_summary(summary: dict[str, Any], manifest: dict[str, Any], console: Console) -> None:
    title = (
        f"{summary['backend']} / {summary['workload']}  seed {manifest['seed']}  "
        f"time-scale {manifest['settings']['time_scale']:g}  "
        f"rate-scale {manifest['schedule']['rate_scale']:g}"
    )
    console.print(f"\n[bold]{title}[/bold]")
    for k, v in (manifest.get("topology") or {}).items():
        console.print(f"  {k}: {v}")
    if manifest.get("partial"):
        console.print(f"[bold red]PARTIAL RESULT: {manifest.get('partial_reason')}[/bold red]")

    t = summary.get("throughput", {})
    r = summary.get("runs", {})
    s = summary.get("steps", {})
    w = summary.get("window", {})
    tab = Table(title="throughput (measured window, after warm-up)", title_justify="left")
    tab.add_column("figure")
    tab.add_column("value", justify="right")
    rows = [
        ("runs/s (completed)", _num(t.get("runs_per_s"))),
        ("failed runs/s", _num(t.get("failed_runs_per_s"))),
        ("steps/s", _num(t.get("steps_per_s"))),
        ("offered runs/s (arrivals in the window)", _num(summary.get("offered_rate_per_s"))),
        ("schedule average runs/s", _num(summary.get("schedule_rate_per_s"))),
        ("measured window s", _num(w.get("duration_s"))),
        (
            "runs accepted / completed / failed",
            f"{_num(r.get('accepted'), ',')} / "
            f"{_num(r.get('completed'), ',')} / {_num(r.get('failed'), ',')}",
        ),
        ("runs unfinished at the end", _num(r.get("unfinished"), ",")),
        ("steps committed", _num(s.get("committed"), ",")),
        ("duplicate step executions", _num(s.get("duplicate_executions"), ",")),
    ]
    for k, v in rows:
        tab.add_row(k, v)
    console.print(tab)

    lat = Table(
        title="latency, ms (run: from its scheduled arrival; measured runs only)",
        title_justify="left",
    )
    for col in ("what", "count", "censored", "p50", "p90", "p99", "p99.9", "max"):
        lat.add_column(col, justify="right" if col != "what" else "left")
    names = {
        "run": "run (completed + censored)",
        "run_failed": "run (failed)",
        "engine_overhead": "engine overhead",
        "step_commit": "step commit",
        "submit_ack": "submit ack",
    }
    for key, label in names.items():
        h = summary.get("latency", {}).get(key, {})
        lat.add_row(
            label,
            _num(h.get("count"), ","),
            _num(h.get("censored"), ","),
            _ms(h.get("p50_s")),
            _ms(h.get("p90_s")),
            _ms(h.get("p99_s")),
            _ms(h.get("p99.9_s")),
            _ms(h.get("max_s")),
        )
    console.print(lat)
    run_lat = summary.get("latency", {}).get("run", {})
    if run_lat.get("censored"):
        console.print(
            f"  {run_lat['censored']} run(s) never finished: counted at the end of the drive "
            "(censored), so run percentiles are lower bounds"
        )

    res = Table(title="resources", title_justify="left")
    for col in (
        "process",
        "cpu s (total)",
        "core % in drive",
        "peak PSS MiB (sampled, tree)",
        "peak RSS HWM MiB (kernel)",
        "restarts",
    ):
        res.add_column(col, justify="right" if col != "process" else "left")
    for role, u in (summary.get("resources") or {}).items():
        util = u.get("cpu_util_during_drive")
        res.add_row(
            role,
            _num(u.get("cpu_s"), ",.2f"),
            "-" if util is None else f"{util * 100:.0f}%",
            _mib(u.get("peak_pss_bytes")),
            _mib(u.get("peak_rss_hwm_bytes")) if u.get("peak_rss_hwm_bytes") else "- (tree)",
            str(u.get("restarts", 0)),
        )
    console.print(res)

    bm = summary.get("backend_metrics") or {}
    extra = []
    if "db_bytes" in bm:
        extra.append(f"db {_mib(bm['db_bytes'])} MiB, wal {_mib(bm.get('wal_bytes'))} MiB")
    info = registered().get(str(manifest.get("backend")))
    extra += info.factory.metrics_lines(bm) if info else []
    reqs = (bm.get("object_store_requests") or {}).get("requests") or {}
    if reqs:
        extra.append(
            "object store requests: " + ", ".join(f"{k} {int(v)}" for k, v in sorted(reqs.items()))
        )
    if extra:
        console.print("  " + "; ".join(extra))
    checks = summary.get("checks") or {}
    verdict = summary.get("verdict")
    color = "green" if verdict is True else "red" if verdict is False else "yellow"
    console.print(
        f"correctness: [{color}]{verdict}[/{color}]  "
        + "  ".join(f"{k}={v.get('valid')}" for k, v in checks.items() if isinstance(v, dict))
    )
    for warn in summary.get("warnings", []):
        console.print(f"[bold yellow]warning:[/bold yellow] {warn}")
