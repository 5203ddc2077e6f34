"""The fault registry: a fault is one module that registers itself; a deployment is refused or
accepted by the capability the fault names, and the nemesis runs the fault's own inject, hold
and recover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import pytest

from backends.errors import ConfigError
from backends.history import HistoryWriter, read_history
from bench import faults
from bench.nemesis import FaultSpec, Nemesis, check_supported


@runtime_checkable
class Floodable(Protocol):
    def flood(self) -> None: ...

    def drain(self) -> None: ...


class CanFlood:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def flood(self) -> None:
        self.calls.append(("flood", time.monotonic()))

    def drain(self) -> None:
        self.calls.append(("drain", time.monotonic()))


class CannotFlood:
    pass


@pytest.fixture
def flood_fault() -> Iterator[type[faults.Fault]]:
    @faults.register
    class Flood(faults.Fault):  # what a fault module contains
        name = "test-flood"
        capability = Floodable
        refusal = "it has nothing to flood"
        help = "flood, then drain after --pause"

        def hold_s(self, spec: FaultSpec) -> float:
            return spec.pause_s

        def inject(self, dep: Any) -> dict[str, Any]:
            dep.flood()
            return {"flooded": True}

        def recover(self, dep: Any) -> None:
            dep.drain()

    yield Flood
    faults.unregister("test-flood")


def test_builtin_faults_register_themselves() -> None:
    known = faults.registered()
    assert {"kill-worker", "kill-store", "lose-node", "pause-store"} <= set(known)
    for name, f in known.items():
        assert f.name == name and f.refusal and f.help and isinstance(f.capability, type)


def test_a_new_fault_module_registers_and_is_refused_or_accepted(flood_fault: type) -> None:
    assert "test-flood" in faults.registered()
    check_supported("test-flood", CanFlood, "toy")  # the class has the capability
    check_supported("test-flood", CanFlood(), "toy")
    for dep in (CannotFlood, CannotFlood()):
        with pytest.raises(ConfigError, match="toy: cannot inject test-flood: it has nothing"):
            check_supported("test-flood", dep, "toy")


def test_an_unknown_fault_names_the_known_ones(flood_fault: type) -> None:
    with pytest.raises(ConfigError, match="unknown fault 'nope'; known: .*test-flood"):
        check_supported("nope", CanFlood, "toy")
    faults.unregister("test-flood")
    with pytest.raises(ConfigError, match="unknown fault 'test-flood'"):
        check_supported("test-flood", CanFlood, "toy")


def test_the_nemesis_runs_the_faults_own_steps(flood_fault: type, tmp_path: Any) -> None:
    dep = CanFlood()
    h = HistoryWriter(tmp_path / "h" / "harness.jsonl", "harness", time.monotonic_ns())
    spec = FaultSpec("test-flood", at_s=0.0, restart_delay_s=5.0, pause_s=0.2)
    n = Nemesis(spec, 0.0, dep, h)  # type: ignore[arg-type]
    asyncio.run(n.run(h.now()))
    h.close()
    assert [c[0] for c in dep.calls] == ["flood", "drain"]
    held = dep.calls[1][1] - dep.calls[0][1]
    assert 0.2 <= held < 5.0  # the fault's hold (pause_s), not the restart delay
    assert n.timeline.detail["flooded"] is True
    phases = [e["value"]["phase"] for e in read_history(tmp_path / "h") if e["op"] == "nemesis"]
    assert phases == ["invoke", "fault", "recover", "recovered"]
