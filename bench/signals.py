"""SIGTERM is handled like Ctrl-C in every phase (deploy, drive, checks): outside the drive it
raises ``Terminated``, a ``KeyboardInterrupt``, so every cleanup path that stops processes on
Ctrl-C also runs on SIGTERM; results record which signal it was."""

from __future__ import annotations

import signal
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The harness received SIGTERM."""


def install() -> None:
    """Make SIGTERM raise ``Terminated`` in the main thread (the default would kill the
    harness without stopping the processes it started)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def label(name: str | None) -> str:
    """How a signal is named in a partial_reason: 'Ctrl-C (SIGINT)' or 'SIGTERM'."""
    return "Ctrl-C (SIGINT)" if name in (None, "SIGINT") else name


def name_of(error: BaseException) -> str:
    """The signal behind an interrupt exception."""
    return "SIGTERM" if isinstance(error, Terminated) else "SIGINT"


def raise_for(name: str) -> None:
    """Re-raise a signal the drive caught, so a command of several runs stops as a whole."""
    raise Terminated() if name == "SIGTERM" else KeyboardInterrupt()
