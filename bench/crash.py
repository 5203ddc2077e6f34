"""`bench crash` and `bench sweep`: trials of one measurement with one fault each, and the table
a design review reads (lost acks, RPO, recovery times, duplicates, verdict), with spread across
trials. Every trial is an ordinary result directory (``results/<run-id>/``) with its history,
fault timeline and checker output; a group file ``results/<group-id>.json`` lists them."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from backends.base import registered
from bench import experiment, results, signals
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
    prom = c.get("promise") or {}
    exposed = prom.get("exposure") or {}
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
        "object_store_puts": _puts(bm, str(out.manifest.get("backend"))),
        "promise": prom.get("promise"),
        "promise_label": prom.get("promise_label"),
        "promise_verdict": prom.get("verdict"),
        "promise_reason": prom.get("reason"),
        "lost_outside_promise": prom.get("lost_outside_count"),
        "acks_exposed": exposed.get("acks_exposed"),
        "runs_in_flight": exposed.get("runs_in_flight"),
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


def _puts(bm: dict[str, Any], backend: str) -> int | None:
    """PUTs its replication client sent, as the backend reads its own figures."""
    info = registered().get(backend)
    ops = (info.factory.replica_requests(bm) if info else None) or ({}, "")
    return int(ops[0]["PUT"]) if "PUT" in ops[0] else None


def run_trials(base: experiment.Request, fault: FaultSpec, trials: int) -> list[dict[str, Any]]:
    figures = []
    for k in range(trials):
        req = dataclasses.replace(base, fault=fault, trial=k)
        signals.check()
        out = experiment.run(req)
        if out.interrupted_by:  # Ctrl-C / SIGTERM stops the command, not only this trial
            signals.raise_for(out.interrupted_by)
        figures.append(trial_figures(out))
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
    ("after fault", "lost_after_fault_began"),
    ("RPO s", "rpo_s"),
    ("store up s", "store_accepting_s"),
    ("1st step s", "first_resumed_step_s"),
    ("all done s", "all_interrupted_done_s"),
    ("dup steps", "duplicate_steps"),
    ("stuck", "stuck_runs"),
)


def promise_text(trials: list[dict[str, Any]]) -> str:
    """The promise of a row: one label when the trials agree, else the spread of the bounds
    (a bound measured at each fault, e.g. a standby's lag, differs between trials)."""
    labels = list(dict.fromkeys(str(t.get("promise_label") or "-") for t in trials))
    if len(labels) <= 1:
        return labels[0] if labels else "-"
    bounds = [(t.get("promise") or {}).get("max_lost_age_s") for t in trials]
    if all(isinstance(b, int | float) and b > 0 for b in bounds):
        return f"<= {spread(bounds)} s"
    return ", ".join(labels)


def judged_text(trials: list[dict[str, Any]]) -> str:
    """How many trials kept / broke the promise / could not tell: "2 kept, 1 unknown"."""
    counts: dict[str, int] = {}
    for t in trials:
        v = str(t.get("promise_verdict") or "unknown")
        counts[v] = counts.get(v, 0) + 1
    order = ("broken", "kept", "unknown")
    return ", ".join(f"{counts[v]} {v}" for v in order if v in counts)


def exposed_text(trials: list[dict[str, Any]]) -> str:
    """Acks exposed and runs in flight when the fault began (median [min..max])."""
    acks = spread([t.get("acks_exposed") for t in trials])
    runs = spread([t.get("runs_in_flight") for t in trials])
    return "-" if acks == runs == "-" else f"{acks} / {runs}"


def render(
    rows: dict[str, list[dict[str, Any]]], title: str, console: Console, key_label: str = "fault"
) -> None:
    """One row per fault (or swept value): median [min..max] over trials."""
    tab = Table(title=title, title_justify="left")
    tab.add_column(key_label)
    tab.add_column("trials", justify="right")
    tab.add_column("promise")
    tab.add_column("kept/broken")
    tab.add_column("exposed acks / runs")
    for label, _ in COLUMNS:
        tab.add_column(label, justify="right")
    tab.add_column("verdicts")
    for key, trials in rows.items():
        verdicts = ", ".join(str(t["verdict"]) for t in trials)
        if any(t.get("total_loss") for t in trials):
            verdicts += " (TOTAL LOSS: nothing survived off the node)"
        tab.add_row(
            key,
            str(len(trials)),
            promise_text(trials),
            judged_text(trials),
            exposed_text(trials),
            *(spread([t[f] for t in trials]) for _, f in COLUMNS),
            verdicts,
        )
    console.print(tab)
    console.print(
        "promise = what the configuration promises for the fault (0 lost; only acks younger "
        "than the bound; no bound: any ack may be lost); broken = an ack lost outside it (or the store came back "
        "corrupted); unknown = nothing was at risk when the fault hit, the fault never "
        "happened, or no promise is stated. Exposed = acks younger than the bound (1 s for a "
        "0 promise) and runs in flight when the fault began. Recovery times are seconds after "
        "the fault; RPO = age at the fault of the oldest lost ack made before it ('-' when none was); verdict False = a promise "
        "broke or a run did not finish exactly once",
        highlight=False,
    )
    _trial_notes(rows, console)


def _trial_notes(rows: dict[str, list[dict[str, Any]]], console: Console) -> None:
    """Under the table: why a trial was not judged kept, its oldest lost acks, and which
    trials ran on the lazy filesystem."""
    for key, trials in rows.items():
        for k, t in enumerate(trials):
            if t.get("promise_verdict") != "kept":
                console.print(
                    f"{key} trial {k}: promise {t.get('promise_verdict') or 'unknown'}: "
                    f"{t.get('promise_reason') or 'no promise judged'}",
                    highlight=False,
                )
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
    """``results/<stamp>-<random>-<kind>.json``: unique even for commands started in the same
    second, written atomically, versioned (``schema_version``)."""
    return results.write_new_json(root, kind, {"kind": kind, **meta, "rows": rows})
