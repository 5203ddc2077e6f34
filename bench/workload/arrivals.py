"""Arrival processes: when runs arrive and from which tenant.

Every function takes its own ``random.Random`` so a schedule depends only on (spec, seed).
Times are seconds from the start of the schedule, at rate-scale 1. The profiles yield
(time, tenant index); ``arrival_arrays`` keeps them as two flat arrays (12 bytes an arrival), so
a schedule of millions of runs holds no Python object per run.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator

import numpy as np

from backends.errors import ConfigError
from bench.workload.spec import PROFILES, ArrivalSpec

Arrival = tuple[float, str]  # (seconds from schedule start, tenant name)
_Draw = Iterator[tuple[float, int]]  # (seconds from schedule start, tenant index)


def tenant_name(i: int) -> str:
    return f"t{i:02d}"


def _burst(spec: ArrivalSpec, duration_s: float, rng: random.Random) -> _Draw:
    """Bursty tenants (agents kicked off in batches): each tenant alternates an exponential idle
    period and a burst of N runs spread uniformly over ``burst_duration_s``."""
    cycle_mean = spec.idle_mean_s + spec.burst_duration_s
    for i in range(spec.tenants):
        # Each tenant's cycle began at a random point before t=0, so tenants are out of phase
        # and the first second does not see every tenant's burst at once.
        t = -rng.uniform(0.0, cycle_mean)
        while True:
            t += rng.expovariate(1.0 / spec.idle_mean_s)
            if t >= duration_s:
                break
            n = rng.randint(spec.burst_runs_min, spec.burst_runs_max)
            for _ in range(n):
                at = t + rng.uniform(0.0, spec.burst_duration_s)
                if 0.0 <= at < duration_s:
                    yield at, i
            t += spec.burst_duration_s


def _poisson(spec: ArrivalSpec, duration_s: float, rng: random.Random) -> _Draw:
    """Independent arrivals (many uncoordinated users): exponential gaps at ``rate_per_s``."""
    t = rng.expovariate(spec.rate_per_s)
    while t < duration_s:
        yield t, rng.randrange(spec.tenants)
        t += rng.expovariate(spec.rate_per_s)


def _constant(spec: ArrivalSpec, duration_s: float, rng: random.Random) -> _Draw:
    """Evenly spaced arrivals at exactly ``rate_per_s`` (a steady, fixed-rate load)."""
    n = math.ceil(duration_s * spec.rate_per_s)
    times = (k / spec.rate_per_s for k in range(n))
    return ((t, rng.randrange(spec.tenants)) for t in times if t < duration_s)


def _ramp(spec: ArrivalSpec, duration_s: float, rng: random.Random) -> _Draw:
    """Rate moving linearly from ``start_rate_per_s`` to ``end_rate_per_s`` (find the knee).

    Deterministic spacing: the k-th arrival is where the integrated rate
    L(t) = a*t + (b - a)*t^2 / (2*D) reaches k."""
    a, b, d = spec.start_rate_per_s, spec.end_rate_per_s, duration_s
    total = (a + b) / 2.0 * d  # L(D): expected number of arrivals
    slope = (b - a) / d
    k = 0
    while k < total:
        if abs(slope) < 1e-12:
            t = k / a
        else:
            # Positive root of slope/2 * t^2 + a*t - k = 0; k < L(D) keeps the root real.
            t = (-a + math.sqrt(max(a * a + 2.0 * slope * k, 0.0))) / slope
        if t >= d:
            break
        yield t, rng.randrange(spec.tenants)
        k += 1


_PROFILES = {"burst": _burst, "poisson": _poisson, "constant": _constant, "ramp": _ramp}
assert set(_PROFILES) == set(PROFILES)


def arrival_times(spec: ArrivalSpec, duration_s: float, rng: random.Random) -> list[Arrival]:
    """Arrivals in [0, duration_s), sorted by time (then tenant, so ties are deterministic)."""
    times, tenants, names = arrival_arrays(spec, duration_s, rng)
    return [(t, names[i]) for t, i in zip(times, tenants, strict=True)]


def arrival_arrays(
    spec: ArrivalSpec, duration_s: float, rng: random.Random
) -> tuple[array[float], array[int], tuple[str, ...]]:
    """``arrival_times`` as (times, tenant indexes into names, names): the same arrivals in the
    same order (time, then tenant name), without a tuple and a string per arrival."""
    try:
        gen = _PROFILES[spec.profile]
    except KeyError:
        raise ConfigError(
            f"arrivals.profile: unknown profile {spec.profile!r}; allowed: {', '.join(PROFILES)}"
        ) from None
    times: array[float] = array("d")
    tenants: array[int] = array("I")
    for t, i in gen(spec, duration_s, rng):
        times.append(t)
        tenants.append(i)
    names = tuple(tenant_name(i) for i in range(spec.tenants))
    # ties in time are broken by the tenant's name ("t100" < "t99"), as sorting the tuples did
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    t_np = np.frombuffer(times, dtype=np.float64)
    i_np = np.frombuffer(tenants, dtype=np.uint32)
    order = np.lexsort((rank[i_np], t_np)) if len(times) else np.empty(0, dtype=np.int64)
    sorted_t: array[float] = array("d", t_np[order].tobytes())
    sorted_i: array[int] = array("I", i_np[order].tobytes())
    return sorted_t, sorted_i, names
