"""The Temporal backend on a real dev server (no mocks): end to end through the CLI, bad input,
the worker's clean exit, and persistence of the dev server's SQLite file across a restart.
The conformance suite (tests/test_conformance.py) covers acks, replay and payloads."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.base import Plan, RunSpec, StepSpec, registered
from backends.common.net import port_open
from backends.history import read_history
from backends.temporal.server import TemporalDevServer
from tests.helpers import context, events


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def run_smoke(results: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return bench(
        "run",
        "--backend",
        "temporal",
        "--workload",
        "smoke",
        "--time-scale",
        "0.2",
        "--results-dir",
        str(results),
        "--no-progress",
        "--json",
        *extra,
    )


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalDevServer]:
    """A dev server started by the test, standing in for an existing cluster."""
    root = tmp_path_factory.mktemp("external-temporal")
    server = TemporalDevServer(root / "data", root / "logs")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- end to end ---------------------------------------------------------------------------------


def test_bench_run_end_to_end(tmp_path: Path) -> None:
    r = run_smoke(tmp_path)
    assert r.returncode == 0, r.stderr
    summary: dict[str, Any] = json.loads(r.stdout)
    assert summary["verdict"] is True, summary["checks"]
    assert summary["runs"]["completed"] == summary["runs"]["scheduled"] == 30
    (run_dir,) = tmp_path.iterdir()
    evs = read_history(run_dir / "history")
    completes = Counter(e["run"] for e in evs if e["op"] == "complete" and e["type"] == "ok")
    assert len(completes) == 30 and set(completes.values()) == {1}
    assert {e["proc"] for e in evs if e["op"] == "complete"} == {"temporal-client"}
    committed = [e for e in evs if e["op"] == "commit" and e["type"] == "ok"]
    assert len(committed) == summary["steps"]["committed"] > 30
    assert {"temporal", "worker-0", "worker-1"} <= set(summary["resources"])
    assert summary["backend_metrics"]["server"]["service_requests"] > 0
    assert summary["backend_metrics"]["histories"]["runs"] == 30
    manifest = json.loads((run_dir / "manifest.json").read_text())
    topo = manifest["topology"]["store"]
    assert topo.startswith("Temporal dev server (temporal CLI ") and "Server 1." in topo
    assert "with SQLite persistence, single process on the same host" in topo
    assert manifest["deploy_ready_s"] > 0
    cfg = manifest["backend_config"]
    assert cfg["worker_limits"]["max_concurrent_activities"] == 200
    assert cfg["retry_policy"]["maximum_attempts"] == 4
    assert not (run_dir / "work").exists()  # data removed ...
    assert not port_open(cfg["dev_server_ports"]["frontend"])  # ... and the server stopped


def test_external_cluster_is_used_as_is(tmp_path: Path, external: TemporalDevServer) -> None:
    r = run_smoke(tmp_path, "--temporal-address", external.address)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["verdict"] is True and summary["runs"]["completed"] == 30
    assert "temporal" not in summary["resources"]  # nothing started besides the workers
    (run_dir,) = tmp_path.iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["topology"]["store"].startswith(
        f"external Temporal cluster at {external.address}"
    )
    prefix = manifest["backend_config"]["workflow_id_prefix"]
    assert prefix.startswith("durabench-")  # unique ids on a shared cluster
    assert external.process.alive


# -- bad input ----------------------------------------------------------------------------------


def test_unreachable_address_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        r = run_smoke(tmp_path, "--temporal-address", f"127.0.0.1:{port}")
    assert r.returncode == 2
    assert "error: temporal: cannot connect" in r.stderr and "--temporal-address" in r.stderr


def test_missing_namespace_on_external_cluster(tmp_path: Path, external: TemporalDevServer) -> None:
    r = run_smoke(
        tmp_path, "--temporal-address", external.address, "--temporal-namespace", "no-such-ns"
    )
    assert r.returncode == 2
    assert "namespace 'no-such-ns' does not exist" in r.stderr
    assert "--temporal-namespace" in r.stderr


def test_taken_port_names_its_option(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_smoke(tmp_path, "--temporal-port", str(port))
    assert r.returncode == 2
    assert f"port {port}" in r.stderr and "--temporal-port" in r.stderr


def test_missing_binary_names_its_option(tmp_path: Path) -> None:
    r = run_smoke(tmp_path, "--temporal-bin", str(tmp_path / "no-such-temporal"))
    assert r.returncode == 2
    assert "temporal binary not found" in r.stderr and "--temporal-bin" in r.stderr


# -- processes and persistence ------------------------------------------------------------------


def _deployment(tmp: Path, **settings: Any) -> Any:
    ctx = context(tmp, **settings)
    opts = {o.dest: o.default for o in registered()["temporal"].options}
    return registered()["temporal"].factory(opts, ctx)


def _run(run_id: str, latency_s: float) -> RunSpec:
    steps = (StepSpec(0, "llm", "plan", latency_s, 100), StepSpec(1, "tool", "tool:x", 0.0, 10))
    return RunSpec(run_id, 0, "t0", 0.0, False, Plan(tuple((s,) for s in steps)))


async def _wait(pred: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def test_worker_exits_cleanly_on_sigterm_with_work_in_flight(tmp_path: Path) -> None:
    dep = _deployment(tmp_path, workers=1)
    dep.start()
    try:

        async def go() -> None:
            client = dep.client()
            await client.submit(_run("slow", 30.0))  # step 0 sleeps 30 s
            await _wait(lambda: events(dep.ctx, "exec", "invoke"), 20, "the step to start")
            await client.close()

        asyncio.run(go())
        proc = dep.processes()["worker-0"]
        t0 = time.monotonic()
        code = proc.stop(timeout_s=10)
        assert code == 0, proc.log_tail()
        assert time.monotonic() - t0 < 5, "shutdown waited for the activity"
        log = proc.log_path.read_text()
        assert "abort" not in log.lower() and "panic" not in log.lower(), log
        assert events(dep.ctx, "worker-stop")
    finally:
        dep.stop()


def test_completed_run_survives_a_server_crash(tmp_path: Path) -> None:
    dep = _deployment(tmp_path, workers=1, time_scale=0.0)
    dep.start()
    try:

        async def go() -> None:
            client = dep.client()
            await client.submit(_run("kept", 0.0))
            done = lambda: events(dep.ctx, "complete", "ok")  # noqa: E731
            await _wait(done, 30, "the run to complete")
            await client.close()

        asyncio.run(go())
        db = dep.server.db_path
        assert db.exists() and db.stat().st_size > 0
        dep.kill_store()  # SIGKILL: nothing flushed on the way out
        assert not dep.server.process.alive
        dep.start_store()  # same file, same ports
        state = dep.client().state()
        (run,) = [r for r in state.runs() if r.run_id == "kept"]
        assert run.status == "completed" and run.steps_committed == 2
        assert set(state.step_results("kept")) == {0, 1}
    finally:
        dep.stop()
