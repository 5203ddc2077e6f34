"""The cost model on measured figures where the right answer is known: a local stand-in for a
managed service is priced as that service, never also as a server, and a missing measurement
is left unpriced, never priced as zero."""

from __future__ import annotations

import math

import pytest

from backends.base import get
from bench import cost

MIB = 2**20


def _usage(**kw) -> cost.Usage:
    base = dict(
        runs_finished=100,
        runs_accepted=100,
        drive_s=60.0,
        cpu_s={"worker-0": 3.0, "litestream": 0.5, "seaweedfs": 2.0},
        peak_pss={"worker-0": 40 * MIB, "litestream": 30 * MIB, "seaweedfs": 200 * MIB},
        state_bytes=1e6,
        object_bytes=2e6,
        tier1_requests=120.0,
        tier2_requests=10.0,
        request_source="test",
        exec_attempts_per_run=4.0,
        standins={"seaweedfs": "S3 (object storage and requests)"},
    )
    return cost.Usage(**{**base, **kw})


def _line(est: cost.Estimate, name: str) -> cost.CostLine:
    return next(x for x in est.lines if x.component == name)


def test_object_store_stand_in_is_not_priced_as_a_server() -> None:
    prices = cost.load_prices()
    est = cost.estimate(_usage(), prices, 10)
    store_cpu = _line(est, "CPU: store / server processes")
    store_mem = _line(est, "memory: store / server processes")
    assert "litestream" in store_cpu.assumption and "seaweedfs" not in store_cpu.assumption
    assert "30 MiB" in store_mem.assumption and "seaweedfs" not in store_mem.assumption
    assert _line(est, "object storage: replica bytes").per_month > 0, "S3 is priced instead"
    assert _line(est, "object-store PUT/LIST requests").per_month > 0
    for line in est.lines:
        assert "seaweedfs (local stand-in) -> S3" in line.replaced, line
    assert any("seaweedfs is a local stand-in for S3" in n for n in est.notes)

    # the same measurement priced as if SeaweedFS were a server costs more by exactly its
    # CPU and memory: the difference the stand-in declaration removes
    both = cost.estimate(_usage(standins={}), prices, 10)
    extra = both.total(cost.SELF) - est.total(cost.SELF)
    vcpu, gb_hour = prices.value("vcpu_hour"), prices.value("memory_gb_hour")
    want = 2.0 / 100 / 3600 * vcpu * est.runs_per_month + 200 * MIB / cost.GB * gb_hour * 730
    assert extra == pytest.approx(want)


def test_missing_measurements_are_not_priced_as_zero() -> None:
    prices = cost.load_prices()
    est = cost.estimate(
        _usage(
            cpu_s={"worker-0": None, "litestream": 0.5, "seaweedfs": 2.0},
            peak_pss={"worker-0": 40 * MIB, "litestream": None, "seaweedfs": 200 * MIB},
            object_bytes=None,
            tier1_requests=None,
            tier2_requests=None,
            drive_s=math.nan,
        ),
        prices,
        10,
    )
    for name in (
        "CPU: workers",
        "memory: store / server processes",
        "object storage: replica bytes",
        "object-store PUT/LIST requests",
        "object-store GET/HEAD requests",
    ):
        line = _line(est, name)
        assert line.missing and line.per_month is None and "NOT MEASURED" in line.assumption
    assert est.total(cost.SELF) is None, "no total from incomplete figures"
    assert set(est.not_measured(cost.SELF)) >= {"CPU: workers", "object storage: replica bytes"}
    assert _line(est, "CPU: store / server processes").per_month > 0  # measured: priced


def test_temporal_actions_need_the_attempt_count() -> None:
    est = cost.estimate(
        _usage(
            cpu_s={"worker-0": 1.0, "temporal": 1.0},
            peak_pss={"worker-0": MIB, "temporal": MIB},
            standins={},
            object_bytes=None,
            tier1_requests=None,
            alternatives=get("temporal").managed,
            exec_attempts_per_run=None,
        ),
        cost.load_prices(),
        10,
    )
    actions = _line(est, "Temporal Cloud Actions")
    assert actions.missing and actions.per_month is None
    assert est.total("Temporal Cloud") is None
    assert "temporal -> Temporal Cloud" in actions.replaced


@pytest.mark.parametrize(
    ("database", "managed"), [("postgres", "managed Postgres"), ("sqlite", None)]
)
def test_declarations_that_depend_on_options_follow_the_run(database: str, managed: str | None):
    """A backend whose store is an option (dbos: --dbos-database) is priced and described as
    the store it ran on: on postgres with the managed Postgres total, on sqlite without one."""
    import pandas as pd

    from bench.report.usage import backend_info, usage_of

    manifest = {"backend": "dbos", "backend_options": {"dbos_database": database}}
    summary = {"resources": {"worker-0": {"cpu_s": 1.0, "peak_pss_bytes": MIB}}}
    usage = usage_of(manifest, summary, pd.DataFrame(), pd.DataFrame())
    assert [a.name for a in usage.alternatives] == ([managed] if managed else [])
    est = cost.estimate(_usage(alternatives=usage.alternatives), cost.load_prices(), 10)
    assert est.deployments() == [cost.SELF, *([managed] if managed else [])]
    parts = backend_info(manifest).parts
    assert parts is not None and f"the {database} system database's" in parts.ports
