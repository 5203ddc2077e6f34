"""Replication that never happened is not a pass: an object store that does not answer is refused
before the run starts, and a replica that stops receiving mid-run fails the `replication` check
(exit 1), while a healthy one passes it."""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

from backends.sqlite.objectstore import SeaweedFS
from bench.replication import judge


class _Deny(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that refuses everything (403 AccessDenied)."""

    def _deny(self) -> None:
        body = b"<Error><Code>AccessDenied</Code><Message>revoked</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _deny

    def log_message(self, *args: object) -> None:
        pass


class _Refusing(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def bench_run(tmp: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--backend", "sqlite", "--workload", "smoke"]
        + ["--time-scale", "0.2", "--results-dir", str(tmp), "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def test_unreachable_object_store_is_refused_before_the_run(tmp_path: Path) -> None:
    out = bench_run(tmp_path / "r", "--s3-endpoint", "http://127.0.0.1:1")
    assert out.returncode == 2, out.stderr
    assert "error: sqlite: object store http://127.0.0.1:1 does not answer" in out.stderr
    assert len(out.stderr.strip().splitlines()[-1]) < 200, "one line"
    assert not (tmp_path / "r").exists(), "nothing is written for a run that never started"


def test_replica_that_stops_mid_run_fails_the_replication_check(tmp_path: Path) -> None:
    s3 = SeaweedFS(tmp_path / "s3", tmp_path / "s3logs", bucket="stops")
    try:
        s3.start()
        target = s3.target()
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": target.access_key,
            "AWS_SECRET_ACCESS_KEY": target.secret_key,
        }

        def kill_after_first_upload() -> None:
            # the store dies once Litestream has replicated something (replication worked, then
            # stopped while the run was still writing); on its port, a stand-in refuses every
            # request, as a store whose credentials were revoked would: Litestream's uploads
            # fail at once instead of hanging in its S3 client's connection retries
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if s3.request_counts()["requests"].get("PUT", 0) >= 3:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            s3.kill()
            refusing.append(_Refusing(("127.0.0.1", s3.s3_port), _Deny))
            refusing[-1].serve_forever(poll_interval=0.05)

        refusing: list[_Refusing] = []

        killer = threading.Thread(target=kill_after_first_upload)
        killer.start()
        out = bench_run(
            tmp_path / "r",
            "--s3-endpoint",
            target.endpoint,
            "--s3-bucket",
            "stops",
            "--sync-interval",
            "0.2",
            # the store never comes back: waiting the default 15 s for the replica to catch up
            # on its own would only cost the suite time
            "--exposure-settle",
            "2",
            env=env,
        )
    finally:
        while killer.is_alive() and not refusing:
            time.sleep(0.05)
        for server in refusing:
            server.shutdown()
            server.server_close()
        killer.join()
        s3.stop()
    assert out.returncode == 1, out.stderr
    (run_dir,) = list((tmp_path / "r").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    rep = summary["checks"]["replication"]
    assert rep["valid"] is False and summary["verdict"] is False
    assert rep["caught_up"] is False and rep["errors"] > 0, rep
    assert any("had not caught up" in p for p in rep["problems"]), rep
    assert any("replication error(s)" in p for p in rep["problems"]), rep
    assert any(w.startswith("REPLICATION: the replica had not") for w in summary["warnings"])
    # Litestream's last sync at shutdown failed too: recorded, not only printed
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "litestream's last sync failed" in manifest["stop_error"], manifest.get("stop_error")


def test_healthy_replica_passes_with_its_figures(tmp_path: Path) -> None:
    out = bench_run(tmp_path, "--sync-interval", "0.2")
    assert out.returncode == 0, out.stderr
    (run_dir,) = list(tmp_path.iterdir())
    rep = json.loads((run_dir / "summary.json").read_text())["checks"]["replication"]
    assert rep["valid"] is True and rep["errors"] == 0
    assert rep["caught_up"] is True and rep["replica_position"] == rep["position"] > 0
    assert "stop_error" not in json.loads((run_dir / "manifest.json").read_text())


def test_judge_rules() -> None:
    assert judge(None) is None, "nothing replicated: no check, not a pass"
    assert judge({"caught_up": True, "errors": 0})["valid"] is True
    assert judge({"caught_up": True})["valid"] is True, "a backend without an error counter"
    assert judge({"caught_up": True, "errors": 3})["valid"] is False
    behind = judge({"caught_up": False, "position": 9, "replica_position": 2, "errors": 0})
    assert behind["valid"] is False and "replica at 2" in behind["problems"][0]
    assert judge({"caught_up": None, "errors": 0})["valid"] == "unknown"
    assert judge({"caught_up": True, "errors": None})["valid"] == "unknown"
