"""Object-store faults: the replica's destination misbehaves while the node keeps running.

  s3-outage  every connection to the object store is cut and new ones are refused for
             --outage seconds, then it answers again
  s3-slow    every request to the object store waits --s3-latency before it is forwarded,
             for --outage seconds

Both go through a TCP proxy the harness owns (``ObjectStoreFaults``); the store itself is never
touched. Nothing is destroyed: every ack must survive (promise: 0 lost), but acks made during
the fault exist only on the node until the replicator catches up afterwards; the exposure
sampler (bench/exposure.py) measures how many and for how long, and how long the catch-up
took. The replicator's errors during the fault are expected and reported as figures.
"""

from __future__ import annotations

from typing import Any

from backends.base import Deployment, ObjectStoreFaults

WHY = "its replica does not go to an object store the harness can put a proxy in front of"
FAULTS: dict[str, tuple[type, str]] = {
    "s3-outage": (ObjectStoreFaults, WHY),
    "s3-slow": (ObjectStoreFaults, WHY),
}


def prepare(fault: str, dep: Deployment) -> None:
    """Before the deployment starts: route its replica through the proxy."""
    if fault in FAULTS and isinstance(dep, ObjectStoreFaults):
        dep.route_object_store_through_proxy()


def inject(fault: str, dep: Deployment, latency_s: float) -> dict[str, Any]:
    assert isinstance(dep, ObjectStoreFaults)
    if fault == "s3-outage":
        return {"at_inject": dep.object_store_outage(True), "replication_errors_expected": True}
    return {
        "at_inject": dep.object_store_delay(latency_s),
        "latency_s": latency_s,
        "replication_errors_expected": True,
    }


def recover(fault: str, dep: Deployment) -> dict[str, Any]:
    assert isinstance(dep, ObjectStoreFaults)
    if fault == "s3-outage":
        return {"at_recover": dep.object_store_outage(False)}
    return {"at_recover": dep.object_store_delay(0.0)}
