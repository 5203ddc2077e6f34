"""The harness side of the Temporal backend: submit runs, watch them finish, read durable state.

Acks (steps: ``backends.temporal.workflows``):

* **run accepted**: ``TemporalClient.submit`` returns when ``StartWorkflowExecution`` returned:
  the server has persisted the new execution (its history starts with WorkflowExecutionStarted,
  input included). Workflow id = run id (prefixed on an external cluster, see ``Target``);
  id-conflict policy USE_EXISTING (a resubmitted run that is still running is the same run) and
  id-reuse policy REJECT_DUPLICATE (a run id is never executed twice); "already started" is
  therefore treated as accepted.
* **run completed**: workflow code cannot observe its own WorkflowExecutionCompleted event, so
  the caller does: for every accepted run a watcher awaits ``handle.result()`` (a long poll for
  the close event) and records ``complete ok`` (value ``completed`` or ``failed``) in
  ``temporal-client.jsonl`` as soon as the server reports the run closed, i.e. once the final
  status is durable in the history. The watchers run on a private thread with its own event
  loop, so a busy or blocked harness loop does not delay the ack; what remains between the
  durable completion and the recorded ack is one loopback round trip.

The SDK client is bound to the event loop it was created in, so the harness client connects
lazily on the first submit, inside the harness's loop. The watchers and the state view share
the private thread's loop and client: checkers call the state view synchronously, also from
inside a running loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from backends.base import Client, ExecutionSettings, RunSpec, RunState, StateView
from backends.errors import BackendError, Indeterminate
from backends.history import OK, HistoryWriter
from backends.temporal.payloads import data_converter
from backends.temporal.workflows import WORKFLOW_NAME, run_input

T = TypeVar("T")
FETCH_CONCURRENCY = 16
WATCH_RETRY_S = 0.5


@dataclass(frozen=True)
class Target:
    """Where runs go: a frontend address, namespace and task queue. ``id_prefix`` makes
    workflow ids unique on a shared (external) cluster; empty for our own dev server."""

    address: str
    namespace: str
    task_queue: str
    payload_dir: Path
    id_prefix: str = ""

    def workflow_id(self, run_id: str) -> str:
        return f"{self.id_prefix}{run_id}"

    def run_id(self, workflow_id: str) -> str | None:
        if not workflow_id.startswith(self.id_prefix):
            return None
        return workflow_id[len(self.id_prefix) :]


@cache
def _quiet_runtime() -> Any:
    """The SDK core for the harness's clients, logging errors only: while a fault keeps the
    server down, the completion watchers' retries would otherwise print a warning each to the
    harness's terminal. (Workers keep the default, WARN, in their log files.)"""
    from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    quiet = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    return Runtime(telemetry=TelemetryConfig(logging=quiet), worker_heartbeat_interval=None)


async def connect(target: Target) -> Any:
    from temporalio.client import Client as SdkClient

    try:
        return await SdkClient.connect(
            target.address,
            namespace=target.namespace,
            data_converter=data_converter(target.payload_dir),
            identity="durabench-harness",
            runtime=_quiet_runtime(),
        )
    except RuntimeError as e:
        raise BackendError(f"temporal: cannot connect to {target.address}: {e}") from e


class TemporalClient(Client):
    def __init__(
        self,
        target: Target,
        settings: ExecutionSettings,
        history_dir: Path,
        epoch_ns: int,
        activity_timeout_s: float,
    ) -> None:
        self.target = target
        self.settings = settings
        self.activity_timeout_s = activity_timeout_s
        self.h = HistoryWriter(history_dir / "temporal-client.jsonl", "temporal-client", epoch_ns)
        self.submitted: set[str] = set()  # hints for the state view, never its source of truth
        self._sdk: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Lock | None = None
        self._bg: LoopThread | None = None
        self._watches: dict[str, concurrent.futures.Future[None]] = {}

    def _background(self) -> LoopThread:
        if self._bg is None:
            self._bg = LoopThread(self.target, "temporal-watch")
        return self._bg

    async def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new loop: clients are loop-bound
            self._loop, self._sdk, self._connecting = loop, None, asyncio.Lock()
        assert self._connecting is not None
        async with self._connecting:
            if self._sdk is None:
                self._sdk = await connect(self.target)
        return self._sdk

    async def submit(self, run: RunSpec) -> None:
        from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError
        from temporalio.service import RPCError, RPCStatusCode

        sdk = await self._client()
        s = self.settings
        arg = run_input(
            run.run_id, run.plan, s.seed, s.time_scale, s.retry, self.activity_timeout_s
        )
        wid = self.target.workflow_id(run.run_id)
        self.submitted.add(run.run_id)
        try:
            await sdk.start_workflow(
                WORKFLOW_NAME,
                arg,
                id=wid,
                task_queue=self.target.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except WorkflowAlreadyStartedError:
            pass  # the same run, accepted earlier
        except RPCError as e:
            if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise Indeterminate(f"temporal: start of {run.run_id}: {e.message}") from e
            raise
        if run.run_id not in self._watches:
            self._watches[run.run_id] = self._background().spawn(self._watch(wid, run.run_id))

    async def _watch(self, workflow_id: str, run_id: str) -> None:
        """Record the run-completed ack when the server reports the run closed. Runs on the
        background thread's loop, so a busy (or blocked) harness loop never delays the ack."""
        from temporalio.client import WorkflowFailureError
        from temporalio.service import RPCError, RPCStatusCode

        handle = (await self._background().sdk()).get_workflow_handle(workflow_id)
        while True:
            try:
                await handle.result()
                status = "completed"
            except WorkflowFailureError:
                status = "failed"  # failed, terminated, timed out or cancelled: final either way
            except RPCError as e:
                if e.status == RPCStatusCode.NOT_FOUND:
                    return  # the server lost the run: no ack (the write-loss checker sees it)
                await asyncio.sleep(WATCH_RETRY_S)  # restarting or overloaded: ask again
                continue
            self.h.record(OK, "complete", run_id, value=status)
            return

    def state(self) -> StateView:
        return TemporalStateView(self._background(), self.target, set(self.submitted))

    async def close(self) -> None:
        """Stop watching (runs still open get no completion ack from us). The background loop
        stays up for the state view (checkers read state after the drive) until ``shutdown``."""
        watches = [f for f in self._watches.values() if not f.done()]
        for f in watches:
            f.cancel()
        if watches:
            await asyncio.wait([asyncio.wrap_future(f) for f in watches], timeout=5)
        self._watches.clear()
        self._sdk = None

    def shutdown(self) -> None:
        """Called by the deployment's stop: stop the background thread, close the history."""
        for f in self._watches.values():
            f.cancel()
        self._watches.clear()
        if self._bg is not None:
            self._bg.close()
            self._bg = None
        self.h.close()


class LoopThread:
    """An event loop on a private daemon thread, with its own SDK client (clients are
    loop-bound). ``run`` blocks the caller until a coroutine is done; ``spawn`` does not."""

    def __init__(self, target: Target, name: str = "temporal-state") -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()
        self._sdk: Any = None
        self._lock: asyncio.Lock | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 300.0) -> T:
        return self.spawn(coro).result(timeout_s)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def sdk(self) -> Any:
        if self._lock is None:  # created on this loop, by the first caller
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._sdk is None:
                self._sdk = await connect(self.target)
        return self._sdk

    def close(self) -> None:
        async def cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                self.run(cancel_all(), timeout_s=5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        with contextlib.suppress(RuntimeError):
            self.loop.close()


@dataclass
class _Run:
    status: str
    error: str | None
    results: dict[int, bytes]


class TemporalStateView(StateView):
    """Durable state as Temporal's histories show it. Runs = workflows on the task queue
    (visibility) plus the ids this client submitted (looked up directly: visibility is
    eventually consistent), each resolved from its history: status from the close event,
    committed steps = ActivityTaskCompleted events, their results decoded with the data
    converter. Closed runs' histories are cached for this view's lifetime."""

    def __init__(self, reader: LoopThread, target: Target, hints: set[str]) -> None:
        self.reader = reader
        self.target = target
        self.hints = hints
        self._closed: dict[str, _Run] = {}

    def runs(self) -> list[RunState]:
        found = self.reader.run(self._load_all())
        return [
            RunState(rid, r.status, len(r.results), r.error)  # type: ignore[arg-type]
            for rid, r in sorted(found.items())
        ]

    def step_results(self, run_id: str) -> dict[int, bytes]:
        r = self.reader.run(self._load(run_id))
        return dict(r.results) if r else {}

    def all_step_ids(self) -> set[tuple[str, int]]:
        found = self.reader.run(self._load_all())
        return {(rid, sid) for rid, r in found.items() for sid in r.results}

    async def _load_all(self) -> dict[str, _Run]:
        sdk = await self.reader.sdk()
        ids = set(self.hints)
        query = f'TaskQueue = "{self.target.task_queue}"'
        async for wf in sdk.list_workflows(query=query):
            rid = self.target.run_id(wf.id)
            if rid is not None:
                ids.add(rid)
        sem = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(rid: str) -> tuple[str, _Run | None]:
            async with sem:
                return rid, await self._load(rid)

        pairs = await asyncio.gather(*(one(rid) for rid in sorted(ids)))
        return {rid: r for rid, r in pairs if r is not None}

    async def _load(self, run_id: str) -> _Run | None:
        if run_id in self._closed:
            return self._closed[run_id]
        from temporalio.service import RPCError, RPCStatusCode

        sdk = await self.reader.sdk()
        handle = sdk.get_workflow_handle(self.target.workflow_id(run_id))
        try:
            history = await handle.fetch_history()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        run = await _parse(history.events, sdk.data_converter)
        if run.status in ("completed", "failed"):
            self._closed[run_id] = run
        return run


async def _parse(events: Any, converter: Any) -> _Run:
    steps: dict[int, int] = {}  # ActivityTaskScheduled event id -> step id
    results: dict[int, bytes] = {}
    status, error, started = "queued", None, False
    for e in events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            aid = e.activity_task_scheduled_event_attributes.activity_id
            if aid.startswith("step-"):
                steps[e.event_id] = int(aid[5:])
        elif e.HasField("activity_task_completed_event_attributes"):
            a = e.activity_task_completed_event_attributes
            sid = steps.get(a.scheduled_event_id)
            if sid is not None:
                (value,) = await converter.decode(list(a.result.payloads), [bytes])
                results[sid] = value
        elif e.HasField("workflow_task_started_event_attributes"):
            started = True
        elif e.HasField("workflow_execution_completed_event_attributes"):
            status = "completed"
        elif e.HasField("workflow_execution_failed_event_attributes"):
            status = "failed"
            error = e.workflow_execution_failed_event_attributes.failure.message
        elif e.HasField("workflow_execution_terminated_event_attributes"):
            status, error = (
                "failed",
                "terminated: " + (e.workflow_execution_terminated_event_attributes.reason),
            )
        elif e.HasField("workflow_execution_timed_out_event_attributes"):
            status, error = "failed", "workflow timed out"
        elif e.HasField("workflow_execution_canceled_event_attributes"):
            status, error = "failed", "cancelled"
    if status == "queued" and started:
        status = "running"
    return _Run(status, error, results)
