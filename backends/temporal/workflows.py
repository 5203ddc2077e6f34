"""The agent workflow on Temporal: one workflow execution per run, one activity per step.

``AgentWorkflow`` takes the plan as input (``Plan.to_json``), runs the groups one after another
and a group's steps in parallel (``asyncio.gather`` of ``execute_activity``; activity id
``step-<step_id>`` so a history maps back to step ids). The step code is the same as on every
backend: ``execute_step`` calls ``backends.workflow.run_step`` with Temporal's attempt number.

Acks (see also ``backends.temporal.client``):

* **step committed**: in the activity. After the step's work, the activity completes *itself*
  with ``RespondActivityTaskCompleted`` (the SDK's async-completion handle) and records
  ``commit ok`` when that call returns: the server has then persisted ActivityTaskCompleted,
  with the result, in the run's history, so the step is never executed again. This is the exact
  moment Temporal makes a step result durable; the SDK would make the same call after a plain
  ``return``, but then the activity could not observe it. ``commit invoke`` is recorded just
  before the call; crash points: ``before-commit`` before ``commit invoke``, ``after-commit``
  right after the call returned, ``after-ack`` right after ``commit ok``. (A result of 1 MiB or
  more is first written to ``backends.temporal.payloads``' fsynced directory; the history then
  holds a reference.) Why not record the ack in workflow code, when the result reaches the
  workflow? That moment comes a workflow task later (dispatch latency counted as commit
  latency), and after a worker crash a result that was durable but never delivered reaches the
  next worker as new: it would be acked late, and a crash between commit and ack could not be
  told apart from a fresh result.
* **replay**: in the workflow. A worker that did not hold the run in its cache rebuilds it from
  the history: every step result delivered while ``workflow.unsafe.is_replaying()`` is recorded
  as ``info replay``, and so is every result delivered in the first *live* workflow task of a
  rebuilt run (those events were in the history before this worker took the run over, e.g. a
  step committed just before its worker was killed). Results delivered live to a cached run
  record nothing: their ack was recorded by the activity.
* **claim** (info): when a run's first workflow task executes (value ``journal: 0``), and when a
  rebuilt run reaches its first live workflow task (value: steps replayed).

Failures: a transient step error is retried by Temporal's retry policy with the benchmark's
settings (``retry_policy``); a permanent one is a non-retryable ``ApplicationError`` (type
``PermanentStepError``). When a group has failed steps, the workflow itself fails (status
Failed, message = the step errors, as the durable executor words them), so Temporal's own view
of the run agrees with ours.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy as TemporalRetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ApplicationErrorCategory,
    TimeoutError,
)

with workflow.unsafe.imports_passed_through():
    from backends.base import Plan, RetryPolicy, StepSpec
    from backends.durable.crashpoints import CrashPoints
    from backends.history import FAIL, INFO, INVOKE, OK, HistoryWriter
    from backends.workflow import StepError, run_step

WORKFLOW_NAME = "AgentWorkflow"
ACTIVITY_NAME = "execute_step"
MIN_INTERVAL_S = 0.001  # Temporal refuses a zero initial retry interval


@dataclass(frozen=True)
class RunInput:
    """The workflow's only input: everything that decides what the run does."""

    run_id: str
    plan_json: str
    seed: int
    time_scale: float
    retry: dict[str, float]  # backends.base.RetryPolicy as a dict
    activity_timeout_s: float


@dataclass(frozen=True)
class StepInput:
    run_id: str
    step_json: str
    seed: int
    time_scale: float


def run_input(
    run_id: str, plan: Plan, seed: int, time_scale: float, retry: RetryPolicy, timeout_s: float
) -> RunInput:
    return RunInput(run_id, plan.to_json(), seed, time_scale, asdict(retry), timeout_s)


def retry_policy(retry: dict[str, float], time_scale: float) -> TemporalRetryPolicy:
    """The benchmark's retry settings as Temporal's: the same formula (interval after attempt n
    = min(initial * multiplier^(n-1), max), max_attempts counts the first attempt), with waits
    scaled by the time-scale. Temporal needs initial_interval > 0, so it is at least 1 ms (at
    time-scale 0 the other backends retry at once); backoff_coefficient must be >= 1 and
    maximum_attempts >= 1 (0 would mean unlimited)."""
    initial = max(retry["initial_backoff_s"] * time_scale, MIN_INTERVAL_S)
    maximum = max(retry["max_backoff_s"] * time_scale, initial)
    return TemporalRetryPolicy(
        initial_interval=timedelta(seconds=initial),
        backoff_coefficient=max(float(retry["backoff_multiplier"]), 1.0),
        maximum_interval=timedelta(seconds=maximum),
        maximum_attempts=max(int(retry["max_attempts"]), 1),
        non_retryable_error_types=["PermanentStepError"],
    )


def start_to_close_s(activity_timeout_s: float, step: StepSpec, time_scale: float) -> float:
    """An attempt's start-to-close timeout: the step's own simulated latency plus
    ``--activity-timeout`` of slack. A killed worker's attempt is retried after it expires."""
    return activity_timeout_s + step.latency_s * time_scale


# ---------------------------------------------------------------------------------------------
# Per-process hooks, installed by the worker process (this module is passed through the
# workflow sandbox, so the workflow code sees the same object).
# ---------------------------------------------------------------------------------------------


@dataclass
class WorkerHooks:
    history: HistoryWriter | None = None
    crash: CrashPoints = field(default_factory=lambda: CrashPoints(""))
    client: Any = None  # temporalio.client.Client, for completing activities


HOOKS = WorkerHooks()


def _record(type_: str, op: str, run: str, step: int | None = None, value: Any = None) -> None:
    """Append to this worker's history from workflow code (outside the sandbox's checks)."""
    if HOOKS.history is not None:
        with workflow.unsafe.sandbox_unrestricted():
            HOOKS.history.record(type_, op, run, step, value=value)


# ---------------------------------------------------------------------------------------------
# Activity.
# ---------------------------------------------------------------------------------------------


@activity.defn(name=ACTIVITY_NAME)
async def execute_step(inp: StepInput) -> bytes:
    """One attempt of one step, then its commit (see the module docstring for the acks)."""
    info = activity.info()
    step = StepSpec(**json.loads(inp.step_json))
    sid, attempt, run = step.step_id, info.attempt, inp.run_id
    h = HOOKS.history
    assert h is not None and HOOKS.client is not None, "worker hooks not installed"
    h.record(INVOKE, "exec", run, sid, attempt)
    try:
        output = await run_step(step, attempt, inp.seed, run, inp.time_scale)
    except StepError as e:
        h.record(FAIL, "exec", run, sid, attempt, value=str(e))
        raise ApplicationError(  # BENIGN: a planned failure, logged at DEBUG by the SDK
            str(e),
            {"attempt": attempt},
            type=type(e).__name__,
            non_retryable=not e.retryable,
            category=ApplicationErrorCategory.BENIGN,
        ) from e
    except asyncio.CancelledError:
        h.record(FAIL, "exec", run, sid, attempt, value="cancelled (worker stopping or timeout)")
        raise
    h.record(OK, "exec", run, sid, attempt, value=len(output))
    HOOKS.crash.hit("before-commit")
    h.record(INVOKE, "commit", run, sid, attempt)
    try:
        await HOOKS.client.get_async_activity_handle(task_token=info.task_token).complete(output)
    except Exception as e:
        from temporalio.service import RPCError, RPCStatusCode

        if isinstance(e, RPCError) and e.status == RPCStatusCode.NOT_FOUND:
            # the server refused: this attempt had timed out (or the run ended); not stored
            h.record(FAIL, "commit", run, sid, attempt, value=f"rejected: {e.message}")
        else:
            h.record(INFO, "commit", run, sid, attempt, value=f"indeterminate: {e!r}")
        raise
    HOOKS.crash.hit("after-commit")
    h.record(OK, "commit", run, sid, attempt)
    HOOKS.crash.hit("after-ack")
    activity.raise_complete_async()  # already completed above: the SDK must not complete again


# ---------------------------------------------------------------------------------------------
# Workflow.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepFailed:
    error: str


@workflow.defn(name=WORKFLOW_NAME)
class AgentWorkflow:
    def __init__(self) -> None:
        self._run_id = ""
        self._rebuilt = False  # this instance was built by replaying history
        self._replayed = 0
        self._first_live_len: int | None = None  # history length of the first live task

    @workflow.run
    async def run(self, inp: RunInput) -> int:
        """Returns the number of steps; raises (fails the workflow) when a step failed."""
        self._run_id = inp.run_id
        self._rebuilt = workflow.unsafe.is_replaying()
        if not self._rebuilt:
            _record(INFO, "claim", inp.run_id, value={"journal": 0})
        plan = Plan.from_json(inp.plan_json)
        retry = retry_policy(inp.retry, inp.time_scale)
        for group in plan.groups:
            outcomes = await asyncio.gather(*(self._step(inp, s, retry) for s in group))
            errors = [o.error for o in outcomes if isinstance(o, StepFailed)]
            if errors:
                raise ApplicationError("; ".join(errors), type="RunFailed", non_retryable=True)
        return len(plan.steps)

    async def _step(
        self, inp: RunInput, step: StepSpec, retry: TemporalRetryPolicy
    ) -> bytes | StepFailed:
        try:
            output = await workflow.execute_activity(
                execute_step,
                StepInput(inp.run_id, json.dumps(asdict(step)), inp.seed, inp.time_scale),
                activity_id=f"step-{step.step_id}",
                start_to_close_timeout=timedelta(
                    seconds=start_to_close_s(inp.activity_timeout_s, step, inp.time_scale)
                ),
                retry_policy=retry,
            )
        except ActivityError as e:
            return StepFailed(_describe(step, e))
        self._delivered(step.step_id)
        return output

    def _delivered(self, sid: int) -> None:
        """A step result reached the workflow: record a replay if it came from history this
        worker had not seen live (see the module docstring)."""
        if workflow.unsafe.is_replaying():
            self._replayed += 1
            _record(INFO, "replay", self._run_id, sid)
            return
        if not self._rebuilt:
            return
        n = workflow.info().get_current_history_length()
        if self._first_live_len is None:
            self._first_live_len = n
            _record(INFO, "claim", self._run_id, value={"journal": self._replayed, "rebuilt": True})
        if n == self._first_live_len:
            _record(INFO, "replay", self._run_id, sid)


def _describe(step: StepSpec, e: ActivityError) -> str:
    """``step 3 (tool:http) after 1 attempt(s): tool:http: permanent failure (planned)``."""
    cause = e.cause
    attempts: Any = "?"
    if isinstance(cause, ApplicationError):
        message = cause.message
        if cause.details and isinstance(cause.details[0], dict):
            attempts = cause.details[0].get("attempt", "?")
    elif isinstance(cause, TimeoutError):
        message = f"timed out ({cause.type.name if cause.type else 'timeout'})"
    else:
        message = str(cause or e)
    return f"step {step.step_id} ({step.name}) after {attempts} attempt(s): {message}"
