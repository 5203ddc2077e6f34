"""lose-node-in-outage: the object store stops answering for --outage seconds (as s3-outage),
and --lose-node-after seconds into the outage the node is lost (as lose-node). When the outage
ends, the node is rebuilt from the replica, which holds nothing made since the outage began.

What it shows: an outage alone destroys nothing, but everything acknowledged since the outage
began exists only on the node, so a node loss during it loses exactly what the exposure series
had at risk at that moment (``bench.exposure.cross_check`` checks it ack by ack).

The promise is derived, not declared: the deployment's lose-node bound, plus the outage's age at
the node loss (measured on the timeline, lead-in to fault). An ack made just before the outage
began could still have been waiting for its upload (the lose-node bound); nothing made after it
began could be uploaded. The promise checker then judges every lost ack by its age at the node
loss against that sum, as for lose-node.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from backends.base import LosableNode, ObjectStoreFaults
from backends.errors import ConfigError
from backends.promises import Promise
from bench.faults import Fault, register
from bench.faults.objectstore import WHY

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.nemesis import FaultSpec


@runtime_checkable
class LosableNodeBehindProxy(LosableNode, ObjectStoreFaults, Protocol):
    """Both: a node the harness can lose, replicating through the harness's proxy."""


def lose_after_s(spec: FaultSpec) -> float:
    """Seconds into the outage at which the node is lost: given, or half the outage."""
    after = spec.outage_s / 2 if spec.lose_node_after_s is None else spec.lose_node_after_s
    if not 0 <= after < spec.outage_s:
        raise ConfigError(
            f"--lose-node-after must be >= 0 and below --outage ({spec.outage_s:g} s), "
            f"got {after:g}"
        )
    return after


@register
class LoseNodeInOutage(Fault):
    name = "lose-node-in-outage"
    capability = LosableNodeBehindProxy
    refusal = f"it cannot lose its node, or {WHY}"
    help = (
        "s3-outage for --outage seconds, the node lost --lose-node-after seconds into it, "
        "rebuilt from the replica when the outage ends"
    )
    widens_exposure = True
    loses_node = True

    def prepare(self, dep: LosableNodeBehindProxy) -> None:
        dep.route_object_store_through_proxy()

    def lead_in_s(self, spec: FaultSpec) -> float:
        return lose_after_s(spec)

    def lead_in(self, dep: LosableNodeBehindProxy, spec: FaultSpec) -> dict[str, Any]:
        return {"at_inject": dep.object_store_outage(True), "replication_errors_expected": True}

    def hold_s(self, spec: FaultSpec) -> float:
        return spec.outage_s - lose_after_s(spec)  # the rest of the outage

    def inject(self, dep: LosableNodeBehindProxy) -> dict[str, Any]:
        return dep.lose_node()

    def recover(self, dep: LosableNodeBehindProxy) -> dict[str, Any]:
        # the store answers again first: the rebuild restores from it
        return {"at_recover": dep.object_store_outage(False), **dep.rebuild_node()}

    def promise(
        self, promise_of: Callable[[str], Promise | None], timeline: dict[str, Any]
    ) -> Promise | None:
        node = promise_of("lose-node")
        began, lost = timeline.get("lead_in_t", math.nan), timeline.get("start_t", math.nan)
        if node is None or math.isnan(began) or math.isnan(lost):
            return None  # no lose-node promise, or the fault never happened: nothing to judge
        if node.max_lost_age_s is None:
            return dataclasses.replace(node, fault=self.name)
        age = lost - began
        return Promise(
            self.name,
            node.max_lost_age_s + age,
            node.intact,
            f"nothing acknowledged during the object-store outage could reach the replica: "
            f"the lose-node bound ({node.max_lost_age_s:g} s) plus the outage's age when the "
            f"node was lost ({age:.3f} s). Lose-node basis: {node.basis}",
        )
