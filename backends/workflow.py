"""The agent workflow's step code: the same on every backend.

A step simulates an LLM or tool call: it waits its planned latency (times the time-scale), then
either raises (transient or permanent failure, as planned) or returns a payload. The payload is a
pure function of (seed, run, step, size), so a checker can recompute what every stored step
result must be, byte for byte.
"""

from __future__ import annotations

import asyncio

from backends.base import StepSpec
from backends.common.payload import PAYLOAD_VERSION, payload


class StepError(Exception):
    """A step attempt failed."""

    retryable = True


class TransientStepError(StepError):
    """Fails this attempt; a retry may succeed (a rate limit, a timeout)."""


class PermanentStepError(StepError):
    """Fails every attempt (bad tool input): not retried, fails the run."""

    retryable = False


def expected_payload(
    seed: int, run_id: str, step_id: int, size: int, version: int = PAYLOAD_VERSION
) -> bytes:
    """The bytes a step returns (``backends.common.payload``, of the run's payload version).
    Arbitrary binary (not ASCII), so stores must keep it exact."""
    return payload(seed, run_id, step_id, size, version)


async def run_step(
    step: StepSpec,
    attempt: int,
    seed: int,
    run_id: str,
    time_scale: float,
    version: int = PAYLOAD_VERSION,
) -> bytes:
    """One attempt (1-based) of a step's work. Has no durable effect of its own: durability is
    the executor's checkpoint afterwards."""
    wait = step.latency_s * time_scale
    if wait > 0:
        await asyncio.sleep(wait)
    if step.permanent:
        raise PermanentStepError(f"{step.name}: permanent failure (planned)")
    if attempt <= step.fail_attempts:
        raise TransientStepError(f"{step.name}: transient failure {attempt}/{step.fail_attempts}")
    return payload(seed, run_id, step.step_id, step.payload_bytes, version)
