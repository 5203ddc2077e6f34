"""No module over 400 lines and no function over 60 lines in bench/ and backends/ without a
``# size:`` reason at its top (scripts/size_check.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "size_check.py"


def test_every_offender_says_why() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_offender_without_a_reason_fails(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    (tmp_path / "bench").mkdir()
    (tmp_path / "backends").mkdir()
    (tmp_path / "bench" / "long.py").write_text(f"def f():\n{body}\n")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1 and "bench/long.py:1 f(): 62 lines" in out.stdout
    (tmp_path / "bench" / "long.py").write_text(f"# size: a test\ndef f():\n{body}\n")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "reason: a test" in out.stdout
    (tmp_path / "backends" / "big.py").write_text("x = 1\n" * 401)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1 and "backends/big.py: 401 lines" in out.stdout
