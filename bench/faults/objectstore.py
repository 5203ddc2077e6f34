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

from typing import TYPE_CHECKING, Any

from backends.base import ObjectStoreFaults
from bench.faults import Fault, register

if TYPE_CHECKING:
    from bench.nemesis import FaultSpec

WHY = "its replica does not go to an object store the harness can put a proxy in front of"


class _ObjectStoreFault(Fault):
    capability = ObjectStoreFaults
    refusal = WHY
    widens_exposure = True

    def hold_s(self, spec: FaultSpec) -> float:
        return spec.outage_s

    def prepare(self, dep: ObjectStoreFaults) -> None:
        """Before the deployment starts: route its replica through the proxy."""
        dep.route_object_store_through_proxy()


@register
class S3Outage(_ObjectStoreFault):
    name = "s3-outage"
    help = "the object store stops answering for --outage seconds, then returns"

    def inject(self, dep: ObjectStoreFaults) -> dict[str, Any]:
        return {"at_inject": dep.object_store_outage(True), "replication_errors_expected": True}

    def recover(self, dep: ObjectStoreFaults) -> dict[str, Any]:
        return {"at_recover": dep.object_store_outage(False)}


@register
class S3Slow(_ObjectStoreFault):
    name = "s3-slow"
    help = "every object-store request waits --s3-latency, for --outage seconds"

    def inject_with(self, dep: ObjectStoreFaults, spec: FaultSpec) -> dict[str, Any]:
        return {
            "at_inject": dep.object_store_delay(spec.latency_s),
            "latency_s": spec.latency_s,
            "replication_errors_expected": True,
        }

    def inject(self, dep: ObjectStoreFaults) -> dict[str, Any]:  # pragma: no cover - unused
        raise NotImplementedError("s3-slow needs the trial's latency: inject_with")

    def recover(self, dep: ObjectStoreFaults) -> dict[str, Any]:
        return {"at_recover": dep.object_store_delay(0.0)}
