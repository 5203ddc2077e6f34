"""The CLI's last resort: an exception nobody expected becomes one line on the terminal and a
traceback in a log file, never a Python traceback on the terminal (exit 2, not 1: exit 1 means
"a correctness check failed")."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
import traceback
from pathlib import Path

from backends.common.redact import redact_text

LOG_ATTR = "durabench_log"  # set on an exception by whoever already logged its traceback


def attach_log(error: BaseException, log: Path) -> None:
    """Remember where ``error``'s traceback was written (a run's logs/harness.log)."""
    # an exception type without __dict__ keeps no note: the CLI then logs it itself
    with contextlib.suppress(AttributeError):
        setattr(error, LOG_ATTR, log)


def message(error: BaseException) -> str:
    """The one line to print; the traceback goes to the run's harness log when the run had
    one, else to a log file of its own under the temporary directory."""
    log = getattr(error, LOG_ATTR, None)
    if log is None or not Path(log).exists():
        log = _fallback_log(error)
    text = redact_text(str(error))
    what = f"{type(error).__name__}: {text}".splitlines()[0] if text else type(error).__name__
    where = f"traceback in {log}" if log is not None else "no log could be written"
    return f"error: unexpected failure ({what}); {where}"


def _fallback_log(error: BaseException) -> Path | None:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(tempfile.gettempdir()) / f"durabench-harness-{stamp}-{os.getpid()}.log"
    try:
        path.write_text(redact_text("".join(traceback.format_exception(error))))
    except OSError:
        return None
    return path
