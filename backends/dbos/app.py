"""The agent workflow as a DBOS Transact application: one DBOS workflow per run, one DBOS step
per plan step. Imported by the worker processes (``backends.dbos.worker``), which install the
per-process hooks (history, crash points) before ``DBOS.launch()``.

* The workflow ``durabench_agent_run(run_id, plan_json, seed, time_scale, retry)`` walks the
  plan's groups in order; a group's steps run in parallel as ``asyncio.gather`` of
  ``DBOS.run_step_async`` calls. DBOS takes each step's function id when the call starts, and
  ``gather`` starts its coroutines in argument order, so the ids are the same on every replay.
  Each step is named ``step-<step_id>`` (the ``name`` step option): the name is stored in
  ``operation_outputs.function_name``, which is how the state view maps a row to a plan step.
* Retries are DBOS step retries: ``retries_allowed``, ``max_attempts`` = the policy's (it counts
  the first attempt, as ours does), ``interval_seconds`` = initial backoff x time-scale,
  ``backoff_rate`` = the multiplier; ``should_retry`` refuses ``PermanentStepError``. Mismatch:
  DBOS caps a wait at 3600 s, not at ``max_backoff_s`` (the default policy, 4 attempts of
  0.2 s x 2^n, never reaches the 5 s cap, so the waits agree). DBOS's attempt counter is
  zero-based (``DBOS.step_status.current_attempt``); the history's is one-based.
* Failures: DBOS records a step's final error in ``operation_outputs`` and raises it in the
  workflow; when a group has failed steps the workflow raises ``RunFailed`` with the errors
  worded as the durable executor words them, so DBOS stores the workflow as ERROR.

Acks recorded here (see ``backends.dbos.backend`` for all three):

* **step committed**: DBOS writes the step's output row (``operation_outputs``) in its own
  transaction after the step function returns and before ``run_step_async`` returns to the
  workflow. ``commit invoke`` is recorded as the step function's last act (the output is then
  handed to DBOS), ``commit ok`` in the workflow as soon as ``run_step_async`` returns a result
  that this call executed. Crash points: ``before-commit`` before ``commit invoke``,
  ``after-commit`` right after ``run_step_async`` returned, ``after-ack`` after ``commit ok``.
* **replay**: ``run_step_async`` returned without the step function running in this call:
  DBOS found the output row and returned it (a recovered workflow re-runs from the start).
* **claim** (info): the workflow function starts (first execution, or recovery); ``since`` is
  that instant, before any of its step-output reads.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from dbos import DBOS

from backends.base import Plan, RetryPolicy, StepSpec
from backends.durable.crashpoints import CrashPoints
from backends.history import FAIL, INFO, INVOKE, OK, HistoryWriter
from backends.workflow import StepError, run_step

APP_NAME = "durabench"
APP_VERSION = "durabench-1"  # fixed: the harness's enqueues and every worker agree on it
QUEUE = "durabench"
WORKFLOW_NAME = "durabench_agent_run"
DBOS_MAX_RETRY_WAIT_S = 3600.0  # DBOS's own cap on a step retry wait (dbos._core)


@dataclass
class Hooks:
    history: HistoryWriter | None = None
    crash: CrashPoints = field(default_factory=lambda: CrashPoints(""))


HOOKS = Hooks()


class RunFailed(Exception):
    """A group had failed steps: the workflow ends in ERROR with this message."""


def step_name(step_id: int) -> str:
    return f"step-{step_id}"


def step_id_of(name: str) -> int | None:
    head, _, tail = name.partition("-")
    return int(tail) if head == "step" and tail.isdigit() else None


def step_options(retry: RetryPolicy, time_scale: float, step_id: int) -> dict[str, Any]:
    """The benchmark's retry policy as DBOS step options (see the module docstring)."""
    return {
        "name": step_name(step_id),
        "retries_allowed": retry.max_attempts > 1,
        "max_attempts": max(int(retry.max_attempts), 1),
        "interval_seconds": retry.initial_backoff_s * time_scale,
        "backoff_rate": retry.backoff_multiplier,
        "should_retry": lambda e: getattr(e, "retryable", True),
    }


def _h() -> HistoryWriter:
    assert HOOKS.history is not None, "worker hooks not installed"
    return HOOKS.history


async def _attempt(
    run_id: str, step: StepSpec, seed: int, time_scale: float, since: float, ran: set[int]
) -> bytes:
    """One attempt of one step (DBOS calls this again for a retry)."""
    h = _h()
    ran.add(step.step_id)
    status = DBOS.step_status
    attempt = (status.current_attempt or 0) + 1 if status is not None else 1
    sid = step.step_id
    h.record(INVOKE, "exec", run_id, sid, attempt, value={"claim": round(since, 6)})
    try:
        out = await run_step(step, attempt, seed, run_id, time_scale)
    except StepError as e:
        h.record(FAIL, "exec", run_id, sid, attempt, value=str(e))
        raise
    h.record(OK, "exec", run_id, sid, attempt, value=len(out))
    HOOKS.crash.hit("before-commit")
    h.record(INVOKE, "commit", run_id, sid, attempt)  # DBOS writes the output row next
    return out


@dataclass(frozen=True)
class _Failed:
    error: str


async def _step(
    run_id: str, step: StepSpec, seed: int, time_scale: float, retry: RetryPolicy, since: float
) -> bytes | _Failed:
    ran: set[int] = set()
    h = _h()
    try:
        out = await DBOS.run_step_async(
            step_options(retry, time_scale, step.step_id),  # type: ignore[arg-type]
            _attempt,
            run_id,
            step,
            seed,
            time_scale,
            since,
            ran,
        )
    except Exception as e:  # noqa: BLE001 - a failed step (its error row is DBOS's)
        cause = e
        tried: Any = "?"
        if type(e).__name__ == "DBOSMaxStepRetriesExceeded":
            errors = getattr(e, "errors", None) or []
            cause = errors[-1] if errors else e
            tried = retry.max_attempts
        elif isinstance(e, StepError):  # refused by should_retry, or retries off: 1 attempt
            tried = 1 if not e.retryable or retry.max_attempts <= 1 else "?"
        return _Failed(f"step {step.step_id} ({step.name}) after {tried} attempt(s): {cause}")
    if step.step_id in ran:
        HOOKS.crash.hit("after-commit")
        h.record(OK, "commit", run_id, step.step_id)
        HOOKS.crash.hit("after-ack")
    else:
        h.record(INFO, "replay", run_id, step.step_id)
    return out


@DBOS.workflow(name=WORKFLOW_NAME)
async def agent_run(
    run_id: str, plan_json: str, seed: int, time_scale: float, retry: dict[str, float]
) -> int:
    """Returns the number of steps; raises ``RunFailed`` when a group had failed steps."""
    h = _h()
    since = h.now()
    h.record(INFO, "claim", run_id, value={"since": round(since, 6), "executor": DBOS.executor_id})
    plan = Plan.from_json(plan_json)
    policy = RetryPolicy(**retry)
    for group in plan.groups:
        outs = await asyncio.gather(
            *(_step(run_id, s, seed, time_scale, policy, since) for s in group)
        )
        errors = [o.error for o in outs if isinstance(o, _Failed)]
        if errors:
            raise RunFailed("; ".join(errors))
    return len(plan.steps)


def workflow_args(
    run_id: str, plan: Plan, seed: int, time_scale: float, retry: RetryPolicy
) -> tuple[Any, ...]:
    """The workflow's arguments as the client enqueues them (JSON-friendly values only)."""
    from dataclasses import asdict

    return (run_id, plan.to_json(), seed, time_scale, json.loads(json.dumps(asdict(retry))))
