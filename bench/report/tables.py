"""Report sections about the runs themselves: which runs went in (and what is wrong with any of
them), the topology each backend was measured on, what it takes to operate, and the
throughput / latency / resource tables with their spread over repeats.

Medians use only complete, valid, fault-free runs whose load generator kept to its schedule. A
complete fault-free run that fails one of those (verdict false or unknown, load generator behind)
stays visible on its own row flagged ⚠ NOT IN MEDIAN, with a banner; a partial run is named in a
banner and left out. A reader never mistakes a partial or untrusted measurement for a result,
and never loses sight of one either."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.report import parts
from bench.report.context import Context
from bench.report.doc import Banner, Block, Heading, Para, Spread, Table, fmt, fmt_spread
from bench.report.load import Run
from bench.report.usage import backend_info


def role_of(r: Run) -> str:
    if r.group is not None:
        return f"{r.group.kind}: {r.group_key}"
    if r.fault:
        return f"fault: {r.fault_name}"
    return "steady (no fault)"


def _usage(r: Run) -> str:
    if r.steady:
        return "throughput, latency, resources, cost"
    if r.apart:
        return f"own flagged rows, not medians ({r.apart_reason})"
    if r.usable_trial:
        return "fault tables and charts"
    return "nothing (excluded)"


def banners(ctx: Context) -> list[Block]:
    """One banner per run with a problem, saying what it means for the report."""
    out: list[Block] = []
    for r in ctx.runs:
        if not r.problems:
            continue
        what = "; ".join(r.problems)
        if r.partial:
            out.append(Banner(f"{r.run_id}: {what}. Excluded from every table and chart.", "error"))
        elif r.fault is not None:
            out.append(
                Banner(
                    f"{r.run_id} (fault trial, {r.fault_name}): {what}. For a fault trial a "
                    "false verdict is the measured loss: it is reported in the fault tables, "
                    "never in throughput or latency.",
                    "warn",
                )
            )
        elif r.apart:
            out.append(
                Banner(
                    f"{r.run_id}: {what}. Shown on its own row (marked ⚠, NOT IN MEDIAN) in the "
                    "throughput, latency, resource and cost tables; left out of every median "
                    "and chart.",
                    "error" if r.verdict is not True else "warn",
                )
            )
        else:
            out.append(
                Banner(f"{r.run_id}: {what}. Included in the aggregates, marked with ⚠.", "warn")
            )
    return out


def inventory(ctx: Context) -> Table:
    rows, sources = [], []
    for r in ctx.runs:
        rows.append(
            [
                r.run_id,
                ctx.label(r),
                role_of(r),
                str(r.verdict),
                "PARTIAL" if r.partial else "no",
                str(len(r.warnings)),
                _usage(r),
            ]
        )
        sources.append(ctx.src([r], "manifest.json", "summary.json"))
    return Table(
        ["run", "backend group", "kind", "verdict", "partial", "warnings", "used in"],
        rows,
        sources,
    )


def topology(ctx: Context) -> list[Block]:
    """The deployment each backend was measured on, straight from manifest.json."""
    rows: list[list[str]] = []
    sources: list[list[str]] = []
    by_backend: dict[str, list[Run]] = {}
    for r in ctx.runs:
        by_backend.setdefault(r.backend, []).append(r)
    for backend, rs in by_backend.items():
        seen: dict[tuple[str, str], list[Run]] = {}
        for r in rs:
            items = dict(r.manifest.get("topology") or {})
            items["versions"] = parts.versions(r)
            for k, v in items.items():
                seen.setdefault((k, str(v)), []).append(r)
        aspects = list(dict.fromkeys(k for k, _ in seen))
        for (k, v), where in sorted(seen.items(), key=lambda kv: aspects.index(kv[0][0])):
            n = len(where)
            note = "" if n == len(rs) else f" ({n} of {len(rs)} runs)"
            rows.append([backend, k, v + note])
            sources.append([ctx.rel(where[0].file("manifest.json"))])
    m = ctx.runs[0].manifest.get("machine") or {}
    mem = m.get("memory_bytes")
    machine = (
        f"Machine (from {ctx.rel(ctx.runs[0].file('manifest.json'))}): {m.get('cpu_model', '?')}, "
        f"{m.get('cpu_count', '?')} cores, {fmt(mem, '.1f', 2**-30)} GiB RAM, {m.get('os', '?')}, "
        f"Python {m.get('python', '?')}. All processes of a measurement share this machine."
    )
    return [
        Table(
            ["backend", "aspect", "as measured"],
            rows,
            sources,
            notes=[
                "Where runs of one backend differ (e.g. swept settings), each variant is listed "
                "with how many runs used it; the cited manifest is the first run with that value."
            ],
        ),
        Para(machine),
    ]


def moving_parts(ctx: Context) -> Table:
    """One row per backend, or per configuration of it when its declared parts depend on the
    options it ran with (e.g. which store it runs on): then labelled as its runs are."""
    first: dict[tuple[str, str], Run] = {}
    for r in ctx.runs:
        if not r.partial and r.summary:
            info = backend_info(r.manifest)
            first.setdefault((r.backend, repr(info.parts if info else None)), r)
    per_backend = Counter(b for b, _ in first)
    named = {(ctx.label(r) if per_backend[b] > 1 else b): r for (b, _), r in first.items()}
    return parts.table(named, ctx.rel)


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def _mark(label: str, rs: list[Run]) -> str:
    return label + (" ⚠" if any(r.warnings for r in rs) else "")


def throughput(ctx: Context) -> Table:
    rows, sources = [], []
    for label, rs, basis in ctx.rows():
        s = [r.summary for r in rs]

        def sp(*path: str, src: list = s) -> Spread | None:
            return Spread.of([_get(x, *path) for x in src])

        rows.append(
            [
                _mark(label, rs),
                basis,
                fmt_spread(sp("throughput", "runs_per_s")),
                fmt_spread(sp("throughput", "failed_runs_per_s")),
                fmt_spread(sp("throughput", "steps_per_s")),
                fmt_spread(sp("offered_rate_per_s")),
                fmt_spread(sp("runs", "completed"), ".0f")
                + " / "
                + fmt_spread(sp("runs", "failed"), ".0f")
                + " / "
                + fmt_spread(sp("runs", "accepted"), ".0f"),
                fmt_spread(sp("runs", "unfinished"), ".0f"),
                fmt_spread(sp("window", "duration_s"), ".1f"),
                fmt_spread(sp("dispatch_lag", "p99_s"), ".3g", 1e3),
            ]
        )
        sources.append(ctx.src(rs, "summary.json"))
    return Table(
        [
            "backend group",
            "basis",
            "runs/s",
            "failed runs/s",
            "steps/s",
            "offered runs/s",
            "completed / failed / accepted",
            "unfinished",
            "window s",
            "dispatch lag p99 ms",
        ],
        rows,
        sources,
        notes=[
            "median [min..max] over repeats; measured window = end of warm-up to the last "
            "completion. Runs/s counts completed runs only (failed runs/s apart); offered "
            "runs/s counts the arrivals scheduled inside the same window. Runs/s well below "
            "the offered rate means the backend was saturated."
        ],
    )


LATENCY = (
    ("run", "run (scheduled -> completed, or censored)"),
    ("run_failed", "run that failed (scheduled -> failed)"),
    ("engine_overhead", "engine overhead"),
    ("step_commit", "step commit"),
    ("submit_ack", "submit ack"),
)


def latency(ctx: Context) -> Table:
    rows, sources = [], []
    for label, rs, _ in ctx.rows():
        for key, name in LATENCY:
            hs = [_get(r.summary, "latency", key) or {} for r in rs]
            rows.append(
                [
                    _mark(label, rs),
                    name,
                    fmt_spread(Spread.of([h.get("count") for h in hs]), ".0f"),
                    fmt_spread(Spread.of([h.get("censored") for h in hs]), ".0f"),
                ]
                + [
                    fmt_spread(Spread.of([h.get(p) for h in hs]), ".3g", 1e3)
                    for p in ("p50_s", "p90_s", "p99_s", "p99.9_s", "max_s")
                ]
            )
            sources.append(ctx.src(rs, "summary.json"))
    return Table(
        [
            "backend group",
            "latency",
            "count",
            "censored",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
        ],
        rows,
        sources,
        notes=[
            "median [min..max] over repeats of each run's own percentile (HDR histograms, "
            "warm-up runs excluded). Censored: accepted runs that never finished, counted at "
            "the end of the drive (a lower bound on their latency), so that overload can never "
            "shorten the tail; where it is not 0 the percentiles are lower bounds too."
        ],
    )


def resources(ctx: Context) -> Table:
    rows, sources = [], []
    for label, rs, _ in ctx.rows():
        roles = list(dict.fromkeys(k for r in rs for k in (r.summary.get("resources") or {})))
        for role in roles:
            us = [_get(r.summary, "resources", role) or {} for r in rs]
            rows.append(
                [
                    _mark(label, rs),
                    role + (" (load generator, not priced)" if role == "harness" else ""),
                    fmt_spread(Spread.of([u.get("cpu_s_during_drive") for u in us]), ".3g"),
                    fmt_spread(Spread.of([u.get("cpu_util_during_drive") for u in us]), ".0f", 100),
                    fmt_spread(Spread.of([u.get("peak_pss_bytes") for u in us]), ".1f", 2**-20),
                    fmt_spread(Spread.of([u.get("peak_rss_hwm_bytes") for u in us]), ".1f", 2**-20),
                    fmt_spread(Spread.of([u.get("restarts") for u in us]), ".0f"),
                ]
            )
            sources.append(ctx.src(rs, "summary.json"))
    return Table(
        [
            "backend group",
            "process",
            "CPU s in drive",
            "core % in drive",
            "peak PSS MiB",
            "peak RSS HWM MiB",
            "restarts",
        ],
        rows,
        sources,
        notes=[
            "peak PSS: the largest sampled PSS summed over the role's process tree (one "
            "definition for every backend; shared memory charged once; sampled every 0.5 s). "
            "peak RSS HWM: the kernel's own high-water mark (VmHWM) of a single-process role; "
            "'-' for a process tree, where no such figure exists."
        ],
    )


def section(ctx: Context) -> list[Block]:
    out: list[Block] = [Heading("Throughput and latency (fault-free runs)")]
    left_out = [r for r in ctx.excluded_steady() if not r.apart]
    if left_out:
        out.append(
            Banner(
                "Left out of these tables (partial): "
                + ", ".join(f"{r.run_id} ({'; '.join(r.problems)})" for r in left_out),
                "error",
            )
        )
    if ctx.apart():
        out.append(
            Banner(
                "Shown on their own rows (⚠ ... NOT IN MEDIAN), never in a median: "
                + ", ".join(f"{r.run_id} ({r.apart_reason})" for r in ctx.apart()),
                "error",
            )
        )
    if not ctx.rows():
        out.append(Para("No complete fault-free run among the inputs: nothing to tabulate."))
        return out
    if not ctx.steady():
        out.append(Para("No complete, valid, trustworthy fault-free run: no median can be formed."))
    out += [throughput(ctx), latency(ctx)]
    return out
