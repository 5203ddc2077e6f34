"""The answer lines above the decision table: which configurations kept up with the load that
was offered, which stayed within the reviewer's RPO budget, and what each costs per month at the
target load, cheapest first. Sets and sorted figures only: no ranking the numbers don't make,
and when the target load differs from the load that was offered, the lines say so rather than
claim a speed that was not measured."""

from __future__ import annotations

from bench.report import budget
from bench.report.configs import Config
from bench.report.doc import Bullets, money

NAMES = {
    budget.WITHIN: "within it (measured and promised)",
    budget.UNSURE: "measured within it but not promised",
    budget.OVER: "over it",
    budget.UNKNOWN: "loss not measured",
    "not measured": "not measured (no fault trial)",
}


def _names(cs: list[Config], flag: bool = True) -> str:
    """Labels; ⚠ where the fault-free figures come from flagged runs (speed and cost lines)."""
    return ", ".join(c.label + (c.flag if flag else "") for c in cs) or "none"


def speed_line(cs: list[Config], target: float) -> str:
    measured = [c for c in cs if c.speed and c.speed.offered is not None]
    offered = sorted({round(c.speed.offered, 3) for c in measured})
    kept = [c for c in measured if c.speed.kept_up]
    behind = [c for c in measured if not c.speed.kept_up]
    load = " / ".join(f"{o:g}" for o in offered) or "?"
    out = f"**Load**: kept up with the {load} runs/s offered: {_names(kept)}"
    out += f"; fell behind: {_names(behind)}" if behind else ""
    missing = [c for c in cs if c not in measured]
    out += f"; speed not measured: {_names(missing)}" if missing else ""
    if offered and any(abs(o - target) > 1e-9 for o in offered):
        out += f". The target of {target:g} runs/s was not the load offered: speed at it is not measured"
    return out + "."


def rpo_line(cs: list[Config], rpo_budget: float) -> str:
    groups: dict[str, list[Config]] = {}
    for c in cs:
        groups.setdefault(budget.status(c, rpo_budget), []).append(c)
    parts = [f"{NAMES[s]}: {_names(groups[s], flag=False)}" for s in NAMES if s in groups]
    return f"**RPO budget {rpo_budget:g} s** (worst fault loss): " + "; ".join(parts) + "."


def _cheapest(c: Config) -> tuple[float, str] | None:
    known = [(v, d) for d, (v, missing) in c.costs.items() if v is not None and not missing]
    return min(known) if known else None


def cost_line(cs: list[Config], target: float) -> str:
    priced = sorted(((p, c) for c in cs if (p := _cheapest(c))), key=lambda t: t[0][0])
    items = [f"{c.label}{c.flag} {money(v)} ({d})" for (v, d), c in priced]
    unpriced = [c for c in cs if _cheapest(c) is None]
    out = f"**Cost per month at {target:g} runs/s**, cheapest deployment of each, low to high: "
    out += ", ".join(items) or "none priced"
    return out + (f"; not priced: {_names(unpriced)}" if unpriced else "") + "."


def lines(cs: list[Config], target: float, rpo_budget: float | None) -> Bullets:
    out = [speed_line(cs, target)]
    if rpo_budget is not None:
        out.append(rpo_line(cs, rpo_budget))
    out.append(cost_line(cs, target))
    return Bullets(out)
