"""The worker processes of a durable (SQL) deployment: start N of them, kill / restart one, stop
them all. Shared by every backend that runs the durable executor in separate processes."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import backends
from backends.base import RunContext
from backends.common.process import ManagedProcess
from backends.durable.crashpoints import ENV as CRASH_ENV
from backends.durable.worker import worker_config

READY_TIMEOUT_S = 30.0


class WorkerPool:
    """``entry`` is the module a worker process runs (``python -m ENTRY CONFIG.json``): the
    durable executor by default; another engine (Temporal) brings its own. The config always
    holds worker, store_factory, store_args, settings, history_path, ready_path, epoch_ns; the
    worker must write ``ready_path`` once it can take work."""

    def __init__(
        self,
        ctx: RunContext,
        store_factory: str,
        store_args: dict[str, Any],
        entry: str = "backends.durable.worker",
    ) -> None:
        self.ctx = ctx
        self.entry = entry
        self.store_factory = store_factory
        self.store_args = store_args
        self.procs: dict[str, ManagedProcess] = {}
        self.ready_s: dict[str, float] = {}
        root = str(Path(backends.__file__).resolve().parent.parent)
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        self.env.pop(CRASH_ENV, None)  # crash points are set per start, never inherited
        for i in range(ctx.settings.workers):
            self._make(f"worker-{i}")

    def _make(self, name: str) -> None:
        cfg_dir = self.ctx.workdir / "workers"
        cfg_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = cfg_dir / f"{name}.json"
        cfg = worker_config(
            name,
            self.store_factory,
            self.store_args,
            self.ctx.settings,
            self.ctx.history_dir / f"{name}.jsonl",
            cfg_dir / f"{name}.ready",
            self.ctx.epoch_ns,
        )
        # the store arguments may hold a password: readable by the harness's user only, and
        # removed when the pool stops (also with --keep-data)
        fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(cfg, indent=1))
        self.procs[name] = ManagedProcess(
            name,
            [sys.executable, "-m", self.entry, cfg_path],
            self.ctx.logdir / f"{name}.log",
            env=self.env,
        )

    def reconfigure(self, store_args: dict[str, Any]) -> None:
        """New store arguments (a failover's new address) for every later (re)start."""
        self.store_args = store_args
        for name in list(self.procs):
            env = self.procs[name].env
            self._make(name)
            self.procs[name].env = env

    def _ready_path(self, name: str) -> Path:
        return self.ctx.workdir / "workers" / f"{name}.ready"

    def start(self, name: str | None = None, crash_at: str | None = None) -> None:
        """Start one worker (or all) and wait until each has its store open. ``crash_at``
        ("<point>:<n>", see ``crashpoints``) makes this incarnation SIGKILL itself there."""
        names = [name] if name else list(self.procs)
        for n in names:
            self._ready_path(n).unlink(missing_ok=True)
            env = self.procs[n].env
            env.pop(CRASH_ENV, None)
            if crash_at:
                env[CRASH_ENV] = crash_at
            self.procs[n].start()
        for n in names:
            ready = self._ready_path(n)
            self.ready_s[n] = self.procs[n].wait_ready(ready.exists, READY_TIMEOUT_S, "ready")

    def kill(self, name: str) -> None:
        self.procs[name].kill()

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop(timeout_s=10)
        for name in self.procs:
            (self.ctx.workdir / "workers" / f"{name}.json").unlink(missing_ok=True)


class PooledWorkers:
    """Mixin giving a deployment with a ``self.workers: WorkerPool`` the ``KillableWorkers``
    capability."""

    workers: WorkerPool

    def worker_names(self) -> list[str]:
        return list(self.workers.procs)

    def kill_worker(self, name: str) -> None:
        self.workers.kill(name)

    def start_worker(self, name: str, crash_at: str | None = None) -> None:
        self.workers.start(name, crash_at)
