"""`bench check RUN_DIR`: the run's own checks, again, on the state it kept (--keep-data). It must
pass on an untouched result and fail, naming the write, once a committed row is deleted by
hand; anything that is not a kept result is bad input (exit 2)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, timeout=180
    )


def only_dir(root: Path) -> Path:
    (d,) = [p for p in root.iterdir() if p.is_dir()]
    return d


def delete(db: Path, query: str, *params: object) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute(query, params).rowcount == 1
        conn.commit()
    finally:
        conn.close()


def committed_step(run_dir: Path) -> tuple[str, int]:
    """A step whose commit the harness saw acknowledged."""
    for path in sorted((run_dir / "history").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            e = json.loads(line)
            if e["op"] == "commit" and e["type"] == "ok":
                return e["run"], e["step"]
    raise AssertionError("no step commit in the history")


def test_check_a_kept_fault_run_then_delete_a_committed_step(tmp_path: Path) -> None:
    out = bench(
        "crash", "--backend", "sqlite", "--workload", "smoke", "--time-scale", "0.2",
        "--fault", "pause-store", "--pause", "0.5", "--drain-timeout", "30",
        "--replica", "none", "--keep-data", "--no-progress", "--results-dir", str(tmp_path),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    run_dir = only_dir(tmp_path)
    ok = bench("check", str(run_dir))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    recorded = json.loads((run_dir / "summary.json").read_text())["verdict"]
    assert f"verdict {recorded} (recorded at run time: {recorded})" in ok.stdout, ok.stdout

    run_id, step_id = committed_step(run_dir)
    db = run_dir / "work" / "sqlite" / "durabench.db"
    delete(db, "DELETE FROM steps WHERE run_id = ? AND step_id = ?", run_id, step_id)
    bad = bench("check", str(run_dir), "--json")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    checks = json.loads(bad.stdout)["checks"]
    lost = [x["id"] for x in checks["write_loss"]["lost"]]
    assert lost == [f"{run_id}/{step_id}"], lost
    text = bench("check", str(run_dir))
    assert text.returncode == 1 and f"{run_id}/{step_id}" in text.stdout


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fault-free sqlite run with its data kept; each test checks a copy."""
    root = tmp_path_factory.mktemp("kept")
    out = bench(
        "run", "--backend", "sqlite", "--workload", "smoke", "--time-scale", "0",
        "--replica", "none", "--keep-data", "--no-progress", "--results-dir", str(root),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return only_dir(root)


def copy_of(run_dir: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp / run_dir.name))


def test_check_a_kept_run_then_delete_an_accepted_run(kept_run: Path, tmp_path: Path) -> None:
    run_dir = copy_of(kept_run, tmp_path)
    ok = bench("check", str(run_dir))
    assert ok.returncode == 0 and "verdict True" in ok.stdout, ok.stdout + ok.stderr
    delete(
        run_dir / "work" / "sqlite" / "durabench.db", "DELETE FROM runs WHERE run_id = ?", "r000004"
    )
    gone = bench("check", str(run_dir))
    assert gone.returncode == 1 and "r000004" in gone.stdout, gone.stdout + gone.stderr


def test_check_a_kept_run_then_delete_a_committed_step(kept_run: Path, tmp_path: Path) -> None:
    run_dir = copy_of(kept_run, tmp_path)
    run_id, step_id = committed_step(run_dir)
    db = run_dir / "work" / "sqlite" / "durabench.db"
    delete(db, "DELETE FROM steps WHERE run_id = ? AND step_id = ?", run_id, step_id)
    bad = bench("check", str(run_dir))
    assert bad.returncode == 1 and f"{run_id}/{step_id}" in bad.stdout, bad.stdout + bad.stderr


def test_payload_version_of_the_run_is_the_one_checked(kept_run: Path, tmp_path: Path) -> None:
    """A kept run is checked with the payload function its manifest names: a run recorded
    before payloads were versioned (no ``payload_version``) is checked with version 1, so its
    v1 bytes pass and today's bytes fail; an unknown version is refused."""
    from backends.common.payload import payload

    run_dir = copy_of(kept_run, tmp_path)
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["settings"]["payload_version"] == 2
    seed = manifest["seed"]
    del manifest["settings"]["payload_version"]
    manifest_path.write_text(json.dumps(manifest))
    v2_as_v1 = bench("check", str(run_dir), "--json")
    assert v2_as_v1.returncode == 1, v2_as_v1.stdout + v2_as_v1.stderr
    payloads = json.loads(v2_as_v1.stdout)["checks"]["step_payloads"]
    assert payloads["valid"] is False and payloads["mismatch_count"] == payloads["checked"] > 0

    db = run_dir / "work" / "sqlite" / "durabench.db"
    conn = sqlite3.connect(db)
    try:  # what the old code stored: version-1 bytes of the same length
        rows = conn.execute("SELECT run_id, step_id, length(output) FROM steps").fetchall()
        conn.executemany(
            "UPDATE steps SET output = ? WHERE run_id = ? AND step_id = ?",
            [(payload(seed, r, s, n, version=1), r, s) for r, s, n in rows],
        )
        conn.commit()
    finally:
        conn.close()
    old = bench("check", str(run_dir))
    assert old.returncode == 0 and "verdict True" in old.stdout, old.stdout + old.stderr

    manifest["settings"]["payload_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    unknown = bench("check", str(run_dir))
    assert unknown.returncode == 2 and "payload version 99" in unknown.stderr, unknown.stderr


def test_bad_input_is_exit_2(kept_run: Path, tmp_path: Path) -> None:
    out = bench("check", str(tmp_path))
    assert out.returncode == 2 and "is not a result directory" in out.stderr, out.stderr
    no_data = copy_of(kept_run, tmp_path)
    shutil.rmtree(no_data / "work")
    (no_data / "work").mkdir()
    out = bench("check", str(no_data))
    assert out.returncode == 2 and "--keep-data" in out.stderr, out.stderr
    mem = tmp_path / "mem"
    assert bench(
        "run", "--backend", "memory", "--workload", "smoke", "--time-scale", "0",
        "--keep-data", "--no-progress", "--results-dir", str(mem),
    ).returncode == 0  # fmt: skip
    mem_dir = only_dir(mem)
    (mem_dir / "work" / "marker").write_text("the memory engine keeps nothing here")
    out = bench("check", str(mem_dir))
    assert out.returncode == 2 and "bench check` is not supported" in out.stderr, out.stderr


@pytest.fixture
def pg_tmp() -> Iterator[Path]:
    # Not tmp_path: the server runs as an unprivileged user who must traverse the path, and
    # concurrent pytest sessions reset /tmp/pytest-of-<user> to 0700
    d = Path(tempfile.mkdtemp(prefix="durabench-recheck-"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_postgres_kept_cluster_is_served_again_for_the_check(pg_tmp: Path) -> None:
    from backends.postgres.server import PostgresServer

    tmp_path = pg_tmp

    out = bench(
        "run", "--backend", "postgres", "--workload", "smoke", "--time-scale", "0",
        "--keep-data", "--no-progress", "--results-dir", str(tmp_path / "r"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    run_dir = only_dir(tmp_path / "r")
    ok = bench("check", str(run_dir))
    assert ok.returncode == 0 and "verdict True" in ok.stdout, ok.stdout + ok.stderr
    assert "integrity=True" in ok.stdout, "amcheck runs on the kept cluster too"
    # touch the kept cluster by hand: one accepted run (and its steps) deleted; work/ is 0700
    # (payloads are not world-readable), so let the server's user through for this edit
    (run_dir / "work").chmod(0o711)
    server = PostgresServer(run_dir / "work" / "postgres", tmp_path / "logs")
    server.start()
    try:
        with server.connect(dbname="durabench") as conn:
            conn.execute("DELETE FROM durabench.steps WHERE run_id = 'r000004'")
            assert conn.execute("DELETE FROM durabench.runs WHERE run_id = 'r000004'").rowcount
    finally:
        server.stop()
    gone = bench("check", str(run_dir))
    assert gone.returncode == 1 and "r000004" in gone.stdout, gone.stdout + gone.stderr


def test_temporal_kept_histories_are_served_again_for_the_check(tmp_path: Path) -> None:
    out = bench(
        "run", "--backend", "temporal", "--workload", "smoke", "--time-scale", "0",
        "--keep-data", "--no-progress", "--results-dir", str(tmp_path),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    run_dir = only_dir(tmp_path)
    ok = bench("check", str(run_dir))
    assert ok.returncode == 0 and "verdict True" in ok.stdout, ok.stdout + ok.stderr
    # touch the kept dev-server database by hand: one accepted run's execution deleted
    db = run_dir / "work" / "temporal" / "temporal.db"
    delete(db, "DELETE FROM current_executions WHERE workflow_id = ?", "r000004")
    delete(db, "DELETE FROM executions WHERE workflow_id = ?", "r000004")
    gone = bench("check", str(run_dir))
    assert gone.returncode == 1 and "r000004" in gone.stdout, gone.stdout + gone.stderr
