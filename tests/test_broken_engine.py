"""A deliberately broken engine (backends/durable/testonly.py: every 7th step checkpoint is
acknowledged and never written) run under the real harness: the checker must report exactly the
acks it dropped, by id, and the verdict must be False, with a fault and without one. (Before
issue 9, `bench run` gave this engine verdict True: the payload check compared only the steps
present.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backends.durable.testonly import ENV
from backends.history import read_history
from tests.test_postrun import (
    assert_sharded_checks_equal_whole,
    assert_sharded_tables_equal_whole,
)


@pytest.mark.parametrize("fault", [None, "kill-worker"])
def test_checker_reports_every_ack_the_broken_engine_dropped(
    fault: str | None, tmp_path: Path
) -> None:
    cmd = [sys.executable, "-m", "bench.cli", "crash" if fault else "run"]
    cmd += ["--backend", "sqlite", "--replica", "none", "--workload", "smoke", "--no-progress"]
    cmd += ["--fault", fault, "--keep-data"] if fault else []
    env = {**os.environ, ENV: "drop-commit:7"}
    out = subprocess.run(
        [*cmd, "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode in (0, 1), out.stderr[-3000:]
    (summary_path,) = tmp_path.glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    dropped = {
        f"{e['run']}/{e['step']}"
        for e in read_history(summary_path.parent / "history")
        if e["op"] == "broken-engine" and "run" in e
    }
    assert dropped, "the broken engine dropped nothing: the test proves nothing"
    loss = summary["checks"]["write_loss"]
    assert {x["id"] for x in loss["lost"]} == dropped
    assert loss["lost_by_kind"] == {"step-committed": len(dropped)}
    assert loss["valid"] is False and summary["verdict"] is False
    assert out.returncode == 1  # run and crash alike: a failed check is exit 1
    if fault:  # sqlite FULL promises 0 lost through a worker kill: the promise is broken
        assert summary["checks"]["promise"]["verdict"] == "broken"
    if fault:  # the same checks and tables split into many shards (bench/postrun.py) agree
        assert_sharded_checks_equal_whole(summary_path.parent)
        assert_sharded_tables_equal_whole(summary_path.parent, tmp_path / "tables")
