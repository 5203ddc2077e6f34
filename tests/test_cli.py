"""The `bench` command as a user runs it: real processes, real files, real exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.results import SCHEMA_VERSION


def bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def only_run_dir(root: Path) -> Path:
    dirs = [d for d in root.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_lists_registered_backends_and_workloads() -> None:
    out = bench("backends")
    assert out.returncode == 0
    names = {line.split()[0] for line in out.stdout.splitlines()}
    assert {"memory", "sqlite"} <= names
    out = bench("workloads")
    assert out.returncode == 0 and "agent-burst" in out.stdout and "smoke" in out.stdout


def test_unknown_backend_is_a_clear_error(tmp_path: Path) -> None:
    out = bench("run", "--backend", "nope", "--results-dir", str(tmp_path))
    assert out.returncode == 2
    assert "error: unknown backend 'nope'" in out.stderr and "sqlite" in out.stderr
    assert not list(tmp_path.iterdir()), "nothing is written for a run that never started"


def test_malformed_workload_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[arrivals\nprofile = 'burst'\n")
    out = bench(
        "run", "--backend", "memory", "--workload", str(bad), "--results-dir", str(tmp_path / "r")
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error:") and "bad.toml" in out.stderr


def test_invalid_workload_field_names_field_and_allowed_values(tmp_path: Path) -> None:
    bad = tmp_path / "w.toml"
    bad.write_text("[arrivals]\nprofile = 'lumpy'\n")
    out = bench(
        "run", "--backend", "memory", "--workload", str(bad), "--results-dir", str(tmp_path / "r")
    )
    assert out.returncode == 2
    assert "arrivals.profile" in out.stderr and "poisson" in out.stderr


def test_baseline_clients_out_of_range_is_refused_before_anything_starts() -> None:
    out = bench("baseline", "--backend", "postgres", "--clients", "0")
    assert out.returncode == 2 and "--clients must be in [1, 64]" in out.stderr


def test_option_of_another_backend_is_refused(tmp_path: Path) -> None:
    out = bench(
        "run", "--backend", "memory", "--synchronous", "NORMAL", "--results-dir", str(tmp_path)
    )
    assert out.returncode == 2 and "--synchronous" in out.stderr and "sqlite" in out.stderr


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = bench(
            "run",
            "--backend",
            "sqlite",
            "--workload",
            "smoke",
            "--s3-port",
            str(port),
            "--results-dir",
            str(tmp_path),
        )
    assert out.returncode == 2
    assert f"port {port}" in out.stderr and "--s3-port" in out.stderr
    manifest = json.loads((only_run_dir(tmp_path) / "manifest.json").read_text())
    assert manifest["partial"] is True and "port" in manifest["partial_reason"]


def test_missing_binary(tmp_path: Path) -> None:
    out = bench(
        "run",
        "--backend",
        "sqlite",
        "--workload",
        "smoke",
        "--litestream-bin",
        str(tmp_path / "no-such-litestream"),
        "--results-dir",
        str(tmp_path / "r"),
    )
    assert out.returncode == 2
    assert "litestream binary not found" in out.stderr and "--litestream-bin" in out.stderr


def test_same_seed_same_schedule() -> None:
    a = json.loads(bench("schedule", "--workload", "agent-burst", "--seed", "3").stdout)
    b = json.loads(bench("schedule", "--workload", "agent-burst", "--seed", "3").stdout)
    c = json.loads(bench("schedule", "--workload", "agent-burst", "--seed", "4").stdout)
    assert a == b
    assert a["hash"] != c["hash"]


def test_sqlite_run_writes_complete_results(tmp_path: Path) -> None:
    out = bench(
        "run",
        "--backend",
        "sqlite",
        "--workload",
        "smoke",
        "--seed",
        "5",
        "--results-dir",
        str(tmp_path),
        "--no-progress",
    )
    assert out.returncode == 0, out.stderr
    run_dir = only_run_dir(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert manifest["schema_version"] == summary["schema_version"] == SCHEMA_VERSION
    assert manifest["partial"] is False and manifest["seed"] == 5
    sched = json.loads(bench("schedule", "--workload", "smoke", "--seed", "5").stdout)
    assert manifest["schedule"]["hash"] == sched["hash"]
    assert {"litestream", "seaweedfs", "sqlite"} <= set(manifest["versions"])
    assert manifest["backend_config"]["synchronous"] == "FULL"
    assert manifest["machine"]["cpu_count"] and manifest["packages"]["litestream-bin"]
    assert summary["verdict"] is True
    # a lag warning can happen on a loaded 2-core CI machine; nothing else may
    assert not [w for w in summary["warnings"] if "fell behind" not in w], summary["warnings"]
    runs = pd.read_csv(run_dir / "runs.csv")
    assert len(runs) == sched["runs"]
    assert (runs["status"] == "completed").all()
    assert (runs["latency_s"] > 0).all()
    steps = pd.read_csv(run_dir / "steps.csv")
    assert (steps["outcome"] == "ok").all() and len(steps) == sched["steps"]
    assert summary["steps"]["committed"] == sched["steps"]
    for f in (
        "timeseries.csv",
        "resources.csv",
        "history/harness.jsonl",
        "history/worker-0.jsonl",
        "logs/litestream.log",
        "logs/seaweedfs.log",
    ):
        assert (run_dir / f).exists(), f
    assert summary["latency"]["run"]["p99_s"] >= summary["latency"]["run"]["p50_s"] > 0
    assert summary["backend_metrics"]["litestream"]["sync_count"] > 0
    # the harness's submits in transactions of one or more runs each, all of them the workers'
    bm = summary["backend_metrics"]
    assert 1 <= bm["submit_transactions"] <= summary["runs"]["accepted"]
    assert bm["submits_committed_by_harness"] == 0, bm
    roles = set(summary["resources"])
    assert {"worker-0", "worker-1", "litestream", "seaweedfs", "harness"} <= roles
    harness = summary["resources"]["harness"]
    assert 0 < harness["rss_bytes_end_of_drive"] <= harness["peak_rss_hwm_bytes_drive"]
    assert harness["peak_rss_hwm_bytes_drive"] <= harness["peak_rss_hwm_bytes"]
    # the dispatch lag is the history's: each submit's invoke time minus its scheduled time
    invokes = [
        e
        for e in map(json.loads, (run_dir / "history/harness.jsonl").read_text().splitlines())
        if e["type"] == "invoke" and e["op"] == "submit"
    ]
    late = max(max(e["t"] - e["value"]["scheduled_t"], 0.0) for e in invokes)
    assert summary["dispatch_lag"]["count"] == len(invokes) == sched["runs"]
    assert abs(summary["dispatch_lag"]["max_s"] - late) <= 0.01 * late + 2e-6
    assert "results:" in out.stderr
    assert "runs/s" in out.stdout  # the summary table


def test_ctrl_c_stops_everything_and_keeps_partial_results(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            "--backend",
            "sqlite",
            "--results-dir",
            str(tmp_path),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until runs are being executed
            dirs = list(tmp_path.glob("*/history/worker-0.jsonl"))
            if dirs and dirs[0].stat().st_size > 2000:
                break
            assert time.monotonic() < deadline and proc.poll() is None, "run never started"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    run_dir = only_run_dir(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["partial"] is True and "interrupted" in manifest["partial_reason"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["partial"] is True and summary["runs"]["accepted"] > 0
    assert (run_dir / "runs.csv").exists()


@pytest.mark.parametrize(
    "bad",
    [
        ["--workers", "0"],
        ["--time-scale", "-1"],
        ["--rate-scale", "0"],
        ["--synchronous", "SOMETIMES"],
    ],
)
def test_bad_option_values(bad: list[str], tmp_path: Path) -> None:
    out = bench(
        "run", "--backend", "sqlite", "--workload", "smoke", *bad, "--results-dir", str(tmp_path)
    )
    assert out.returncode == 2 and "error" in out.stderr


def test_compare_runs_the_same_schedule_and_writes_a_report(tmp_path: Path) -> None:
    """`bench compare`, short: two backends, the smoke workload, one report."""
    out = bench(
        "compare",
        "--backends",
        "memory,sqlite",
        "--workload",
        "smoke",
        "--results-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "report"),
        "--no-progress",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (group,) = tmp_path.glob("*-compare.json")
    meta = json.loads(group.read_text())
    runs = meta["rows"]["runs"]
    assert {r["backend"] for r in runs} == {"memory", "sqlite"}
    hashes = {
        json.loads((Path(r["run_dir"]) / "manifest.json").read_text())["schedule"]["hash"]
        for r in runs
    }
    assert hashes == {meta["schedule_hash"]}, "every backend ran the identical schedule"
    report = (tmp_path / "report" / "report.md").read_text()
    assert "memory" in report and "sqlite" in report
    assert (tmp_path / "report" / "report.html").exists()
    assert list((tmp_path / "report").glob("*.png"))


def test_every_sub_command_has_its_own_handler() -> None:
    import argparse

    from bench.cli import parser

    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name, p in sub.choices.items() if not callable(p.get_default("func"))]
    assert missing == []
