"""Agent plans: one run's steps, drawn from a ``PlanSpec`` with the run's own ``Random``.

Shape of every plan (an agent loop):
    plan (LLM) -> tool group -> [reflect (LLM)] -> tool group -> ... -> answer (LLM)
A tool group is one tool call or a parallel fan-out of 2..fanout_max tool calls.
"""

from __future__ import annotations

import math
import random

from backends.base import Plan, StepKind, StepSpec
from bench.workload.spec import PlanSpec

_new = object.__new__

# A small fixed set so step names are readable in histories and reports.
TOOL_NAMES: tuple[str, ...] = ("search", "fetch", "read_file", "run_code", "query_db", "http")


class _StepMaker:
    def __init__(self, spec: PlanSpec, rng: random.Random, max_attempts: int) -> None:
        self.spec = spec
        self.rng = rng
        self.max_attempts = max_attempts
        self.next_id = 0  # ids are handed out in creation order = group order, so dense

    def _lognormal(self, median: float, sigma: float) -> float:
        return self.rng.lognormvariate(math.log(median), sigma)

    def _fail_attempts(self) -> int:
        """Leading attempts that fail transiently: each attempt fails independently with
        ``transient_failure_rate`` (so extra failures after the first are geometric). Capped at
        max_attempts - 1 so transient failures alone never fail a run."""
        cap = self.max_attempts - 1
        fails = 0
        while fails < cap and self.rng.random() < self.spec.transient_failure_rate:
            fails += 1
        return fails

    def step(self, kind: StepKind, name: str) -> StepSpec:
        s = self.spec
        if kind == "llm":
            latency = self._lognormal(s.llm_latency_median_s, s.llm_latency_sigma)
            payload_median = s.llm_payload_bytes_median
        else:
            latency = self._lognormal(s.tool_latency_median_s, s.tool_latency_sigma)
            payload_median = s.tool_payload_bytes_median
        # The payload is an input the step produces, so clamping the sample is harmless.
        payload = round(self._lognormal(payload_median, s.payload_sigma))
        payload = min(max(payload, 1), s.max_payload_bytes)
        permanent = self.rng.random() < s.permanent_failure_rate
        fail_attempts = self._fail_attempts()
        if permanent:
            fail_attempts = 0  # a permanent step fails on its first attempt; nothing to retry
        # built without the frozen dataclass's __init__ (seven object.__setattr__ calls): the
        # harness builds every plan again during the drive, and the fields are checked here
        step = _new(StepSpec)
        step.__dict__.update(
            step_id=self.next_id,
            kind=kind,
            name=name,
            latency_s=round(latency, 6),  # microseconds: readable JSON, exact round trips
            payload_bytes=payload,
            fail_attempts=fail_attempts,
            permanent=permanent,
        )
        self.next_id += 1
        return step

    def tool(self) -> StepSpec:
        return self.step("tool", "tool:" + self.rng.choice(TOOL_NAMES))


def make_plan(spec: PlanSpec, rng: random.Random, max_attempts: int) -> Plan:
    """One agent run. ``max_attempts`` is the retry policy's, to cap transient failures."""
    mk = _StepMaker(spec, rng, max_attempts)
    groups: list[tuple[StepSpec, ...]] = [(mk.step("llm", "plan"),)]
    k = rng.randint(spec.tool_calls_min, spec.tool_calls_max)
    placed = 0
    while placed < k:
        remaining = k - placed
        width = 1
        if remaining >= 2 and rng.random() < spec.fanout_probability:
            width = rng.randint(2, min(spec.fanout_max, remaining))
        groups.append(tuple(mk.tool() for _ in range(width)))
        placed += width
        if rng.random() < spec.reflection_probability:
            groups.append((mk.step("llm", "reflect"),))
    groups.append((mk.step("llm", "answer"),))
    return Plan(tuple(groups))
