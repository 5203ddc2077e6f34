"""Cost section: the price table with sources and dates, then per backend group what a million
runs and a month at the target load would cost, per-run and per-time parts apart, each line
with the assumption that produced it (``bench.cost`` holds the model)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from bench import cost
from bench.report.context import Context
from bench.report.doc import Banner, Block, Heading, Para, Spread, Table, money
from bench.report.load import Run
from bench.report.usage import usage_of

COPY = "prices.toml"


def copy_prices(prices: cost.PriceTable, out_dir: Path) -> tuple[cost.PriceTable, str]:
    """Copy the price file into the report directory and cite the copy: the report stays
    checkable when it travels without the durabench checkout it was made with. Returns the
    table pointing at the copy, and the original file's name."""
    dest = Path(out_dir) / COPY
    if Path(prices.path).resolve() != dest.resolve():
        shutil.copyfile(prices.path, dest)
    return dataclasses.replace(prices, path=dest), Path(prices.path).name


def prices_table(prices: cost.PriceTable, rel, source_name: str = "") -> Table:
    rows = [
        [
            k,
            p.what,
            "UNKNOWN: no public price found" if p.value is None else f"{p.value:g} ({p.unit})",
            p.source,
            p.read,
        ]
        for k, p in prices.prices.items()
    ]
    return Table(
        ["price", "what", "value", "source", "read on"],
        rows,
        [[rel(prices.path)] for _ in rows],
        notes=[
            f"{prices.currency}, {prices.region}; {prices.hours_per_month:g} hours per month. "
            f"A copy of the price file used ({source_name or prices.path.name}) is next to this "
            "report. "
            "Override with --prices FILE (same format)."
        ],
    )


def _estimate(r: Run, prices: cost.PriceTable, target: float) -> cost.Estimate:
    usage = usage_of(r.manifest, r.summary, r.csv("runs.csv"), r.csv("resources.csv"))
    return cost.estimate(usage, prices, target)


def _money_spread(vals: list[float | None], missing: list[str] | None = None) -> str:
    """Median [min..max] of money figures; a missing measurement says so ("NOT MEASURED"),
    an unknown price says that, and neither is ever shown as a number."""
    if missing:
        return "NOT MEASURED: " + ", ".join(dict.fromkeys(missing))
    if any(v is None for v in vals):
        return "unknown price"
    s = Spread.of(vals)
    if s is None:
        return "-"
    txt = money(s.median)
    return (
        txt if s.n == 1 or money(s.lo) == money(s.hi) else f"{txt} [{money(s.lo)}..{money(s.hi)}]"
    )


# size: the cost section's tables, built in order; not split in this change.
def section(
    ctx: Context, prices: cost.PriceTable, target: float, source_name: str = ""
) -> list[Block]:
    out: list[Block] = [
        Heading("Cost"),
        Para(
            f"Measured resource use turned into list prices at a target load of **{target:g} "
            f"runs/s** ({target * prices.hours_per_month * 3600 / 1e6:,.1f} million runs per "
            "month). Per-run lines scale with the number of runs; per-time lines are paid every "
            "month whatever the load. Medians are over complete, valid, fault-free runs whose "
            "load generator kept up; a run with a failed or unknown verdict or an untrusted "
            "load generator is priced on its own row marked ⚠ NOT IN MEDIAN. The harness "
            "(load generator) is never priced."
        ),
        prices_table(prices, ctx.rel, source_name),
    ]
    unknown = [k for k, p in prices.prices.items() if p.value is None]
    if unknown:
        out.append(
            Banner(
                f"prices unknown (lines using them show 'unknown price'): {', '.join(unknown)}",
                "warn",
            )
        )
    if not ctx.rows():
        out.append(Para("No complete fault-free run: no cost can be derived."))
        return out
    summary_rows, summary_src, details = [], [], []
    for label, rs, basis in ctx.rows():
        ests = [_estimate(r, prices, target) for r in rs]
        src = ctx.src(rs, "summary.json", "runs.csv", "resources.csv") + [ctx.rel(prices.path)]
        deps = ests[0].deployments()
        if not deps:
            summary_rows.append(
                [label, "-", "-", "-", "-", "-", basis + "; " + "; ".join(ests[0].notes)]
            )
            summary_src.append(src)
            continue
        for d in deps:
            per_run = [e.per_million_runs(d) for e in ests]
            month = [e.total(d) for e in ests]
            per_time = [e.total(d, "per-time") for e in ests]

            def gaps(kind: str | None, d: str = d, es: list = ests) -> list[str]:
                return [c for e in es for c in e.not_measured(d, kind)]

            summary_rows.append(
                [
                    label,
                    d,
                    _money_spread(per_run, gaps("per-run")),
                    _money_spread(per_time, gaps("per-time")),
                    _money_spread(month, gaps(None)),
                    ests[0].replaced(d),
                    basis,
                ]
            )
            summary_src.append(src)
        details += _detail(label, rs, ests, src)
    out.append(
        Table(
            [
                "backend group",
                "deployment",
                "per-run part: $ per million runs",
                "per-time part: $ per month",
                f"total $ per month at {target:g} runs/s",
                "measured parts replaced by managed services",
                "basis",
            ],
            summary_rows,
            summary_src,
            caption="Cost summary",
            notes=[
                "Totals other than 'self-hosted' are alternative lines the backend declares: "
                "the same measured workers, with the measured server replaced by the managed "
                "service's price. A process that is only a local stand-in for a managed "
                "service (e.g. a local object store for S3) is never priced as a server: the "
                "service's prices replace it. NOT MEASURED: a figure the total needs is "
                "missing, so no total is given (never priced as zero). Median [min..max] over "
                "repeats."
            ],
        )
    )
    return out + details


def _detail(label: str, rs: list[Run], ests: list[cost.Estimate], src: list[str]) -> list[Block]:
    rows, sources = [], []
    for i, line in enumerate(ests[0].lines):
        same = [
            e.lines[i] for e in ests if len(e.lines) > i and e.lines[i].component == line.component
        ]
        missing = [x.missing for x in same if x.missing]
        rows.append(
            [
                line.component,
                line.kind,
                ", ".join(line.deployments),
                "-"
                if line.kind == "per-time"
                else _money_spread([x.per_million_runs for x in same], missing),
                _money_spread([x.per_month for x in same], missing),
                line.replaced,
                line.assumption,
            ]
        )
        sources.append(src)
    notes = [f"Assumption figures quoted from {rs[0].run_id}."] + ests[0].notes
    return [
        Table(
            [
                "component",
                "kind",
                "in totals",
                "$ per million runs",
                "$ per month",
                "replaced by managed services (per total)",
                "assumption",
            ],
            rows,
            sources,
            caption=f"Cost details: {label}",
            notes=notes,
        )
    ]
