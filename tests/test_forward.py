"""Submits forwarded into a worker's group commit (backends/sqlite/forward.py), and the harness
committing them itself when no worker answers. The workers here are the real worker side
(``forward.serve`` over a real ``GroupCommitter`` and ``SqliteStore`` on a real file) or, for a
worker that dies mid-answer, a socket that commits with sqlite3 and hangs up."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.base import RunSpec
from backends.durable.groupcommit import Checkpoint, GroupCommitter
from backends.errors import Indeterminate
from backends.sqlite import forward
from backends.sqlite.store import SqliteStateView, SqliteStore, SqliteSubmitter, create_schema
from tests.helpers import numbered_runs, submit_together


def _runs(n: int, prefix: str = "f") -> list[RunSpec]:
    return numbered_runs(n, prefix)


def _stored(db: Path) -> dict[str, str]:
    return {r.run_id: r.status for r in SqliteStateView(db).runs()}


def test_the_wire_format_round_trips_plans_as_they_are() -> None:
    runs = _runs(3)
    body = forward.encode(runs)[4:]
    rows = forward.decode(body)
    assert [r["run_id"] for r in rows] == [r.run_id for r in runs]
    assert rows[0] == {"run_id": "f0000", "seq": 0, "tenant": "t0",
                       "n_steps": runs[0].n_steps, "plan": runs[0].plan_json}  # fmt: skip


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Path, SqliteStore, GroupCommitter]]:
    """The worker side in a thread of this process: its own loop, store and group committer,
    serving on this process's address (so ``os.getpid()`` is the worker pid to forward to)."""
    db = tmp_path / "w.db"
    create_schema(db, "FULL")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        store = SqliteStore(db, "FULL", autocheckpoint=True)
        committer = GroupCommitter(store, "w")
        await store.accept_submits(committer.submit)
        box.update(store=store, committer=committer, stop=asyncio.Event())
        ready.set()
        await box["stop"].wait()  # type: ignore[attr-defined]
        await committer.close()
        await store.close()

    t = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    t.start()
    assert ready.wait(10)
    yield db, box["store"], box["committer"]  # type: ignore[misc]
    loop.call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
    t.join(10)
    loop.close()


def test_forwarded_submits_share_the_workers_transactions(worker) -> None:
    db, store, committer = worker
    sub = SqliteSubmitter(db, "FULL", workers=lambda: [os.getpid()])
    runs = _runs(200)
    submit_together(sub, runs)
    assert sub.direct == 0 and sub.forward is not None and sub.forward.sent == sub.batches
    assert committer.submitted_runs == 200  # the worker committed every one
    assert set(_stored(db)) == {r.run_id for r in runs}


def test_runs_and_checkpoints_pending_together_commit_in_one_transaction(worker) -> None:
    """The point of forwarding: one transaction (one fsync) for runs and step results."""
    db, store, committer = worker
    sub = SqliteSubmitter(db, "FULL", workers=lambda: [os.getpid()])
    try:
        sub.submit(_runs(1, "c")[0])  # forwarded: the committer's task is running now
    finally:
        sub.close()
    calls: list[tuple[int, int]] = []
    real = store.checkpoint_batch

    async def observed(worker_id, items, runs=()):  # type: ignore[no-untyped-def]
        calls.append((len(items), len(runs)))
        return await real(worker_id, items, runs=runs)

    store.checkpoint_batch = observed  # type: ignore[method-assign]
    loop = committer._task.get_loop()  # type: ignore[union-attr]
    claimed = asyncio.run_coroutine_threadsafe(store.claim("w", 1, 30, False), loop).result(5)
    cp = Checkpoint(claimed[0].run_id, 0, b"out", 1, False)
    row = forward.decode(forward.encode(_runs(1, "d"))[4:])

    async def both() -> None:  # both pending before the committer's task runs again
        await asyncio.gather(committer.commit(cp), committer.submit(row))

    asyncio.run_coroutine_threadsafe(both(), loop).result(10)
    assert calls == [(1, 1)]
    assert {"c0000", "d0000"} <= set(_stored(db))


class _DyingWorker:
    """Takes one batch, commits it with sqlite3 (as a worker would), then dies before it
    answers: the harness cannot know the batch was committed."""

    def __init__(self, db: Path, pid: int) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(forward.address(pid))
        self.sock.listen()
        self.db = db
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        n = int.from_bytes(forward._recv(conn, 4), "big")
        rows = forward.decode(forward._recv(conn, n))
        with sqlite3.connect(self.db) as c:
            c.executemany(
                "INSERT INTO runs (run_id, seq, tenant, plan, n_steps, status, submitted_at) "
                "VALUES (:run_id, :seq, :tenant, :plan, :n_steps, 'queued', 0)",
                rows,
            )
        conn.close()  # no answer
        self.sock.close()


def test_a_worker_that_dies_before_answering_leaves_each_run_once_and_acked(
    tmp_path: Path,
) -> None:
    db = tmp_path / "d.db"
    create_schema(db, "FULL")
    fake_pid = 2**22 + os.getpid()  # an address no real worker has
    dying = _DyingWorker(db, fake_pid)
    sub = SqliteSubmitter(db, "FULL", workers=lambda: [fake_pid])
    try:
        sub.submit(_runs(1)[0])  # acked: our own commit settled it (the insert kept the first)
        dying.thread.join(5)
        sub.submit(_runs(2)[1])  # nobody listens any more: committed here
    finally:
        sub.close()
    assert sub.direct == 2 and sub.forward is not None and sub.forward.sent == 0
    assert _stored(db) == {"f0000": "queued", "f0001": "queued"}


def test_an_unanswered_batch_that_cannot_be_committed_here_is_indeterminate(
    tmp_path: Path,
) -> None:
    """Sent to a worker that hung up, and the node is gone: the worker may hold the run, so
    it is neither accepted nor refused."""
    db = tmp_path / "i.db"
    create_schema(db, "FULL")
    fake_pid = 2**22 + os.getpid() + 1
    dying = _DyingWorker(db, fake_pid)
    sub = SqliteSubmitter(db, "FULL", workers=lambda: [fake_pid])
    real_send = sub.forward.send  # type: ignore[union-attr]

    def send_then_lose_the_node(runs):  # type: ignore[no-untyped-def]
        try:
            real_send(runs)
        finally:
            sub.node_up = False  # the node goes while the batch is with the worker

    sub.forward.send = send_then_lose_the_node  # type: ignore[union-attr,method-assign]
    try:
        with pytest.raises(Indeterminate):
            sub.submit(_runs(1)[0])
    finally:
        dying.thread.join(5)
        sub.close()
    assert set(_stored(db)) == {"f0000"}  # the worker had committed it


def test_with_no_worker_the_harness_commits_itself(tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    create_schema(db, "FULL")
    sub = SqliteSubmitter(db, "FULL", workers=lambda: [])
    try:
        for r in _runs(3):
            sub.submit(r)
    finally:
        sub.close()
    assert sub.direct == 3 and set(_stored(db)) == {"f0000", "f0001", "f0002"}


def test_a_silent_worker_costs_one_timeout_then_is_passed_over(tmp_path: Path) -> None:
    """A paused worker: its socket takes the connection (the kernel's backlog) and never
    answers. The first batch waits ``REPLY_TIMEOUT_S`` and is committed here; the next ones
    go straight to our own commit while that worker is passed over."""
    db = tmp_path / "p.db"
    create_schema(db, "FULL")
    fake_pid = 2**22 + os.getpid() + 2
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(forward.address(fake_pid))
    silent.listen()
    sub = SqliteSubmitter(db, "FULL", workers=lambda: [fake_pid])
    try:
        t0 = time.monotonic()
        sub.submit(_runs(1)[0])
        first = time.monotonic() - t0
        t0 = time.monotonic()
        sub.submit(_runs(2)[1])
        second = time.monotonic() - t0
    finally:
        sub.close()
        silent.close()
    assert first >= forward.REPLY_TIMEOUT_S and second < forward.REPLY_TIMEOUT_S / 2
    assert sub.direct == 2 and set(_stored(db)) == {"f0000", "f0001"}


# -- another user's process: the abstract namespace has no file permissions ----------------------

NOBODY = 65534
as_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")


def _forked_as_nobody(body) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """``body(w)`` in a forked child running as user nobody (``w``: a pipe's write end);
    returns (child pid, the pipe's read end). The child's exit code is ``body``'s result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # only sockets and os calls here: no lock another thread may hold
        code = 99
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = body(w)
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _exit_code(pid: int) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)  # our own child
    os.waitpid(pid, 0)
    raise AssertionError("the child did not finish")


@as_root
def test_a_worker_takes_no_submits_from_another_user(worker) -> None:
    db, _, committer = worker
    request = forward.encode(_runs(1, "x"))

    def intruder(_w: int) -> int:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(forward.address(os.getppid()))
        try:
            s.sendall(request)
            answer = s.recv(64)
        except ConnectionError:  # hung up on with the request unread
            return 0
        return 0 if answer == b"" else 3  # 3: answered

    pid, r = _forked_as_nobody(intruder)
    os.close(r)
    assert _exit_code(pid) == 0
    assert committer.submitted_runs == 0 and "x0000" not in _stored(db)
    # and the harness, our user, is still served
    sub = SqliteSubmitter(db, "FULL", workers=lambda: [os.getpid()])
    try:
        sub.submit(_runs(1, "y")[0])
    finally:
        sub.close()
    assert sub.direct == 0 and committer.submitted_runs == 1


@as_root
def test_the_harness_forwards_nothing_to_another_users_socket(tmp_path: Path) -> None:
    """Another user binds the name a worker's socket would have and answers "ok" to all: the
    harness must not send it a batch (that ack would be for runs never committed)."""
    db = tmp_path / "u.db"
    create_schema(db, "FULL")
    fake_pid = 2**22 + os.getpid() + 3

    def squatter(w: int) -> int:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.bind(forward.address(fake_pid))
        s.listen()
        os.write(w, b"r")
        conn, _ = s.accept()
        got = conn.recv(1 << 16)
        if got:
            conn.sendall(b"\0\0\0\x02ok")
        while conn.recv(1 << 16):
            pass
        return 3 if got else 0  # 3: it was sent a batch

    pid, r = _forked_as_nobody(squatter)
    assert os.read(r, 1) == b"r"
    os.close(r)
    sub = SqliteSubmitter(db, "FULL", workers=lambda: [fake_pid])
    try:
        sub.submit(_runs(1)[0])
    finally:
        sub.close()
    assert _exit_code(pid) == 0
    assert sub.direct == 1 and sub.forward is not None and sub.forward.sent == 0
    assert set(_stored(db)) == {"f0000"}
