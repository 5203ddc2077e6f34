"""What every report section needs: the runs, how they are grouped for comparison, a color per
group, and how to cite a file relative to the report (so links keep working when the results
folder and the report move together).

Grouping: runs of the same backend are repeats of one configuration unless a backend option or
an execution setting differs between them; then that difference becomes part of the label
("sqlite sync_interval_s=3"), so a median never mixes two configurations."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report.charts import colors
from bench.report.load import Group, Run

SETTING_KEYS = ("time_scale", "workers", "concurrency", "group_commit")


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def group_labels(runs: list[Run], load: bool = True) -> dict[str, str]:
    """run_id -> "backend" or "backend k=v ..." (only the options that differ). ``load``: the
    schedule's rate-scale counts as a difference (a load series, ``bench.report.load``); without
    it, the label of the configuration the series was measured on."""
    out: dict[str, str] = {}
    by_backend: dict[str, list[Run]] = {}
    for r in runs:
        by_backend.setdefault(r.backend, []).append(r)
    for backend, rs in by_backend.items():
        opts = [
            {
                **(r.manifest.get("backend_options") or {}),
                **{k: (r.manifest.get("settings") or {}).get(k) for k in SETTING_KEYS},
                **({"rate_scale": r.schedule.get("rate_scale")} if load else {}),
            }
            for r in rs
        ]
        keys = sorted({k for o in opts for k in o})
        varying = [k for k in keys if len({repr(o.get(k)) for o in opts}) > 1]
        for r, o in zip(rs, opts, strict=True):
            extra = " ".join(f"{k}={_fmt(o.get(k))}" for k in varying)
            out[r.run_id] = f"{backend} {extra}".strip()
    return out


@dataclass
class Context:
    out_dir: Path
    runs: list[Run]
    groups: list[Group]
    labels: dict[str, str] = field(default_factory=dict)
    color: dict[str, str] = field(default_factory=dict)
    config_labels: dict[str, str] = field(default_factory=dict)  # without the rate-scale

    def __post_init__(self) -> None:
        self.labels = self.labels or group_labels(self.runs)
        self.config_labels = self.config_labels or group_labels(self.runs, load=False)
        # fault-free groups first: they share the comparison charts, so they get the clearest
        # colors
        order = [self.labels[r.run_id] for r in self.runs if r.steady]
        order += list(self.labels.values())
        self.color = self.color or colors(list(dict.fromkeys(order)))

    def label(self, run: Run) -> str:
        return self.labels[run.run_id]

    def config_label(self, run: Run) -> str:
        """The configuration whatever the offered load (one line of a load chart)."""
        return self.config_labels.get(run.run_id, self.label(run))

    def rel(self, path: Path) -> str:
        """The path from the report directory, when the two share a directory below the
        filesystem root; otherwise from the results root (``results/...``): a report never
        names the machine's directories, so it reads the same wherever it is copied."""
        p, out = Path(path).resolve(), self.out_dir.resolve()
        if os.path.commonpath([p, out]) != p.anchor:
            return os.path.relpath(p, out)
        root = self.results_root()
        if root is not None and p.is_relative_to(root):
            return f"results/{p.relative_to(root).as_posix()}"
        return p.name

    def results_root(self) -> Path | None:
        """The deepest directory holding every input (run directories and group files)."""
        dirs = [str(r.path.resolve().parent) for r in self.runs]
        dirs += [str(g.path.resolve().parent) for g in self.groups]
        return Path(os.path.commonpath(dirs)) if dirs else None

    def portable(self, text: str) -> str:
        """``text`` with every absolute path below the results root (or the report directory)
        written as ``rel`` writes it, e.g. a data directory recorded in a manifest's topology."""
        roots = {self.out_dir.resolve(), *(r.path.resolve().parent for r in self.runs)}
        roots |= {g.path.resolve().parent for g in self.groups}
        for root in sorted(roots, key=lambda p: len(str(p)), reverse=True):
            text = text.replace(str(root) + os.sep, self.rel(root) + "/")
        return text

    def src(self, runs: list[Run], *names: str) -> list[str]:
        return [self.rel(r.file(n)) for r in runs for n in names if r.file(n).exists()]

    def steady(self) -> dict[str, list[Run]]:
        """Backend group -> complete, valid, fault-free runs (the aggregate tables' input)."""
        out: dict[str, list[Run]] = {}
        for r in self.runs:
            if r.steady:
                out.setdefault(self.label(r), []).append(r)
        return out

    def excluded_steady(self) -> list[Run]:
        """Fault-free runs left out of the medians (partial, failed, unknown or untrusted)."""
        return [r for r in self.runs if r.fault is None and not r.steady]

    def apart(self) -> list[Run]:
        """Complete fault-free runs shown on their own flagged rows, outside the medians."""
        return [r for r in self.runs if r.apart]

    def rows(self) -> list[tuple[str, list[Run], str]]:
        """What the aggregate tables show: (row label, runs, basis). First each backend group's
        median over its trustworthy runs, then each flagged run on its own row, so a run with
        a failed verdict or an untrusted load generator stays visible without moving a
        median."""
        out = [(label, rs, f"{len(rs)} run(s)") for label, rs in self.steady().items()]
        for r in self.apart():
            out.append((f"⚠ {self.label(r)} ({r.run_id})", [r], f"NOT IN MEDIAN: {r.apart_reason}"))
        return out

    def trials(self) -> list[Run]:
        return [r for r in self.runs if r.usable_trial]
