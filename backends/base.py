# size: the whole common interface (plans, durable state, client, deployment and each fault
# capability protocol) in one file a backend author reads top to bottom; the registry is apart.
"""The common workflow interface every durabench backend implements.

Vocabulary (see shared DESIGN.md): a *run* is one execution of an agent plan; a *step* is one
checkpointed unit of it. An *acknowledged write* (ack) is the moment a backend tells its caller
"this is durable". Every backend must document where its three acks happen:

* **run accepted**: ``Client.submit`` returns. After that the run must survive any fault the
  backend claims to tolerate.
* **step committed**: the executor's checkpoint of a step result returns. A step whose result is
  committed is never executed again, not even on replay after a crash.
* **run completed**: the run's final status (completed / failed) is durable.

The harness records each ack in its own history (``backends.history``), outside the system under
test, and later compares that history with ``StateView`` (the backend's durable state, read-only).

Roles, after Jepsen: a ``Backend`` is a factory registered by name; it builds a ``Deployment``
(the processes a backend needs) from options; a deployment hands out a ``Client`` (submit runs,
read state). Optional capabilities (kill, pause, restore) are separate protocols so a fault a
deployment cannot support is refused, never silently skipped.
"""

from __future__ import annotations

import abc
import functools
import json
import math
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from backends.common.payload import PAYLOAD_VERSION
from backends.errors import ConfigError
from backends.promises import Promise

# ---------------------------------------------------------------------------------------------
# Plans: what a run does. Produced by bench.workload (seeded), consumed by every backend.
# ---------------------------------------------------------------------------------------------

StepKind = Literal["llm", "tool"]


@dataclass(frozen=True)
class StepSpec:
    """One step of an agent plan. Everything a step does is decided up front by the workload.

    ``latency_s`` is the simulated wait at time-scale 1 (LLM call or tool call). ``fail_attempts``
    is how many attempts raise a transient error before one succeeds (0 = first try works);
    ``permanent`` makes every attempt raise a non-retryable error, which fails the run.
    """

    step_id: int
    kind: StepKind
    name: str
    latency_s: float
    payload_bytes: int
    fail_attempts: int = 0
    permanent: bool = False


@dataclass(frozen=True)
class Plan:
    """An agent plan: groups run one after another; steps within a group run in parallel
    (fan-out). Step ids are unique and dense: 0..n-1 in group order."""

    groups: tuple[tuple[StepSpec, ...], ...]

    @property
    def steps(self) -> list[StepSpec]:
        return [s for g in self.groups for s in g]

    @property
    def n_steps(self) -> int:
        return sum(map(len, self.groups))

    def to_json(self) -> str:
        """The plan as stored by the SQL backends. Serialized once and kept: the harness
        builds it with the schedule, so a submit does no JSON work (``asdict`` deep-copies, and
        at every submit it was the harness's largest cost)."""
        text: str | None = self.__dict__.get("_json")
        if text is None:
            text = "[" + ",".join(["[" + ",".join(map(_step_json, g)) + "]" for g in self.groups])
            text += "]"
            object.__setattr__(self, "_json", text)  # a cache, not a field: eq/hash ignore it
        return text

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """Decoded at every claim: steps written by ``to_json`` (every field, in order) skip
        the dataclass ``__init__`` (seven ``object.__setattr__`` calls per step)."""
        new = object.__new__
        groups = []
        for g in json.loads(text):
            steps = []
            for d in g:
                if d.keys() == _STEP_FIELDS:
                    step = new(StepSpec)
                    step.__dict__.update(d)
                else:
                    step = StepSpec(**d)  # older or hand-written JSON: defaults, checks
                steps.append(step)
            groups.append(tuple(steps))
        return cls(tuple(groups))


class StoredPlan(Plan):
    """A plan read back from the text ``to_json`` wrote (the schedule's plan file, see
    ``bench.workload.planfile``): a store that keeps the JSON submits it as it is, and the steps
    are decoded only when something asks for them."""

    def __init__(self, text: str) -> None:  # noqa: D107 - not the dataclass's: no groups yet
        object.__setattr__(self, "_json", text)

    @functools.cached_property
    def groups(self) -> tuple[tuple[StepSpec, ...], ...]:  # type: ignore[override]
        return Plan.from_json(self.__dict__["_json"]).groups

    @property
    def n_steps(self) -> int:
        # every step object starts so, and a quote inside a string is always escaped
        return self.__dict__["_json"].count('{"step_id":')


_STEP_FIELDS = frozenset(
    ("step_id", "kind", "name", "latency_s", "payload_bytes", "fail_attempts", "permanent")
)


def _step_json(s: StepSpec) -> str:
    """``json.dumps(step_dict(s), separators=(",", ":"))``, formatted directly (the harness
    builds every run's plan JSON during the drive) where the fields have the types a plan's
    generator gives them; anything else goes through ``json``, so the text is the same."""
    d = s.__dict__
    lat, kind, name = d["latency_s"], d["kind"], d["name"]
    if (
        type(d["step_id"]) is int
        and type(d["payload_bytes"]) is int
        and type(d["fail_attempts"]) is int
        and type(d["permanent"]) is bool
        and (type(lat) is int or (type(lat) is float and math.isfinite(lat)))
        and type(kind) is str
        and type(name) is str
        and _PLAIN.fullmatch(kind)
        and _PLAIN.fullmatch(name)
    ):
        return (
            f'{{"step_id":{d["step_id"]},"kind":"{kind}","name":"{name}","latency_s":{lat!r},'
            f'"payload_bytes":{d["payload_bytes"]},"fail_attempts":{d["fail_attempts"]},'
            f'"permanent":{"true" if d["permanent"] else "false"}}}'
        )
    return json.dumps(step_dict(s), separators=(",", ":"))


_PLAIN = re.compile(r"[A-Za-z0-9_.:-]*")  # a JSON string needing no escape


def step_dict(s: StepSpec) -> dict[str, Any]:
    """``asdict(s)`` without its deep copy (same keys, same order)."""
    return {
        "step_id": s.step_id,
        "kind": s.kind,
        "name": s.name,
        "latency_s": s.latency_s,
        "payload_bytes": s.payload_bytes,
        "fail_attempts": s.fail_attempts,
        "permanent": s.permanent,
    }


@dataclass(frozen=True)
class RunSpec:
    """A run as the harness submits it. ``scheduled_t`` is the arrival time in seconds from the
    start of the schedule (latency is measured from it: coordinated-omission safe)."""

    run_id: str
    seq: int
    tenant: str
    scheduled_t: float
    warmup: bool
    plan: Plan

    @property
    def plan_json(self) -> str:
        return self.plan.to_json()

    @property
    def n_steps(self) -> int:
        return self.plan.n_steps


@dataclass(frozen=True)
class RetryPolicy:
    """Retry with exponential backoff; the same settings on every backend. Backoff waits are
    simulated time, scaled by the time-scale like every other wait."""

    max_attempts: int = 4
    initial_backoff_s: float = 0.2
    backoff_multiplier: float = 2.0
    max_backoff_s: float = 5.0

    def backoff_s(self, failed_attempt: int) -> float:
        """Wait after the ``failed_attempt``-th attempt (1-based) failed."""
        wait = self.initial_backoff_s * self.backoff_multiplier ** (failed_attempt - 1)
        return min(wait, self.max_backoff_s)


@dataclass(frozen=True)
class ExecutionSettings:
    """How workers execute runs; the same for every backend, recorded in the manifest."""

    seed: int
    time_scale: float = 1.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    workers: int = 2
    concurrency: int = 200  # runs in flight per worker process
    lease_s: float = 10.0  # a claimed run is another worker's after this long without renewal
    poll_interval_s: float = 0.005  # idle worker's wait between queue polls
    group_commit: bool = True  # commit the checkpoints ready together in one transaction
    payload_version: int = PAYLOAD_VERSION  # which step-payload function (backends/common/payload)


# ---------------------------------------------------------------------------------------------
# Durable state, read-only.
# ---------------------------------------------------------------------------------------------

RunStatus = Literal["queued", "running", "completed", "failed"]


@dataclass(frozen=True)
class RunState:
    run_id: str
    status: RunStatus
    steps_committed: int
    error: str | None


class StateView(abc.ABC):
    """The backend's durable state, read-only, for checkers. Must read what is durable (the
    database / history), not a worker's memory."""

    @abc.abstractmethod
    def runs(self) -> list[RunState]: ...

    @abc.abstractmethod
    def step_results(self, run_id: str) -> dict[int, bytes]:
        """Committed step outputs of one run, by step id."""

    @abc.abstractmethod
    def all_step_ids(self) -> set[tuple[str, int]]:
        """Every committed (run_id, step_id)."""

    def all_step_results(self) -> Iterator[tuple[str, dict[int, bytes]]]:
        """Every run's committed step outputs, one run at a time (``(run_id, {step_id:
        output})``), so a checker reads them all without one query per run and without holding
        them all. This default asks ``step_results`` per stored run; SQL stores override it
        with one query."""
        for r in self.runs():
            yield r.run_id, self.step_results(r.run_id)

    def for_runs(self, run_ids: Collection[str]) -> StateView:
        """The same state restricted to ``run_ids`` (the checks read it one shard of runs at a
        time, so post-run memory follows the shard). This default reads everything and filters,
        once per shard: right for stores that hold few runs (in-process, Temporal, DBOS at
        their rates); the SQL stores override it with queries for those runs only."""
        return FilteredStateView(self, run_ids)


class FilteredStateView(StateView):
    """``StateView.for_runs`` by filtering a whole view (see there)."""

    def __init__(self, inner: StateView, run_ids: Collection[str]) -> None:
        self.inner = inner
        self.ids = run_ids if isinstance(run_ids, set | frozenset) else set(run_ids)

    def runs(self) -> list[RunState]:
        return [r for r in self.inner.runs() if r.run_id in self.ids]

    def step_results(self, run_id: str) -> dict[int, bytes]:
        return self.inner.step_results(run_id) if run_id in self.ids else {}

    def all_step_ids(self) -> set[tuple[str, int]]:
        return {k for k in self.inner.all_step_ids() if k[0] in self.ids}

    def all_step_results(self) -> Iterator[tuple[str, dict[int, bytes]]]:
        for r in self.runs():  # this shard's runs only: each run's outputs read once overall
            yield r.run_id, self.inner.step_results(r.run_id)


# Told the outcome of every run of one submit transaction, once it ended: (run, None) = the run
# accepted ack, (run, error) = not accepted (``Indeterminate``: outcome unknown).
AckSink = Callable[[Sequence[tuple["RunSpec", BaseException | None]]], None]


class Client(abc.ABC):
    """What the load generator talks to."""

    #: ``enqueue_submit`` is implemented (a store that batches submits on its own thread)
    enqueues_submits: bool = False

    @abc.abstractmethod
    async def submit(self, run: RunSpec) -> None:
        """Durably accept a run. Returning is the **run accepted** ack; raising means not
        accepted (``bench.errors.Indeterminate`` when the outcome is unknown)."""

    def enqueue_submit(self, run: RunSpec, sink: AckSink) -> None:
        """Optional fast path of ``submit`` (``enqueues_submits``): start submitting ``run`` and
        return at once, without a task or a future per run. ``sink`` is called once per
        transaction, on the submitting thread, right after it ended, with every run of it and
        its outcome, and before anything else learns the outcome: the caller records the acks
        there, so each is in its history before anyone acts on it. Raises (no ack, the sink is
        not called) when the submit cannot start."""
        raise NotImplementedError

    @abc.abstractmethod
    def state(self) -> StateView: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


# ---------------------------------------------------------------------------------------------
# Deployments: the processes a backend runs.
# ---------------------------------------------------------------------------------------------


@dataclass
class RunContext:
    """What a deployment needs from the harness: where to put files and how to record history."""

    workdir: Path  # scratch area for data files (database, object store, ...)
    logdir: Path  # one log file per process
    history_dir: Path  # workers append their history here, one file per process
    epoch_ns: int  # time.monotonic_ns() at schedule start; events are seconds since it
    settings: ExecutionSettings
    keep_data: bool = False  # data kept elsewhere (a temporary root) is moved into workdir


@dataclass(frozen=True)
class ReplicationPosition:
    """One reading of a store and of its asynchronous replica, in one opaque unit that only
    grows within a ``generation`` (a new node or a new primary starts a new one; positions of
    different generations are never compared). ``local``: what the store holds, read *after*
    every commit acknowledged so far, so an ack made before the reading is at or below it.
    ``replica``: what the replica holds (survives a lost node); a commit at or below it is
    durable off the node. None: that side could not be read (a lost node, no replica left)."""

    generation: str
    local: int | None
    replica: int | None
    unit: str


class Deployment(abc.ABC):
    """The processes a backend needs, started and stopped by the harness."""

    backend: str

    @classmethod
    def preflight(cls, options: dict[str, Any]) -> None:
        """Before anything is written or started: check that the external services ``options``
        name (an object store, a server) answer. Raises ``DurabenchError`` with one line that
        names the service, so a run that could not replicate or connect never begins."""
        return None  # nothing external by default

    @classmethod
    def open_kept_state(
        cls, run_dir: Path, manifest: dict[str, Any]
    ) -> AbstractContextManager[StateView]:
        """``bench check``: the durable state a finished run kept in ``run_dir/work``
        (``--keep-data``), read-only, as a context manager yielding a ``StateView`` (a server
        it needs is started on the kept files and stopped on exit). The view may also offer
        ``integrity_check()``. Raises ``ConfigError`` when this backend cannot re-open a kept
        state, or when none was kept."""
        raise ConfigError(
            f"{getattr(cls, 'backend', cls.__name__)}: cannot re-open the state a run kept: "
            "`bench check` is not supported for this backend"
        )

    @abc.abstractmethod
    def start(self) -> None:
        """Start every process (store, sidecars, workers) and return when ready. Raises
        ``BackendError`` with a clear message when something cannot start."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every process this deployment started (also after a failed start)."""

    @abc.abstractmethod
    def client(self) -> Client: ...

    @abc.abstractmethod
    def processes(self) -> dict[str, Any]:
        """Live ``ManagedProcess`` objects by role name, for resource sampling."""

    @abc.abstractmethod
    def topology(self) -> dict[str, Any]:
        """What was actually deployed, in words a report can print."""

    def inline_engine(self) -> Any:
        """For in-process engines only: a coroutine the harness runs on its own event loop for
        the duration of the measurement (cancelled at the end). Real backends return None: their
        engines run in their own processes."""
        return None

    def promise(self, fault: str) -> Promise | None:
        """What this configuration promises to keep through ``fault`` (any fault name, including
        ones added later): 0 lost acks, loss only of acks younger than a bound, or total loss.
        Derived from the real configuration; called after the fault, so a bound measured at the
        fault (e.g. a standby's replay lag) may be used. None = no promise stated: the harness
        judges the trial ``unknown``, never kept."""
        return None

    def versions(self) -> dict[str, str]:
        return {}

    @staticmethod
    def replica_requests(backend_metrics: dict[str, Any]) -> tuple[dict[str, float], str] | None:
        """The replication client's own object-store request counts by operation (what
        production would send to S3), read from this backend's ``collect_metrics`` figures as
        stored in summary.json, with where they came from in words; None when it has none.
        Static so the report can read results of a deployment that no longer runs."""
        return None

    @staticmethod
    def metrics_lines(backend_metrics: dict[str, Any]) -> list[str]:
        """Short lines for the console summary about this backend's own figures."""
        return []

    def managed_standins(self) -> dict[str, str]:
        """Roles (keys of ``processes()``) that only stand in locally for a managed service in
        production, mapped to that service (e.g. a local object store for "S3 (object storage
        and requests)"). The cost model prices the service instead of the process, never both."""
        return {}

    def config(self) -> dict[str, Any]:
        """Backend configuration as recorded in the manifest."""
        return {}

    def collect_metrics(self) -> dict[str, Any]:
        """Backend-specific figures at the end of a run (sizes, replication counters...).
        Called while the deployment is still running."""
        return {}

    def replication_health(self) -> dict[str, Any] | None:
        """Did the replica keep up? Called at the end of a run, while the deployment still
        runs. None when this deployment replicates nothing. Otherwise figures for
        ``bench.replication``: ``caught_up`` (the replica holds every commit made before the
        call: True / False, None when it cannot be read), ``errors`` (replication errors seen
        during the run, None when unknown), ``position`` / ``replica_position`` (the store's and
        the replica's, in the backend's own unit), ``what`` (the replica, in words) and
        ``detail`` (why it did not catch up, or an error reading it)."""
        return None

    def replication_position(self) -> ReplicationPosition | None:
        """Where the local store and its asynchronous replica are *now*, for the exposure
        sampler (``bench.exposure``), which calls it every few tens of milliseconds from a
        thread of its own during the drive. None when nothing is replicated asynchronously.
        Must be cheap, must not change what it observes (no forced sync), and must not raise
        for a store that is down: a side it cannot read is None."""
        return None

    def raw_commit_rate(self, seconds: float, clients: int = 1) -> dict[str, Any]:
        """Baseline: commits/s of one small insert per transaction on the same store and
        settings, for comparison with the engine's step checkpoints, from ``clients``
        concurrent connections (a backend that cannot refuses more than one)."""
        raise ConfigError(f"{self.backend}: no raw commit-rate baseline for this backend")


@runtime_checkable
class KillableWorkers(Protocol):
    """Capability: the deployment's workers are OS processes the harness can SIGKILL and
    restart by name (a restarted worker keeps its name and recovers its own runs)."""

    def worker_names(self) -> list[str]: ...

    def kill_worker(self, name: str) -> None: ...

    def start_worker(self, name: str, crash_at: str | None = None) -> None:
        """Start (or restart) a worker. ``crash_at`` = "<point>:<n>" arms a named crash point
        (``backends.durable.crashpoints``) in this incarnation only."""
        ...


@runtime_checkable
class KillableStore(Protocol):
    """Capability: SIGKILL the store process(es) and start them again. What "the store" is, is
    the backend's to say in ``store_processes`` (the Postgres postmaster; the Temporal server;
    for SQLite, which has no server, the processes holding the database file)."""

    def store_processes(self) -> list[str]: ...

    def kill_store(self) -> None: ...

    def start_store(self) -> None:
        """Restart after ``kill_store``; returns when the store accepts requests again."""
        ...


@runtime_checkable
class PausableStore(Protocol):
    """Capability: SIGSTOP the store process(es), later SIGCONT."""

    def pause_store(self) -> None: ...

    def resume_store(self) -> None: ...


@runtime_checkable
class LosableNode(Protocol):
    """Capability: lose the node (SIGKILL everything on it and delete its local data), then
    rebuild from whatever survives elsewhere (an object-store replica, a standby)."""

    def lose_node(self) -> dict[str, Any]:
        """Kill and delete; verify the local data is really gone (raise ``BackendError`` if
        not) and return what was verified, e.g. ``{"verified_gone": [paths]}``."""
        ...

    def rebuild_node(self) -> dict[str, Any]:
        """Rebuild and restart; returns what was done (``{"restored_from": ...}``), with
        ``"total_loss": True`` when nothing survived (a row to report, never to hide)."""
        ...


@runtime_checkable
class PowerLosable(Protocol):
    """Capability: cut the node's power. Every process of the node dies (SIGKILL) and every
    write its disk had not made durable (fsync / fdatasync) is gone, as on a power loss, kernel
    panic or dead VM host. Unlike SIGKILL alone, this loses what sat only in the page cache, so
    it is the fault that tells ``synchronous=NORMAL`` / ``OFF`` or ``synchronous_commit=off``
    apart from the durable settings. It needs the node's data directory on the lazy filesystem
    (``backends.common.powerloss``), mounted only for lose-power trials."""

    def prepare_power_loss(self) -> None:
        """Called before ``start()`` in a lose-power trial: put the node's data directory on
        the lazy filesystem (a plain run never calls it and never mounts anything)."""
        ...

    def lose_power(self) -> None:
        """SIGKILL every process of the node, then drop every write not yet fsynced."""
        ...

    def recover_power(self) -> dict[str, Any]:
        """Power back: remount, restart the node's processes (crash recovery runs), return what
        was done and what the lazy filesystem dropped."""
        ...


@runtime_checkable
class ObjectStoreFaults(Protocol):
    """Capability: the replica goes to an object store the harness can reach through a proxy
    of its own (``backends.common.tcpproxy``), so the store can be made unreachable or slow
    while everything on the node keeps running."""

    def route_object_store_through_proxy(self) -> None:
        """Called before ``start`` when such a fault is planned: point the replicator at the
        proxy (raises ``ConfigError`` when the replica is not an object store)."""
        ...

    def object_store_outage(self, on: bool) -> dict[str, Any]:
        """Cut the store off (every connection dropped and refused), or restore it; returns
        figures of the moment (e.g. the local WAL size)."""
        ...

    def object_store_delay(self, seconds: float) -> dict[str, Any]:
        """Hold every request to the store ``seconds`` before forwarding it (0: none)."""
        ...


# ---------------------------------------------------------------------------------------------
# Registry.
# ---------------------------------------------------------------------------------------------


# The registry and what a backend declares live in ``backends.registration``; imported here so
# that ``from backends.base import BackendInfo, Option, register, ...`` keeps working.
from backends.registration import (  # noqa: E402, F401
    BackendInfo,
    ManagedAlternative,
    MovingParts,
    Option,
    Range,
    float_option,
    get,
    register,
    registered,
)
