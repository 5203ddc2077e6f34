"""What one result directory measured, as the cost model's input (``bench.cost.Usage``).

Kept apart from the model so ``bench.cost`` stays a pure function of numbers and prices, and the
knowledge of result files (which summary.json keys, which CSV) stays with the report's loader."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from backends.base import BackendInfo, registered
from bench.cost import TIER1_OPS, TIER2_OPS, Usage


def backend_info(manifest: dict[str, Any]) -> BackendInfo | None:
    """The registered backend a result was measured on (None: not registered here), whose
    declarations, for the options it ran with, say how to read its own figures."""
    info = registered().get(str(manifest.get("backend")))
    return info.resolved(manifest.get("backend_options")) if info else None


def usage_of(
    manifest: dict[str, Any],
    summary: dict[str, Any],
    runs: pd.DataFrame,
    resources: pd.DataFrame,
) -> Usage:
    """Collect the model's inputs from manifest.json, summary.json, runs.csv, resources.csv.
    The harness (load generator, checkers) is not part of any backend and is left out."""
    res = {r: u for r, u in (summary.get("resources") or {}).items() if r != "harness"}
    cpu = {
        r: None if u.get("cpu_s_during_drive") is None else float(u["cpu_s_during_drive"])
        for r, u in res.items()
    }
    # 0 or absent = never measured (a live process always has some PSS; results written before
    # peak_pss_bytes existed measured a different figure): missing, never priced as zero
    pss = {r: int(u["peak_pss_bytes"]) if u.get("peak_pss_bytes") else None for r, u in res.items()}
    drive_s = math.nan
    if len(resources) and "t" in resources:
        drive_s = float(resources["t"].max() - resources["t"].min())
    counts = summary.get("runs") or {}
    finished = int((counts.get("completed") or 0) + (counts.get("failed") or 0))
    bm = summary.get("backend_metrics") or {}
    state = bm.get("schema_bytes") or bm.get("db_bytes")  # schema_bytes: the tables alone
    obj = (bm.get("object_store_usage") or {}).get("bytes")
    info = backend_info(manifest)
    t1, t2, src = _requests(bm, info)
    attempts = None
    if len(runs) and "exec_attempts" in runs and "complete_t" in runs:
        done = runs[runs["complete_t"].notna()]
        if len(done):
            attempts = float(done["exec_attempts"].mean())
    return Usage(
        runs_finished=finished,
        runs_accepted=int(counts.get("accepted") or finished),
        drive_s=drive_s,
        cpu_s=cpu,
        peak_pss=pss,
        state_bytes=float(state) if state else None,
        object_bytes=None if obj is None else float(obj),
        tier1_requests=t1,
        tier2_requests=t2,
        request_source=src,
        exec_attempts_per_run=attempts,
        alternatives=info.managed if info else (),
        standins=manifest.get("managed_standins"),
    )


def replica_requests(
    bm: dict[str, Any], info: BackendInfo | None
) -> tuple[dict[str, float], str] | None:
    """The replication client's own request counts, as its backend reads them."""
    return info.factory.replica_requests(bm) if info else None


def _requests(
    bm: dict[str, Any], info: BackendInfo | None
) -> tuple[float | None, float | None, str]:
    """Object-store requests by price class. The replication client's own counter is preferred:
    it is what production would send to S3, while the local object store also counts the harness's
    readiness probes and usage listings. (For fault trials, where the client restarts and its
    counter with it, ``bench.report.faults`` uses the object store's PUT count instead.)"""
    client, client_src = replica_requests(bm, info) or ({}, "")
    server = (bm.get("object_store_requests") or {}).get("requests") or {}
    ops = client or server
    if not ops:
        return None, None, "no object store"
    t1 = sum(float(v) for k, v in ops.items() if k.upper() in TIER1_OPS)
    t2 = sum(float(v) for k, v in ops.items() if k.upper() in TIER2_OPS)
    src = client_src if client else "the object store's counters"
    if client and server:
        seen = ", ".join(f"{k} {int(v)}" for k, v in sorted(server.items()))
        src += f"; the object store saw {seen}, incl. the harness's probes"
    return t1, t2, src
