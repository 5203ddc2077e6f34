"""The raw commit rate of a PostgreSQL server: the ceiling any workflow engine storing one row
per checkpoint on it can reach, measured with the pgbench shipped with the server."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from backends.errors import BackendError
from backends.postgres.sysuser import clean_env

if TYPE_CHECKING:
    from backends.postgres.server import PostgresServer

_TPS = re.compile(r"^tps = ([\d.]+)", re.M)
_LAT = re.compile(r"^latency average = ([\d.]+) ms", re.M)
_TXNS = re.compile(r"number of transactions actually processed: (\d+)")


def pgbench_commit_rate(
    server: PostgresServer,
    seconds: float,
    clients: int = 1,
    synchronous_commit: str | None = None,
) -> dict[str, Any]:
    """Commit rate of the bare store: one single-row INSERT per transaction, ``clients``
    connections over TCP, with the server's pgbench. This is the ceiling any workflow engine on
    this server can reach per checkpoint. ``seconds`` is rounded to whole seconds (pgbench -T);
    ``synchronous_commit`` overrides the server setting for these sessions (PGOPTIONS)."""
    server.sql("CREATE TABLE IF NOT EXISTS durabench_raw (v text NOT NULL)")
    server.sql("TRUNCATE durabench_raw")
    env = clean_env()
    if synchronous_commit is not None:
        env["PGOPTIONS"] = f"-c synchronous_commit={synchronous_commit}"
    argv = [server.binary("pgbench"), "-h", "127.0.0.1", "-p", server.port, "-U", server.user]
    out = _run(argv, "postgres", env, server.logdir, seconds, clients)
    with psycopg.connect(server.dsn(connect_timeout=5, options=env.get("PGOPTIONS"))) as conn:
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    return {**out, "synchronous_commit": sync[0] if sync else None}


def pgbench_commit_rate_dsn(
    pgbench: Path,
    dsn: str,
    schema: str,
    logdir: Path,
    seconds: float,
    clients: int = 1,
    synchronous_commit: str = "on",
) -> dict[str, Any]:
    """The same measurement against any server (e.g. ``--postgres-dsn``): the table
    ``durabench_raw`` lives in ``schema`` (which must exist), so no other table is touched."""
    opts = f"-c search_path={schema} -c synchronous_commit={synchronous_commit}"
    with psycopg.connect(dsn, autocommit=True, options=opts, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS durabench_raw (v text NOT NULL)")
        conn.execute("TRUNCATE durabench_raw")
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    env = clean_env()
    env["PGOPTIONS"] = opts
    info = conninfo_to_dict(dsn)
    # the password goes by environment, not on the command line where ps would show it
    password = info.pop("password", None) or os.environ.get("PGPASSWORD")
    if password:
        env["PGPASSWORD"] = str(password)
    out = _run([pgbench], make_conninfo(**info), env, logdir, seconds, clients)
    return {**out, "synchronous_commit": sync[0] if sync else None}


def _run(
    argv: list[Any], db: str, env: dict[str, str], logdir: Path, seconds: float, clients: int
) -> dict[str, Any]:
    script = logdir / "pgbench-commit.sql"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("INSERT INTO durabench_raw(v) VALUES ('x');\n")
    secs = max(1, round(seconds))
    argv = [*argv, "-n", "-f", script, "-T", secs, "-c", clients, "-j", clients, db]
    r = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, env=env, timeout=secs + 60
    )
    tps, lat = _TPS.search(r.stdout), _LAT.search(r.stdout)
    if r.returncode != 0 or tps is None or lat is None:
        raise BackendError(f"postgres: pgbench failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
    txns = _TXNS.search(r.stdout)
    return {
        "tps": float(tps.group(1)),
        "latency_ms": float(lat.group(1)),
        "clients": clients,
        "seconds": secs,
        "transactions": int(txns.group(1)) if txns else None,
    }
