"""lose-power on the real lazy filesystem (issue 11): the known answer of each durability setting,
at smoke size, one trial each, with the fault placed while acks are arriving (so something is
at risk): the fully synced settings lose nothing; NORMAL / OFF / synchronous_commit=off lose the
acks their store had not synced, within the promise each backend states for the setting."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backends.common import powerloss
from backends.postgres.power import power_loss_promise as pg_promise
from backends.sqlite.backend import SqliteDeployment
from backends.sqlite.power import power_loss_promise as sqlite_promise
from backends.temporal.power import power_loss_promise as temporal_promise
from bench.history import read_history
from tests.helpers import context

pytestmark = pytest.mark.skipif(
    powerloss.unavailable() is not None, reason=f"lazy filesystem: {powerloss.unavailable()}"
)

FAULT_AT_S = 2.0  # smoke offers 10 runs/s for 3 s: acks arrive right up to the fault
# the promises here are the primary's: no Litestream, which sometimes stops replicating after a
# writer is killed mid-commit (docs/design.md, known behaviours)
NO_REPLICA = ["--replica", "none"]
CASES = [
    ("sqlite", ["--synchronous", "FULL", *NO_REPLICA], False),
    ("sqlite", ["--synchronous", "NORMAL", *NO_REPLICA], True),
    ("sqlite", ["--synchronous", "OFF", *NO_REPLICA], True),
    ("postgres", ["--synchronous-commit", "on"], False),
    ("postgres", ["--synchronous-commit", "off"], True),
    ("temporal", [], False),
    # DBOS on each store: the store's own promise, every DBOS connection with its setting
    ("dbos", ["--synchronous", "FULL", *NO_REPLICA], False),
    ("dbos", ["--synchronous", "NORMAL", *NO_REPLICA], True),
    ("dbos", ["--dbos-database", "postgres", "--synchronous-commit", "on"], False),
]


def promise_of(backend: str, manifest: dict[str, Any]) -> Any:
    cfg = manifest["backend_config"]
    if backend == "dbos":  # the store's promise, through the reused deployment's config
        backend, cfg = cfg["database"], cfg["store"]
    if backend == "sqlite":
        return sqlite_promise(cfg["synchronous"])
    if backend == "postgres":
        return pg_promise(cfg["synchronous_commit"], cfg["server_settings"]["wal_writer_delay"])
    return temporal_promise(cfg["sqlite_pragmas"]["journal_mode"])


@pytest.mark.parametrize(("backend", "opts", "loses"), CASES, ids=lambda v: str(v))
def test_power_loss_known_answers(backend: str, opts: list[str], loses: bool, tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "crash", "--backend", backend, *opts]
        + ["--fault", "lose-power", "--trials", "1", "--workload", "smoke", "--time-scale", "0"]
        + ["--at", str(FAULT_AT_S), "--restart-delay", "0.3", "--drain-timeout", "30"]
        + ["--lease", "2"]  # runs claimed before the power went off are taken over sooner
        + ["--no-progress"]
        + ["--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode in (0, 1), out.stderr[-3000:]
    assert "ran with the node's data on the lazy filesystem" in out.stdout
    (group,) = tmp_path.glob("*-crash.json")
    (trial,) = json.loads(group.read_text())["rows"]["lose-power"]
    run_dir = Path(trial["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    # exit 1 only for a store that came back damaged without promising otherwise (OFF, about
    # one smoke trial in seven): its integrity check failed, which the verdict must say
    damaged_allowed = (
        summary["checks"]["integrity"]["valid"] is False
        and not promise_of(backend, manifest).intact
    )
    # exit 1 also for DBOS whose workers outlive a Postgres power loss (they are application
    # processes elsewhere): a workflow a worker dequeued just before the server died (the claim
    # committed, ENQUEUED -> PENDING under that executor) whose start then failed on the dead
    # connection stays PENDING under a live executor; DBOS recovers PENDING workflows only when
    # an executor starts. Seen twice in CI (r000020 here, acked 6 ms after the cut began). The
    # verdict must say exactly that: stuck runs, no conflicting completion, nothing lost
    once = summary["checks"]["exactly_once"]
    stranded_allowed = (
        backend == "dbos"
        and manifest["backend_config"]["database"] == "postgres"
        and once["valid"] is False
        and once.get("stuck_count", 0) >= 1
        and not once.get("conflicting_completions")
        and summary["checks"]["write_loss"]["valid"] is True
        and summary["checks"]["integrity"]["valid"] is True
        and summary["checks"]["step_payloads"]["valid"] is True
    )
    assert out.returncode == 0 or damaged_allowed or stranded_allowed, out.stderr[-3000:]
    assert manifest["lazyfs"] is True
    assert len(summary["backend_metrics"]["lazyfs"]["losses"]) == 1, "the drop happened once"

    # something was at risk: acks in the half second before the power went off
    fault_t = manifest["fault"]["timeline"]["start_t"]
    acks = [
        e
        for e in read_history(run_dir / "history")
        if e["type"] == "ok" and e["op"] in ("submit", "commit", "complete")
    ]
    recent = [e for e in acks if fault_t - 0.5 <= e["t"] <= fault_t]
    assert len(recent) >= 5, f"only {len(recent)} acks in the 0.5 s before the fault"

    loss = summary["checks"]["write_loss"]
    integrity = summary["checks"]["integrity"]
    assert integrity["valid"] is not None, "the integrity check must run after recovery"
    promise = promise_of(backend, manifest)
    if loses:
        # OFF may also leave a file too damaged to read: then the loss cannot be counted, and
        # the integrity check (which OFF does not promise to pass) must say so
        damaged = not promise.intact and integrity["valid"] is False
        assert damaged or trial["lost_acks"] > 0, "an unsynced setting lost nothing"
    else:
        assert trial["lost_acks"] == 0, loss["lost"][:5]
        assert integrity["valid"] is True, integrity

    # the promise the backend states for this setting is kept
    ages = [x["age_at_fault_s"] for x in loss.get("lost", []) if not x["after_fault"]]
    if promise.max_lost_age_s == 0.0:
        assert loss["valid"] is True and not loss["lost"], promise
    elif promise.max_lost_age_s is not None:
        assert max(ages, default=0.0) <= promise.max_lost_age_s, (ages, promise)
    if promise.intact:
        assert integrity["valid"] is True, (integrity, promise)


def test_sqlite_integrity_check_reports_a_damaged_file(tmp_path: Path) -> None:
    """The check the power-loss trials rely on must fail on a damaged file."""
    dep = SqliteDeployment({"replica": "none"}, context(tmp_path))
    dep.data_dir.mkdir(parents=True)
    conn = sqlite3.connect(dep.db_path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t (v)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"value-{i:06d}",) for i in range(5000)])
    conn.commit()
    conn.close()
    assert dep.integrity_check()["valid"] is True
    raw = bytearray(dep.db_path.read_bytes())
    page = 4096
    for off in range(3 * page + 100, 3 * page + 600):  # inside a b-tree page, past the header
        raw[off] ^= 0x5A
    dep.db_path.write_bytes(bytes(raw))
    assert dep.integrity_check()["valid"] is False


def test_a_stale_mount_of_a_crashed_harness_is_removed_at_start(tmp_path: Path) -> None:
    """A lazy mount whose server died with an earlier harness (here: SIGKILLed) is found under
    the results root and removed, with a message, before a run on the lazy filesystem starts;
    that run (`bench run --lazyfs`) leaves no mount behind."""
    from backends.common.lazyfs import LazyMount, mounts

    old = tmp_path / "20200101-000000-sqlite-smoke-dead" / "work"
    m = LazyMount(old / "sqlite.backing", old / "sqlite")
    m.start()
    try:
        m._proc.kill()  # the server dies; the kernel keeps the mount: it is stale
        assert mounts.mount_at(old / "sqlite") is not None
        out = subprocess.run(
            [sys.executable, "-m", "bench.cli", "run", "--backend", "sqlite", "--lazyfs"]
            + ["--workload", "smoke", "--time-scale", "0", "--no-progress"]
            + ["--results-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert "removed 1 stale lazy-filesystem mount(s)" in out.stderr
        assert mounts.mount_at(old / "sqlite") is None
        assert not [x for x in mounts.lazyfs_mounts() if x.mountpoint.startswith(str(tmp_path))]
        (run,) = [p for p in tmp_path.iterdir() if p.name != old.parent.name]
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["lazyfs"] is True and "lazy filesystem" in manifest["topology"]["store"]
    finally:
        m.stop()


def test_a_store_too_damaged_to_read_makes_the_checks_unknown_not_a_crash(tmp_path: Path) -> None:
    """After a power loss under synchronous=OFF the file can be unreadable ("database disk
    image is malformed"): the checkers that read it say unknown with the error (check-safe) and
    the integrity check says False, instead of the whole run failing."""
    from bench.checkers import check_write_loss, compose
    from bench.checkers import safe as _safe

    dep = SqliteDeployment({"replica": "none"}, context(tmp_path))
    dep.data_dir.mkdir(parents=True)
    dep.db_path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8192)  # a wrecked header
    out = {
        "write_loss": _safe(check_write_loss, [], dep.client().state(), 0.0),
        "integrity": _safe(dep.integrity_check),
    }
    assert out["write_loss"]["valid"] == "unknown" and "DatabaseError" in out["write_loss"]["error"]
    assert out["integrity"]["valid"] is False
    assert compose(out) is False


def test_a_store_that_lost_even_its_schema_loses_every_ack(tmp_path: Path) -> None:
    """Seen after a power loss at synchronous=OFF without Litestream: the file comes back valid
    (integrity ok) but without our tables, since not even the schema was synced. Every ack is
    lost, and the checker must say so (it said "unknown": "no such table: runs")."""
    from backends.history import HistoryWriter, read_history
    from bench.checkers import check_write_loss

    ctx = context(tmp_path)
    dep = SqliteDeployment({"replica": "none"}, ctx)
    dep.data_dir.mkdir(parents=True)
    sqlite3.connect(dep.db_path).close()  # a valid, empty database file
    h = HistoryWriter(ctx.history_dir / "harness.jsonl", "harness", ctx.epoch_ns)
    for run in ("r1", "r2", "r3"):
        h.record("invoke", "submit", run)
        h.record("ok", "submit", run)
    fault_t = h.now()
    h.close()
    out = check_write_loss(read_history(ctx.history_dir), dep.client().state(), fault_t)
    assert out["valid"] is False and out["lost_count"] == 3
    assert dep.integrity_check()["valid"] is True
