"""The raw commit rate of a PostgreSQL server: the ceiling any workflow engine storing one row
per checkpoint on it can reach, measured with the pgbench shipped with the server."""

from __future__ import annotations

import re
import subprocess
from typing import TYPE_CHECKING, Any

import psycopg

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
    script = server.logdir / "pgbench-commit.sql"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("INSERT INTO durabench_raw(v) VALUES ('x');\n")
    secs = max(1, round(seconds))
    env = clean_env()
    if synchronous_commit is not None:
        env["PGOPTIONS"] = f"-c synchronous_commit={synchronous_commit}"
    argv = [server.binary("pgbench"), "-h", "127.0.0.1", "-p", server.port, "-U", server.user]
    argv += ["-n", "-f", script, "-T", secs, "-c", clients, "-j", clients, "postgres"]
    r = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, env=env, timeout=secs + 60
    )
    tps, lat = _TPS.search(r.stdout), _LAT.search(r.stdout)
    if r.returncode != 0 or tps is None or lat is None:
        raise BackendError(f"postgres: pgbench failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
    with psycopg.connect(server.dsn(connect_timeout=5, options=env.get("PGOPTIONS"))) as conn:
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    txns = _TXNS.search(r.stdout)
    return {
        "tps": float(tps.group(1)),
        "latency_ms": float(lat.group(1)),
        "clients": clients,
        "synchronous_commit": sync[0] if sync else None,
        "seconds": secs,
        "transactions": int(txns.group(1)) if txns else None,
    }
