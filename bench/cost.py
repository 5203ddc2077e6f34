"""Price table and cost model: measured resource use of one result directory -> money.

Why a model and not a bill: a benchmark measures minutes on one machine; a design review wants
"what does this cost per million runs, and per month at our load?". The model extrapolates, so
every line carries the assumption that turns the measurement into the figure, and separates
  - per-run costs, which scale with the number of runs (CPU, state kept on disk / in the object
    store, a managed engine's per-action charges), from
  - per-time costs, which are paid whether or not runs arrive (memory held by long-lived
    processes, a replicator's uploads: one per sync interval while the database changes, not
    one per run).
Prices come from a TOML file (``prices/default.toml``) in which every price names its source
and the date it was read; a price nobody could find is ``"unknown"`` and its line says so
instead of inventing a number. Likewise a measurement that is missing (no CPU or memory figure
for a process, no object-store count, no database size) leaves its line NOT MEASURED: it is
never priced as zero, and a total that needs it is not given.

Managed services replace parts of the measured deployment: a process the backend declares a
local stand-in for a managed service (a local object store standing in for S3) is never priced
as a server, because the service's own prices (S3 storage and requests) are applied instead;
the totals of a backend's declared managed alternatives replace the measured server
process(es). Every line names what its totals replace (``CostLine.replaced``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from backends.base import ManagedAlternative
from backends.errors import ConfigError
from bench.prices import (  # noqa: F401 - the price table, read by callers through this module
    DEFAULT_PRICES,
    GB,
    Price,
    PriceTable,
    load_prices,
    required_keys,
)

TIER1_OPS = ("PUT", "COPY", "POST", "LIST")  # S3's expensive request class
TIER2_OPS = ("GET", "HEAD", "SELECT")


# --- measured usage ----------------------------------------------------------------------------


@dataclass
class Usage:
    """What one result directory measured, in the units the model needs (read from the
    result files by ``bench.report.usage.usage_of``)."""

    runs_finished: int
    runs_accepted: int
    drive_s: float  # span of the resource samples: the drive, without start-up and analysis
    cpu_s: dict[str, float | None]  # role -> CPU s during the drive (harness excluded; None:
    # not measured)
    peak_pss: dict[str, int | None]  # role -> peak PSS bytes over its tree (None: not measured)
    state_bytes: float | None  # database bytes on local disk
    object_bytes: float | None  # bytes in the object store at the end
    tier1_requests: float | None
    tier2_requests: float | None
    request_source: str
    exec_attempts_per_run: float | None
    # managed services that can replace the measured servers (declared by the backend)
    alternatives: tuple[ManagedAlternative, ...] = ()
    # role -> the managed service it stands in for (declared by the backend, manifest.json
    # managed_standins); None when the result predates the declaration
    standins: dict[str, str] | None = None

    @property
    def has_processes(self) -> bool:
        return bool(self.cpu_s)

    @property
    def uses_object_store(self) -> bool:
        """The deployment replicated to an object store: a stand-in for one ran, or the
        store's usage or request counters were read."""
        return bool(self.standins) or any(
            x is not None for x in (self.object_bytes, self.tier1_requests)
        )


# --- the model ---------------------------------------------------------------------------------


def _is_worker(role: str) -> bool:
    return role.startswith("worker")


SELF = "self-hosted"


@dataclass(frozen=True)
class CostLine:
    component: str
    kind: str  # "per-run" (scales with runs) or "per-time" (paid per month whatever the load)
    per_million_runs: float | None  # None for per-time lines and for unknown prices
    per_month: float | None  # at the target load; None when a price is unknown
    assumption: str
    deployments: tuple[str, ...]  # which totals this line belongs to
    price_keys: tuple[str, ...] = ()
    missing: str | None = None  # the measurement this line needs and did not get
    replaced: str = ""  # per total: which measured parts managed services replace


@dataclass
class Estimate:
    target_runs_per_s: float
    runs_per_month: float
    lines: list[CostLine]
    notes: list[str]

    def deployments(self) -> list[str]:
        out: list[str] = []
        for line in self.lines:
            out += [d for d in line.deployments if d not in out]
        return out

    def total(self, deployment: str, kind: str | None = None) -> float | None:
        """$ per month of a deployment's lines (of one kind, or all); None if a price is
        unknown."""
        return self._sum(deployment, kind, "per_month")

    def per_million_runs(self, deployment: str) -> float | None:
        """$ per million runs of the deployment's per-run lines (per-time lines excluded)."""
        return self._sum(deployment, "per-run", "per_million_runs")

    def _sum(self, deployment: str, kind: str | None, attr: str) -> float | None:
        lines = [x for x in self.lines if deployment in x.deployments]
        vals = [getattr(x, attr) for x in lines if kind is None or x.kind == kind]
        return None if any(v is None for v in vals) else float(sum(vals))

    def not_measured(self, deployment: str, kind: str | None = None) -> list[str]:
        """Lines of a deployment (of one kind, or all) left unpriced for want of a
        measurement: their totals are not given."""
        return [
            x.component
            for x in self.lines
            if deployment in x.deployments and x.missing and (kind is None or x.kind == kind)
        ]

    def replaced(self, deployment: str) -> str:
        return self._replaced.get(deployment, "")

    _replaced: dict[str, str] = field(default_factory=dict)


def _x(price: float | None, factor: float) -> float | None:
    """price x quantity, unknown stays unknown."""
    return None if price is None else price * factor


@dataclass
class _Lines:
    """Adds cost lines to one estimate (prices, month length and load fixed)."""

    est: Estimate
    prices: PriceTable

    def p(self, key: str) -> float | None:
        return self.prices.value(key)

    def per_run(self, name: str, each: float | None, why: str, deps: tuple[str, ...], *keys):
        m, month = _x(each, 1e6), _x(each, self.est.runs_per_month)
        self.est.lines.append(CostLine(name, "per-run", m, month, why, deps, keys))

    def per_time(self, name: str, month: float | None, why: str, deps: tuple[str, ...], *keys):
        self.est.lines.append(CostLine(name, "per-time", None, month, why, deps, keys))

    def not_measured(self, name: str, kind: str, what: str, deps: tuple[str, ...], *keys):
        why = f"NOT MEASURED: {what}; left unpriced (never counted as zero)"
        self.est.lines.append(CostLine(name, kind, None, None, why, deps, keys, missing=what))


def estimate(usage: Usage, prices: PriceTable, target_runs_per_s: float) -> Estimate:
    """Cost lines for one measurement at ``target_runs_per_s``; see the module docstring."""
    if not math.isfinite(target_runs_per_s) or target_runs_per_s <= 0:
        raise ConfigError(f"--target-runs-per-s must be > 0, got {target_runs_per_s}")
    hours = prices.hours_per_month
    est = Estimate(target_runs_per_s, target_runs_per_s * hours * 3600, [], [])
    if not usage.has_processes:
        est.notes.append(
            "no backend process was measured (the engine ran inside the harness): nothing to price"
        )
        return est
    if usage.runs_finished <= 0:
        est.notes.append("no run finished: per-run costs cannot be derived from this measurement")
        return est
    lines = _Lines(est, prices)
    standins = {r: svc for r, svc in (usage.standins or {}).items() if r in usage.cpu_s}
    worker_roles = sorted(r for r in usage.cpu_s if _is_worker(r))
    store_roles = sorted(r for r in usage.cpu_s if not _is_worker(r) and r not in standins)
    alt = [a.name for a in usage.alternatives]
    _replacements(est, usage, standins, store_roles)
    _process_lines(lines, usage, "workers", worker_roles, (SELF, *alt))
    _process_lines(lines, usage, "store / server processes", store_roles, (SELF,))
    accepted = max(usage.runs_accepted, 1)
    _storage_lines(lines, usage, accepted)
    if usage.uses_object_store:
        _object_store(
            est, usage, lines.p, hours, accepted, lines.per_run, lines.per_time, lines.not_measured
        )
    for a in usage.alternatives:
        if a.per_million_actions_price:
            _actions(a, usage, lines.p, lines.per_run, lines.not_measured)
        if a.instance_hour_price:
            lines.per_time(
                f"{a.name} instance",
                _x(lines.p(a.instance_hour_price), hours),
                f"{a.name} instance price, an alternative line for this backend only: one "
                "small instance all month instead of the measured server process (its CPU and "
                "memory lines drop out of this total)",
                (a.name,),
                a.instance_hour_price,
            )
    for i, line in enumerate(est.lines):
        what = "; ".join(f"{d}: {est.replaced(d)}" for d in line.deployments)
        est.lines[i] = dataclasses.replace(line, replaced=what)
        unknown = [k for k in line.price_keys if lines.p(k) is None]
        if unknown:
            est.notes.append(f"{line.component}: price unknown ({', '.join(unknown)})")
    for line in est.lines:
        if line.missing:
            est.notes.append(f"{line.component}: not measured ({line.missing})")
    return est


def _process_lines(
    lines: _Lines, usage: Usage, label: str, roles: list[str], deps: tuple[str, ...]
) -> None:
    """CPU (per run) and memory (per month) of a group of measured processes."""
    if not roles:
        return
    n, target = usage.runs_finished, lines.est.target_runs_per_s
    no_cpu = [r for r in roles if usage.cpu_s[r] is None]
    if no_cpu:
        what = f"no CPU figure for {', '.join(no_cpu)}"
        lines.not_measured(f"CPU: {label}", "per-run", what, deps, "vcpu_hour")
    else:
        cpu = sum(usage.cpu_s[r] or 0.0 for r in roles)
        lines.per_run(
            f"CPU: {label}",
            _x(lines.p("vcpu_hour"), cpu / n / 3600),
            f"CPU scales linearly with runs: {cpu:.2f} CPU-s during the drive over {n} "
            f"finished runs = {cpu / n * 1000:.1f} ms/run ({', '.join(roles)}); at "
            f"{target:g} runs/s that keeps {cpu / n * target:.3f} "
            "vCPU busy, billed per vCPU-hour with no idle headroom",
            deps,
            "vcpu_hour",
        )
    no_mem = [r for r in roles if usage.peak_pss.get(r) is None]
    if no_mem:
        what = f"no peak PSS for {', '.join(no_mem)}"
        lines.not_measured(f"memory: {label}", "per-time", what, deps, "memory_gb_hour")
    else:
        pss = sum(usage.peak_pss[r] or 0 for r in roles)
        lines.per_time(
            f"memory: {label}",
            _x(lines.p("memory_gb_hour"), pss / GB * lines.prices.hours_per_month),
            f"memory = peak PSS (summed over each process tree, sampled) held all month: "
            f"{pss / 2**20:.0f} MiB ({', '.join(roles)}), as measured at the benchmark's "
            "load (not scaled to the target load)",
            deps,
            "memory_gb_hour",
        )


def _storage_lines(lines: _Lines, usage: Usage, accepted: int) -> None:
    """The database's bytes per run, on block storage and on each managed alternative's."""
    if usage.state_bytes is None:
        lines.not_measured(
            "block storage: database",
            "per-run",
            "no database size in summary.json backend_metrics",
            (SELF,),
            "block_storage_gb_month",
        )
        return
    b = usage.state_bytes / accepted
    lines.per_run(
        "block storage: database",
        _x(lines.p("block_storage_gb_month"), b / GB),
        f"each run's state kept one month on block storage, billed on bytes used: "
        f"{b / 1024:.1f} KiB/run (database size at the end / {accepted} accepted runs; "
        "fixed overhead counted as if per run, provisioned headroom not included)",
        (SELF,),
        "block_storage_gb_month",
    )
    for a in usage.alternatives:
        if a.storage_gb_month_price:
            lines.per_run(
                f"{a.name} storage",
                _x(lines.p(a.storage_gb_month_price), b / GB),
                f"the same {b / 1024:.1f} KiB/run on {a.storage_what}, kept one month",
                (a.name,),
                a.storage_gb_month_price,
            )


def _replacements(
    est: Estimate, usage: Usage, standins: dict[str, str], store_roles: list[str]
) -> None:
    """Say, per total, which measured parts managed services replace (and so are not priced
    as servers)."""
    kept = ", ".join(f"{r} (local stand-in) -> {svc}" for r, svc in sorted(standins.items()))
    est._replaced[SELF] = (kept or "nothing") + (
        "" if usage.standins is not None else " (result predates stand-in declarations)"
    )
    servers = ", ".join(store_roles) or "the server"
    for a in usage.alternatives:
        est._replaced[a.name] = f"{servers} -> {a.replaces_with}" + (f"; {kept}" if kept else "")
    for r, svc in sorted(standins.items()):
        cpu, pss = usage.cpu_s.get(r), usage.peak_pss.get(r)
        est.notes.append(
            f"{r} is a local stand-in for {svc}: its measured use ("
            + (f"{cpu:.2f} CPU-s" if cpu is not None else "CPU not measured")
            + ", "
            + (f"{pss / 2**20:.0f} MiB peak PSS" if pss is not None else "memory not measured")
            + f") is not priced as a server; {svc}'s own prices apply instead"
        )


def _actions(a: ManagedAlternative, usage: Usage, p, per_run, not_measured) -> None:
    """Lines of a service billed per action: actions per run, and a plan fee on that spend."""
    key, fee_key = a.per_million_actions_price, a.actions_fee_fraction_price
    if usage.exec_attempts_per_run is None:
        what = "no exec attempts per finished run (runs.csv)"
        not_measured(f"{a.name} Actions", "per-run", what, (a.name,), key)
        if fee_key:
            not_measured(f"{a.name} plan fee", "per-run", what, (a.name,), fee_key)
        return
    actions = 1.0 + usage.exec_attempts_per_run
    per_run(
        f"{a.name} Actions",
        _x(p(key), actions / 1e6),
        f"actions per run estimated as 1 workflow start + "
        f"{usage.exec_attempts_per_run:.2f} activity starts incl. retries "
        f"(mean exec attempts per finished run, runs.csv) = {actions:.2f}; timers, "
        "signals, queries and heartbeats not counted",
        (a.name,),
        key,
    )
    if fee_key:
        act, fee = _x(p(key), actions / 1e6), None
        if act is not None and p(fee_key) is not None:
            fee = act * p(fee_key)
        per_run(f"{a.name} plan fee", fee, a.fee_what, (a.name,), fee_key)


def _object_store(est, usage, p, hours, accepted, per_run, per_time, not_measured) -> None:
    """Object-store lines: bytes kept (per run) and requests (per time), or NOT MEASURED."""
    if usage.object_bytes is None:
        not_measured(
            "object storage: replica bytes",
            "per-run",
            "no object-store usage (bytes in the bucket) in summary.json",
            (SELF,),
            "object_storage_gb_month",
        )
    else:
        b = usage.object_bytes / accepted
        per_run(
            "object storage: replica bytes",
            _x(p("object_storage_gb_month"), b / GB),
            f"replica bytes grow with runs and are kept one month: {b / 1024:.1f} KiB/run "
            "(bytes in the bucket at the end / accepted runs; compaction and retention would "
            "cap this in practice)",
            (SELF,),
            "object_storage_gb_month",
        )
    for kind, count, key in (
        ("PUT/LIST", usage.tier1_requests, "object_put_per_1000"),
        ("GET/HEAD", usage.tier2_requests, "object_get_per_1000"),
    ):
        name = f"object-store {kind} requests"
        if count is None or not usage.drive_s > 0:
            what = "no request count" if count is None else "no drive duration (resources.csv)"
            not_measured(name, "per-time", what, (SELF,), key)
            continue
        rate = count / usage.drive_s
        per_time(
            name,
            _x(p(key), rate * hours * 3600 / 1000),
            f"object-store requests scale with time, not runs: {rate * 60:.1f} {kind}/min "
            f"measured ({count:.0f} over the {usage.drive_s:.0f} s drive; "
            f"{usage.request_source}) at this sync-interval and this workload's duty cycle, "
            "paid all month; the initial snapshot upload is included, so short runs "
            "overstate the rate",
            (SELF,),
            key,
        )
