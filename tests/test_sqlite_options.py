"""The SQLite backend's replica choices, through the CLI: an external S3 endpoint (here a
SeaweedFS the test starts itself, standing for MinIO/S3), a file replica, and no replica."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backends.sqlite.objectstore import SeaweedFS


def run_cli(tmp: Path, *args: str, env: dict[str, str] | None = None) -> tuple[dict, dict]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            "--backend",
            "sqlite",
            "--workload",
            "smoke",
            "--time-scale",
            "0.2",
            "--results-dir",
            str(tmp),
            "--no-progress",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    (run_dir,) = [d for d in tmp.iterdir() if d.is_dir()]
    return (
        json.loads((run_dir / "manifest.json").read_text()),
        json.loads((run_dir / "summary.json").read_text()),
    )


def test_external_s3_endpoint(tmp_path: Path) -> None:
    s3 = SeaweedFS(tmp_path / "s3", tmp_path / "s3logs", bucket="external-bucket")
    try:
        s3.start()
        target = s3.target()
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": target.access_key,
            "AWS_SECRET_ACCESS_KEY": target.secret_key,
        }
        manifest, summary = run_cli(
            tmp_path / "r",
            "--s3-endpoint",
            target.endpoint,
            "--s3-bucket",
            "external-bucket",
            env=env,
        )
        counts = s3.request_counts()
    finally:
        s3.stop()
    assert manifest["backend_config"]["object_store"] == "external"
    assert "seaweedfs" not in summary["resources"], "no store of its own with --s3-endpoint"
    assert summary["verdict"] is True
    assert summary["backend_metrics"]["object_store_usage"]["objects"] > 0
    assert counts["requests"].get("PUT", 0) > 0, "Litestream wrote to the external store"


@pytest.mark.parametrize(
    "replica,synchronous,via", [("file", "FULL", "worker"), ("none", "NORMAL", "client")]
)
def test_file_and_no_replica(tmp_path: Path, replica: str, synchronous: str, via: str) -> None:
    manifest, summary = run_cli(
        tmp_path, "--replica", replica, "--synchronous", synchronous, "--submit-via", via
    )
    assert manifest["backend_config"]["replica"] == replica
    assert manifest["backend_config"]["synchronous"] == synchronous
    assert manifest["backend_config"]["submit_via"] == via
    bm = summary["backend_metrics"]  # who committed the submits: the workers, or the harness
    if via == "client":
        assert bm["submits_committed_by_harness"] == bm["submit_transactions"] > 0, bm
    else:
        assert bm["submits_committed_by_harness"] == 0 < bm["submit_transactions"], bm
    assert summary["verdict"] is True
    assert ("litestream" in summary["resources"]) == (replica != "none")
    assert "seaweedfs" not in summary["resources"]
    if replica == "none":
        assert "a lost disk loses everything" in manifest["topology"]["replication"]
