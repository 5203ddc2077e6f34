"""Exposure (acks at risk) measured continuously, and its agreement with what a node loss
really loses."""

from __future__ import annotations

import gc
import json
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from bench import exposure, exposure_figures
from bench.exposure import Sample


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args, "--results-dir", str(cwd), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ev(t: float, typ: str, op: str, run: str, step: int | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"t": t, "type": typ, "op": op, "run": run}
    if step is not None:
        e["step"] = step
    return e


def _history() -> list[dict[str, Any]]:
    # run a accepted at 1.0 (commit began after 0.95), b at 2.0, c at 3.0
    out = []
    for run, t in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        out += [_ev(t - 0.05, "invoke", "submit", run), _ev(t, "ok", "submit", run)]
    return out


def _samples() -> list[Sample]:
    # local grows 10 per second; the replica copies everything before 1.5 at 1.6 and nothing
    # more until the node is lost at 3.5 (local unreadable afterwards)
    out = []
    t = 0.0
    while t < 5.0:
        local = int(t * 10) * 10 if t < 3.5 else None
        replica = 150 if t >= 1.6 else 0
        out.append(Sample(t, t + 0.001, "g", local, replica))
        t = round(t + 0.05, 3)
    return out


def test_coverage_and_acks_at_risk_from_samples() -> None:
    acks = exposure.analyze(_samples(), _history())
    by = {a.id: a for a in acks}
    assert abs(by["a"].covered_t - 1.601) < 1e-9  # type: ignore[operator]
    assert by["b"].covered_t is None and by["c"].covered_t is None
    assert {a.id for a in exposure.at_risk_at(acks, 3.5)} == {"b", "c"}
    assert {a.id for a in exposure.at_risk_at(acks, 1.55)} == {"a"}


def test_cross_check_fails_when_loss_and_exposure_disagree() -> None:
    samples, acks = _samples(), exposure.analyze(_samples(), _history())

    def lost(*ids: str) -> list[dict[str, Any]]:
        return [{"kind": "run-accepted", "id": i, "after_fault": False} for i in ids]

    ok = exposure.cross_check(acks, samples, 3.5, lost("b", "c"))
    assert ok["valid"] is True and ok["at_risk_at_fault"] == 2
    assert ok["certainly_missing_from_replica"] == 2
    # a lost ack the samples had as replicated: the two measurements disagree
    bad = exposure.cross_check(acks, samples, 3.5, lost("a", "b", "c"))
    assert bad["valid"] is False and bad["lost_not_at_risk"] == ["run-accepted:a"]
    # an ack the samples prove missing from the replica, but the checker found it
    bad = exposure.cross_check(acks, samples, 3.5, lost("b"))
    assert bad["valid"] is False and bad["certain_but_not_lost"] == ["run-accepted:c"]


def test_sqlite_lose_node_loses_exactly_the_acks_at_risk(tmp_path: Path) -> None:
    out = _bench(
        "crash",
        "--backend",
        "sqlite",
        "--fault",
        "lose-node",
        "--trials",
        "1",
        "--workload",
        "smoke",
        "--at",
        "2.2",  # after the first upload (1 s sync interval), runs in flight
        "--restart-delay",
        "0.5",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (group,) = tmp_path.glob("*-crash.json")
    (trial,) = json.loads(group.read_text())["rows"]["lose-node"]
    run_dir = Path(trial["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    e = summary["exposure"]
    assert e["acks_covered"] > 0 and e["exposure_s"]["p99"] > 0
    assert e["resolution_s"]["period_p50"] < 0.05
    cc = summary["checks"]["exposure"]
    lost = summary["checks"]["write_loss"]["lost_count"]
    assert cc["valid"] is True, cc
    assert cc["lost_before_fault"] > 0 and cc["at_risk_at_fault"] >= cc["lost_before_fault"]
    assert cc["certainly_missing_from_replica"] <= lost
    assert (run_dir / "exposure.csv").stat().st_size > 0
    assert (run_dir / "exposure_series.csv").stat().st_size > 0
    # every run holds its exposure against the node-loss promise's bound
    nl = e["node_loss_promise"]
    assert nl["bound_s"] == summary["checks"]["promise"]["promise"]["max_lost_age_s"]
    assert nl["beyond"] >= 0 and "at_risk_at_fault_beyond" in nl


def test_postgres_async_standby_reports_exposure(tmp_path: Path) -> None:
    out = _bench(
        "run", "--backend", "postgres", "--standby", "async", "--workload", "smoke", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (summary_path,) = tmp_path.glob("*/summary.json")
    e = json.loads(summary_path.read_text())["exposure"]
    assert e["unit"].startswith("WAL LSN") and e["samples"] > 10
    assert e["acks"] > 0 and e["acks_covered"] == e["acks"]
    assert e["exposure_s"]["max"] is not None


def _other_process_can_write(db: Path) -> bool:
    code = (
        "import sqlite3,sys\n"
        f"c=sqlite3.connect({str(db)!r},timeout=0,isolation_level=None)\n"
        "try:\n c.execute('BEGIN IMMEDIATE'); c.execute('ROLLBACK'); print('yes')\n"
        "except sqlite3.OperationalError: print('no')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() == "yes"


def test_reading_the_wal_index_keeps_this_process_sqlite_locks(tmp_path: Path) -> None:
    """Closing any descriptor of -shm drops this process's POSIX locks on it (the bug that let
    a worker overwrite the harness's committed WAL frames): the reader must never do that."""
    import sqlite3

    from backends.sqlite.position import ShmReader

    db = tmp_path / "t.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("BEGIN IMMEDIATE")  # this process holds the WAL write lock
    conn.execute("INSERT INTO t VALUES (1)")
    assert not _other_process_can_write(db)
    reader = ShmReader(db)
    for _ in range(3):
        assert reader.read() is not None
    assert not _other_process_can_write(db)  # still ours
    with open(f"{db}-shm", "rb") as f:  # the naive read, as a control: it must break the lock
        f.read(96)
    assert _other_process_can_write(db)
    conn.execute("ROLLBACK")
    conn.close()
    reader.close()


def test_an_ack_just_before_a_node_loss_is_never_covered_by_the_new_node() -> None:
    """An ack between the last reading of the lost node and the first of the rebuilt one was
    made on the lost node: the new node's positions (which restart low, under a replica that
    holds them) must not count it as replicated."""
    samples = [s for s in _samples() if s.t0 < 3.5]  # node readable until 3.45
    samples[30] = Sample(1.5, 1.501, "g", None, 0)  # one failed reading of the live node
    samples += [Sample(t, t + 0.001, "g", None, 150) for t in (3.5, 3.55, 3.6)]  # node gone
    samples += [Sample(3.7 + k * 0.05, 3.701 + k * 0.05, "h", 10, 10) for k in range(10)]
    events = _history() + [
        _ev(3.44, "invoke", "submit", "d"),
        _ev(3.46, "ok", "submit", "d"),  # after the last reading of the old node
        _ev(3.8, "invoke", "submit", "e"),
        _ev(3.81, "ok", "submit", "e"),  # on the rebuilt node
    ]
    events += [_ev(1.46, "invoke", "submit", "f"), _ev(1.47, "ok", "submit", "f")]
    by = {a.id: a for a in exposure.analyze(samples, events)}
    assert by["d"].covered_t is None
    assert by["f"].covered_t is not None  # before the failed reading, covered at 1.6
    assert by["e"].covered_t is not None and by["e"].generation == "h"


def test_exposure_beyond_the_node_loss_promise_is_counted() -> None:
    acks = exposure.analyze(_samples(), _history())  # a: exposed 0.601 s; b, c: never covered
    assert exposure_figures.beyond_bound(acks, 0.5, 0.05, None)["beyond"] == 1
    within = exposure_figures.beyond_bound(acks, 0.58, 0.05, None)
    assert within["beyond"] == 0 and within["maybe_beyond"] == 1
    assert exposure_figures.beyond_bound(acks, 0.7, 0.05, None)["beyond"] == 0
    at_fault = exposure_figures.beyond_bound(acks, 1.0, 0.05, 3.5)  # b 1.5 s old at risk, c 0.5 s
    assert at_fault["at_risk_at_fault_beyond"] == 1
    assert abs(at_fault["at_risk_at_fault_oldest_s"] - 1.5) < 1e-9


def _random_run(n_runs: int, seed: int) -> tuple[list[Sample], list[dict[str, Any]]]:
    """A replica that copies the node's position in uneven bursts; runs with a few commits."""
    rng = random.Random(seed)
    samples, t, replica = [], 0.0, 0
    while t < 60.0:
        local = int(t * 1000)
        if rng.random() < 0.05:  # an upload: everything up to a moment ago
            replica = max(replica, local - rng.randrange(0, 2000))
        samples.append(Sample(t, t + 0.002, "g", local, replica))
        t = round(t + 0.025, 4)
    events: list[dict[str, Any]] = []
    for r in range(n_runs):
        t = rng.uniform(0, 62)  # some acks after the last reading: never covered
        events += [_ev(t, "invoke", "submit", f"r{r}"), _ev(t + 0.003, "ok", "submit", f"r{r}")]
        for step in range(rng.randrange(1, 4)):
            t += rng.uniform(0.01, 0.5)
            events += [_ev(t, "invoke", "commit", f"r{r}", step)]
            events += [_ev(t + 0.004, "ok", "commit", f"r{r}", step)]
    return samples, events


def _brute_series(acks: list[Any], t_from: float, t_to: float) -> list[dict[str, Any]]:
    """The series by definition: at every grid point, the acks made by then and not covered."""
    rows = []
    for t in np.arange(t_from, t_to + 0.05, 0.1):
        risk = [a.t_ack for a in acks if a.t_ack <= t and (a.covered_t is None or a.covered_t > t)]
        oldest = round(float(t - min(risk)), 4) if risk else 0.0
        rows.append({"t": round(float(t), 3), "at_risk": len(risk), "oldest_s": oldest})
    return rows


def test_streaming_by_shard_gives_the_whole_history_figures() -> None:
    """Shard by shard (as the post-run pass reads a long run) the series, the counts, the kept
    acks and the node-loss figures are those of the whole history at once."""
    samples, events = _random_run(400, seed=7)
    whole = exposure.analyze(samples, events)
    sampler = exposure.PositionSampler.__new__(exposure.PositionSampler)
    sampler.samples, sampler.unit, sampler.errors, sampler.interval_s = samples, "b", 0, 0.025
    fault_t = 30.0
    stream = exposure_figures.Stream(sampler, fault_t, (20.0, 40.0), bound_s=0.5)
    shards: list[list[dict[str, Any]]] = [[], [], []]
    for e in events:
        shards[int(e["run"][1:]) % 3].append(e)
    got = [a for shard in shards for a in stream.add(shard)]
    assert sorted(map(exposure.ack_row, got)) == sorted(map(exposure.ack_row, whole))
    summary = stream.summary()
    assert summary["_series"] == _brute_series(whole, samples[0].t0, samples[-1].t1)
    covered = [a.covered_t - a.t_ack for a in whole if a.covered_t is not None]
    assert summary["acks_covered"] == len(covered) and 0 < len(covered) < len(whole)
    assert summary["exposure_s"]["max"] == max(covered)
    p99 = float(np.percentile(covered, 99))
    assert abs(summary["exposure_s"]["p99"] - p99) <= 0.002 * p99 + 0.03  # HDR: 3 digits
    kept = {(a.kind, a.id) for a in stream.kept}
    at_fault = exposure.at_risk_at(whole, fault_t)
    assert {(a.kind, a.id) for a in at_fault} <= kept and len(kept) < len(whole)
    assert exposure_figures.window(stream.kept, samples, 20.0, 40.0) == exposure_figures.window(
        whole, samples, 20.0, 40.0
    )
    res = stream.res["period_p99"] + stream.res["read_p99"]  # type: ignore[operator]
    beyond = stream.beyond.figures(exposure.at_risk_at(stream.kept, fault_t))  # type: ignore[union-attr]
    assert beyond == exposure_figures.beyond_bound(whole, 0.5, res, fault_t)
    assert beyond["beyond"] > 0 and beyond["at_risk_at_fault_beyond"] > 0


def test_streaming_memory_does_not_grow_with_the_number_of_shards() -> None:
    """Without a fault nothing per ack is kept: ten times the shards, the same peak."""
    samples, events = _random_run(300, seed=3)
    sampler = exposure.PositionSampler.__new__(exposure.PositionSampler)
    sampler.samples, sampler.unit, sampler.errors, sampler.interval_s = samples, "b", 0, 0.025

    def peak(n_shards: int) -> int:
        stream = exposure_figures.Stream(sampler, None, None, bound_s=1.0)
        gc.collect()  # garbage of an earlier test freed during the trace would blur the peak
        tracemalloc.start()
        for _ in range(n_shards):
            stream.add(events)  # the same runs again: as many acks as a longer run's shard
        stream.summary()
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p

    peak(3)  # warm-up: first-use allocations (caches, interned keys) are not per shard
    few, many = peak(3), peak(30)
    assert many < few * 1.3, (few, many)


def _node_and_replica(tmp_path: Path) -> tuple[Path, Any, Any]:
    """A database file with a hand-made WAL index (-shm) and a writer of level-0 LTX headers."""
    import struct

    page, db = 4096, tmp_path / "node" / "durabench.db"
    db.parent.mkdir()
    db.write_bytes(b"")

    def shm(salt1: int, mx_frame: int) -> None:
        hdr = bytearray(48)
        struct.pack_into("=HI", hdr, 14, page, mx_frame)
        struct.pack_into(">I", hdr, 32, salt1)
        Path(f"{db}-shm").write_bytes(bytes(hdr) * 2)

    def ltx(txid: int, salt1: int, frames_from: int, frames: int) -> tuple[str, bytes]:
        off, size = 32 + frames_from * (page + 24), frames * (page + 24)
        hdr = struct.pack(
            ">4sIIIQQQQQQII", b"LTX1", 0, page, 1, txid, txid, 0, 0, off, size, salt1, 7
        )
        return f"{txid:016x}-{txid:016x}.ltx", hdr.ljust(100, b"\0")

    return db, shm, ltx


def _lost_before_the_new_salt_was_seen(tmp_path: Path, replica: Any, upload: Any) -> None:
    """Litestream's sync uploads the old WAL's tail, then the restarted WAL's first frame (a new
    salt), back to back; the node is lost before the sampler reads the new salt in -shm. The
    replica holds all of the old WAL: its position must say so, not the previous sync's."""
    from backends.sqlite.position import WalPositions

    db, shm, ltx = _node_and_replica(tmp_path)
    a, b = 0x1000, 0x1001
    shm(a, 10)  # 10 frames committed locally
    upload(*ltx(1, a, 0, 4))  # the last sync uploaded 4
    pos = WalPositions(db, replica)
    try:
        before = pos.read()
        assert before.local is not None and before.replica is not None
        assert before.replica < before.local
        upload(*ltx(2, a, 4, 6))  # the tail of WAL a: the replica now holds all 10 frames
        upload(*ltx(3, b, 0, 1))  # WAL b's first frame (salt b never seen locally)
        for f in db.parent.iterdir():  # the node is lost
            f.unlink()
        after = pos.read()
        assert after.local is None and after.generation == before.generation
        assert after.replica == before.local, "the replica read lower than it was"
    finally:
        pos.close()


def test_replica_position_after_a_node_loss_counts_the_uploaded_old_wal_tail(
    tmp_path: Path,
) -> None:
    from backends.sqlite.position import FileReplica

    root = tmp_path / "replica"
    (root / "ltx" / "0").mkdir(parents=True)
    _lost_before_the_new_salt_was_seen(
        tmp_path,
        FileReplica(root),
        lambda name, body: (root / "ltx" / "0" / name).write_bytes(body),
    )


def test_replica_position_in_s3_after_a_node_loss_counts_the_uploaded_old_wal_tail(
    tmp_path: Path,
) -> None:
    from backends.sqlite.objectstore import SeaweedFS, s3_client
    from backends.sqlite.position import S3Replica

    s3 = SeaweedFS(tmp_path / "s3", tmp_path / "s3logs", bucket="positions")
    try:
        s3.start()
        target = s3.target()
        client = s3_client(target, 5.0)

        def upload(name: str, body: bytes) -> None:
            client.put_object(Bucket=target.bucket, Key=f"db/0000/{name}", Body=body)

        _lost_before_the_new_salt_was_seen(tmp_path, S3Replica(target, "db"), upload)
    finally:
        s3.stop()


def test_a_late_submit_ack_is_not_certainly_missing_because_of_its_runs_later_writes() -> None:
    """Found at 4x load: the harness recorded a group-committed submit's ack 0.6 s after the
    commit, after a worker had already committed the run's steps. The lower bound of the
    submit's commit is its own invoke, not the step commit's: the replica held the run, the
    node loss lost only the step, and the cross-check must agree."""
    samples = [
        Sample(t / 100, t / 100 + 0.001, "g", t if t < 250 else None, 150 if t >= 160 else 0)
        for t in range(0, 300, 5)
    ]
    events = [
        _ev(1.0, "invoke", "submit", "a"),  # committed at once (position ~100)
        _ev(1.9, "invoke", "commit", "a", 0),  # the worker ran the run meanwhile
        _ev(1.95, "ok", "commit", "a", 0),
        _ev(2.2, "ok", "submit", "a"),  # the submit's ack, recorded late
    ]
    acks = exposure.analyze(samples, events)
    lost = [{"kind": "step-committed", "id": "a/0", "after_fault": False}]
    cc = exposure.cross_check(acks, samples, 2.5, lost)
    assert cc["certain_but_not_lost"] == [] and cc["valid"] is True, cc


def test_the_replica_is_listed_only_after_its_uploader_did_io(tmp_path: Path) -> None:
    """A bucket listing costs the harness ~1.5 ms of CPU; only Litestream writes the replica,
    so the listing is skipped while its I/O counter stands still (and an upload moves it)."""
    from backends.sqlite.objectstore import SeaweedFS, s3_client
    from backends.sqlite.position import S3Replica, WalPositions, io_activity

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    s3 = SeaweedFS(tmp_path / "s3", tmp_path / "s3logs", bucket="positions")
    try:
        time.sleep(0.5)  # the interpreter's start-up reads are over
        counter = io_activity(lambda: sleeper.pid)
        assert counter() is not None and counter() == counter(), "an idle process moved"
        assert io_activity(lambda: None)() is None
        s3.start()
        target = s3.target()
        client = s3_client(target, 5.0)
        db, shm, ltx = _node_and_replica(tmp_path)
        io = [0]
        replica = S3Replica(target, "db", activity=lambda: io[0])
        pos = WalPositions(db, replica)
        a = 0x1000
        shm(a, 10)
        name, body = ltx(1, a, 0, 4)
        client.put_object(Bucket=target.bucket, Key=f"db/0000/{name}", Body=body)
        first = pos.read()
        assert replica.listings == 1 and first.replica is not None
        name, body = ltx(2, a, 4, 6)  # an upload the counter did not see (cannot happen)
        client.put_object(Bucket=target.bucket, Key=f"db/0000/{name}", Body=body)
        assert pos.read().replica == first.replica and replica.listings == 1
        io[0] += 1  # the uploader did I/O: listed again, the new file seen
        assert pos.read().replica == first.local and replica.listings == 2
        pos.close()
    finally:
        sleeper.kill()
        sleeper.wait()
        s3.stop()


def test_samples_are_stored_by_column_and_read_back_as_recorded() -> None:
    """A 1-hour run holds 144,000 readings during the drive: columns, not objects."""
    recorded = [
        Sample(0.0, 0.001, "g1", 100, None),
        Sample(0.025, 0.026, "g1", None, 90),
        Sample(0.05, 0.052, "g2", 2**40 + 7, 2**40),
    ]
    samples = exposure.Samples()
    for r in recorded:
        samples.append(r.t0, r.t1, r.generation, r.local, r.replica)
    assert list(samples) == recorded and samples[-1] == recorded[-1] and len(samples) == 3
    assert samples[1:] == recorded[1:]
    got = {k: list(v) for k, v in exposure.sample_columns(samples).items()}
    want = {k: list(v) for k, v in exposure.sample_columns(recorded).items()}
    assert str(got) == str(want)
    tracemalloc.start()
    many = exposure.Samples()
    for i in range(20_000):
        many.append(i * 0.025, i * 0.025 + 0.001, "12345", i * 100, i * 90)
    per_reading = tracemalloc.get_traced_memory()[0] / 20_000
    tracemalloc.stop()
    assert per_reading < 64, per_reading
