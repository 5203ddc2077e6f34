"""The durability promise in `bench crash` (table, trial summary, group file) and the exit codes
a CI can use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cli


def test_crash_shows_the_promise_kept_and_exits_0(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "crash",
            "--backend",
            "sqlite",
            # the promise of kill-worker is about the primary: no Litestream here (which, after
            # a writer is killed mid-commit, sometimes stops replicating: docs/design.md)
            "--replica",
            "none",
            "--fault",
            "kill-worker",
            "--trials",
            "1",
            "--workload",
            "smoke",
            "--at",
            "1.5",  # inside the 3 s schedule: acks and runs are in flight
            "--restart-delay",
            "0.5",
            "--results-dir",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "promise" in out.stdout and "0 lost" in out.stdout and "1 kept" in out.stdout
    (group,) = tmp_path.glob("*-crash.json")
    (trial,) = json.loads(group.read_text())["rows"]["kill-worker"]
    assert trial["promise_verdict"] == "kept" and trial["promise_label"] == "0 lost"
    assert trial["acks_exposed"] > 0
    summary = json.loads((Path(trial["run_dir"]) / "summary.json").read_text())
    promise = summary["checks"]["promise"]
    assert promise["verdict"] == "kept" and promise["valid"] is True
    assert (
        promise["promise"]["max_lost_age_s"] == 0.0
        and "synchronous=FULL" in (promise["promise"]["basis"])
    )
    assert summary["verdict"] is True


@pytest.mark.parametrize(
    ("trials", "code"),
    [
        ([{"verdict": True, "promise_verdict": "kept"}], cli.EXIT_OK),
        ([{"verdict": "unknown", "promise_verdict": "unknown"}], cli.EXIT_OK),
        ([{"verdict": True}, {"verdict": False, "promise_verdict": "broken"}], 1),
        ([{"verdict": False}], cli.EXIT_CHECK_FAILED),  # e.g. a fault-free compare run
        ([{"verdict": False}, {"verdict": True, "partial": True}], cli.EXIT_INTERRUPTED),
    ],
)
def test_exit_code_of_a_series(trials: list[dict], code: int) -> None:
    """No real configuration breaks its promise on demand here (that needs a deliberately
    broken engine), so the mapping the crash, sweep and compare commands return is tested
    directly."""
    assert cli.trials_exit_code(trials) == code


@pytest.mark.parametrize("cmd", ["run", "crash", "sweep", "compare"])
def test_help_documents_exit_codes(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main([cmd, "--help"])
    text = capsys.readouterr().out
    assert "exit codes:" in text and "promise was broken" in text and "130" in text


def test_a_fault_that_never_happened_is_not_a_pass(tmp_path: Path) -> None:
    """Ctrl-C while the nemesis still waits for its time (``--at`` late in a slowed-down
    schedule; an ``--at`` past the schedule is refused up front): the trial is partial, gets no
    verdict (an interrupted drive is not judged), the fault never happened, exit 130."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "crash",
            "--backend",
            "sqlite",
            "--replica",
            "none",
            "--fault",
            "kill-worker",
            "--at",
            "25",
            "--rate-scale",
            "0.1",
            "--workload",
            "smoke",
            "--results-dir",
            str(tmp_path),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:  # wait until runs are being driven (the fault is still 20 s ahead)
            dirs = list(tmp_path.glob("*/history/harness.jsonl"))
            if dirs and dirs[0].read_text().count('"submit"') >= 10:
                break
            assert time.monotonic() < deadline and proc.poll() is None, "run never got going"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == cli.EXIT_INTERRUPTED, err[-3000:]
    (summary_path,) = tmp_path.glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["verdict"] is not True and summary["partial"] is True
    history = (summary_path.parent / "history" / "harness.jsonl").read_text()
    assert '"phase": "fault"' not in history and '"phase":"fault"' not in history
