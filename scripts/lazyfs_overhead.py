"""What lazyfs costs: SQLite commits per second directly on disk vs on a lazyfs mount.

One small INSERT per transaction, journal_mode=WAL, synchronous=FULL (one fsync per commit,
each becoming a FUSE FSYNC request that flushes the file's held-back pages). The same loop runs
in a child process against a directory on the same filesystem and against a lazyfs mount of a
sibling directory, alternately for ``--rounds`` rounds (the machine is shared: medians and
every sample are printed). ``--postgres-seconds N`` adds the same comparison for an embedded
PostgreSQL 18 server (pgbench, one single-row INSERT per transaction, synchronous_commit=on,
1 and 4 clients). Prints one JSON object.

    python scripts/lazyfs_overhead.py [--commits 2000] [--sync FULL|NORMAL|OFF]
                                      [--postgres-seconds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from backends.common.lazyfs import LazyMount, available

_LOOP = """
import sqlite3, sys, time
db, sync, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute(f"PRAGMA synchronous={sync}")
c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
for _ in range(50):  # warm up
    c.execute("INSERT INTO t(v) VALUES ('warm')")
t0 = time.perf_counter()
for i in range(n):
    c.execute("INSERT INTO t(v) VALUES (?)", (f"row {i}",))
print(n / (time.perf_counter() - t0))
c.close()
"""


def rate(db: Path, sync: str, commits: int) -> float:
    r = subprocess.run(
        [sys.executable, "-c", _LOOP, str(db), sync, str(commits)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(r.stdout.strip())


def pg_rates(datadir: Path, logdir: Path, seconds: int) -> dict[str, float]:
    from backends.postgres.pgbench import pgbench_commit_rate
    from backends.postgres.server import PostgresServer

    s = PostgresServer(datadir, logdir)
    try:
        s.init(sync=True)
        s.start()
        return {
            f"tps_{c}_clients": round(pgbench_commit_rate(s, seconds, clients=c)["tps"], 1)
            for c in (1, 4)
        }
    finally:
        s.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL", "OFF"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writeback-cache", action="store_true", help="LazyMount option")
    ap.add_argument("--postgres-seconds", type=int, default=0, help="0: skip postgres")
    ap.add_argument("--dir", type=Path, default=None, help="where to work (default: a temp dir)")
    args = ap.parse_args()
    why = available()
    if why is not None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="lazyfs-overhead-", dir=args.dir))
    base.chmod(0o711)  # postgres runs as its own user and must traverse it
    pg: dict[str, object] = {}
    try:
        (base / "direct").mkdir()
        directs: list[float] = []
        lazies: list[float] = []
        if args.postgres_seconds:
            pg["postgres_direct"] = pg_rates(
                base / "direct" / "pg", base / "logs-direct", args.postgres_seconds
            )
        m = LazyMount(
            base / "backing",
            base / "mnt",
            base / "lazyfs.log",
            writeback_cache=args.writeback_cache,
        )
        m.start()
        try:
            for i in range(args.rounds):  # alternate: both see the same background load
                directs.append(rate(base / "direct" / f"x{i}.db", args.sync, args.commits))
                lazies.append(rate(m.mountpoint / f"x{i}.db", args.sync, args.commits))
            stats = m.stats()
            if args.postgres_seconds:
                pg["postgres_lazyfs"] = pg_rates(
                    m.mountpoint / "pg", base / "logs-lazy", args.postgres_seconds
                )
        finally:
            m.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    direct, lazy = statistics.median(directs), statistics.median(lazies)
    out = {
        "synchronous": args.sync,
        "writeback_cache": args.writeback_cache,
        "commits": args.commits,
        "direct_commits_per_s": round(direct, 1),
        "lazyfs_commits_per_s": round(lazy, 1),
        "lazyfs_relative": round(lazy / direct, 3),
        "direct_samples": [round(x, 1) for x in directs],
        "lazyfs_samples": [round(x, 1) for x in lazies],
        "lazyfs_fsyncs": stats.get("fsyncs"),
        "lazyfs_requests": stats.get("requests"),
        "lazyfs_ops": stats.get("ops"),
        **pg,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
