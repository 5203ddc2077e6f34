"""Submits forwarded into a worker's group commit: one write path per SQLite database.

Why: SQLite has one writer at a time, and every transaction at synchronous=FULL pays an fsync.
The harness committing its own submit batches beside the workers' group commits made two
writers queue on one lock, and at FULL its transactions held ~1.5 runs each (a commit took as
long as the next arrival), each with its own fsync. In the small stack this backend stands
for, the process that accepts work is the one that embeds the database: submits and step
checkpoints share its transactions. Here a worker does that for the harness: the harness sends
a batch of runs over a Unix socket; the worker's group committer puts them in its next
transaction, with whatever checkpoints are pending; the worker answers once that transaction
committed. The answer is the run-accepted ack, as the harness's own commit was.

When no worker answers (none running, killed, paused past ``REPLY_TIMEOUT_S``), the harness
commits the batch itself, as before, and passes that worker over for ``PASS_OVER_S`` (a paused
worker would otherwise hold every batch for the whole timeout). The insert ignores a run that
exists, so a batch that the worker did commit before it stopped answering is not written
twice, and the harness's ack still follows a commit that holds every run of the batch.

Wire format (loopback, one socket per worker in the abstract namespace, named by its pid):
a request is a 4-byte big-endian length and the runs, each ``run_id \\x1f seq \\x1f tenant \\x1f
n_steps \\x1f plan_json`` and separated by ``\\x1e`` (plans are JSON: they hold neither byte);
the answer is a 4-byte length and ``ok`` or ``error: <why>``. An abstract socket has no file
permissions (any process on the host can connect to it or bind a free name), so each side
checks the other's user (``SO_PEERCRED``): a worker serves only its own user's processes, and
the harness forwards only to a socket of its own user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from backends.base import RunSpec

REPLY_TIMEOUT_S = 1.0  # a worker that takes longer (paused, stuck) is passed over ...
PASS_OVER_S = 5.0  # ... for this long
_LEN = struct.Struct(">I")
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_FIELD, _RUN = "\x1f", "\x1e"


def address(pid: int) -> str:
    """The abstract-namespace socket of the worker with this pid (no file, no path limit)."""
    return f"\0durabench-submit-{pid}"


def encode(runs: Sequence[RunSpec]) -> bytes:
    body = _RUN.join(
        f"{r.run_id}{_FIELD}{r.seq}{_FIELD}{r.tenant}{_FIELD}{r.n_steps}{_FIELD}{r.plan_json}"
        for r in runs
    ).encode()
    return _LEN.pack(len(body)) + body


def decode(body: bytes) -> list[dict[str, Any]]:
    """The rows to insert (``sql.INSERT_RUN``'s parameters but ``now``)."""
    rows = []
    for item in body.decode().split(_RUN):
        run_id, seq, tenant, n_steps, plan = item.split(_FIELD, 4)
        rows.append(
            {
                "run_id": run_id,
                "seq": int(seq),
                "tenant": tenant,
                "n_steps": int(n_steps),
                "plan": plan,
            }
        )
    return rows


# -- worker side --------------------------------------------------------------------------------

Submit = Callable[[list[dict[str, Any]]], Awaitable[None]]


async def serve(submit: Submit) -> asyncio.AbstractServer:
    """Accept forwarded batches on this process's address; ``submit`` returns once a
    transaction holding the rows committed (it raises if that transaction failed)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if peer_uid(writer.get_extra_info("socket")) != os.getuid():
            writer.close()  # not our user: nothing it sends goes into the database
            return
        try:
            while True:
                (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
                rows = decode(await reader.readexactly(n))
                try:
                    await submit(rows)
                    answer = b"ok"
                except Exception as e:  # noqa: BLE001 - the harness learns it and falls back
                    answer = f"error: {e}".encode()
                writer.write(_LEN.pack(len(answer)) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the harness closed the connection (or gave up on an answer)
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, path=address(os.getpid()))


# -- harness side -------------------------------------------------------------------------------


class NotForwarded(Exception):
    """No worker took the batch whole: none can have committed it."""


class Unanswered(Exception):
    """The batch was sent and no answer came: a worker may have committed it."""


class ForwardLink:
    """The harness's connection to one live worker at a time. ``pids`` lists the live
    workers' pids; a worker that fails is dropped and the next batch tries the others."""

    def __init__(self, pids: Callable[[], Sequence[int]]) -> None:
        self.pids = pids
        self._sock: socket.socket | None = None
        self._pid = 0
        self._passed_over: dict[int, float] = {}  # pid -> monotonic time it is tried again
        self.sent = 0  # batches a worker committed

    def send(self, runs: Sequence[RunSpec]) -> None:
        """Returns once a worker's transaction holding ``runs`` committed. Raises
        ``NotForwarded`` when no worker can have committed them (none to send to, or the
        request did not go out whole), ``Unanswered`` when one may have (no answer, or its
        transaction failed)."""
        sock = self._connect()
        try:
            sock.sendall(encode(runs))
        except OSError as e:  # a worker commits whole requests only: this one it cannot
            self.drop()
            raise NotForwarded(f"sqlite: forwarding to a worker failed: {e}") from None
        try:
            (n,) = _LEN.unpack(_recv(sock, _LEN.size))
            answer = _recv(sock, n).decode()
        except (OSError, EOFError) as e:
            self.drop()  # a late answer must never be read as the next batch's
            raise Unanswered(f"sqlite: no answer from the worker: {e}") from None
        if answer != "ok":
            self.drop()
            raise Unanswered(f"sqlite: the worker's transaction failed: {answer}")
        self.sent += 1

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        now = time.monotonic()
        for pid in self.pids():
            if self._passed_over.get(pid, 0.0) > now:
                continue
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(REPLY_TIMEOUT_S)
            try:
                s.connect(address(pid))
                if peer_uid(s) != os.getuid():  # another user's socket under that name
                    raise ConnectionRefusedError(f"{address(pid)!r} is not our user's")
            except OSError:
                s.close()
                continue
            self._sock, self._pid = s, pid
            return s
        raise NotForwarded("sqlite: no worker takes submits")

    def drop(self, pass_over: bool = True) -> None:
        """Close the connection; ``pass_over``: and leave its worker alone for a while."""
        if pass_over and self._sock is not None:
            self._passed_over[self._pid] = time.monotonic() + PASS_OVER_S
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def peer_uid(sock: Any) -> int:
    """The user id of the process at the other end of a connected Unix socket."""
    _, uid, _ = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    return uid


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)
