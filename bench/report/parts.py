"""The "moving parts" table: what each backend needs in order to operate.

Two kinds of entries, labelled as such in the report:
  derived     from the result files: processes = roles that had resources sampled
              (summary.json resources), binaries / libraries and versions (manifest.json
              versions);
  documented  declared by each backend (``BackendInfo.parts``), written from its own code
              and docs (ports, config and data files, what production would add). They are
              not measured; a backend that declares none says so instead of guessing.
"""

from __future__ import annotations

import re

from bench.report.doc import Table
from bench.report.load import Run
from bench.report.usage import backend_info


def processes(run: Run) -> str:
    """Roles with sampled resources, workers collapsed: 'objstore, replicator, worker x 2'."""
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
        info = backend_info(run.manifest)  # for the options it ran with
        doc = info.parts if info else None
        rows.append(
            [
                backend,
                processes(run),
                versions(run),
                doc.ports if doc else "not documented for this backend",
                doc.files if doc else "not documented for this backend",
                doc.source if doc else "-",
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
            "declared by each backend (BackendInfo.parts), written from its code, not measured."
        ],
    )
