"""SIGTERM is handled like Ctrl-C in every phase (deploy, drive, checks): outside the drive it
raises ``Terminated``, a ``KeyboardInterrupt``, so every cleanup path that stops processes on
Ctrl-C also runs on SIGTERM; results record which signal it was.

Python drops an exception raised by a signal handler that runs inside an at-fork hook or a
``__del__`` ("Exception ignored in ...": seen when SIGTERM hit while a worker was being
forked, and the run went on to the end). So the handler also records the signal, and the
harness calls ``check()`` between phases: a signal whose exception was lost is raised there.
"""

from __future__ import annotations

import signal
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The harness received SIGTERM."""


_pending: list[str] = []  # signals received whose exception has not been handled yet


def install() -> None:
    """Ctrl-C raises KeyboardInterrupt and SIGTERM raises ``Terminated`` in the main thread (the
    default SIGTERM would kill the harness without stopping the processes it started)."""
    signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)


def _raise(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    _pending.append(name)
    raise_for(name)


def check() -> None:
    """Raise a signal that arrived but whose exception was swallowed."""
    if _pending:
        raise_for(_pending[-1])


def handled() -> None:
    """The interrupt reached the code that cleans up: ``check()`` has nothing to raise."""
    _pending.clear()


def label(name: str | None) -> str:
    """How a signal is named in a partial_reason: 'Ctrl-C (SIGINT)' or 'SIGTERM'."""
    return "Ctrl-C (SIGINT)" if name in (None, "SIGINT") else name


def name_of(error: BaseException) -> str:
    """The signal behind an interrupt exception."""
    return "SIGTERM" if isinstance(error, Terminated) else "SIGINT"


def raise_for(name: str) -> None:
    """Raise the exception of a signal (also one the drive caught, so that a command of several
    runs stops as a whole)."""
    raise Terminated() if name == "SIGTERM" else KeyboardInterrupt()
