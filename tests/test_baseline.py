"""The raw commit-rate baseline (`bench baseline`) measures the store alone: the deployment's
worker processes are stopped before it measures. Idle workers poll the store every 5 ms; with
two of them pgbench -c 4 ran ~7 % slower, which made the engine/raw ratio look better than it
was."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.base import Deployment, registered
from tests.helpers import context
from tests.test_conformance import BACKENDS, default_options


def _has_baseline(case: str) -> bool:
    info = registered()[case.partition(":")[0]]
    return info.factory.raw_commit_rate is not Deployment.raw_commit_rate


WITH_BASELINE = [c for c in BACKENDS if _has_baseline(c)]


def test_the_backends_with_a_baseline_are_the_ones_we_know() -> None:
    # a backend that gains a baseline joins the test below on its own; this says which do now
    assert {c.partition(":")[0] for c in WITH_BASELINE} == {"sqlite", "postgres", "dbos"}


@pytest.mark.parametrize("case", WITH_BASELINE)
def test_the_raw_baseline_runs_with_no_worker_process(case: str, tmp_path: Path) -> None:
    dep = registered()[case.partition(":")[0]].factory(
        default_options(case), context(tmp_path, workers=2)
    )
    try:
        dep.start()
        workers = {n: p for n, p in dep.processes().items() if n.startswith("worker-")}
        assert len(workers) == 2 and all(p.alive for p in workers.values())
        out = dep.raw_commit_rate(0.5)
        assert out["commits_per_s"] > 0
        assert [n for n, p in workers.items() if p.alive] == []
        assert out["workers"] == "stopped before measuring"
    finally:
        dep.stop()
