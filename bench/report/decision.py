"""The decision summary that opens the report: one row per backend configuration measured, the
figures a design review asks for first (speed, what a fault lost, recovery, exposure, cost at the
target load, moving parts), each cell linked to its section and to the result files it came
from; then one factual paragraph per configuration built from the same figures.

Nothing here measures or judges anything new: every figure is read from the same summaries the
detailed sections use (``configs.Config`` gathers them), and a figure that was not measured is
said to be missing, never guessed. The RPO budget marks (``budget``) live in their own module."""

from __future__ import annotations

from urllib.parse import quote

from bench import cost
from bench.report import answer, budget, configs
from bench.report.configs import Config, FaultFigures
from bench.report.context import Context
from bench.report.doc import Block, Heading, Para, Table, anchor, fmt, link, money

# headings of the sections a cell links to (the builder and tables use the same text)
RUNS, SPEED, FAULTS, COST, PARTS = (
    "Runs",
    "Throughput and latency (fault-free runs)",
    "Faults: recovery and write loss",
    "Cost",
    "Moving parts",
)
TITLE = "Decision summary"
MAX_LINKS = 4


class Cells:
    """Builds linked cells: the figure links to its section, ↗ marks link to its files."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __call__(self, text: str, section: str, files: list[str]) -> str:
        out = link(text, "#" + anchor(section))
        files = list(dict.fromkeys(files))
        marks = [
            link("↗" + (str(i) if len(files) > 1 else ""), quote(f, safe="/._-~+=:"))
            for i, f in enumerate(files[:MAX_LINKS], 1)
        ]
        more = f" +{len(files) - MAX_LINKS} files" if len(files) > MAX_LINKS else ""
        return out + " " + " ".join(marks) + more if marks else out


def _speed(c: Config) -> str:
    s = c.speed
    if s is None:
        return "not measured (no fault-free run)"
    if s.offered is None or s.runs_per_s is None:
        return "not measured (no throughput in the summary)"
    if s.kept_up:
        txt = f"kept up with {s.offered:.3g} runs/s offered ({s.runs_per_s:.3g} completed/s)"
    else:
        why = [f"{s.unfinished} unfinished"] if s.unfinished else []
        if s.late_s is not None and s.late_s > 0:
            why.append(f"last run done {s.late_s:.2g} s after the schedule ended")
        txt = f"fell behind: {s.runs_per_s:.3g} completed/s of {s.offered:.3g} runs/s offered"
        txt += f" ({', '.join(why)})" if why else ""
    return txt + c.flag


def _p99(c: Config, key: str) -> str:
    s = c.speed
    v = None if s is None else s.p99.get(key)
    if v is None:
        return "not measured"
    censored = s.censored if key == "run" else 0
    return ("≥ " if censored else "") + f"{fmt(v, '.3g', 1e3)} ms" + c.flag


def fault_text(f: FaultFigures) -> str:
    """'lose-node (1 trial): promise <= 2.5 s kept; lost 17 acks, RPO 1.9 s'."""
    head = f"{f.fault} ({f.trials} trial{'s' * (f.trials > 1)}): promise {f.promise}: {f.judged}"
    if f.lost_max is None:
        return head + "; loss not measured"
    if f.lost_max == 0:
        return head + "; 0 acks lost"
    worst = "up to " if f.trials > 1 else ""
    rpo = "RPO unknown" if f.rpo_max is None else f"RPO {worst}{f.rpo_max:.3g} s"
    return head + f"; lost {worst}{f.lost_max:.0f} acks, {rpo}"


def recovery_text(f: FaultFigures) -> str:
    parts = []
    if f.accepting_max is not None:
        parts.append(f"store accepting after {f.accepting_max:.3g} s")
    if f.all_done_max is not None:
        parts.append(f"interrupted runs done after {f.all_done_max:.3g} s")
    what = ", ".join(parts) or "nothing to measure (no run interrupted)"
    worst = f" (worst of {f.trials})" if f.trials > 1 and parts else ""
    return f"{f.fault}: {what}{worst}"


def _exposure(c: Config) -> str:
    e = c.exposure
    if e is None:
        return "not measured"
    bits = [f"ack exposure p99 {fmt(e.p99_s, '.3g')} s, max {fmt(e.max_s, '.3g')} s"]
    if e.at_risk_peak is not None:
        bits.append(f"peak {e.at_risk_peak} acks at risk")
    return "; ".join(bits) + f" ({e.runs} run{'s' * (e.runs > 1)})"


def cost_text(c: Config, target: float | None) -> str:
    """Monthly cost per deployment (``target`` None: the load is said in the column header)."""
    if c.speed is None:
        return "not measured (no fault-free run)"
    if not c.costs:
        return "nothing priced (" + "; ".join(c.cost_notes or ["no cost lines"]) + ")"
    out = []
    for dep, (value, missing) in c.costs.items():
        if missing:
            out.append(f"{dep}: NOT MEASURED ({', '.join(missing)})")
        else:
            out.append(f"{dep}: {money(value)}/month")
    return "; ".join(out) + (f" at {target:g} runs/s" if target else "") + c.flag


def _parts(c: Config) -> str:
    p = c.parts
    if p is None:
        return "not recorded"
    bins = ", ".join(p.binaries) or "none recorded"
    return f"processes: {p.processes}; binaries: {bins}; ports: see Moving parts"


def table(ctx: Context, cs: list[Config], target: float, rpo_budget: float | None) -> Table:
    cell = Cells(ctx)
    rows, sources = [], []
    for c in cs:
        faults = c.faults.values()
        fault_files = [f for x in faults for f in x.files]
        row = [
            cell(c.label, RUNS, c.manifests),
            cell(_speed(c), SPEED, c.speed_files),
            cell(_p99(c, "run"), SPEED, c.speed_files),
            cell(_p99(c, "step_commit"), SPEED, c.speed_files),
            cell("; ".join(map(fault_text, faults)) or "no fault trial", FAULTS, fault_files),
            cell("; ".join(map(recovery_text, faults)) or "no fault trial", FAULTS, fault_files),
            cell(_exposure(c), RUNS, c.exposure.files if c.exposure else []),
            cell(cost_text(c, None), COST, c.cost_files),
            cell(_parts(c), PARTS, c.parts.files if c.parts else []),
        ]
        if rpo_budget is not None:
            row.insert(1, cell(budget.mark(c, rpo_budget), FAULTS, fault_files + c.sweep_files))
        rows.append(row)
        sources.append([])  # every cell carries its own links
    headers = [
        "configuration",
        "runs/s (fault-free)",
        "run p99",
        "step-commit p99",
        "what each fault lost",
        "recovery",
        "exposure",
        f"cost at {target:g} runs/s",
        "moving parts",
    ]
    if rpo_budget is not None:
        headers.insert(1, f"RPO budget {rpo_budget:g} s")
    return Table(headers, rows, sources, notes=[_note(ctx)], css_class="decision")


def _note(ctx: Context) -> str:
    flagged = sum(1 for r in ctx.runs if r.problems)
    base = (
        "Sources: each figure links to the section that details it; ↗ links open the result "
        "files it was read from (paths relative to this report). Fault figures are the worst over "
        "trials; speed and cost are medians over trustworthy fault-free runs."
    )
    if flagged:
        base += (
            f" ⚠ = taken from runs the harness flagged (not trustworthy as a median); "
            f"{flagged} run(s) carry a warning, listed under Runs."
        )
    return base


def paragraph(c: Config, target: float, rpo_budget: float | None) -> str:
    """What the figures of one configuration say, in one paragraph; missing figures named."""
    out = [f"**{c.label}**:"]
    if c.speed:
        out.append(_speed(c) + ";")
        out.append(f"run p99 {_p99(c, 'run')}, step-commit p99 {_p99(c, 'step_commit')}.")
    else:
        out.append("speed not measured (no fault-free run).")
    if c.faults:
        for f in c.faults.values():
            out.append(f"Under {fault_text(f)}; {recovery_text(f).split(': ', 1)[1]}.")
    else:
        out.append("No fault was injected: what it loses under a fault is not measured.")
    if c.exposure is None:
        out.append("Exposure not measured.")
    else:
        out.append(f"Exposure: {_exposure(c)}.")
    out.append(f"Cost: {cost_text(c, target)}.")
    if rpo_budget is not None:
        out.append(f"RPO budget {rpo_budget:g} s: {budget.mark(c, rpo_budget)}.")
    return " ".join(out)


def section(
    ctx: Context, prices: cost.PriceTable, target: float, rpo_budget: float | None
) -> list[Block]:
    cs = configs.gather(ctx, prices, target)
    if not cs:
        return [Heading(TITLE), Para("No complete result among the inputs: nothing to compare.")]
    asked = f"**{target:g} runs/s** (`--target-runs-per-s`)"
    asked += (
        f", RPO budget **{rpo_budget:g} s** (`--rpo-budget`)"
        if rpo_budget is not None
        else "; no RPO budget given (`--rpo-budget SECONDS` marks configurations that lose more)"
    )
    return [
        Heading(TITLE),
        Para(f"Reviewer's inputs: target load {asked}."),
        answer.lines(cs, target, rpo_budget),
        table(ctx, cs, target, rpo_budget),
        *[Para(paragraph(c, target, rpo_budget)) for c in cs],
    ]
