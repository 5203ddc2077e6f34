"""Object-store faults (s3-outage, s3-slow) through the harness's proxy: nothing acknowledged
is lost, the acks made meanwhile are at risk until Litestream catches up, and the catch-up is
measured."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

from backends.common.tcpproxy import TcpProxy
from bench.replication import judge


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
