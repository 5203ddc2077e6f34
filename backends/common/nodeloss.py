"""Node loss must really lose the node: after a deployment deletes its local data, it checks that
the files are gone before anything is rebuilt, so a "lose-node" trial can never pass because a
deletion silently failed (``shutil.rmtree(..., ignore_errors=True)`` says nothing)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from backends.errors import BackendError


def verify_gone(backend: str, paths: Iterable[Path]) -> list[str]:
    """Raise BackendError naming every path that still exists; return the paths checked (for
    the fault timeline)."""
    paths = [Path(p) for p in paths]
    left = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if left:
        raise BackendError(
            f"{backend}: lose-node deleted the node's data but {', '.join(left)} still "
            "exist(s): the fault did not happen as described"
        )
    return [str(p) for p in paths]
