"""Smaller truths (issue 9, item 12): a node loss that left data behind is an error, a result
written with an unknown schema version is refused, loopback scrapes never go through a proxy."""

from __future__ import annotations

import http.server
import json
import shutil
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from backends.errors import ConfigError
from bench.report.load import load_run
from bench.results import SCHEMA_VERSION


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def test_node_loss_that_left_data_behind_is_an_error(tmp_path: Path) -> None:
    from backends.common.nodeloss import verify_gone
    from backends.errors import BackendError

    gone, left = tmp_path / "gone", tmp_path / "left"
    left.mkdir()
    assert verify_gone("x", [gone]) == [str(gone)]
    try:
        verify_gone("x", [gone, left])
    except BackendError as e:
        assert str(left) in str(e) and str(gone) not in str(e)
    else:
        raise AssertionError("a directory that survived a node loss must be an error")


def test_loopback_scrapes_ignore_proxy_settings(tmp_path: Path, monkeypatch) -> None:
    from backends.common.http import http_get

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Hello)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    try:
        for var in ("http_proxy", "HTTP_PROXY", "all_proxy"):
            monkeypatch.setenv(var, "http://127.0.0.1:1")  # a proxy that does not exist
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        assert http_get(f"http://127.0.0.1:{server.server_address[1]}/metrics") == b"hello"
    finally:
        server.shutdown()
        server.server_close()
        t.join()


def test_report_refuses_an_unknown_schema_version(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--backend", "memory", "--workload", "smoke"]
        + ["--time-scale", "0", "--no-progress", "--results-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    (run,) = (tmp_path / "r").iterdir()
    assert load_run(run).manifest["schema_version"] == SCHEMA_VERSION
    newer = Path(shutil.copytree(run, tmp_path / "newer"))
    summary = json.loads((newer / "summary.json").read_text())
    (newer / "summary.json").write_text(json.dumps({**summary, "schema_version": 99}))
    with pytest.raises(ConfigError, match="schema_version 99"):
        load_run(newer)
    rep = subprocess.run(
        [sys.executable, "-m", "bench.cli", "report", str(newer), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rep.returncode == 2 and "schema_version 99" in rep.stderr, rep.stderr
    assert not (tmp_path / "o" / "report.md").exists()
