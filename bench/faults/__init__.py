"""The fault registry: one fault per module in this package, each registering itself (as the
omes load generator does with its scenarios). A fault says which deployment capability it needs
(a protocol in ``backends.base``), why a deployment without it is refused, how to inject it,
how long to hold it, and how to recover. ``bench.nemesis`` only schedules and records.

Adding a fault = adding one file here::

    @register
    class LosePower(Fault):
        name = "lose-power"
        capability = PowerLosable
        refusal = "it cannot simulate a power loss"
        help = "drop unsynced writes, then restart"

        def inject(self, dep): ...
        def recover(self, dep): ...

Every module of this package is imported on first use, so nothing else needs editing.
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from backends.errors import ConfigError

if TYPE_CHECKING:
    from backends.promises import Promise
    from bench.nemesis import FaultSpec

_REGISTRY: dict[str, Fault] = {}
_loaded = False


class Fault(abc.ABC):
    """One kind of fault. Subclasses set the class attributes and implement inject/recover;
    both run in a thread (they may block) and return what they verified, recorded in the
    timeline's detail (or None)."""

    name: ClassVar[str]  # the --fault value, e.g. "kill-store"
    capability: ClassVar[type]  # the deployment protocol the fault acts through
    refusal: ClassVar[str]  # "<backend>: cannot inject <name>: <refusal>"
    help: ClassVar[str]  # one line for `bench crash --help`
    # destroys nothing, only widens the window in which acks exist only on the node: the
    # exposure during the fault is reported as its own figure
    widens_exposure: ClassVar[bool] = False
    # destroys the node's only copy: what the write-loss checker finds lost must be what the
    # exposure samples had at risk at the fault (``bench.exposure.cross_check``)
    loses_node: ClassVar[bool] = False

    def lead_in_s(self, spec: FaultSpec) -> float | None:
        """A composite fault: seconds between its lead-in (``lead_in``, at the planned fault
        time) and the injection proper. None (the default): no lead-in, inject at once."""
        return None

    def lead_in(self, dep: Any, spec: FaultSpec) -> dict[str, Any] | None:
        """The first part of a composite fault (e.g. an outage the node loss falls into)."""
        return None

    def promise(
        self, promise_of: Callable[[str], Promise | None], timeline: dict[str, Any]
    ) -> Promise | None:
        """The promise this fault is judged by: the deployment's own for this fault (default);
        a composite fault derives it from its parts and the timeline it really had."""
        return promise_of(self.name)

    def hold_s(self, spec: FaultSpec) -> float:
        """Seconds between the fault and the start of recovery (default: --restart-delay)."""
        return spec.restart_delay_s

    def unavailable(self) -> str | None:
        """Why this machine cannot inject the fault at all (None: it can)."""
        return None

    def prepare(self, dep: Any) -> None:  # noqa: B027 - optional hook
        """Before the deployment starts: what the fault needs in place from the beginning."""

    def inject_with(self, dep: Any, spec: FaultSpec) -> dict[str, Any] | None:
        """Inject with the trial's settings at hand (a fault with a parameter of its own, e.g.
        s3-slow's latency, overrides this instead of ``inject``)."""
        return self.inject(dep)

    @abc.abstractmethod
    def inject(self, dep: Any) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def recover(self, dep: Any) -> dict[str, Any] | None: ...


def register(cls: type[Fault]) -> type[Fault]:
    """Class decorator: register one instance of the fault under its name."""
    if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
        raise ConfigError(f"fault {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    """Remove a fault (tests that register one of their own)."""
    _REGISTRY.pop(name, None)


def registered() -> dict[str, Fault]:
    """Every fault, by name, in name order (each module of this package registers itself)."""
    global _loaded
    if not _loaded:
        for mod in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{mod.name}")
        _loaded = True
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Fault:
    known = registered()
    if name not in known:
        raise ConfigError(f"unknown fault {name!r}; known: {', '.join(known)}")
    return known[name]
