"""lose-node: SIGKILL everything on the node and delete its local data, then rebuild from what
survives elsewhere (object-store replica, standby) after --restart-delay."""

from __future__ import annotations

from typing import Any

from backends.base import LosableNode
from bench.faults import Fault, register


@register
class LoseNode(Fault):
    name = "lose-node"
    capability = LosableNode
    refusal = "it cannot rebuild a lost node from anything off the node"
    help = "SIGKILL everything on the node, delete its data, rebuild after --restart-delay"
    loses_node = True

    def inject(self, dep: LosableNode) -> dict[str, Any]:
        return dep.lose_node()  # verified gone, or it raised

    def recover(self, dep: LosableNode) -> dict[str, Any]:
        return dep.rebuild_node()
