"""Child processes the harness owns: start, wait until ready, sample, pause, kill, stop.

Rules (DEVELOPERS.md): every process the harness starts is stopped by it, also on error and
Ctrl-C, and only by the PID it started, never by name. Children run in their own session (so a
Ctrl-C in the terminal reaches the harness only, which then stops them in order) and get
``PR_SET_PDEATHSIG`` so they die with the harness even if it is SIGKILLed.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from backends.errors import BackendError

_PR_SET_PDEATHSIG = 1
_LIVE: set[ManagedProcess] = set()
# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. A
# restart done from a short-lived thread (a fault injected off the event loop) must therefore
# fork on the main thread; the harness installs a runner that does that while its loop runs.
_main_runner: Callable[[Callable[[], Any]], Any] | None = None


def set_main_thread_runner(runner: Callable[[Callable[[], Any]], Any] | None) -> None:
    global _main_runner
    _main_runner = runner


def _on_main_thread(fn: Callable[[], Any]) -> Any:
    if threading.current_thread() is threading.main_thread() or _main_runner is None:
        return fn()
    return _main_runner(fn)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class ResourceUse:
    """Resource use of one role, summed over every incarnation (restarts) of its process."""

    cpu_s: float = 0.0
    # The one memory figure of durabench (same definition for every backend): the largest
    # sampled PSS summed over the process tree. PSS charges a shared page to each sharer in
    # proportion, so a tree's shared memory (Postgres's shared_buffers) counts once.
    peak_pss_bytes: int = 0
    # Beside it, where the kernel keeps one: VmHWM (peak RSS, never missed between samples) of
    # a role that was a single process at every sample; None for a process tree, whose RSS
    # high-water marks cannot be added up.
    peak_rss_hwm_bytes: int | None = None
    rss_bytes: int = 0
    pss_bytes: int = 0
    restarts: int = 0
    tree: bool = False  # a sample ever saw children under the role's process


class ManagedProcess:
    """One child process with a role name ("worker-0", "litestream", "seaweedfs", ...)."""

    def __init__(
        self,
        role: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.role = role
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else dict(os.environ)
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        self.usage = ResourceUse()
        self._done_cpu = 0.0  # cpu seconds of earlier incarnations
        self._last_cpu = 0.0
        self._starts = 0
        self._log_start = 0  # where this incarnation's output begins in the (appended) log

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.alive:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self._log_start = log.tell()
        try:
            self.popen = _on_main_thread(
                lambda: subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            )
        except FileNotFoundError as e:
            raise BackendError(f"{self.role}: cannot execute {self.argv[0]}: {e}") from e
        finally:
            log.close()
        self._starts += 1
        self.usage.restarts = self._starts - 1
        self._last_cpu = 0.0
        _LIVE.add(self)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(self, check: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Poll ``check`` until it is true; return seconds waited. Raises with the tail of the
        log if the process exits or the timeout passes."""
        t0 = time.monotonic()
        while True:
            try:
                if check():  # before the liveness check: ready, then died, is still "was ready"
                    return time.monotonic() - t0
            except Exception:  # noqa: BLE001 - not ready yet
                pass
            if not self.alive:
                raise BackendError(
                    f"{self.role} exited with code {self.popen.returncode if self.popen else '?'}"
                    f" before {what}; last log lines:\n{self.log_tail()}"
                )
            if time.monotonic() - t0 > timeout_s:
                raise BackendError(
                    f"{self.role}: not {what} after {timeout_s:.0f}s; last log lines:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``. Returns the exit code."""
        if self.popen is None:
            return None
        if self.alive:
            self.sample()
            self._signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait()
        self._retire()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would; waits for the process to be gone."""
        if self.popen is None:
            return
        if self.alive:
            self.sample()
            self._signal(signal.SIGKILL)
            self.popen.wait()
        self._retire()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)

    def _retire(self) -> None:
        self._done_cpu += self._last_cpu
        self._last_cpu = 0.0
        self.usage.rss_bytes = 0
        self.usage.pss_bytes = 0
        _LIVE.discard(self)

    # -- observation -------------------------------------------------------------------------

    def sample(self) -> ResourceUse:
        """Update CPU seconds and peak memory of this process and its descendants.

        CPU: each live process's own time plus the time of the children it has reaped (so a
        Postgres backend that exited still counts, through the postmaster). Memory: PSS summed
        over the tree at each sample, and its largest value (``peak_pss_bytes``), for every
        role alike; for a role that is a single process, also the kernel's high-water mark
        (VmHWM, ``peak_rss_hwm_bytes``), which no sampling interval can miss."""
        if not self.alive or self.popen is None:
            return self.usage
        try:
            proc = psutil.Process(self.popen.pid)
            kids = descendants(proc.pid)
            if kids is None:
                procs = [proc, *proc.children(recursive=True)]
            else:
                procs = [proc, *map(psutil.Process, kids)]
            cpu = 0.0
            rss = 0
            pss = 0
            for p in procs:
                t = p.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                rss += p.memory_info().rss
                pss += p.memory_full_info().pss
            self._last_cpu = cpu
            self.usage.cpu_s = self._done_cpu + cpu
            self.usage.rss_bytes = rss
            self.usage.pss_bytes = pss
            self.usage.peak_pss_bytes = max(self.usage.peak_pss_bytes, pss)
            self.usage.tree = self.usage.tree or len(procs) > 1
            hwm = vm_hwm(proc.pid)
            if self.usage.tree or hwm is None:
                self.usage.peak_rss_hwm_bytes = None
            else:
                self.usage.peak_rss_hwm_bytes = max(self.usage.peak_rss_hwm_bytes or 0, hwm)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
        return self.usage

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` of the log, after the line that says why a Go program died when
        a stack trace pushed it out of them (a glog ``F...`` line, ``panic:``, ``fatal error:``)."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        tail = text[-lines:]
        head = len(text) - len(tail)
        cause = next((i for i in range(len(text) - 1, -1, -1) if _GO_DEATH.match(text[i])), None)
        if cause is not None and cause < head:
            return "\n".join([text[cause], "...", *tail])
        return "\n".join(tail)

    def this_start_log(self) -> str:
        """What the current (or last) incarnation wrote to the log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""


_GO_DEATH = re.compile(r"^(F\d{4} \d|panic: |fatal error: )")


def descendants(pid: int) -> list[int] | None:
    """Every descendant of ``pid``, from the kernel's per-thread ``children`` lists: a few small
    reads per process of the tree, where psutil's ``children()`` reads the stat file of every
    process on the machine (~5 ms per role and sample on a busy machine, at every sample of the
    drive, charged to the harness's CPU). None where the kernel has no such file."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue  # exited since its parent listed it
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                if p == pid and not os.path.exists(f"/proc/{p}/task/{tid}"):
                    continue  # that thread ended
                if p == pid:
                    return None  # no CONFIG_PROC_CHILDREN: the caller scans instead
                continue
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def vm_hwm(pid: int) -> int | None:
    """The kernel's peak RSS of one process (VmHWM), or None where the kernel has none."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def stop_all_live() -> None:
    """Last-resort cleanup at interpreter exit: stop whatever is still running."""
    for p in list(_LIVE):
        with contextlib.suppress(Exception):
            p.stop(timeout_s=3)


atexit.register(stop_all_live)
