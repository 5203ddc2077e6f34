"""Object-store faults (s3-outage, s3-slow) through the harness's proxy: nothing acknowledged
is lost, the acks made meanwhile are at risk until Litestream catches up, and the catch-up is
measured. A node lost during an outage (lose-node-in-outage) loses what was at risk then."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

from backends.common.tcpproxy import TcpProxy
from bench.replication import judge

# Litestream ships the backlog of an outage in pieces and syncs again only when the WAL
# changes (docs/design.md, known behaviours): writes must go on after the outage for its
# backlog to leave the node before the run ends. The smoke arrivals spread over 6 s, not 3
AFTER_THE_OUTAGE = ("--rate-scale", "0.5")


def test_sqlite_s3_outage_loses_nothing_and_catches_up(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "crash",
            "--backend",
            "sqlite",
            "--fault",
            "s3-outage",
            "--outage",
            "2",
            "--at",
            "1",
            "--workload",
            "smoke",
            *AFTER_THE_OUTAGE,
            "--results-dir",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (group,) = tmp_path.glob("*-crash.json")
    (trial,) = json.loads(group.read_text())["rows"]["s3-outage"]
    summary = json.loads((Path(trial["run_dir"]) / "summary.json").read_text())
    checks = summary["checks"]
    assert checks["write_loss"]["lost_count"] == 0 and checks["write_loss"]["valid"] is True
    assert checks["promise"]["verdict"] == "kept"
    o = summary["exposure"]["outage"]
    assert o["acks_during"] > 0 and o["at_risk_max"] >= o["acks_during"] * 0.5
    assert o["oldest_max_s"] > 1.5  # nothing left the node while the store was away
    assert o["catch_up_s"] is not None and o["acks_during_never_covered"] == 0
    assert o["at_recover"]["wal_bytes"] > o["at_inject"]["wal_bytes"]
    assert o["at_recover"]["proxy_refused"] > 0  # Litestream really tried and was refused


def test_proxy_outage_refuses_and_delay_holds_requests() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        while True:
            try:
                c, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=c: c.sendall(c.recv(100)), daemon=True).start()

    threading.Thread(target=echo, daemon=True).start()
    proxy = TcpProxy(server.getsockname())
    proxy.start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(b"hi")
            assert s.recv(10) == b"hi"
        proxy.set_outage(True)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(b"hi")
            assert s.recv(10) == b""  # closed at once: the store does not answer
        assert proxy.refused == 1
        proxy.set_outage(False)
        proxy.delay_s = 0.3
        import time

        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            s.sendall(b"hi")
            assert s.recv(10) == b"hi"
        assert time.monotonic() - t0 >= 0.3
    finally:
        proxy.stop()
        server.close()


def test_replication_errors_fail_unless_a_fault_caused_them() -> None:
    health = {"caught_up": True, "errors": 3, "position": 5, "replica_position": 5}
    assert judge(dict(health))["valid"] is False
    assert judge(dict(health), errors_expected=True)["valid"] is True
    behind = {**health, "caught_up": False, "replica_position": 4}
    assert judge(behind, errors_expected=True)["valid"] is False  # still must catch up


def _crash(tmp_path: Path, fault: str, *args: str, backend: str = "sqlite") -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "crash", "--backend", backend, "--fault", fault]
        + ["--workload", "smoke", "--results-dir", str(tmp_path), "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (group,) = tmp_path.glob("*-crash.json")
    (trial,) = json.loads(group.read_text())["rows"][fault]
    run_dir = Path(trial["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["_manifest"] = json.loads((run_dir / "manifest.json").read_text())
    return summary


def test_sqlite_s3_slow_loses_nothing_and_catches_up(tmp_path: Path) -> None:
    summary = _crash(
        tmp_path, "s3-slow", "--outage", "2", "--s3-latency", "1.5", "--at", "1", *AFTER_THE_OUTAGE
    )
    checks = summary["checks"]
    assert checks["write_loss"]["lost_count"] == 0 and checks["promise"]["verdict"] == "kept"
    o = summary["exposure"]["outage"]
    assert o["acks_during"] > 0 and o["catch_up_s"] is not None
    assert o["acks_during_never_covered"] == 0
    # every upload waited 1.5 s: nothing made during the slow window was held sooner
    assert o["exposure_max_s_of_acks_during"] > 1.5 and o["oldest_max_s"] > 1.5


def test_dbos_on_sqlite_s3_outage_loses_nothing_and_reports_the_outage(tmp_path: Path) -> None:
    """DBOS on SQLite replicates through the same Litestream and proxy: the outage keeps DBOS's
    commits (acks) on the node until Litestream catches up, and destroys none of them."""
    summary = _crash(
        tmp_path, "s3-outage", "--outage", "2", "--at", "1", *AFTER_THE_OUTAGE, backend="dbos"
    )
    checks = summary["checks"]
    assert checks["write_loss"]["lost_count"] == 0 and checks["promise"]["verdict"] == "kept"
    assert checks["replication"]["valid"] is True  # caught up; its errors came from the fault
    o = summary["exposure"]["outage"]
    assert o["acks_during"] > 0 and o["at_risk_max"] >= o["acks_during"] * 0.5
    assert o["oldest_max_s"] > 1.5  # nothing left the node while the store was away
    assert o["catch_up_s"] is not None and o["acks_during_never_covered"] == 0
    assert o["at_recover"]["wal_bytes"] > o["at_inject"]["wal_bytes"]
    assert o["at_recover"]["proxy_refused"] > 0  # Litestream really tried and was refused


def test_node_lost_during_outage_loses_what_was_at_risk(tmp_path: Path) -> None:
    """The outage destroys nothing; the node loss 1.5 s into it loses exactly the acks the
    exposure series had at risk then (every ack of the outage among them), and the promise is
    the lose-node bound plus the outage's age at the loss."""
    summary = _crash(
        tmp_path,
        "lose-node-in-outage",
        *("--outage", "2.5", "--lose-node-after", "1.5", "--at", "1"),
    )
    checks, o = summary["checks"], summary["exposure"]["outage"]
    cc = checks["exposure"]
    assert cc["valid"] is True, cc
    assert cc["lost_before_fault"] > 0 and not cc["lost_not_at_risk"]
    assert cc["certainly_missing_from_replica"] <= cc["lost_before_fault"] <= cc["at_risk_at_fault"]
    assert o["node_lost"] and o["acks_during"] > 0
    assert o["acks_during_never_covered"] == o["acks_during"]  # nothing left during the outage
    assert o["at_risk_max"] == cc["at_risk_at_fault"]
    assert cc["lost_before_fault"] >= o["acks_during"]  # every ack of the outage was lost
    p = checks["promise"]
    assert p["verdict"] == "kept", p
    assert p["promise"]["fault"] == "lose-node-in-outage"
    tl = summary["_manifest"]["fault"]["timeline"]
    age = tl["start_t"] - tl["lead_in_t"]  # the outage's age when the node was lost
    assert age >= 1.5
    assert abs(p["promise"]["max_lost_age_s"] - (2.5 + age)) < 1e-9  # lose-node bound + age


def test_node_loss_in_outage_promise_is_the_node_bound_plus_the_outage_age() -> None:
    from backends.promises import Promise
    from bench import faults, promise_check

    f = faults.get("lose-node-in-outage")
    node = Promise("lose-node", 2.5, True, "sync")
    tl = {"lead_in_t": 10.0, "start_t": 13.0}
    p = f.promise(lambda name: node if name == "lose-node" else None, tl)
    assert p is not None and p.max_lost_age_s == 5.5 and p.fault == "lose-node-in-outage"
    assert f.promise(lambda name: None, tl) is None  # no lose-node promise: none derived
    events = [
        {"t": 12.9, "type": "info", "op": "nemesis", "value": {"phase": "invoke"}},
        {"t": 7.0, "type": "ok", "op": "submit", "run": "a"},
        {"t": 11.0, "type": "ok", "op": "submit", "run": "b"},  # something at risk
    ]
    old = {"kind": "run-accepted", "id": "a", "age_at_fault_s": 6.0, "after_fault": False}
    young = {**old, "age_at_fault_s": 5.0}
    broken = promise_check.judge(p, {"lost": [old], "lost_count": 1}, events, 13.0)
    assert broken["verdict"] == "broken"  # older than the outage: the outage lost it
    kept = promise_check.judge(p, {"lost": [young], "lost_count": 1}, events, 13.0)
    assert kept["verdict"] == "kept"


def test_object_store_faults_without_an_object_store_are_refused_before_anything(
    tmp_path: Path,
) -> None:
    import pytest

    from backends.base import get
    from backends.errors import ConfigError
    from bench.faults.lose_node_in_outage import lose_after_s
    from bench.nemesis import FaultSpec, check_supported

    for fault in ("s3-outage", "s3-slow", "lose-node-in-outage"):
        with pytest.raises(ConfigError, match="--replica s3"):
            check_supported(fault, get("sqlite").factory, "sqlite", {"replica": "file"})
    with pytest.raises(ConfigError, match="below --outage"):
        lose_after_s(FaultSpec("lose-node-in-outage", outage_s=2.0, lose_node_after_s=5.0))
    out = subprocess.run(  # the command line: one line, exit 2, nothing written
        [sys.executable, "-m", "bench.cli", "crash", "--backend", "sqlite", "--replica", "file"]
        + ["--fault", "lose-node-in-outage", "--results-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "r").exists()
    # dbos: on sqlite as the sqlite backend; on postgres there is no object store at all
    dbos = get("dbos").factory
    with pytest.raises(ConfigError, match="--replica s3"):
        check_supported("s3-slow", dbos, "dbos", {"dbos_database": "sqlite", "replica": "file"})
    for fault in ("s3-outage", "s3-slow", "lose-node-in-outage"):
        with pytest.raises(ConfigError, match="need --dbos-database sqlite"):
            check_supported(fault, dbos, "dbos", {"dbos_database": "postgres"})
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "crash", "--backend", "dbos", "--dbos-database"]
        + ["postgres", "--fault", "s3-outage", "--results-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "--dbos-database sqlite" in out.stderr
    assert not (tmp_path / "r").exists()
