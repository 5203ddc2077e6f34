"""The SQLite backend's two services with real processes: SeaweedFS (`weed mini`) and the
Litestream sidecar. No mocks: what these tests pass is what a benchmark run will rely on.
Every process is stopped by a fixture or a finally block, also when an assertion fails."""

from __future__ import annotations

import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from backends.common.net import (
    SERVICE_FLOOR,
    ephemeral_low,
    free_port_pair,
    free_ports,
    port_in_use,
)
from backends.common.process import ManagedProcess
from backends.common.prometheus import parse_prometheus
from backends.errors import BackendError
from backends.sqlite import objectstore
from backends.sqlite.litestream import Litestream
from backends.sqlite.objectstore import SeaweedFS, object_store_usage


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    base = tmp_path_factory.mktemp("sw")
    sw = SeaweedFS(base / "work", base / "logs")
    try:
        sw.start()
        yield sw
    finally:
        sw.stop()


@pytest.fixture
def sidecars() -> Iterator[list[Litestream]]:
    """Collects Litestream instances a test starts; stops them all afterwards."""
    started: list[Litestream] = []
    yield started
    for ls in started:
        ls.close()


def make_db(path: Path) -> sqlite3.Connection:
    """A WAL-mode database set up as the SQLite backend should (see litestream.py)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    return conn


def write_rows(conn: sqlite3.Connection, start: int, transactions: int, per_tx: int = 5) -> None:
    for tx in range(transactions):
        conn.execute("BEGIN")
        for i in range(per_tx):
            n = start + tx * per_tx + i
            conn.execute("INSERT INTO t (id, v) VALUES (?, ?)", (n, f"row-{n}-" + "x" * (n % 37)))
        conn.execute("COMMIT")


def rows(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        conn.close()


def listening_ports(pid: int) -> set[int]:
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    return {
        c.laddr.port
        for p in procs
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }


# -- SeaweedFS ----------------------------------------------------------------------------------


def test_seaweedfs_uses_only_our_ports_and_stops(tmp_path: Path) -> None:
    sw = SeaweedFS(tmp_path / "work", tmp_path / "logs", bucket="ports-check")
    try:
        ready = sw.start()
        assert ready > 0 and sw.ready_s == ready
        pid = sw.process.pid
        assert pid is not None
        assert object_store_usage(sw.target()) == {"objects": 0, "bytes": 0}
        ports = listening_ports(pid)
        assert sw.s3_port in ports and sw.metrics_port in ports
        assert ports <= set(sw.ports.values()), f"unexpected ports {ports - set(sw.ports.values())}"
        assert all(p < 55000 for p in sw.ports.values())
        if ephemeral_low() - SERVICE_FLOOR >= 1000:  # none where outgoing connections take theirs
            assert all(p < ephemeral_low() for p in sw.ports.values()), sw.ports
        remote = {c.raddr.ip for c in psutil.Process(pid).net_connections(kind="inet") if c.raddr}
        assert remote <= {"127.0.0.1"}, f"talks to {remote}"  # no telemetry, loopback only
        log = (tmp_path / "logs" / "seaweedfs.log").read_text()
        assert "Error while dialing" not in log  # the maintenance worker found the admin server
        assert sw.version().startswith("4.")
    finally:
        sw.stop()
    assert not sw.process.alive
    assert not psutil.pid_exists(pid)


def test_seaweedfs_starts_again_when_a_port_is_taken_before_it_binds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race seen in CI: a port free at our check was taken before weed bound it, and weed
    died. Blinding our check to the held port stages that race; the start must still succeed,
    on another port, and leave the failed attempt in the log."""
    held = socket.socket()
    for _ in range(5):  # the port was free when picked; a service of a parallel test may take it
        sw = SeaweedFS(tmp_path / "work", tmp_path / "logs")
        try:
            held.bind(("127.0.0.1", sw.ports["volume.port"]))
            break
        except OSError:
            continue
    else:
        pytest.fail("no picked volume port could be held")
    monkeypatch.setattr(objectstore, "port_in_use", lambda port, host="127.0.0.1": False)
    with held:
        held.listen()
        taken = sw.ports["volume.port"]
        try:
            sw.start()
            assert sw.ports["volume.port"] != taken
            assert object_store_usage(sw.target()) == {"objects": 0, "bytes": 0}
            assert sw.process.usage.restarts == 1
        finally:
            sw.stop()
    assert str(taken) in (tmp_path / "logs" / "seaweedfs.log").read_text()


def test_picked_ports_stay_out_of_the_ephemeral_range_and_under_their_limit() -> None:
    """Outgoing connections take their source ports from the ephemeral range: a port picked
    there can be gone before its server binds it (the CI failure of weed's volume server)."""
    low = ephemeral_low()
    ports = free_ports(50)
    assert len(set(ports)) == 50 and all(not port_in_use(p) for p in ports)
    if low - SERVICE_FLOOR >= 1000:
        assert all(p < low for p in ports), ports
    assert all(p < 20000 for p in free_ports(20, below=20000))
    p, g = free_port_pair(10000)
    assert g == p + 10000 and not port_in_use(p) and not port_in_use(g)
    if low - 10000 - SERVICE_FLOOR >= 1000:
        assert g < low


def test_why_a_go_server_died_survives_its_stack_trace(tmp_path: Path) -> None:
    """CI once printed only a goroutine dump for weed's death: the glog ``F`` line that says
    why was above the last 15 lines. Real child process, log appended across two starts."""
    dying = "print('F1203 08:00:00.000000 volume.go:629] listen tcp: address already in use')\n"
    dying += "for i in range(40): print(f'\\tgithub.com/x/y.go:{i} +0x1')\nraise SystemExit(255)"
    proc = ManagedProcess("go-ish", [sys.executable, "-c", "print('first life')"], tmp_path / "l")
    proc.start()
    proc.popen.wait()  # type: ignore[union-attr]
    proc.argv = [sys.executable, "-c", dying]
    proc.start()
    with pytest.raises(BackendError) as e:
        proc.wait_ready(lambda: False, 10, "ready")
    assert "address already in use" in str(e.value) and "y.go:39" in str(e.value)
    assert "y.go:10 " not in str(e.value)  # still a tail, not the whole dump
    assert "first life" not in proc.this_start_log() and "y.go:0 " in proc.this_start_log()


def test_seaweedfs_enforces_credentials(seaweed: SeaweedFS) -> None:
    target = seaweed.target()
    target.secret_key = "wrong"
    assert "error" in object_store_usage(target)
    assert object_store_usage(seaweed.target()).get("error") is None


def test_seaweedfs_s3_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(BackendError) as e:
            SeaweedFS(tmp_path / "work", tmp_path / "logs", s3_port=port)
    assert str(port) in str(e.value) and "--s3-port" in str(e.value)


def test_missing_binaries_name_their_option(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="--weed-bin"):
        SeaweedFS(tmp_path / "w", tmp_path / "l", binary="/nonexistent/weed")
    with pytest.raises(BackendError, match="--litestream-bin"):
        Litestream(
            tmp_path / "app.db",
            tmp_path / "ls",
            tmp_path / "l",
            "file",
            file_dir=tmp_path / "replica",
            binary="/nonexistent/litestream",
        )


# -- Litestream ---------------------------------------------------------------------------------


def test_litestream_replicates_to_seaweedfs(
    seaweed: SeaweedFS,
    tmp_path: Path,
    sidecars: list[Litestream],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The trap: with AWS_CA_BUNDLE set, Litestream's S3 client refuses to start.
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "no-such-ca.pem"))
    db = tmp_path / "app.db"
    conn = make_db(db)
    ls = Litestream(
        db,
        tmp_path / "ls",
        tmp_path / "logs",
        "s3",
        s3=seaweed.target(),
        sync_interval_s=0.2,
        s3_path="s3-roundtrip",
    )
    sidecars.append(ls)
    assert ls.start() > 0
    write_rows(conn, 0, transactions=8)
    caught = ls.wait_caught_up(timeout_s=20)
    assert caught["replicated_txid"] >= caught["txid"] > 0
    write_rows(conn, 1000, transactions=3)  # a second batch, also waited for
    ls.wait_caught_up(timeout_s=20)
    expected = rows(db)
    assert len(expected) == 55

    restored = tmp_path / "restored.db"
    assert ls.restore(restored) > 0
    assert rows(restored) == expected

    m = ls.metrics()
    assert m["sync_count"] > 0 and m["sync_error_count"] == 0  # type: ignore[operator]
    assert m["replica_operation_total"]["PUT"] > 0  # type: ignore[index]
    assert m["replica_operation_bytes"]["PUT"] > 0  # type: ignore[index]
    usage = object_store_usage(seaweed.target(), prefix="s3-roundtrip/")
    assert usage["objects"] > 0 and usage["bytes"] > 0  # type: ignore[operator]
    counts = seaweed.request_counts()
    assert counts["requests"]["PUT"] > 0 and counts["bytes_received"] > 0  # type: ignore[index,operator]
    conn.close()


def test_litestream_file_replica_restore_while_stopped(
    tmp_path: Path, sidecars: list[Litestream]
) -> None:
    db = tmp_path / "app.db"
    conn = make_db(db)
    ls = Litestream(
        db,
        tmp_path / "ls",
        tmp_path / "logs",
        "file",
        file_dir=tmp_path / "replica",
        sync_interval_s=0.2,
    )
    sidecars.append(ls)
    ls.start()
    write_rows(conn, 0, transactions=6)
    ls.wait_caught_up(timeout_s=20)
    expected = rows(db)
    ls.stop()
    restored = tmp_path / "restored.db"
    ls.restore(restored)
    assert rows(restored) == expected
    conn.close()


def test_litestream_resumes_after_kill(tmp_path: Path, sidecars: list[Litestream]) -> None:
    """A SIGKILLed sidecar, restarted, ships what was written while it was down."""
    db = tmp_path / "app.db"
    conn = make_db(db)
    ls = Litestream(
        db,
        tmp_path / "ls",
        tmp_path / "logs",
        "file",
        file_dir=tmp_path / "replica",
        sync_interval_s=0.2,
    )
    sidecars.append(ls)
    ls.start()
    write_rows(conn, 0, transactions=3)
    ls.wait_caught_up(timeout_s=20)
    ls.kill()
    write_rows(conn, 100, transactions=3)  # only in the local WAL now
    ls.start()
    ls.wait_caught_up(timeout_s=20)
    assert ls.process.usage.restarts == 1
    restored = tmp_path / "restored.db"
    ls.restore(restored)
    assert rows(restored) == rows(db)
    conn.close()


def test_litestream_restore_without_replica_fails(tmp_path: Path) -> None:
    ls = Litestream(
        tmp_path / "app.db",
        tmp_path / "ls",
        tmp_path / "logs",
        "file",
        file_dir=tmp_path / "empty-replica",
    )
    with pytest.raises(BackendError, match="restore"):
        ls.restore(tmp_path / "restored.db", timeout_s=30)


def test_parse_prometheus_tolerates_label_sets() -> None:
    text = (
        "# HELP x a counter\n# TYPE x counter\n"
        'x{a="1",b="with, comma and \\"quote\\""} 3\n'
        "y 4.5 1700000000000\n"
        "z{} 1e3\n"
        "garbage line\n"
    )
    samples = parse_prometheus(text)
    assert [(s.name, s.value) for s in samples] == [("x", 3.0), ("y", 4.5), ("z", 1000.0)]
    assert samples[0].labels == {"a": "1", "b": 'with, comma and "quote"'}
