"""Temporary directories named after their owner: a SIGKILLed harness's are removed by the next
start, a live owner's never."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from backends.common import ownedtmp
from backends.sqlite.litestream import SOCKET_DIR_PREFIX

PREFIX = "durabench-test-owned-"


def test_only_directories_of_gone_owners_are_removed() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    tmp = Path(tempfile.gettempdir())
    stale = tmp / f"{PREFIX}{gone.pid}-x1"
    foreign = tmp / f"{PREFIX}notapid"
    mine = ownedtmp.create(PREFIX)
    try:
        for d in (stale, foreign):
            (d / "inside").mkdir(parents=True)
        assert ownedtmp.owner(PREFIX, mine) == os.getpid()
        assert mine.stat().st_mode & 0o777 == 0o700
        removed = ownedtmp.clean_stale(PREFIX)
        assert (stale, gone.pid) in removed and not stale.exists()
        assert mine.exists(), "a directory whose owner runs was removed"
        assert foreign.exists(), "a directory whose owner cannot be told was removed"
    finally:
        for d in (stale, foreign, mine):
            shutil.rmtree(d, ignore_errors=True)


def test_litestream_socket_directory_names_its_owner(tmp_path: Path) -> None:
    """A workdir too long for a unix socket path puts the socket under an owned temp dir."""
    from backends.sqlite.litestream import Litestream

    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    ls = Litestream(deep / "db.sqlite", deep, deep, replica="file", file_dir=deep / "replica")
    try:
        sock_dir = ls.socket_path.parent
        assert sock_dir.name.startswith(f"{SOCKET_DIR_PREFIX}{os.getpid()}-")
        assert sock_dir.exists()
    finally:
        ls.close()
    assert not sock_dir.exists()
