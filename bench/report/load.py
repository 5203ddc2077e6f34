"""Load result directories and crash/sweep group files for reporting.

Why a loader of its own: a report mixes inputs (run dirs given directly, trial dirs listed in
``<stamp>-crash.json`` / ``-sweep.json``), and every number it prints must point back to a file.
So a :class:`Run` keeps its directory, knows which group (and which fault or swept value) it
belongs to, and says what is wrong with it (partial, failed verdict, warnings) in words a
banner can show. Mixing workloads is refused here, before any figure is computed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from backends.errors import ConfigError
from bench.results import SCHEMA_VERSION

CSV_FILES = ("runs.csv", "steps.csv", "timeseries.csv", "resources.csv")


@dataclass
class Group:
    """A crash or sweep group file: kind, metadata and its rows (key -> trial run dirs)."""

    path: Path
    kind: str
    meta: dict[str, Any]
    members: dict[str, list[Path]]


@dataclass
class Run:
    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    group: Group | None = None
    group_key: str | None = None  # fault name (crash) or "name=value" (sweep)
    _csv: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    # -- identity --------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        """The directory name (equal to manifest.run_id for directories the harness wrote; a
        copied directory keeps a distinct identity)."""
        return self.path.name

    @property
    def backend(self) -> str:
        return str(self.manifest.get("backend", "?"))

    @property
    def workload(self) -> str:
        w = self.manifest.get("workload")
        return str(w.get("name") if isinstance(w, dict) else w)

    @property
    def schedule(self) -> dict[str, Any]:
        return self.manifest.get("schedule") or {}

    @property
    def fault(self) -> dict[str, Any] | None:
        return self.manifest.get("fault") or None

    @property
    def fault_name(self) -> str | None:
        return self.fault.get("fault") if self.fault else None

    @property
    def schedule_start_t(self) -> float:
        return float(self.summary.get("schedule_start_t") or 0.0)

    # -- condition -------------------------------------------------------------------------
    @property
    def partial(self) -> bool:
        return bool(self.manifest.get("partial")) or not self.summary

    @property
    def verdict(self) -> Any:
        return self.summary.get("verdict", "unknown")

    @property
    def warnings(self) -> list[str]:
        return list(self.summary.get("warnings") or [])

    @property
    def untrusted(self) -> list[str]:
        """Why the harness itself distrusts this run's speed figures (the load generator fell
        behind its schedule). Results written before ``summary.untrusted`` existed carry the
        same reason only as a warning, recognised by its wording."""
        if "untrusted" in self.summary:
            return list(self.summary.get("untrusted") or [])
        return [w for w in self.warnings if "load generator fell behind" in w]

    @property
    def apart_reason(self) -> str | None:
        """Why a complete fault-free run is shown on its own row instead of in the medians."""
        if self.partial or self.fault is not None:
            return None
        if self.verdict is False:
            return "verdict FALSE"
        if self.verdict is not True:
            return f"verdict {self.verdict}"
        if self.untrusted:
            return "untrusted: load generator fell behind"
        return None

    @cached_property
    def problems(self) -> list[str]:
        """Everything a reader must know before trusting this run's figures."""
        out = []
        if not self.summary:
            out.append("no summary.json: the harness stopped before writing figures")
        if self.manifest.get("partial"):
            out.append(f"PARTIAL result: {self.manifest.get('partial_reason') or 'no reason'}")
        if self.verdict is False:
            out.append("correctness verdict FALSE (a checker failed; see summary.json checks)")
        elif self.verdict is not True and self.summary:
            out.append(f"correctness verdict {self.verdict!r} (not established)")
        out += [f"warning: {w}" for w in self.warnings]
        return out

    @property
    def steady(self) -> bool:
        """Usable for throughput / latency / cost medians: complete, valid, no fault, the
        harness kept to its schedule, and not slowed by the lazy filesystem."""
        return (
            not self.partial
            and self.verdict is True
            and self.fault is None
            and not self.untrusted
            and not self.manifest.get("lazyfs")
        )

    @property
    def apart(self) -> bool:
        """Complete and fault-free but not trustworthy (failed or unknown verdict, or the load
        generator fell behind): shown on its own flagged row, never folded into a median."""
        return self.apart_reason is not None

    @property
    def usable_trial(self) -> bool:
        """Usable for fault tables: a complete fault trial (verdict False IS the finding)."""
        return not self.partial and self.fault is not None and bool(self.summary)

    # -- files -----------------------------------------------------------------------------
    def csv(self, name: str) -> pd.DataFrame:
        """A CSV of the run dir (empty frame when missing: partial runs may lack them)."""
        if name not in self._csv:
            p = self.path / name
            try:
                self._csv[name] = pd.read_csv(p) if p.exists() else pd.DataFrame()
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                self._csv[name] = pd.DataFrame()
        return self._csv[name]

    def file(self, name: str) -> Path:
        return self.path / name


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: not found ({what})") from e
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read {what}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {what} is not a JSON object")
    return data


def _known_version(path: Path, data: dict[str, Any], what: str, required: bool) -> None:
    """Refuse a file whose ``schema_version`` this code does not know (a newer durabench
    wrote it, or not durabench at all): reading it with the wrong layout would misreport it."""
    v = data.get("schema_version")
    if v is None and not required:
        return
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: {what} has schema_version {v!r}, this durabench reads 1 to "
            f"{SCHEMA_VERSION}: use the durabench version that wrote it"
        )


def load_run(path: Path) -> Run:
    path = Path(path)
    if not (path / "manifest.json").exists():
        raise ConfigError(
            f"{path}: not a result directory (no manifest.json); pass results/<run-id>/ "
            "directories or crash/sweep group files"
        )
    manifest = _read_json(path / "manifest.json", "manifest")
    summary = (
        _read_json(path / "summary.json", "summary") if (path / "summary.json").exists() else {}
    )
    _known_version(path / "manifest.json", manifest, "the manifest", required=True)
    if summary:
        _known_version(path / "summary.json", summary, "the summary", required=True)
    return Run(path, manifest, summary)


def load_group(path: Path) -> Group:
    data = _read_json(path, "crash/sweep group file")
    _known_version(path, data, "the group file", required=False)  # older ones have none
    rows = data.get("rows")
    if data.get("kind") not in ("crash", "sweep") or not isinstance(rows, dict):
        raise ConfigError(f"{path}: not a crash/sweep group file (no kind / rows)")
    members: dict[str, list[Path]] = {}
    for key, trials in rows.items():
        members[key] = [_trial_dir(path, t.get("run_dir", "")) for t in trials]
    meta = {k: v for k, v in data.items() if k != "rows"}
    return Group(path, data["kind"], meta, members)


def _trial_dir(group_path: Path, run_dir: str) -> Path:
    """The trial's directory as recorded, or next to the group file if the tree was moved."""
    p = Path(run_dir)
    if p.is_dir():
        return p
    beside = group_path.parent / p.name
    if beside.is_dir():
        return beside
    raise ConfigError(f"{group_path}: trial directory {run_dir} not found (moved or deleted?)")


def load(paths: list[Path]) -> tuple[list[Run], list[Group]]:
    """Run dirs and group files -> runs (deduplicated, oldest first) and groups."""
    if not paths:
        raise ConfigError("no input: pass result directories or crash/sweep group files")
    runs: dict[Path, Run] = {}
    groups: list[Group] = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix == ".json":
            g = load_group(p)
            groups.append(g)
            for key, dirs in g.members.items():
                for d in dirs:
                    r = runs.setdefault(d.resolve(), load_run(d))
                    r.group, r.group_key = g, key
        elif p.is_dir():
            runs.setdefault(p.resolve(), load_run(p))
        else:
            raise ConfigError(f"{p}: neither a result directory nor a group .json file")
    ordered = sorted(runs.values(), key=lambda r: (r.run_id, str(r.path)))
    check_same_workload(ordered)
    return ordered, groups


def check_same_workload(runs: list[Run]) -> None:
    """Refuse to compare runs of different schedules (workload or seed differ, or one
    workload, seed and rate-scale with two schedules). One workload and seed at several
    rate-scales is a load series: allowed, each rate-scale its own configuration (the labels
    say which, ``bench.report.context``), and the exposure section draws it against load."""
    by_hash: dict[str, Run] = {}
    for r in runs:
        by_hash.setdefault(str(r.schedule.get("hash")), r)
    if len(by_hash) <= 1:
        return
    pair = _conflict(list(by_hash.values()))
    if pair is None:
        return
    a, b = pair

    def desc(r: Run) -> str:
        s = r.schedule
        return (
            f"workload {r.workload!r} seed {_seed(r)} "
            f"rate-scale {s.get('rate_scale')} (schedule {str(s.get('hash'))[:12]}, {r.path})"
        )

    why = "the workloads differ"
    if a.workload == b.workload:
        why = (
            "same workload but a different seed"
            if _seed(a) != _seed(b)
            else "same workload, seed and rate-scale but a different schedule (the workload "
            "file changed)"
        )
    raise ConfigError(
        f"refusing to compare runs of different schedules ({why}): {desc(a)} vs {desc(b)}; "
        f"{len(by_hash)} schedules among the inputs ({', '.join(h[:12] for h in by_hash)}). "
        "Report each workload separately (one workload and seed at several rate-scales is "
        "allowed: a load series)."
    )


def _seed(r: Run) -> Any:
    return r.schedule.get("seed", r.manifest.get("seed"))


def _conflict(rs: list[Run]) -> tuple[Run, Run] | None:
    """Two runs (one per schedule) that do not belong to one load series: another workload or
    seed, or the same rate-scale with another schedule. None: a load series (or one run)."""
    for i, x in enumerate(rs):
        for y in rs[i + 1 :]:
            other = (x.workload, _seed(x)) != (y.workload, _seed(y))
            if other or x.schedule.get("rate_scale") == y.schedule.get("rate_scale"):
                return x, y
    return None


def find_inputs(root: Path) -> list[Path]:
    """Every result directory and group file directly under ``root`` (for the notebook)."""
    root = Path(root)
    out = sorted(p for p in root.iterdir() if p.is_dir() and (p / "manifest.json").exists())
    out += sorted(p for p in root.glob("*-crash.json")) + sorted(root.glob("*-sweep.json"))
    return out


def largest_workload(paths: list[Path]) -> list[Path]:
    """The inputs of the schedule with the most result directories (a results folder usually
    holds several workloads; a report compares one)."""
    dirs = [p for p in paths if p.is_dir()]
    hashes = {p: str(load_run(p).schedule.get("hash")) for p in dirs}
    if not hashes:
        return []
    best = max(set(hashes.values()), key=lambda h: list(hashes.values()).count(h))
    keep = [p for p in dirs if hashes[p] == best]
    for g in (p for p in paths if p.is_file()):
        members = [d for ds in load_group(g).members.values() for d in ds]
        if members and all(str(load_run(d).schedule.get("hash")) == best for d in members):
            keep.append(g)
    return keep
