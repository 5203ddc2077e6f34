"""Short-lived commands (``weed version``, ``litestream restore``) run as managed processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from backends.common.process import ManagedProcess
from backends.errors import BackendError


def run_once(
    role: str, argv: list[str], log_path: Path, env: dict[str, str] | None, timeout_s: float
) -> tuple[int, str]:
    """Run a short-lived command as a ManagedProcess (own session, dies with the harness) and
    return (exit code, combined output). The log file is rewritten for every call."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)
    proc = ManagedProcess(role, argv, log_path, env=env)
    proc.start()
    assert proc.popen is not None
    try:
        proc.popen.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise BackendError(
            f"{role}: `{' '.join(argv)}` did not finish within {timeout_s:.0f}s; "
            f"last output:\n{proc.log_tail()}"
        ) from None
    except BaseException:  # Ctrl-C while waiting: never leak the child
        proc.kill()
        raise
    proc.stop()
    output = log_path.read_text(errors="replace") if log_path.exists() else ""
    return proc.popen.returncode, output
