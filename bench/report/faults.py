"""Fault sections: write loss and recovery time per backend and fault, and a sweep's trade-off
between durability (RPO, lost acks) and object-store uploads.

Figures are taken per trial with ``bench.crash.trial_figures`` (the same definitions as the
terminal table of `bench crash`), then summarised as median [min..max] over trials. A trial
whose verdict is False is kept: for a fault, the loss is the measurement."""

from __future__ import annotations

import re
from typing import Any

from bench import crash, experiment
from bench.report import usage
from bench.report.context import Context
from bench.report.doc import Spread, Table, fmt_spread
from bench.report.load import Run

KINDS = ("run-accepted", "step-committed", "run-completed")


def figures(r: Run) -> dict[str, Any]:
    f = crash.trial_figures(experiment.Outcome(r.path, r.summary, r.manifest))
    f["puts_per_min"] = puts_per_min(r)
    return f


def drive_seconds(r: Run) -> float | None:
    res = r.csv("resources.csv")
    if len(res) and "t" in res:
        span = float(res["t"].max() - res["t"].min())
        return span if span > 0 else None
    return None


def puts_per_min(r: Run) -> float | None:
    """Object-store PUT requests per minute of the drive. The object store's own counter is
    preferred: the replication client's restarts with the client (e.g. after lose-node)."""
    bm = r.summary.get("backend_metrics") or {}
    server = ((bm.get("object_store_requests") or {}).get("requests") or {}).get("PUT")
    client = (usage.replica_requests(bm, usage.backend_info(r.manifest)) or ({}, ""))[0].get("PUT")
    puts = server if server is not None else client
    drive = drive_seconds(r)
    if puts is None or not drive:
        return None
    return float(puts) / drive * 60


def by_fault(ctx: Context, runs: list[Run] | None = None) -> dict[tuple[str, str], list[Run]]:
    """(backend group, fault) -> usable trials, in input order."""
    out: dict[tuple[str, str], list[Run]] = {}
    for r in runs if runs is not None else ctx.trials():
        out.setdefault((ctx.label(r), str(r.fault_name)), []).append(r)
    return out


def _verdicts(trials: list[dict[str, Any]]) -> str:
    v = ", ".join(str(t["verdict"]) for t in trials)
    if any(t.get("total_loss") for t in trials):
        v += " (TOTAL LOSS: nothing survived off the node)"
    return v


def write_loss(ctx: Context) -> Table:
    rows, sources = [], []
    for (label, fault), rs in by_fault(ctx).items():
        fs = [figures(r) for r in rs]

        def sp(key: str, fs: list = fs) -> str:
            return fmt_spread(Spread.of([f[key] for f in fs]), ".3g")

        by_kind = [
            fmt_spread(Spread.of([(f["lost_by_kind"] or {}).get(k, 0) for f in fs]), ".3g")
            for k in KINDS
        ]
        rows.append(
            [
                label,
                fault,
                str(len(rs)),
                crash.promise_text(fs),
                crash.judged_text(fs),
                crash.exposed_text(fs),
                sp("lost_acks"),
                *by_kind,
                sp("rpo_s"),
                sp("duplicate_steps"),
                sp("stuck_runs"),
                sp("indeterminate"),
                _verdicts(fs),
            ]
        )
        sources.append(ctx.src(rs, "summary.json"))
    return Table(
        [
            "backend group",
            "fault",
            "trials",
            "promise",
            "kept/broken",
            "exposed acks / runs",
            "lost acks",
            "lost: run accepted",
            "lost: step committed",
            "lost: run completed",
            "RPO s",
            "duplicate steps",
            "stuck runs",
            "indeterminate",
            "verdicts",
        ],
        rows,
        sources,
        notes=[
            "median [min..max] over trials. Promise = what the configuration promises for "
            "the fault (Deployment.promise); broken = an ack lost outside it; unknown = "
            "nothing was at risk (no ack exposed, no run in flight) or no fault happened. "
            "RPO = age at the fault of the oldest lost ack. "
            "A lost step-committed ack means the step ran again after the fault (a repeated "
            "LLM or tool call)."
        ],
    )


def recovery_data(ctx: Context) -> list[tuple[str, dict[str, list[Any]], list[Run]]]:
    out = []
    for (label, fault), rs in by_fault(ctx).items():
        fs = [figures(r) for r in rs]
        vals = {
            k: [f[k] for f in fs]
            for k in (
                "store_accepting_s",
                "first_resumed_step_s",
                "all_interrupted_done_s",
                "interrupted_runs",
            )
        }
        out.append((f"{label}\n{fault}", vals, rs))
    return out


def recovery(ctx: Context) -> Table:
    rows, sources = [], []
    for name, vals, rs in recovery_data(ctx):
        label, fault = name.split("\n")
        rows.append(
            [label, fault, str(len(rs)), fmt_spread(Spread.of(vals["interrupted_runs"]), ".0f")]
            + [
                fmt_spread(Spread.of(vals[k]), ".3g")
                for k in ("store_accepting_s", "first_resumed_step_s", "all_interrupted_done_s")
            ]
        )
        sources.append(ctx.src(rs, "summary.json", "manifest.json"))
    return Table(
        [
            "backend group",
            "fault",
            "trials",
            "interrupted runs",
            "store accepting s",
            "1st interrupted step done s",
            "all interrupted done s",
        ],
        rows,
        sources,
        notes=[
            "Seconds after the fault, median [min..max]. '-' = nothing to measure: no run "
            "was interrupted (claimed, unfinished and not lost) at the fault."
        ],
    )


def _setting_value(key: str) -> float | None:
    m = re.search(r"=\s*([-+0-9.eE]+)\s*$", key)
    try:
        return float(m.group(1)) if m else None
    except ValueError:
        return None


def sweeps(ctx: Context) -> list[dict[str, Any]]:
    """One entry per sweep group: setting, fault, and per value the trials' figures."""
    out = []
    for g in (g for g in ctx.groups if g.kind == "sweep"):
        pts, rows, sources = [], [], []
        for key in g.members:
            x = _setting_value(key)
            rs = [r for r in ctx.runs if r.group is g and r.group_key == key and r.usable_trial]
            if x is None or not rs:
                continue
            fs = [figures(r) for r in rs]
            pts.append(
                (
                    x,
                    [f["rpo_s"] for f in fs],
                    [f["lost_acks"] for f in fs],
                    [f["puts_per_min"] for f in fs],
                )
            )
            rows.append(
                [key, str(len(rs)), crash.promise_text(fs), crash.judged_text(fs)]
                + [
                    fmt_spread(Spread.of([f[k] for f in fs]), ".3g")
                    for k in ("rpo_s", "lost_acks", "puts_per_min", "store_accepting_s")
                ]
                + [_verdicts(fs)]
            )
            sources.append(ctx.src(rs, "summary.json", "resources.csv"))
        setting = str(g.meta.get("setting", "setting"))
        name = next(iter(g.members), "").split("=")[0] or setting
        table = Table(
            [
                "setting",
                "trials",
                "promise",
                "kept/broken",
                "RPO s",
                "lost acks",
                "object-store PUT/min",
                "store accepting s",
                "verdicts",
            ],
            rows,
            [[ctx.rel(g.path), *s] for s in sources],
            notes=[
                "PUT/min = the object store's PUT requests / drive duration (resources.csv "
                "sample span) x 60."
            ],
        )
        out.append(
            {
                "group": g,
                "name": name,
                "fault": g.meta.get("fault"),
                "points": pts,
                "table": table,
                "backend": g.meta.get("backend"),
            }
        )
    return out
