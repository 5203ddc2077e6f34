"""The step-journal executor shared by the SQL backends (and the in-memory reference engine).

One executor runs inside each worker process: an asyncio loop that claims runs from the store's
queue and keeps up to ``concurrency`` of them in flight (agent steps mostly wait, so one process
can interleave many runs). For each run it walks the plan's groups in order, running a group's
steps in parallel (fan-out). A step already in the run's journal is replayed, never executed
again; otherwise its work runs with retries, then its result is checkpointed, and only then does
the run move on. The final step's checkpoint also completes the run, in one transaction.

Every invoke / ok / fail / info goes to the harness's history (``backends.history``).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from backends.base import ExecutionSettings, StepSpec
from backends.durable.crashpoints import CrashPoints
from backends.durable.groupcommit import Checkpoint, GroupCommitter
from backends.durable.store import ClaimedRun, DurableStore
from backends.durable.testonly import BrokenEngine
from backends.errors import LeaseLost
from backends.history import FAIL, INFO, INVOKE, OK, HistoryWriter, RawJSON
from backends.workflow import StepError, run_step

CLAIM_BATCH = 32


@dataclass(frozen=True)
class StepFailed:
    step: StepSpec
    error: str


class Abandon(Exception):
    """This worker must stop working on a run (fenced out, or the store failed mid-commit)."""


class Executor:
    def __init__(
        self,
        store: DurableStore,
        settings: ExecutionSettings,
        history: HistoryWriter,
        worker: str,
        crash: CrashPoints | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.h = history
        self.worker = worker
        self.crash = crash or CrashPoints("")
        self.broken = BrokenEngine()  # TEST ONLY (off unless its env variable is set)
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.committer = GroupCommitter(
            store,
            worker,
            settings.group_commit,
            on_committed=self._record_acks,
            before_commit=history.write,
        )
        self._slot_free = asyncio.Event()

    async def serve(self, stop: asyncio.Event) -> None:
        """Claim and execute runs until ``stop`` is set. The first claim recovers the runs this
        worker id owned before a restart, without waiting for their leases to expire."""
        if self.broken.active:
            self.h.record(INFO, "broken-engine", value=f"TEST ONLY: {self.broken.spec}")
        renewer = asyncio.create_task(self._renew_leases(stop))
        recover = True
        try:
            while not stop.is_set():
                free = self.settings.concurrency - len(self.in_flight)
                if free <= 0:
                    self._slot_free.clear()
                    await _wait_any(self._slot_free, stop)
                    continue
                # runs this worker is executing when the claim starts: if their leases expired
                # (store paused longer than the lease, renewals failing) the claim can hand them
                # back to us, and the owner fence would let a second execution through
                busy = set(self.in_flight)
                since = self.h.now()  # the claim's journal reads happen after this instant
                claimed = await self.store.claim(
                    self.worker, min(free, CLAIM_BATCH), self.settings.lease_s, recover
                )
                recover = False
                h = self.h
                lines: list[str] = []  # one write for the whole claim, before any run starts
                for run in claimed:
                    if run.run_id in busy or run.run_id in self.in_flight:
                        # never run one run twice at once: the execution in flight keeps it
                        # (the claim only renewed its lease); it finishes or releases it. (If
                        # it released it just before this claim, the run waits one lease.)
                        lines.append(
                            h.line(INFO, "claim-overlap", run.run_id, None, None, run.claims)
                        )
                        continue
                    # ``since``: when the claim began, so a checker knows the journal was read
                    # after it
                    value = f'{{"journal":{len(run.journal)},"claims":{run.claims},"since":{since:.6f}}}'
                    lines.append(h.line(INFO, "claim", run.run_id, None, None, RawJSON(value)))
                    self.in_flight[run.run_id] = asyncio.create_task(self._execute(run, since))
                h.write("".join(lines))
                if claimed:
                    await asyncio.sleep(0)  # let the new runs start before claiming more
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.settings.poll_interval_s)
        finally:
            renewer.cancel()
            await self.committer.close()
            for task in list(self.in_flight.values()):
                task.cancel()
            await asyncio.gather(renewer, *self.in_flight.values(), return_exceptions=True)

    async def _renew_leases(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.settings.lease_s / 3)
            if not self.in_flight:
                continue
            try:
                await self.store.renew(self.worker, list(self.in_flight), self.settings.lease_s)
            except Exception as e:  # noqa: BLE001 - the store may be down; try again next time
                self.h.record(INFO, "renew", value=f"failed: {e!r}")

    async def _execute(self, run: ClaimedRun, since: float) -> None:
        h = self.h  # its "claim" line was written by ``serve``
        try:
            groups = run.plan.groups
            for gi, group in enumerate(groups):
                final = gi == len(groups) - 1 and len(group) == 1
                if len(group) == 1:  # most groups: a plain await, no task per step
                    results = [await self._step(run, group[0], final, since)]
                else:
                    results = await asyncio.gather(
                        *(self._step(run, s, final, since) for s in group)
                    )
                failed = [r for r in results if isinstance(r, StepFailed)]
                if failed:
                    error = "; ".join(f.error for f in failed)
                    await self.store.finish(self.worker, run.run_id, "failed", error)
                    h.record(OK, "complete", run.run_id, value="failed")
                    return
                if final:
                    h.record(OK, "complete", run.run_id, value="completed")
                    return
            # the last group fanned out, so completion is its own transaction
            await self.store.finish(self.worker, run.run_id, "completed", None)
            h.record(OK, "complete", run.run_id, value="completed")
        except (Abandon, LeaseLost) as e:
            h.record(INFO, "abandon", run.run_id, value=str(e))
            with contextlib.suppress(Exception):
                await self.store.release(self.worker, run.run_id)
        finally:
            self.in_flight.pop(run.run_id, None)
            self._slot_free.set()

    async def _step(
        self, run: ClaimedRun, step: StepSpec, final: bool, since: float
    ) -> bytes | StepFailed:
        h = self.h
        sid = step.step_id
        if sid in run.journal:
            h.record(INFO, "replay", run.run_id, sid)
            if final:  # journal has the last step but the run was not completed: finish it
                await self.store.finish(self.worker, run.run_id, "completed", None)
            return run.journal[sid]
        # An attempt that waits (a simulated LLM / tool call in flight) has its invoke written
        # before the wait. One that does not (--time-scale 0) is pure computation in this
        # process, seen by nothing outside it: its invoke, outcome and the commit's invoke go
        # out in ONE write, before the commit (each line keeps its own time). A kill in those
        # microseconds loses only events that no one outside could have observed.
        external = step.latency_s * self.settings.time_scale > 0
        output, lines, attempt = await self._attempts(run, step, since, external)
        if isinstance(output, StepFailed):
            return output
        if self.crash.armed("before-commit"):  # the work's outcome is in the file, as unbatched
            h.write(lines)
            lines = ""
        self.crash.hit("before-commit")
        lines += h.line(INVOKE, "commit", run.run_id, sid, attempt)
        if external:  # its outcome came from outside this process: in the file at once
            h.write(lines)
            lines = ""
        # else these lines go out with those of the rest of its group commit, in one write
        # just before the transaction begins (nothing outside sees the step until then)
        if self.broken.drop_commit(final):  # TEST ONLY: ack a checkpoint never written
            h.write(lines)
            h.record(INFO, "broken-engine", run.run_id, sid, value="acked without commit")
            h.record(OK, "commit", run.run_id, sid, attempt)
            return output
        try:
            stored = await self.committer.commit(
                Checkpoint(run.run_id, sid, output, attempt, final), lines
            )
        except LeaseLost as e:
            h.record(FAIL, "commit", run.run_id, sid, attempt, value=f"lease lost: {e}")
            raise
        except Exception as e:  # outcome unknown: the commit may or may not have happened
            h.record(INFO, "commit", run.run_id, sid, attempt, value=f"indeterminate: {e!r}")
            raise Abandon(f"commit of step {sid} indeterminate: {e!r}") from e
        # the "commit ok" ack is already in the history: ``_record_acks`` wrote it
        return stored

    async def _attempts(
        self, run: ClaimedRun, step: StepSpec, since: float, external: bool
    ) -> tuple[bytes | StepFailed, str, int]:
        """Attempts of one step, with its retries, until an outcome: the output (or the
        failure), the history lines not yet written (see ``_step``) and the attempt number."""
        h, sid, retry = self.h, step.step_id, self.settings.retry
        attempt = 0
        claim = RawJSON(f'{{"claim":{since:.6f}}}')  # formatted once, not at every attempt
        lines = ""
        while True:
            attempt += 1
            # the claim this execution came from: a checker tells work redone because two
            # claims overlapped (claim began before the ack) from a forgotten ack (after it)
            lines += h.line(INVOKE, "exec", run.run_id, sid, attempt, claim)
            if external:
                h.write(lines)
                lines = ""
            try:
                output = await run_step(
                    step,
                    attempt,
                    self.settings.seed,
                    run.run_id,
                    self.settings.time_scale,
                    self.settings.payload_version,
                )
            except StepError as e:
                h.write(lines + h.line(FAIL, "exec", run.run_id, sid, attempt, str(e)))
                lines = ""
                if not e.retryable or attempt >= retry.max_attempts:
                    failed = StepFailed(
                        step, f"step {sid} ({step.name}) after {attempt} attempt(s): {e}"
                    )
                    return failed, "", attempt
                await asyncio.sleep(retry.backoff_s(attempt) * self.settings.time_scale)
                continue
            return (
                output,
                lines + h.line(OK, "exec", run.run_id, sid, attempt, len(output)),
                attempt,
            )

    def _record_acks(self, batch: list[Checkpoint], outcomes: list[bytes | Exception]) -> None:
        """The step-committed acks of one group commit, written to the history in ONE
        ``os.write`` after the transaction committed and before any of its steps resumes.

        Invariant: an ack is in the history file before anything acts on it (the run's next
        step, its completion): the committer calls this before it resolves any caller's future.
        The crash points keep their per-checkpoint meaning: ``after-commit`` is hit once per
        checkpoint with the acks of the batch's earlier checkpoints already written (so a kill
        at the n-th leaves exactly n - 1 acks), ``after-ack`` once per checkpoint after the
        write (tests/test_conformance.py, tests/test_group_acks.py kill at both)."""
        h = self.h
        t = h.now()
        lines: list[str] = []
        acks = 0
        for cp, out in zip(batch, outcomes, strict=True):
            if isinstance(out, Exception):
                continue  # fenced out: its caller records the failure
            if self.crash.armed("after-commit"):
                h.write("".join(lines))  # the acks before the crash point, as if unbatched
                lines.clear()
            self.crash.hit("after-commit")
            value = None if out == cp.output else "kept-first"
            lines.append(h.line(OK, "commit", cp.run_id, cp.step_id, cp.attempts, value, t))
            acks += 1
        h.write("".join(lines))
        for _ in range(acks):
            self.crash.hit("after-ack")


async def _wait_any(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
