"""The harness's history: every operation's invoke / ok / fail / info, recorded outside the system
under test (Jepsen's history). One JSON-lines file per process under ``history/``.

Event fields:
  t        seconds since the schedule's epoch (CLOCK_MONOTONIC, shared by all local processes)
  proc     who recorded it: "harness", "worker-0", ...
  type     invoke | ok | fail | info    (info = outcome unknown, or a note)
  op       submit   harness -> store: run accepted (ok = the run-accepted ack)
           claim    a worker took a run (info; value: "journal" = steps already committed,
                    "since" = when the claim began, i.e. before its journal read)
           claim-overlap  a claim returned a run this worker was still executing (its lease
                    had expired); the execution in flight keeps it, no second one starts (info)
           broken-engine  TEST ONLY (backends/durable/testonly.py): a deliberately broken
                    engine is running; with run/step: this ack was never written (info)
           exec     one attempt of a step's work (ok = work done; fail = error raised; the
                    invoke's value "claim" = the "since" of the claim it came from, if any)
           commit   a step checkpoint (ok = the step-committed ack)
           replay   a step's result was read from the journal instead of executed (info)
           complete a run's final status became durable (ok = run-completed ack; value=status)
  run, step, attempt, value   as they apply

Writes are unbuffered ``os.write`` calls on an O_APPEND descriptor: an event written before a
SIGKILL is in the file, so the history of a killed worker is complete up to its death. A worker
joins a few events into one write only where nothing outside it can observe what happened in
between (a step attempt that does not wait, at --time-scale 0: its lines go out together before
its commit; a group commit's acks go out together before any step resumes).
"""

from __future__ import annotations

import errno
import json
import marshal
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backends.errors import DiskFull

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"


class HistoryWriter:
    def __init__(self, path: Path, proc: str, epoch_ns: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.proc = proc
        self.epoch_ns = epoch_ns
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._proc_json = json.dumps(proc)

    def now(self) -> float:
        return (time.monotonic_ns() - self.epoch_ns) / 1e9

    def record(
        self,
        type: str,
        op: str,
        run: str | None = None,
        step: int | None = None,
        attempt: int | None = None,
        value: Any = None,
        t: float | None = None,
    ) -> float:
        t = self.now() if t is None else t
        self.write(self.line(type, op, run, step, attempt, value, t))
        return t

    def line(
        self,
        type: str,
        op: str,
        run: str | None = None,
        step: int | None = None,
        attempt: int | None = None,
        value: Any = None,
        t: float | None = None,
    ) -> str:
        """One event as its JSON line, not written: ``write`` several in one call."""
        t = self.now() if t is None else t
        # hand-formatted: this runs for every event in every worker (json.dumps of a dict was
        # a third of the in-process engine's time); only ``value`` goes through json
        s = f'{{"t":{t:.6f},"proc":{self._proc_json},"type":"{type}","op":"{op}"'
        if run is not None:
            s += f',"run":{_json_str(run)}'
        if step is not None:
            s += f',"step":{int(step)}'
        if attempt is not None:
            s += f',"attempt":{int(attempt)}'
        if value is not None:
            s += f',"value":{_json_value(value)}'
        return s + "}\n"

    def write(self, lines: str) -> None:
        """Whole event lines in one ``os.write`` (one syscall for a group commit's acks)."""
        if not lines:
            return
        data = lines.encode()
        try:
            n = os.write(self._fd, data)
            if n < len(data):  # a regular file takes it whole; finish it in case it ever does not
                rest = memoryview(data)[n:]
                while rest:
                    rest = rest[os.write(self._fd, rest) :]
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise DiskFull(self.path.parent) from e
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_PLAIN = re.compile(r"[A-Za-z0-9_.:-]*")


class RawJSON(str):
    """A value already encoded as JSON (e.g. formatted once per run, not once per event)."""


def _json_value(v: Any) -> str:
    # the common values without json.dumps: it was a fifth of a worker's history cost
    if isinstance(v, RawJSON):
        return v
    if type(v) is int:
        return str(v)
    if type(v) is str:
        return _json_str(v)
    return json.dumps(v, separators=(",", ":"))


def _json_str(x: str) -> str:
    # isascii + isalnum (C, no regex) decides the usual run ids; both imply _PLAIN
    if (x.isascii() and x.isalnum()) or _PLAIN.fullmatch(x):
        return f'"{x}"'
    return json.dumps(x)


class HistoryTail:
    """Reads new complete lines from one history file as it grows (for live progress)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pos = 0
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.read_new_lines()]

    def read_new_chunk(self) -> bytes:
        """New complete lines as one bytes object (ends with a newline, or empty): a caller
        that only counts or picks a few lines need not split every one."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                data = f.read()
        except FileNotFoundError:
            return b""
        self._pos += len(data)
        data = self._partial + data
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        return data[:end]

    def read_new_lines(self) -> list[bytes]:
        """New complete lines, unparsed (parsing every event costs the harness CPU it needs for
        driving the load; callers parse only the lines they need)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                data = f.read()
        except FileNotFoundError:
            return []
        self._pos += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        return [line for line in lines if line]


class History(list):  # type: ignore[type-arg]
    """Events sorted by time, plus how many torn lines the reader skipped."""

    torn_lines: int = 0


def read_history(history_dir: Path) -> History:
    """Every event of every process, sorted by time. A torn line (a process SIGKILLed mid-write)
    is skipped and counted in ``torn_lines``: at the end of a file, or in the middle when a
    restarted worker appended to the same file; the complete event the restarted worker wrote
    right after the torn fragment, on the same physical line, is kept."""
    events = History()
    for path in sorted(history_dir.glob("*.jsonl")):
        events.extend(_read_file(path, events))
    events.sort(key=lambda e: e["t"])
    return events


class Partition:
    """The history split by run into shard files (``partition_history``): every event of a
    run is in one shard, so per-run checks read one shard at a time and post-run memory follows
    the shard, not the whole history. Events without a run (nemesis, notes) are in shard 0.
    Iterating the partition yields every event once, shard by shard (time order within each
    shard, not across them)."""

    def __init__(self, root: Path, n_shards: int) -> None:
        self.root = root
        self.n_shards = n_shards
        self.torn_lines = 0
        self.events = 0

    def _path(self, k: int) -> Path:
        return self.root / f"{k}.marshal"

    def shard(self, k: int) -> History:
        """The events of shard ``k``, sorted by time. Appended in file order and sorted stably,
        so the runs of a shard see their events in the order ``read_history`` gives them."""
        out = History()
        try:
            f = open(self._path(k), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return out  # no event landed in this shard
        with f:
            data = f.read()
        view, pos, loads = memoryview(data), 0, marshal.loads
        while pos < len(data):  # [length][marshalled batch of events] ...
            n = int.from_bytes(view[pos : pos + 4], "little")
            out.extend(loads(view[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        out.sort(key=lambda e: e["t"])
        if k == 0:
            out.torn_lines = self.torn_lines  # counted once, with the events without a run
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for k in range(self.n_shards):
            yield from self.shard(k)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def partition_history(
    history_dir: Path, root: Path, n_shards: int, shard_of: Callable[[str], int]
) -> Partition:
    """Stream every history file once and append each event to the shard of its run
    (``shard_of(run_id)`` in ``[0, n_shards)``; no run: shard 0), in a compact binary form
    (marshal: parsed once here, loaded without JSON). Torn lines as in ``read_history``."""
    root.mkdir(parents=True, exist_ok=True)
    part = Partition(root, n_shards)
    pending: dict[int, list[dict[str, Any]]] = {}
    counter = History()  # only its torn_lines: _read_file counts into it

    def flush(k: int) -> None:
        blob = marshal.dumps(pending.pop(k))
        with open(part._path(k), "ab") as f:
            f.write(len(blob).to_bytes(4, "little") + blob)

    for path in sorted(history_dir.glob("*.jsonl")):
        for event in _read_file(path, counter):
            run = event.get("run")
            k = shard_of(run) if isinstance(run, str) else 0
            batch = pending.setdefault(k, [])
            batch.append(event)
            part.events += 1
            if len(batch) >= _BATCH:
                flush(k)
    for k in list(pending):
        flush(k)
    part.torn_lines = counter.torn_lines
    return part


# events per shard held before they are appended to its file: bounds the memory of the split
# (shards x batch events) while keeping writes and loads in large pieces
_BATCH = 128


_EVENT_START = b'{"t":'


def _read_file(path: Path, out: History) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                out.torn_lines += 1
                break
            event = _parse(line)
            if event is None:
                out.torn_lines += 1
                # a torn fragment followed, on the same line, by the next writer's whole event
                i = line.rfind(_EVENT_START)
                event = _parse(line[i:]) if i > 0 else None
            if event is not None:
                yield event


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "t" in event else None
