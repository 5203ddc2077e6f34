"""``bench check RUN_DIR``: run every checker again on a result whose data was kept.

A user re-verifies a result later, or after touching the store by hand, with the very checks the
run made: the history is read again from ``history/``, the schedule is rebuilt from the
manifest's workload, seed and rate scale (and must hash to the recorded schedule), and the
backend re-opens the durable state it kept under ``work/`` (``--keep-data``) through its
``open_kept_state`` hook. The check function is the run's own (``experiment._check_state``), so
the verdict rules are the same. Only the replica's health cannot be re-read after the run (the
replicator is gone): it is carried over from ``summary.json``, marked as recorded.

Nothing in the run directory is changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backends.base import ExecutionSettings, RetryPolicy, get
from backends.common import payload
from backends.errors import ConfigError
from backends.promises import Promise
from bench import experiment, postrun
from bench.workload.schedule import Schedule, build_schedule
from bench.workload.spec import WorkloadSpec

_TIMES = ("planned_at_t", "start_t", "recover_begin_t", "store_accepting_t")


def recheck(run_dir: Path) -> dict[str, Any]:
    """Every check of the run in ``run_dir`` against its kept state. ConfigError when the
    directory is not a run, kept no data, or its backend cannot re-open what it kept."""
    manifest, summary = _load(run_dir)
    info = get(str(manifest.get("backend")))
    schedule = _schedule(manifest)
    settings = _settings(manifest)
    if summary.get("schedule_start_t") is None:
        raise ConfigError(f"{run_dir}: the run never drove its schedule: nothing to check")
    timeline = _timeline(manifest)
    req = experiment.Request(
        backend=info.name,
        options=manifest.get("backend_options") or {},
        schedule=schedule,
        settings=settings,
        results_root=run_dir.parent,
    )
    extra: dict[str, Any] = {}
    recorded = (summary.get("checks") or {}).get("replication")
    if isinstance(recorded, dict):
        note = "recorded at run time: the replica cannot be re-read after the run"
        extra["replication"] = {**recorded, "source": note}
    promise = _recorded_promise(summary)
    # split by run in the system's temporary directory: nothing in the run directory changes
    history = postrun.partition(run_dir / "history", schedule.runs)
    try:
        with info.factory.open_kept_state(run_dir, manifest) as view:
            integrity = getattr(view, "integrity_check", None)
            checks = experiment._check_state(
                req, lambda: view, history, timeline, integrity, extra, lambda _fault: promise
            )
    finally:
        history.close()
    return {
        "run_id": manifest.get("run_id", run_dir.name),
        "backend": info.name,
        "verdict": checks.get("valid", "unknown"),
        "recorded_verdict": summary.get("verdict"),
        "checks": checks,
    }


def _recorded_promise(summary: dict[str, Any]) -> Promise | None:
    """The promise the run's deployment stated for its fault (it depends on the live
    configuration, e.g. a standby's lag at the fault, so it is re-used, not re-derived)."""
    stated = ((summary.get("checks") or {}).get("promise") or {}).get("promise")
    return Promise(**stated) if isinstance(stated, dict) else None


def failures(checks: dict[str, Any], limit: int = 10) -> list[str]:
    """One line per failed check, naming what it found (lost ids, missing runs, mismatches)."""
    out = []
    for name, c in checks.items():
        if not isinstance(c, dict) or c.get("valid") is not False:
            continue
        named: list[str] = []
        for key, v in c.items():
            if isinstance(v, list) and v:
                ids = [x.get("id", x) if isinstance(x, dict) else x for x in v]
                named.append(f"{key}: {', '.join(map(str, ids[:limit]))}")
                if len(ids) > limit:
                    named[-1] += f" (+{len(ids) - limit} more)"
        out.append(f"{name}: " + ("; ".join(named) or json.dumps(c, default=str)[:300]))
    return out


def _load(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    files = {}
    for name in ("manifest.json", "summary.json"):
        try:
            files[name] = json.loads((run_dir / name).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{run_dir} is not a result directory ({name}: {e})") from None
    manifest = files["manifest.json"]
    if not isinstance(manifest, dict) or "backend" not in manifest or "workload" not in manifest:
        raise ConfigError(f"{run_dir}/manifest.json does not describe a run")
    work = run_dir / "work"
    if not work.is_dir() or not any(work.iterdir()):
        raise ConfigError(
            f"{run_dir}: no data was kept (work/ is empty): only a run made with --keep-data "
            "can be checked again"
        )
    return manifest, files["summary.json"]


def _schedule(manifest: dict[str, Any]) -> Schedule:
    spec = WorkloadSpec.from_dict(manifest["workload"])
    recorded = manifest.get("schedule") or {}
    schedule = build_schedule(spec, int(manifest["seed"]), float(recorded.get("rate_scale", 1.0)))
    if recorded.get("hash") != schedule.hash:
        raise ConfigError(
            f"the schedule rebuilt from the manifest ({schedule.hash[:12]}) is not the one the "
            f"run recorded ({str(recorded.get('hash'))[:12]}): the workload code changed since"
        )
    return schedule


def _settings(manifest: dict[str, Any]) -> ExecutionSettings:
    s = dict(manifest.get("settings") or {})
    s.setdefault("payload_version", 1)  # runs recorded before payloads were versioned
    if s["payload_version"] not in payload.VERSIONS:
        raise ConfigError(
            f"the run's payload version {s['payload_version']!r} is unknown to this code "
            f"(known: {payload.VERSIONS}): its step payloads cannot be recomputed"
        )
    try:
        s["retry"] = RetryPolicy(**s.get("retry", {}))
        return ExecutionSettings(**s)
    except TypeError as e:
        raise ConfigError(f"manifest settings are not readable: {e}") from None


def _timeline(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The fault timeline as the run had it (JSON wrote NaN, "did not happen", as null)."""
    tl = (manifest.get("fault") or {}).get("timeline")
    if tl is None:
        return None
    return {k: (float("nan") if k in _TIMES and v is None else v) for k, v in tl.items()}
