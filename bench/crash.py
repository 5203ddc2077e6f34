"""`bench crash` and `bench sweep`: trials of one measurement with one fault each, and the table
a design review reads (lost acks, RPO, recovery times, duplicates, verdict), with spread across
trials. Every trial is an ordinary result directory (``results/<run-id>/``) with its history,
fault timeline and checker output; a group file ``results/<group-id>.json`` lists them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import experiment
from bench.nemesis import FaultSpec

LOST_SAMPLE = 5  # lost acks listed per trial in the terminal (all of them are in summary.json)


def trial_figures(out: experiment.Outcome) -> dict[str, Any]:
    """The figures of one trial, flat, from its summary."""
    c = out.summary.get("checks") or {}
    loss = c.get("write_loss") or {}
    rec = c.get("recovery") or {}
    fault = out.manifest.get("fault") or {}
    detail = (fault.get("timeline") or {}).get("detail") or {}
    bm = out.summary.get("backend_metrics") or {}
    return {
        "run_dir": str(out.run_dir),
        "fault_at_s": fault.get("at_s"),
        "lost_acks": loss.get("lost_count"),
        "lost_by_kind": loss.get("lost_by_kind"),
        "lost_after_fault_began": loss.get("lost_after_fault_began"),
        "rpo_s": loss.get("rpo_s"),
        "store_accepting_s": rec.get("store_accepting_s"),
        "first_resumed_step_s": rec.get("first_resumed_step_s"),
        "all_interrupted_done_s": rec.get("all_interrupted_done_s"),
        "interrupted_runs": rec.get("interrupted_runs"),
        "duplicate_steps": (c.get("duplicates") or {}).get("duplicate_steps"),
        "stuck_runs": (c.get("exactly_once") or {}).get("stuck_count"),
        "indeterminate": (c.get("indeterminate") or {}).get("count"),
        "total_loss": detail.get("total_loss"),
        "object_store_puts": _puts(bm),
        "verdict": out.summary.get("verdict"),
        "partial": out.manifest.get("partial"),
        "steps_per_s": (out.summary.get("throughput") or {}).get("steps_per_s"),
        "lazyfs": bool(out.manifest.get("lazyfs")),
        "integrity": (c.get("integrity") or {}).get("valid"),
        "lost_sample": [  # the oldest lost acks: ids and ages, for the terminal
            {"kind": x.get("kind"), "id": x.get("id"), "age_s": x.get("age_at_fault_s")}
            for x in sorted(loss.get("lost") or [], key=lambda x: -(x.get("age_at_fault_s") or 0))[
                :LOST_SAMPLE
            ]
        ],
    }


def plain_figures(out: experiment.Outcome) -> dict[str, Any]:
    """A fault-free run's throughput, for the durability frontier (x axis)."""
    tp = out.summary.get("throughput") or {}
    return {
        "run_dir": str(out.run_dir),
        "steps_per_s": tp.get("steps_per_s"),
        "runs_per_s": tp.get("runs_per_s"),
        "lazyfs": bool(out.manifest.get("lazyfs")),
        "verdict": out.summary.get("verdict"),
        "partial": out.manifest.get("partial"),
    }


def run_plain(base: experiment.Request, runs: int, on_lazyfs: bool) -> list[dict[str, Any]]:
    """``runs`` fault-free runs of the same settings (optionally on the lazy filesystem)."""
    return [
        plain_figures(experiment.run(dataclasses.replace(base, fault=None, on_lazyfs=on_lazyfs)))
        for _ in range(runs)
    ]


def _puts(bm: dict[str, Any]) -> int | None:
    ops = (bm.get("litestream") or {}).get("replica_operation_total") or {}
    return int(ops["PUT"]) if "PUT" in ops else None


def run_trials(base: experiment.Request, fault: FaultSpec, trials: int) -> list[dict[str, Any]]:
    figures = []
    for k in range(trials):
        req = dataclasses.replace(base, fault=fault, trial=k)
        figures.append(trial_figures(experiment.run(req)))
    return figures


def spread(values: list[Any]) -> str:
    """median [min..max] of the numeric values; '-' when none."""
    xs = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if not xs:
        return "-"
    med = statistics.median(xs)
    fmt = (lambda v: f"{v:.3g}") if any(isinstance(x, float) for x in xs) else str
    return fmt(med) if min(xs) == max(xs) else f"{fmt(med)} [{fmt(min(xs))}..{fmt(max(xs))}]"


COLUMNS = (
    ("lost acks", "lost_acks"),
    ("RPO s", "rpo_s"),
    ("store up s", "store_accepting_s"),
    ("1st step s", "first_resumed_step_s"),
    ("all done s", "all_interrupted_done_s"),
    ("dup steps", "duplicate_steps"),
    ("stuck", "stuck_runs"),
)


def render(
    rows: dict[str, list[dict[str, Any]]], title: str, console: Console, key_label: str = "fault"
) -> None:
    """One row per fault (or swept value): median [min..max] over trials."""
    tab = Table(title=title, title_justify="left")
    tab.add_column(key_label)
    tab.add_column("trials", justify="right")
    for label, _ in COLUMNS:
        tab.add_column(label, justify="right")
    tab.add_column("verdicts")
    for key, trials in rows.items():
        verdicts = ", ".join(str(t["verdict"]) for t in trials)
        if any(t.get("total_loss") for t in trials):
            verdicts += " (TOTAL LOSS: nothing survived off the node)"
        tab.add_row(
            key, str(len(trials)), *(spread([t[f] for t in trials]) for _, f in COLUMNS), verdicts
        )
    console.print(tab)
    console.print(
        "recovery times are seconds after the fault; RPO = age at the fault of the "
        "oldest lost ack; verdict False = an acknowledged write was lost or a run "
        "did not finish exactly once"
    )
    for key, trials in rows.items():
        for k, t in enumerate(trials):
            if t.get("lost_acks"):
                ids = ", ".join(
                    f"{x['kind']} {x['id']} ({x['age_s']:.3f} s)"
                    for x in t.get("lost_sample") or []
                    if x.get("age_s") is not None
                )
                more = t["lost_acks"] - len(t.get("lost_sample") or [])
                tail = f" and {more} more" if more > 0 else ""
                console.print(
                    f"{key} trial {k}: {t['lost_acks']} lost, oldest first (age at the fault): "
                    f"{ids}{tail}; all in {t['run_dir']}/summary.json",
                    highlight=False,
                )
    lazy = [t for ts in rows.values() for t in ts if t.get("lazyfs")]
    if lazy:
        console.print(
            f"{len(lazy)} trial(s) ran with the node's data on the lazy filesystem (FUSE, "
            f"needed to drop unsynced writes); it slows the store (steps/s in those trials: "
            f"{spread([t.get('steps_per_s') for t in lazy])}): their throughput is not the "
            "backend's; `bench sweep` measures it in plain runs"
        )
        bad = [t for t in lazy if t.get("integrity") is False]
        if bad:
            console.print(f"INTEGRITY CHECK FAILED after the power loss in {len(bad)} trial(s)")


def render_frontier(
    rows: dict[str, list[dict[str, Any]]],
    plain: dict[str, list[dict[str, Any]]],
    plain_lazy: dict[str, list[dict[str, Any]]],
    title: str,
    console: Console,
) -> None:
    """Per setting: throughput of plain runs (without and with the lazy filesystem) beside
    what the fault lost: the durability frontier as a table."""
    tab = Table(title=title, title_justify="left")
    for col in ("setting", "steps/s (plain)", "steps/s (on lazy fs)", "lazy fs overhead"):
        tab.add_column(col, justify="left" if col == "setting" else "right")
    for col in ("lost acks", "RPO s", "integrity"):
        tab.add_column(col, justify="right")
    for key, trials in rows.items():
        fast = [p["steps_per_s"] for p in plain.get(key, [])]
        slow = [p["steps_per_s"] for p in plain_lazy.get(key, [])]
        tab.add_row(
            key,
            spread(fast),
            spread(slow),
            overhead(fast, slow),
            spread([t["lost_acks"] for t in trials]),
            spread([t["rpo_s"] for t in trials]),
            ", ".join(str(t.get("integrity")) for t in trials),
        )
    console.print(tab)
    console.print(
        "steps/s from fault-free runs of the same settings (the frontier's x); the lazy "
        "filesystem's overhead = 1 - median(on lazy fs) / median(plain)"
    )


def overhead(plain: list[Any], lazy: list[Any]) -> str:
    xs = [v for v in plain if isinstance(v, int | float)]
    ys = [v for v in lazy if isinstance(v, int | float)]
    if not xs or not ys or statistics.median(xs) <= 0:
        return "-"
    return f"{1 - statistics.median(ys) / statistics.median(xs):.0%}"


def write_group(root: Path, kind: str, meta: dict[str, Any], rows: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{kind}.json"
    path.write_text(json.dumps({"kind": kind, **meta, "rows": rows}, indent=2, default=str))
    return path
