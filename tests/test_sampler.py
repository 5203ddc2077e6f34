"""One memory figure for every role: peak PSS summed over the process tree, plus the kernel's
high-water mark where a single process has one. Real child processes sharing real memory."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from backends.common.process import ManagedProcess

MIB = 2**20
SHARED_MIB = 64
# A parent maps 64 MiB of shared memory, touches every page, then forks 3 children that keep it
# mapped: summed RSS would charge it 4 times, summed PSS once.
TREE = f"""
import mmap, os, time
m = mmap.mmap(-1, {SHARED_MIB} * 2**20, flags=mmap.MAP_SHARED)
for off in range(0, len(m), 2**20):  # 1 MiB at a time: no 64 MiB temporary to sample
    m[off : off + 2**20] = b"x" * 2**20
for _ in range(3):
    if os.fork() == 0:
        m[0:1]
        time.sleep(60)
        os._exit(0)
time.sleep(60)
"""
SINGLE = f"""
import time
b = bytearray({SHARED_MIB} * 2**20)
time.sleep(60)
"""


def _sampled(role: str, code: str, tmp: Path) -> ManagedProcess:
    p = ManagedProcess(role, [sys.executable, "-c", code], tmp / f"{role}.log")
    p.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.3)
            u = p.sample()
            if u.pss_bytes > SHARED_MIB * MIB and (role != "tree" or u.tree):
                time.sleep(0.5)  # every child is forked and has its mapping
                p.sample()
                return p
        raise AssertionError(f"{role}: never reached {SHARED_MIB} MiB: {p.usage}")
    finally:
        p.stop(timeout_s=2)


def test_tree_and_single_process_share_one_memory_figure(tmp_path: Path) -> None:
    tree = _sampled("tree", TREE, tmp_path).usage
    assert tree.tree
    assert SHARED_MIB * MIB < tree.peak_pss_bytes < 2 * SHARED_MIB * MIB, (
        "shared memory is charged once over the tree, not once per process"
    )
    assert tree.peak_rss_hwm_bytes is None, "no kernel high-water mark for a process tree"

    single = _sampled("single", SINGLE, tmp_path).usage
    assert not single.tree
    assert SHARED_MIB * MIB < single.peak_pss_bytes < 2 * SHARED_MIB * MIB
    assert single.peak_rss_hwm_bytes is not None
    assert single.peak_rss_hwm_bytes >= single.peak_pss_bytes * 0.9  # RSS >= PSS (HWM: a peak)
