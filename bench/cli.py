# size: argparse declarations of every sub-command plus one handler each: long but flat. Not split in this change (concurrent branches add options here); candidate: handlers to bench/commands.py.
"""The ``bench`` command. The only place that prints errors and chooses exit codes:
0 ok, 1 a correctness check failed or a durability promise was broken (run, crash, sweep,
compare), 2 bad input or a backend could not start, 130 interrupted (partial results kept)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from backends.base import ExecutionSettings, RetryPolicy, get, registered
from backends.common.redact import redact_text
from backends.errors import ConfigError, DurabenchError, ReplicaStopError
from bench import faults, lastresort, signals, validate
from bench.report import commands as report_commands
from bench.workload.builtin import BUILTIN, DEFAULT_WORKLOAD

EXIT_OK, EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = """exit codes:
  0    every correctness check passed and no durability promise was broken (a trial the
       harness could not judge, e.g. nothing was at risk when the fault hit, is reported
       as unknown, not failed)
  1    a correctness check failed or a durability promise was broken
  2    bad input, or a deployment that could not start or run
  130  interrupted (Ctrl-C / SIGTERM): partial results are kept"""


def _add_common(p: argparse.ArgumentParser, several: bool = False) -> None:
    if several:
        p.add_argument(
            "--backends",
            required=True,
            help="comma-separated backends to compare (see `bench backends`)",
        )
    else:
        p.add_argument("--backend", required=True, help="backend to measure (see `bench backends`)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--concurrency", type=int, default=200, help="runs in flight per worker (default 200)"
    )
    p.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        help="where results/<run-id>/ goes (default ./results)",
    )
    p.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the database / object store files under <run-id>/work",
    )
    added: set[str] = set()  # a flag shared by several backends is added once
    for info in registered().values():
        own = [o for o in info.options if o.flag not in added]
        if not own:
            continue
        g = p.add_argument_group(f"{info.name} backend options")
        for o in own:
            added.add(o.flag)
            g.add_argument(
                o.flag,
                dest=o.dest,
                type=o.type,
                choices=o.choices,
                default=None,
                help=f"{o.help} (default: {o.default})" if o.default is not None else o.help,
            )


def _add_measurement(p: argparse.ArgumentParser, default_workload: str | None) -> None:
    p.add_argument(
        "--workload",
        default=default_workload,
        help=f"built-in name ({', '.join(BUILTIN)}) or a TOML file "
        f"(default {default_workload or 'smoke'})",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="factor on every simulated wait; 0 = no waits, a pure storage stress test (default 1)",
    )
    p.add_argument(
        "--rate-scale",
        type=float,
        default=1.0,
        help="factor on arrival rates: the same runs arrive N times faster (default 1)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="seconds to wait after the last arrival for accepted runs to finish",
    )
    p.add_argument(
        "--exposure-settle",
        type=float,
        default=15.0,
        help="seconds the exposure sampler waits after the drive for the replica to catch up "
        "on its own, so the last acks get their natural coverage time (default 15)",
    )
    p.add_argument(
        "--lease",
        type=float,
        default=10.0,
        help="seconds before another worker may take over a silent worker's run",
    )
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    _add_memory_limit(p)


def _add_memory_limit(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--memory-limit-gb",
        type=float,
        default=validate.default_memory_limit_gb(),
        help="refuse a workload whose estimated harness memory is above this "
        "(default: half of this machine's memory)",
    )


# size: flat argparse declarations, one sub-command after another; nothing to factor but the
# repetition argparse itself asks for.
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="bench",
        description="durabench: measure durable workflow backends under the same agent workload",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser(
        "run",
        help="drive a workload against one backend and write results",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(run)
    _add_measurement(run, DEFAULT_WORKLOAD)
    run.add_argument("--json", action="store_true", help="print summary.json instead of tables")
    run.add_argument(
        "--lazyfs",
        action="store_true",
        help="put the node's data on the lazy filesystem (as lose-power trials do), to measure "
        "what it costs; these figures are not the backend's",
    )
    run.set_defaults(func=cmd_run)

    for name, helptext in (
        ("crash", "inject faults into trials of a measurement and check what each lost"),
        ("sweep", "one fault across values of a backend setting"),
    ):
        c = sub.add_parser(
            name,
            help=helptext,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(c)
        _add_measurement(c, default_workload=None)
        c.add_argument(
            "--fault",
            required=True,
            help=", ".join(faults.registered())
            + (" (comma-separated for several)" if name == "crash" else ""),
        )
        c.add_argument("--trials", type=int, default=1, help="trials per fault (default 1)")
        c.set_defaults(func=cmd_crash if name == "crash" else cmd_sweep)
        c.add_argument(
            "--at",
            type=float,
            default=None,
            help="fault time, seconds after the schedule starts (default: random, "
            "seeded, inside the measured window)",
        )
        c.add_argument(
            "--restart-delay",
            type=float,
            default=1.0,
            help="seconds between the fault and the start of recovery (default 1)",
        )
        c.add_argument(
            "--pause",
            type=float,
            default=3.0,
            help="pause-store: seconds the store stays stopped (default 3)",
        )
        c.add_argument(
            "--outage",
            type=float,
            default=10.0,
            help="s3-outage / s3-slow: seconds the object store is down / slow (default 10)",
        )
        c.add_argument(
            "--s3-latency",
            type=float,
            default=0.5,
            help="s3-slow: seconds added to every object-store request (default 0.5)",
        )
        c.add_argument(
            "--lose-node-after",
            type=float,
            default=None,
            help="lose-node-in-outage: seconds into the outage at which the node is lost "
            "(default: half of --outage)",
        )
        if name == "sweep":
            c.add_argument(
                "--set",
                required=True,
                help="NAME=V1,V2,...: a backend option and the values to sweep, "
                "e.g. sync-interval=0.1,1,5,10",
            )
            c.add_argument(
                "--plain-runs",
                type=int,
                default=None,
                help="fault-free runs per value for the throughput of the durability frontier "
                "(default 1 for lose-power, whose trials run on the slower lazy filesystem, "
                "with as many on the lazy filesystem to measure its overhead; 0 otherwise)",
            )

    cmp = sub.add_parser(
        "compare",
        help="the same workload on several backends (with repeats "
        "and optionally a fault), then one report",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(cmp, several=True)
    _add_measurement(cmp, DEFAULT_WORKLOAD)
    cmp.add_argument("--repeats", type=int, default=1, help="runs per backend (default 1)")
    cmp.add_argument("--fault", default=None, help="inject this fault into every run")
    cmp.add_argument("--at", type=float, default=None, help="fault time (see `bench crash`)")
    cmp.add_argument("--restart-delay", type=float, default=1.0)
    cmp.add_argument("--pause", type=float, default=3.0)
    cmp.add_argument("--outage", type=float, default=10.0)
    cmp.add_argument("--s3-latency", type=float, default=0.5)
    cmp.add_argument("--lose-node-after", type=float, default=None)
    cmp.add_argument(
        "--out", type=Path, default=None, help="report directory (default: results/<stamp>-report)"
    )
    cmp.add_argument("--prices", type=Path, default=None, help="price table (TOML)")
    cmp.add_argument(
        "--target-runs-per-s",
        type=float,
        default=10.0,
        help="load for the monthly cost figures (default 10 runs/s)",
    )
    report_commands.add_rpo_budget(cmp)
    cmp.set_defaults(trials=1, func=cmd_compare)

    chk = sub.add_parser(
        "check",
        help="run every checker again on a result made with --keep-data "
        "(exit 0 pass, 1 a check failed, 2 not a run dir or no data kept)",
    )
    chk.add_argument("run_dir", type=Path, help="results/<run-id> of a run made with --keep-data")
    chk.add_argument("--json", action="store_true", help="print the checks as JSON")
    chk.set_defaults(func=cmd_check)

    report_commands.add_parsers(sub)

    sub.add_parser("backends", help="list registered backends").set_defaults(func=cmd_backends)
    sub.add_parser("workloads", help="list built-in workloads").set_defaults(func=cmd_workloads)

    sch = sub.add_parser("schedule", help="print a workload's schedule summary and hash")
    sch.add_argument("--workload", default=DEFAULT_WORKLOAD)
    sch.add_argument("--seed", type=int, default=1)
    sch.add_argument("--rate-scale", type=float, default=1.0)
    _add_memory_limit(sch)
    sch.set_defaults(func=cmd_schedule)

    base = sub.add_parser(
        "baseline",
        help="raw commit rate of a backend's store (one small "
        "insert per transaction), with the same settings as `bench run`",
    )
    _add_common(base)
    base.add_argument("--seconds", type=float, default=5.0)
    base.add_argument(
        "--clients",
        type=int,
        default=1,
        help="concurrent committing connections of the raw baseline (default 1; a backend whose "
        "store has one writer refuses more)",
    )
    base.set_defaults(func=cmd_baseline)
    return ap


def _backend_options(
    args: argparse.Namespace, backend: str, allowed: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The chosen backend's options (defaults filled in); an option of a backend that is not
    being measured is refused (``allowed``: the other backends of a comparison)."""
    info = get(backend)
    for other in registered().values():
        if other.name == backend or other.name in allowed:
            continue
        for o in other.options:
            if getattr(args, o.dest, None) is not None and o.dest not in {
                x.dest for x in info.options
            }:
                raise ConfigError(
                    f"{o.flag} is an option of backend {other.name!r}, not of {backend!r}"
                )
    out = {}
    for o in info.options:
        v = getattr(args, o.dest, None)
        out[o.dest] = o.default if v is None else v
    return out


def _settings(args: argparse.Namespace, retry: Any, time_scale: float) -> ExecutionSettings:
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if time_scale < 0:
        raise ConfigError("--time-scale must be >= 0")
    return ExecutionSettings(
        seed=args.seed,
        time_scale=time_scale,
        retry=retry,
        workers=args.workers,
        concurrency=args.concurrency,
        lease_s=getattr(args, "lease", 10.0),
    )


def _request(args: argparse.Namespace, default_workload: str = DEFAULT_WORKLOAD) -> Any:
    """The measurement the common options describe (shared by run, crash and sweep)."""
    from bench import experiment
    from bench.workload.loader import resolve_workload
    from bench.workload.schedule import build_schedule

    if args.rate_scale <= 0:
        raise ConfigError("--rate-scale must be > 0")
    options = _backend_options(args, args.backend)
    spec = resolve_workload(args.workload or default_workload)
    schedule = build_schedule(spec, args.seed, args.rate_scale)
    settings = _settings(args, spec.retry, args.time_scale)
    Console(stderr=True).print(
        f"durabench: {args.backend}, workload {spec.name} ({len(schedule.runs)} runs "
        f"over {schedule.duration_s:.1f}s, schedule {schedule.hash[:12]}), "
        f"time-scale {args.time_scale:g}",
        highlight=False,
    )
    return experiment.Request(
        backend=args.backend,
        options=options,
        schedule=schedule,
        settings=settings,
        results_root=args.results_dir,
        drain_timeout_s=args.drain_timeout,
        settle_s=args.exposure_settle,
        keep_data=args.keep_data,
        show_progress=not args.no_progress and sys.stderr.isatty(),
        command=tuple(sys.argv),
    )


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    import dataclasses

    from bench import experiment
    from bench.report.table import render_summary

    req = dataclasses.replace(_request(args), on_lazyfs=args.lazyfs)
    out = experiment.run(req)
    if args.json:
        print(json.dumps(out.summary, indent=2, default=str))
    else:
        render_summary(out.summary, out.manifest, console)
    print(f"results: {out.run_dir}", file=sys.stderr)
    if out.manifest.get("partial"):
        return EXIT_INTERRUPTED
    return EXIT_CHECK_FAILED if out.summary.get("verdict") is False else EXIT_OK


def trials_exit_code(trials: list[dict[str, Any]]) -> int:
    """The exit code of a series of runs (crash / sweep trials, compare runs): 130 if one was
    interrupted, 1 if one failed a check or broke its promise, else 0."""
    from bench.promise_check import exit_code

    if any(t.get("partial") for t in trials):
        return EXIT_INTERRUPTED
    return EXIT_CHECK_FAILED if exit_code(trials) else EXIT_OK


def _fault(args: argparse.Namespace, fault: str) -> Any:
    from bench.nemesis import FaultSpec

    if args.trials < 1:
        raise ConfigError("--trials must be at least 1")
    if args.outage <= 0 or args.s3_latency < 0:
        raise ConfigError("--outage must be > 0 and --s3-latency >= 0 seconds")
    spec = FaultSpec(
        fault,
        args.at,
        args.restart_delay,
        args.pause,
        args.outage,
        args.s3_latency,
        args.lose_node_after,
    )
    faults.get(fault).lead_in_s(spec)  # a composite fault refuses parts that do not fit
    return spec


def cmd_crash(args: argparse.Namespace, console: Console) -> int:
    from bench import crash
    from bench.nemesis import check_supported

    faults = [f.strip() for f in args.fault.split(",") if f.strip()]
    specs = [_fault(args, f) for f in faults]
    options = _backend_options(args, args.backend)
    for spec in specs:  # refuse every unsupported fault before running any trial
        check_supported(spec.fault, get(args.backend).factory, args.backend, options)
    base = _request(args, "smoke")
    validate.check_fault_time(args.at, base.schedule.duration_s)
    rows = {spec.fault: crash.run_trials(base, spec, args.trials) for spec in specs}
    crash.render(
        rows,
        f"{args.backend}: faults ({args.trials} trial(s) each, workload {base.schedule.spec.name})",
        console,
    )
    group = crash.write_group(
        args.results_dir,
        "crash",
        {"backend": args.backend, "workload": base.schedule.spec.name, "seed": args.seed},
        rows,
    )
    print(f"results: {group}", file=sys.stderr)
    return trials_exit_code([t for trials in rows.values() for t in trials])


def cmd_sweep(args: argparse.Namespace, console: Console) -> int:
    import dataclasses

    from bench import crash
    from bench.nemesis import check_supported

    info = get(args.backend)
    key, _, raw = args.set.partition("=")
    opt = next((o for o in info.options if key in (o.dest, o.flag.lstrip("-"), o.flag)), None)
    if opt is None or not raw:
        names = ", ".join(o.flag.lstrip("-") for o in info.options)
        raise ConfigError(
            f"--set takes NAME=V1,V2,... with NAME one of {args.backend}'s options: {names}"
        )
    values = []
    for v in (v.strip() for v in raw.split(",") if v.strip()):
        try:
            values.append((v, opt.type(v)))
        except ValueError as e:
            raise ConfigError(f"--set {key}: {v!r} is not a valid {opt.type.__name__}") from e
        validate.check_option(args.backend, opt, values[-1][1])
    spec = _fault(args, args.fault)
    check_supported(spec.fault, info.factory, args.backend, _backend_options(args, args.backend))
    power = spec.fault == "lose-power"
    plain_runs = args.plain_runs if args.plain_runs is not None else int(power)
    if plain_runs < 0:
        raise ConfigError("--plain-runs must be >= 0")
    base = _request(args, "smoke")
    validate.check_fault_time(args.at, base.schedule.duration_s)
    rows, plain, plain_lazy = {}, {}, {}
    for text, value in values:
        req = dataclasses.replace(base, options={**base.options, opt.dest: value})
        key = f"{opt.flag.lstrip('-')}={text}"
        rows[key] = crash.run_trials(req, spec, args.trials)
        if plain_runs:
            plain[key] = crash.run_plain(req, plain_runs, on_lazyfs=False)
            if power:
                plain_lazy[key] = crash.run_plain(req, plain_runs, on_lazyfs=True)
    title = f"{args.backend}: {spec.fault} across {opt.flag} ({args.trials} trial(s) each)"
    crash.render(rows, title, console, key_label="setting")
    if plain:
        crash.render_frontier(
            rows, plain, plain_lazy, f"{args.backend}: throughput vs {spec.fault} loss", console
        )
    meta: dict[str, Any] = {"backend": args.backend, "fault": spec.fault, "setting": opt.dest}
    meta["workload"] = base.schedule.spec.name
    if plain:
        meta |= {"plain": plain, "plain_lazyfs": plain_lazy}
    group = crash.write_group(args.results_dir, "sweep", meta, rows)
    print(f"results: {group}", file=sys.stderr)
    return trials_exit_code([t for trials in rows.values() for t in trials])


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from bench import compare

    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    if len(set(names)) != len(names) or not names:
        raise ConfigError("--backends takes a comma-separated list of distinct backends")
    options = {b: _backend_options(args, b, tuple(names)) for b in names}
    args.backend = names[0]
    base = _request(args)
    fault = _fault(args, args.fault) if args.fault else None
    if fault is not None:
        validate.check_fault_time(args.at, base.schedule.duration_s)
    records = compare.run_compare(base, names, options, args.repeats, fault)
    group = crash_write_group(
        args.results_dir,
        "compare",
        {
            "backends": names,
            "workload": base.schedule.spec.name,
            "seed": args.seed,
            "schedule_hash": base.schedule.hash,
            "repeats": args.repeats,
            "fault": args.fault,
        },
        {"runs": records},
    )
    print(f"runs: {group}", file=sys.stderr)
    _report(args, compare.run_dirs(records), console)
    return trials_exit_code(records)


def _report(args: argparse.Namespace, dirs: list[Path], console: Console) -> int:
    from bench.report.build import build
    from bench.results import new_report_dir

    out_dir = args.out or new_report_dir(args.results_dir)
    out = build(dirs, out_dir, args.prices, args.target_runs_per_s, args.rpo_budget)
    console.print(f"report: {out['markdown']}  {out['html']}", highlight=False)
    return EXIT_OK


def crash_write_group(*a: Any, **kw: Any) -> Path:
    from bench import crash

    return crash.write_group(*a, **kw)


def cmd_baseline(args: argparse.Namespace, console: Console) -> int:
    import tempfile
    import time

    from backends.base import RunContext

    options = _backend_options(args, args.backend)
    settings = _settings(args, RetryPolicy(), 0.0)
    with tempfile.TemporaryDirectory(prefix="durabench-baseline-") as tmp:
        root = Path(tmp)
        ctx = RunContext(
            root / "work", root / "logs", root / "history", time.monotonic_ns(), settings
        )
        dep = get(args.backend).factory(options, ctx)
        replica_error = None
        try:
            dep.start()
            result = dep.raw_commit_rate(args.seconds, args.clients)
        finally:
            try:
                dep.stop()
            except ReplicaStopError as e:  # the rate is the primary's: kept, with the error
                replica_error = str(e)
    if replica_error is not None:
        result["replica_stop_error"] = replica_error
        print(f"warning: {replica_error}", file=sys.stderr)
    result["backend"] = args.backend
    result["topology"] = dep.topology()
    print(json.dumps(result, indent=2, default=str))
    return EXIT_OK


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    from bench import recheck

    out = recheck.recheck(args.run_dir)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        checks = out["checks"]
        verdict = out["verdict"]
        console.print(
            f"{out['run_id']} ({out['backend']}): verdict {verdict} "
            f"(recorded at run time: {out['recorded_verdict']})  "
            + "  ".join(f"{k}={v.get('valid')}" for k, v in checks.items() if isinstance(v, dict)),
            highlight=False,
        )
        for line in recheck.failures(checks):
            console.print(f"FAILED {line}", highlight=False)
    return EXIT_CHECK_FAILED if out["verdict"] is False else EXIT_OK


def cmd_backends(args: argparse.Namespace, console: Console) -> int:
    for info in registered().values():
        kind = "durable" if info.durable else "not durable"
        print(f"{info.name:10s} {kind:12s} {info.summary}")
    return EXIT_OK


def cmd_workloads(args: argparse.Namespace, console: Console) -> int:
    for name, spec in BUILTIN.items():
        print(f"{name:12s} {spec.description}")
    return EXIT_OK


def cmd_schedule(args: argparse.Namespace, console: Console) -> int:
    from bench.workload.loader import resolve_workload
    from bench.workload.schedule import build_schedule

    s = build_schedule(resolve_workload(args.workload), args.seed, args.rate_scale)
    print(json.dumps(s.summary(), indent=2))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    # tables stay readable in logs and pipes, where rich would otherwise assume 80 columns
    console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    try:
        signals.install()
        args = parser().parse_args(argv)
        validate.check_args(args)
        return args.func(args, console)  # one handler per sub-command (set_defaults)
    except DurabenchError as e:
        print(f"error: {redact_text(str(e))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "interrupted: every process the harness started was stopped; partial results were kept",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - the last resort: one line, traceback in a log
        print(lastresort.message(e), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
