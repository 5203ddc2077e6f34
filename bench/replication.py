"""Replication health: did the replica the deployment promises actually keep up?

A backend with an asynchronous replica (an object-store copy, a streaming standby) promises that
a lost node loses only the acks younger than a bound. That promise is empty when the replica
never received anything (an unreachable object store: the replicator logs errors and the run
goes on) or stopped receiving mid-run. So after every run the harness asks the deployment for
its figures (``Deployment.replication_health``) and judges them here, the same way for every
backend:

* ``False``: the replica did not catch up at the end (it lacks commits made before the check),
  or replication errors were logged during the run;
* ``"unknown"``: the replica's position could not be read, or the error count could not;
* ``True``: caught up, and no errors.

A deployment that replicates nothing returns None: no check, not a pass.
"""

from __future__ import annotations

from typing import Any


def judge(health: dict[str, Any] | None, errors_expected: bool = False) -> dict[str, Any] | None:
    """The ``replication`` check from a deployment's figures (None: nothing replicated).
    ``errors_expected``: a fault made the replica unreachable on purpose (an object-store
    outage): its errors are a figure, and only the catch-up decides."""
    if health is None:
        return None
    caught = health.get("caught_up")
    errors = health.get("errors")  # absent: the backend has no error counter to read
    problems: list[str] = []
    if caught is False:
        where = ""
        if health.get("position") is not None:
            where = (
                f" (store at {health['position']}, replica at "
                f"{_or_unknown(health.get('replica_position'))} {health.get('position_unit', '')})"
            )
        problems.append(f"the replica had not caught up at the end of the run{where}")
    if errors and not errors_expected:
        problems.append(f"{errors} replication error(s) during the run")
    valid: bool | str
    if problems:
        valid = False
    elif caught is None or ("errors" in health and errors is None and not errors_expected):
        valid = "unknown"
    else:
        valid = True
    out = {"valid": valid, "problems": problems, **health}
    if errors_expected:
        out["errors_expected_from_fault"] = True
    return out


def replication_check(deployment: Any, errors_expected: bool = False) -> dict[str, Any] | None:
    """Ask the deployment and judge; a hook that raises says ``unknown`` with the error."""
    hook = getattr(deployment, "replication_health", None)
    if hook is None:
        return None
    try:
        return judge(hook(), errors_expected)
    except Exception as e:  # noqa: BLE001 - a check that raises decides nothing
        return {"valid": "unknown", "problems": [], "error": f"{type(e).__name__}: {e}"}


def _or_unknown(v: Any) -> str:
    return "unknown" if v is None else str(v)
