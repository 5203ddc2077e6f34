"""The figures README.md shows trace to a run: the chart and every number beside it are the ones
scripts/readme_figures.py wrote from one recorded `bench compare` run, whose command and schedule
hash the README names. (The script itself takes minutes and is not run here.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "readme_figures", ROOT / "scripts/readme_figures.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_figures_come_from_the_recorded_run() -> None:
    rf = _script()
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(rf.BEGIN) : readme.index(rf.END) + len(rf.END)]
    f = json.loads(rf.PROVENANCE.read_text())
    assert block == rf.readme_block(f), (
        "README figures differ from docs/img/*.json: rerun the script"
    )
    assert rf.IMAGE.exists() and "](docs/img/step-commit-cdf.png)" in block
    assert f["command"] in block and f["schedule_hash"][:16] in block
    for b, x in f["runs"].items():
        assert x["run_id"] in block and f"p99 {x['step_commit_p99_ms']:g} ms" in block, b

    # the command in the README really produces the recorded schedule
    argv = f["command"].split()
    seed = argv[argv.index("--seed") + 1]
    workload = argv[argv.index("--workload") + 1]
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "schedule", "--workload", workload, "--seed", seed],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["hash"] == f["schedule_hash"]
