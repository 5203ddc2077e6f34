# size: one measurement from start to results, with the cleanup that must run on every path. Not split in this change.
"""One measurement end to end: deploy, drive the schedule, collect, check, stop, write results.

Whatever happens (error, Ctrl-C), every process the deployment started is stopped, and whatever
was recorded is written, with ``partial: true`` and the reason when the run did not finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import logging
import math
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from backends.base import ExecutionSettings, RunContext, StateView, get
from backends.common import powerloss
from backends.common.redact import RedactingFilter, redact_text
from backends.common.redact import redact as redact_value
from backends.errors import ConfigError, DiskFull
from backends.history import HistoryWriter
from backends.promises import Promise
from bench import (
    checkers,
    exposure,
    exposure_figures,
    faults,
    lastresort,
    leftovers,
    metrics,
    postrun,
    promise_check,
    replication,
    results,
    signals,
)
from bench import nemesis as nemesis_mod
from bench.nemesis import FaultSpec
from bench.runner import Driver, DriveResult, lag_warning
from bench.sampler import ResourceSampler
from bench.workload.schedule import Schedule, ScheduledRuns


@dataclass
class Request:
    backend: str
    options: dict[str, Any]
    schedule: Schedule
    settings: ExecutionSettings
    results_root: Path
    drain_timeout_s: float = 120.0
    settle_s: float = 15.0  # see PositionSampler.settle
    keep_data: bool = False
    show_progress: bool = True
    command: tuple[str, ...] = ()
    fault: FaultSpec | None = None
    trial: int = 0
    on_lazyfs: bool = False  # a plain run with the node's data on the lazy filesystem


@dataclass
class Outcome:
    run_dir: Path
    summary: dict[str, Any]
    manifest: dict[str, Any]
    interrupted_by: str | None = None  # SIGINT / SIGTERM stopped the drive (results partial)


def redact(options: dict[str, Any]) -> dict[str, Any]:
    """Options as written to the manifest: passwords in connection strings masked."""
    return {k: redact_value(v) for k, v in options.items()}


class _QuietFileHandler(logging.FileHandler):
    """A log line that cannot be written (full disk) is dropped, not reported on the terminal
    with a traceback: the run itself says why it stopped."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass


def _log_to_file(logdir: Path) -> logging.Handler:
    """Library warnings (a connection pool retrying while the store is down) go to
    logs/harness.log instead of the terminal, where they would garble the progress line."""
    logdir.mkdir(parents=True, exist_ok=True)
    handler = _QuietFileHandler(logdir / "harness.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logging.getLogger().addHandler(handler)
    return handler


# size: the run's phases in order under the one try/finally that stops every process and writes
# partial results on any exit; splitting it would scatter that guarantee. Candidate for a phases
# object.
def run(req: Request) -> Outcome:
    info = get(req.backend)
    if req.fault is not None:  # refuse before anything starts
        nemesis_mod.check_supported(req.fault.fault, info.factory, req.backend, req.options)
    if (preflight := getattr(info.factory, "preflight", None)) is not None:
        preflight(req.options)  # external services answer, before any file is written
    root_existed = req.results_root.exists()
    for work in leftovers.clean(req.results_root):
        print(f"removed {work}: its harness was killed before it could clean up", file=sys.stderr)
    try:
        run_dir = results.new_run_dir(req.results_root, req.backend, req.schedule.spec.name)
    except OSError as e:  # checked up front, but the directory can change under us
        if e.errno == errno.ENOSPC:
            raise DiskFull(req.results_root) from e
        raise ConfigError(f"cannot create a run directory under {req.results_root}: {e}") from e
    ctx = RunContext(
        workdir=run_dir / "work",
        logdir=run_dir / "logs",
        history_dir=run_dir / "history",
        epoch_ns=time.monotonic_ns(),
        settings=req.settings,
        keep_data=req.keep_data,
    )
    manifest: dict[str, Any] = {
        "run_id": run_dir.name,
        "command": redact_value(list(req.command or sys.argv)),
        "backend": req.backend,
        "backend_options": redact(req.options),
        "workload": req.schedule.spec.to_dict(),
        "schedule": req.schedule.summary(),
        "seed": req.schedule.seed,
        "settings": asdict(req.settings),
        "machine": results.machine(),
        "packages": results.package_versions(),
        "started_at": results.now_iso(),
        "harness": leftovers.owner(os.getpid()),
        "keep_data": req.keep_data,
        "drain_timeout_s": req.drain_timeout_s,
        "exposure_settle_s": req.settle_s,
        "partial": True,
        "partial_reason": leftovers.STILL_RUNNING,
    }
    try:
        results.write_json(run_dir / "manifest.json", manifest)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DiskFull(run_dir) from e
        raise
    log_handler = _log_to_file(ctx.logdir)
    deployment = None
    drive: DriveResult | None = None
    history = HistoryWriter(ctx.history_dir / "harness.jsonl", "harness", ctx.epoch_ns)
    backend_metrics: dict[str, Any] = {}
    state_checks: dict[str, Any] = {}
    exposure_figures: dict[str, Any] | None = None
    hist: postrun.History | None = None  # the history partitioned by run, after the drive
    sampler = None
    positions: exposure.PositionSampler | None = None
    error: BaseException | None = None
    plan_file = contextlib.ExitStack()
    try:
        deployment = info.factory(req.options, ctx)
        refusal = getattr(deployment, "fault_refusal", None)
        if req.fault is not None and refusal is not None and (why := refusal(req.fault.fault)):
            raise ConfigError(f"{req.backend}: cannot inject {req.fault.fault}: {why}")
        if req.fault is not None:
            nemesis_mod.prepare(req.fault.fault, deployment)
        elif req.on_lazyfs:
            nemesis_mod.on_lazyfs(deployment)
        # figures of a run on the lazy filesystem are not the backend's (FUSE costs time)
        manifest["lazyfs"] = req.on_lazyfs or (
            req.fault is not None and req.fault.fault == nemesis_mod.LAZYFS_FAULT
        )
        if manifest["lazyfs"] and (stale := powerloss.clean_stale(req.results_root)):
            print(
                f"removed {len(stale)} stale lazy-filesystem mount(s) left by a crashed "
                f"harness: {', '.join(stale)}",
                file=sys.stderr,
            )
        sampler = ResourceSampler(deployment)
        # every plan written before the deployment starts: the drive builds none (planfile.py)
        plan_file.enter_context(_stored_plans(req.schedule, ctx.workdir))
        t0 = time.monotonic()
        deployment.start()
        signals.check()  # a signal during the deploy whose exception Python dropped
        manifest["deploy_ready_s"] = time.monotonic() - t0
        manifest["topology"] = deployment.topology()
        manifest["versions"] = deployment.versions()
        manifest["managed_standins"] = deployment.managed_standins()  # for the cost model
        client = deployment.client()
        positions = exposure.PositionSampler(deployment, history.now)
        if positions.supported():
            positions.start()
        else:
            positions = None
        nemesis = None
        if req.fault is not None:
            at_s = nemesis_mod.pick_fault_time(
                req.fault,
                req.schedule.warmup_s,
                req.schedule.duration_s,
                f"{req.schedule.seed}:{req.trial}",
            )
            nemesis = nemesis_mod.Nemesis(req.fault, at_s, deployment, history)
            manifest["fault"] = {**asdict(req.fault), "at_s": at_s, "trial": req.trial}
        driver = Driver(
            req.schedule,
            client,
            history,
            ctx.history_dir,
            sampler,
            req.drain_timeout_s,
            req.show_progress,
            deployment.inline_engine(),
            nemesis,
        )
        signals.check()
        try:
            drive = asyncio.run(_drive(driver, client))
            if positions is not None and not drive.interrupted:
                positions.settle(req.settle_s)
        finally:
            plan_file.close()
            if positions is not None:
                positions.stop()
        if drive.fatal is not None:  # what was recorded is still tabulated and written below
            raise drive.fatal
        if nemesis is not None:
            manifest["fault"]["timeline"] = nemesis.timeline.to_dict()
        sampler.sample(history.now())
        backend_metrics = deployment.collect_metrics()
        manifest["backend_config"] = deployment.config()
        if drive is not None:
            # the history is split by run once, for the checks and for the tables: both then
            # read one shard at a time (post-run memory follows a shard, not the run)
            t_post = time.monotonic()
            hist = postrun.partition(ctx.history_dir, req.schedule.runs, under=run_dir)
            post_run = manifest["post_run"] = _post_run_record(hist, t_post)
            timeline = nemesis.timeline.to_dict() if nemesis is not None else None
            integrity = getattr(deployment, "integrity_check", None)
            signals.check()
            if not drive.interrupted:  # checks would judge runs the user stopped: no verdict
                extra = _replication_checks(deployment, timeline)
                t_post = time.monotonic()
                promise_of = _promise_of(deployment, timeline)
                state_checks = _check_state(
                    req, client.state, hist, timeline, integrity, extra, promise_of
                )
                post_run["checks_s"] = round(time.monotonic() - t_post, 3)
                if positions is not None:
                    t_post = time.monotonic()
                    exposure_figures = _exposure(positions, hist, timeline, state_checks, run_dir)
                    post_run["exposure_s"] = round(time.monotonic() - t_post, 3)
                    if "cross_check" in exposure_figures:
                        state_checks["exposure"] = exposure_figures["cross_check"]
                        state_checks["valid"] = checkers.compose(
                            promise_check.composable(state_checks)
                        )
    except BaseException as e:  # noqa: BLE001 - recorded, re-raised after cleanup
        error = e
        if isinstance(e, KeyboardInterrupt):
            signals.handled()
        if not isinstance(e, KeyboardInterrupt):
            logging.getLogger("durabench").error("the run failed", exc_info=e)
            lastresort.attach_log(e, ctx.logdir / "harness.log")
    finally:
        plan_file.close()
        if deployment is not None:
            try:
                deployment.stop()
            except Exception as e:  # noqa: BLE001 - recorded, the results are still written
                manifest["stop_error"] = f"{type(e).__name__}: {e}"
                print(f"warning: stopping {req.backend} failed: {e}", file=sys.stderr)
        history.close()
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()
    if deployment is None and isinstance(error, ConfigError):
        # the backend refused its options before starting anything: a refused run leaves no
        # results behind (only its log, which held nothing but this refusal, was written)
        shutil.rmtree(run_dir, ignore_errors=True)
        if not root_existed:
            with contextlib.suppress(OSError):
                req.results_root.rmdir()
        raise error
    if not req.keep_data:  # before the results are written: on a full disk this makes room
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    try:
        if drive is not None and hist is None:  # the run failed between the drive and the checks
            hist = postrun.partition(ctx.history_dir, req.schedule.runs, under=run_dir)
        summary = _write(
            req,
            run_dir,
            manifest,
            drive,
            hist,
            sampler,
            backend_metrics,
            state_checks,
            error,
        )
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        _mark_partial_in_place(run_dir / "manifest.json", manifest, DiskFull(run_dir))
        raise DiskFull(run_dir) from e
    finally:
        if hist is not None:
            hist.close()
    if exposure_figures is not None:
        summary["exposure"] = exposure_figures
        results.write_json(run_dir / "summary.json", summary)
    if error is not None:
        raise error
    return Outcome(run_dir, summary, manifest, drive.signal if drive is not None else None)


def _post_run_record(hist: postrun.History, t0: float | None) -> dict[str, Any]:
    """How the post-run pass split the history (and how long each part took), for the
    manifest: memory after the drive follows one shard of ``runs_per_shard`` runs."""
    out: dict[str, Any] = {
        "history_events": hist.partition.events,
        "shards": hist.shards.n_shards,
        "runs_per_shard": hist.shards.size,
    }
    if t0 is not None:
        out["partition_s"] = round(time.monotonic() - t0, 3)
    return out


def _mark_partial_in_place(path: Path, manifest: dict[str, Any], why: DiskFull) -> None:
    """Last resort on a full disk: rewrite the manifest in place (no temporary copy, which
    needs room for a second file) so it says why the run is partial."""
    manifest.update(partial=True, partial_reason=f"error: {why}", ended_at=results.now_iso())
    with contextlib.suppress(OSError), open(path, "r+") as f:
        f.truncate(0)
        f.write(results.dumps(manifest))


def _stored_plans(schedule: Schedule, workdir: Path) -> contextlib.AbstractContextManager[object]:
    runs = schedule.runs
    if isinstance(runs, ScheduledRuns):
        return runs.stored_plans(workdir / "harness" / "plans.bin")
    return contextlib.nullcontext()


async def _drive(driver: Driver, client: Any) -> DriveResult:
    try:
        return await driver.drive()
    finally:
        await client.close()


def _promise_of(
    deployment: Any, timeline: dict[str, Any] | None
) -> Callable[[str], Promise | None]:
    """The promise a fault is judged by: the deployment's, or one a composite fault derives
    from its parts and its real timeline (``Fault.promise``)."""
    return lambda fault: faults.get(fault).promise(deployment.promise, timeline or {})


def _exposure(
    positions: exposure.PositionSampler,
    events: postrun.History,
    timeline: dict[str, Any] | None,
    checks: dict[str, Any],
    run_dir: Path,
) -> dict[str, Any]:
    """Exposure figures (bench/exposure.py), exposure.csv (per ack) and exposure_series.csv;
    after a node loss, the cross-check against the acks the checker found lost. The history
    is analysed one shard of runs at a time (``exposure_figures.Stream``)."""
    samples = positions.samples
    tl = timeline or {}
    fault_t = postrun.fault_time(timeline)
    fault = faults.get(tl["fault"]) if fault_t is not None else None
    node_lost = fault is not None and fault.loses_node
    outage: tuple[float, float] | None = None
    if fault is not None and fault.widens_exposure:
        # a composite fault's outage began at its lead-in; one that loses the node ends the
        # window there (what was at risk then is lost, not caught up)
        lead = tl.get("lead_in_t")
        begin = fault_t if lead is None or math.isnan(lead) else lead
        end = fault_t if fault.loses_node else tl.get("recover_begin_t")
        if end is not None and not math.isnan(end):
            outage = (begin, end)
    keep = None
    if outage is not None:
        _, t_end = exposure_figures.catch_up_of(samples, outage[1], node_lost)
        keep = (outage[0], max(outage[1], t_end))
    stream = exposure_figures.Stream(positions, fault_t, keep, _node_loss_bound(positions.dep))
    with open(run_dir / "exposure.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(exposure.ACK_COLUMNS)
        for k in range(events.shards.n_shards):
            out.writerows(exposure.ack_row(a) for a in stream.add(events.partition.shard(k)))
    figures = stream.summary()
    pd.DataFrame(figures.pop("_series")).to_csv(run_dir / "exposure_series.csv", index=False)
    pd.DataFrame(exposure.sample_columns(samples)).to_csv(
        run_dir / "exposure_samples.csv", index=False
    )
    if outage is not None:
        figures["outage"] = {
            "fault": tl["fault"],
            **exposure_figures.window(stream.kept, samples, *outage, node_lost),
            "at_inject": (tl.get("detail") or {}).get("at_inject"),
            "at_recover": (tl.get("detail") or {}).get("at_recover"),
        }
    at_fault = exposure.at_risk_at(stream.kept, fault_t) if fault_t is not None else []
    if stream.beyond is not None:
        figures["node_loss_promise"] = stream.beyond.figures(at_fault)
    wl = checks.get("write_loss") or {}
    if fault_t is not None and node_lost and "lost" in wl:
        figures["cross_check"] = exposure.cross_check(stream.kept, samples, fault_t, wl["lost"])
    return figures


def _node_loss_bound(deployment: Any) -> float | None:
    """The age bound the deployment promises for losing its node (the fault that loses the
    node and nothing else), which every run's exposure is held against: an ack exposed longer
    than that would be lost outside the promise by a node loss at that moment."""
    for f in faults.registered().values():
        if f.loses_node and f.lead_in_s(FaultSpec(f.name)) is None:
            try:
                p = deployment.promise(f.name)
            except Exception:  # noqa: BLE001 - no promise to hold the figures against
                return None
            return None if p is None else p.max_lost_age_s or None
    return None


def _replication_checks(deployment: Any, timeline: dict[str, Any] | None) -> dict[str, Any]:
    """The health of the deployment's replica: only a running deployment can say."""
    expected = bool(((timeline or {}).get("detail") or {}).get("replication_errors_expected"))
    rep = replication.replication_check(deployment, expected)
    return {} if rep is None else {"replication": rep}


def _check_state(
    req: Request,
    states: Callable[[], StateView],
    events: postrun.History,
    timeline: dict[str, Any] | None,
    integrity: Callable[[], dict[str, Any]] | None,
    extra: dict[str, Any],
    promise_of: Callable[[str], Promise | None] | None = None,
) -> dict[str, Any]:
    """Every check of a run from its history and its durable state: a live deployment's, or
    the one a run kept on disk (``bench check``), the same with and without a fault (see
    bench/checkers.py). ``extra``: checks made elsewhere (replication health), composed into the
    verdict like the others. After a fault, the promise (``promise_of``) judges the write loss
    (bench/promise_check.py)."""
    out = postrun.check_all(
        events,
        states,
        req.schedule.runs,
        req.schedule.seed,
        timeline,
        integrity,
        payload_version=req.settings.payload_version,
    )
    out.update(extra)
    fault = (timeline or {}).get("fault")
    if fault is not None and promise_of is not None:  # kept / broken / unknown, with figures
        out["promise"] = promise_check.check(fault, promise_of, events, timeline, out)
    out["valid"] = checkers.compose(promise_check.composable(out))
    return out


# size: writes every result file of a run in order; not split in this change.
def _write(
    req: Request,
    run_dir: Path,
    manifest: dict[str, Any],
    drive: DriveResult | None,
    hist: postrun.History | None,
    sampler: ResourceSampler | None,
    backend_metrics: dict[str, Any],
    state_checks: dict[str, Any],
    error: BaseException | None,
) -> dict[str, Any]:
    warnings: list[str] = []
    summary: dict[str, Any] = {
        "run_id": run_dir.name,
        "backend": req.backend,
        "workload": req.schedule.spec.name,
    }
    if drive is not None and hist is not None:
        warmup_end = drive.start_t + req.schedule.warmup_s
        # runs.csv, steps.csv and timeseries.csv written a shard at a time
        t_post = time.monotonic()
        summary.update(
            postrun.tabulate(
                hist,
                req.schedule.runs,
                req.settings.retry,
                req.settings.time_scale,
                drive.start_t,
                warmup_end,
                drive.end_t,
                run_dir,
            )
        )
        post_run = manifest.setdefault("post_run", _post_run_record(hist, None))
        post_run["tables_s"] = round(time.monotonic() - t_post, 3)
        # offered over the measured window (as runs/s is); the schedule's own average apart
        summary["offered_rate_per_s"] = summary["throughput"]["offered_runs_per_s"]
        summary["schedule_rate_per_s"] = req.schedule.offered_rate()
        summary["schedule_start_t"] = drive.start_t
        summary["dispatch_lag"] = metrics.latency_summary(drive.lags_s)
        w = lag_warning(drive.lags_s)
        summary["untrusted"] = [w] if w else []  # the report keeps these out of its medians
        if w:
            warnings.append(w)
        if drive.missing_runs and req.fault is None:
            warnings.append(
                f"{drive.missing_runs} accepted run(s) are missing from the store, so they could "
                "never finish: the drain stopped waiting for them (see the checks)"
            )
        if drive.drain_timed_out:
            warnings.append(
                f"{summary['runs']['unfinished']} accepted run(s) had not finished "
                f"{req.drain_timeout_s:g}s after the last arrival; they count in run latency "
                "as censored samples at the end of the drive (lower bounds)"
            )
        if summary["runs"]["completed"] == 0:
            warnings.append("NO RUN COMPLETED: this measurement did no real work")
        elif summary["throughput"]["runs_completed_in_window"] == 0:
            warnings.append("no run completed inside the measured window (after warm-up)")
        if summary["runs"]["submit_failed"] or summary["runs"]["submit_indeterminate"]:
            warnings.append(
                f"{summary['runs']['submit_failed']} submit(s) failed and "
                f"{summary['runs']['submit_indeterminate']} were indeterminate"
            )
    if sampler is not None:
        summary["resources"] = sampler.summary()
        pd.DataFrame(sampler.rows).to_csv(run_dir / "resources.csv", index=False)
    summary["backend_metrics"] = backend_metrics
    summary["checks"] = state_checks
    if state_checks and state_checks.get("valid") is False:
        warnings.append("CORRECTNESS CHECK FAILED: see summary.json checks")
    for problem in (state_checks.get("replication") or {}).get("problems") or []:
        warnings.append(f"REPLICATION: {problem}")
    summary["warnings"] = warnings
    partial_reason = None
    if error is not None:
        partial_reason = (
            f"interrupted ({signals.label(signals.name_of(error))})"
            if isinstance(error, KeyboardInterrupt)
            else f"error: {redact_text(str(error))}"
        )
        manifest["error"] = redact_text(
            "".join(traceback.format_exception_only(type(error), error)).strip()
        )
    elif drive is not None and drive.interrupted:
        partial_reason = f"interrupted ({signals.label(drive.signal)}): the schedule did not finish"
    manifest["partial"] = partial_reason is not None
    manifest["partial_reason"] = partial_reason
    manifest["ended_at"] = results.now_iso()
    summary["partial"] = manifest["partial"]
    summary["verdict"] = state_checks.get("valid", "unknown") if state_checks else "unknown"
    if (
        manifest["partial"] and summary["verdict"] is True
    ):  # a run that did not finish passes no check
        summary["verdict"] = "unknown"
    results.write_json(run_dir / "manifest.json", manifest)
    results.write_json(run_dir / "summary.json", summary)
    return summary
