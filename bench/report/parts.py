"""The "moving parts" table: what each backend needs in order to operate.

Two kinds of entries, labelled as such in the report:
  derived     from the result files: processes = roles that had resources sampled
              (summary.json resources), binaries / libraries and versions (manifest.json
              versions);
  documented  constants below, written from the backends' own code and docs (ports, config
              and data files, what production would add). They are not measured; a backend
              without an entry here says so instead of guessing.
"""

from __future__ import annotations

import re

from bench.report.doc import Table
from bench.report.load import Run

DOCUMENTED: dict[str, dict[str, str]] = {
    "sqlite": {
        "ports": "Litestream metrics (1 HTTP, loopback); local SeaweedFS: S3, master, volume, "
        "filer, admin (HTTP + gRPC each) and metrics, ~11 ports (none with a real S3)",
        "files": "database file + -wal + -shm; litestream.yml; SeaweedFS data dir "
        "(all flags on the command line)",
        "source": "backends/sqlite/ (litestream.py, objectstore.py)",
    },
    "postgres": {
        "ports": "1 (PostgreSQL, 5432 by default; a free loopback port here)",
        "files": "data directory from initdb: postgresql.conf, pg_hba.conf, WAL; "
        "a standby adds its own data directory",
        "source": "backends/postgres/ (server.py, standby.py)",
    },
    "temporal": {
        "ports": "frontend gRPC (7233 by default), HTTP API and metrics; internal services "
        "bind more free loopback ports; web UI off",
        "files": "dev server: one SQLite file (--db-filename); production adds a config "
        "YAML per service and a Cassandra / PostgreSQL / MySQL cluster (+ optional "
        "Elasticsearch)",
        "source": "backends/temporal/server.py; docs.temporal.io self-hosted guide",
    },
    "dbos": {
        "ports": "none of its own (DBOS Transact 3.x opens no listening port); the system "
        "database's: as sqlite (--dbos-database sqlite) or as postgres",
        "files": "the system database's (the sqlite backend's file + Litestream + SeaweedFS, "
        "or the postgres backend's data directory); DBOS is configured in code, no config file",
        "source": "backends/dbos/; docs.dbos.dev",
    },
    "memory": {
        "ports": "none",
        "files": "none (state in the harness's memory; not durable)",
        "source": "backends/memory.py",
    },
}


def processes(run: Run) -> str:
    """Roles with sampled resources, workers collapsed: 'litestream, seaweedfs, worker x 2'."""
    roles = [r for r in (run.summary.get("resources") or {}) if r != "harness"]
    workers = [r for r in roles if re.fullmatch(r"worker-\d+", r)]
    others = sorted(r for r in roles if r not in workers)
    out = others + ([f"worker x {len(workers)}"] if workers else [])
    return ", ".join(out) if out else "none besides the harness (engine runs in-process)"


def versions(run: Run) -> str:
    v = run.manifest.get("versions") or {}
    return ", ".join(f"{k} {val}" for k, val in v.items()) or "-"


def table(runs_by_backend: dict[str, Run], rel) -> Table:
    rows, sources = [], []
    for backend, run in runs_by_backend.items():
        doc = DOCUMENTED.get(backend)
        rows.append(
            [
                backend,
                processes(run),
                versions(run),
                doc["ports"] if doc else "not documented for this backend",
                doc["files"] if doc else "not documented for this backend",
                doc["source"] if doc else "-",
            ]
        )
        sources.append([rel(run.file("summary.json")), rel(run.file("manifest.json"))])
    return Table(
        [
            "backend",
            "processes (derived: resources)",
            "binaries / libraries (derived: versions)",
            "network ports (documented)",
            "config & data files (documented)",
            "documented from",
        ],
        rows,
        sources,
        notes=[
            "Derived columns come from the cited result files; documented columns are "
            "constants in bench/report/parts.py, written from each backend's code, not measured."
        ],
    )
