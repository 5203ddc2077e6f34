"""Shared fixtures. Every test is checked for leftover child processes: a harness that leaks
processes fails its tests."""

from __future__ import annotations

import time

import psutil
import pytest


@pytest.fixture(autouse=True)
def no_leftover_processes():
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 5
    while True:
        left = [
            p
            for p in me.children(recursive=True)
            if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    names = [(p.pid, " ".join(p.cmdline()[:3])) for p in left]
    for p in left:  # only our own children, by PID
        p.kill()
    assert not names, f"test left processes running: {names}"
