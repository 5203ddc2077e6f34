"""The backend registry and what a backend declares to the harness: its command-line options,
the packages whose versions go into the manifest, its documented moving parts and the managed
services that can replace its servers in the cost model. The harness reads these and never
names a backend itself (``tests/test_no_backend_names.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from backends.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The values a numeric option accepts (always finite): ``low <= v`` (``low < v`` when
    ``low_open``) and ``v <= high``. The CLI refuses anything outside before a run starts."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def problem(self, value: float) -> str | None:
        """Why ``value`` is refused, or None."""
        if value != value or value in (float("inf"), float("-inf")):
            return f"must be a finite number {self}, got {value}"
        too_low = self.low is not None and (
            value <= self.low if self.low_open else value < self.low
        )
        if too_low or (self.high is not None and value > self.high):
            return f"must be {self}, got {value:g}"
        return None

    def __str__(self) -> str:
        lo = None if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = None if self.high is None else f"<= {self.high:g}"
        if lo and hi:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        return lo or hi or "(any value)"


@dataclass(frozen=True)
class Option:
    """A command-line option a backend adds to `bench run`. ``flag`` is e.g. ``--s3-endpoint``;
    the parsed value reaches the backend factory under ``dest``. Every numeric option has a
    ``range``; ``check`` (optional) returns why a value is refused, before anything starts."""

    flag: str
    dest: str
    help: str
    default: Any = None
    type: type = str
    choices: Sequence[Any] | None = None
    range: Range | None = None
    check: Callable[[Any], str | None] | None = None


def float_option(options: dict[str, Any], dest: str, default: float) -> float:
    """A float option as given: the default only when it was not given (None), never in place
    of a given 0 (a sweep row labelled 0 must not silently measure the default)."""
    value = options.get(dest)
    return float(default if value is None else value)


@dataclass(frozen=True)
class MovingParts:
    """What operating the backend takes, beyond the processes the harness samples (those are
    derived from each run): documented from the backend's code and docs, not measured."""

    ports: str
    files: str  # config and data files
    source: str  # where these facts were read


@dataclass(frozen=True)
class ManagedAlternative:
    """A managed service that can replace the backend's measured server process(es) in the cost
    model: another total, with the same measured workers. Each ``*_price`` names a key of the
    price file (``prices/default.toml``); None = that kind of line does not apply."""

    name: str  # the total's label, e.g. "managed Postgres"
    replaces_with: str  # what the servers become, in words
    instance_hour_price: str | None = None  # one instance all month, instead of the servers
    storage_gb_month_price: str | None = None  # the database bytes per run, kept one month
    storage_what: str = ""  # e.g. "RDS gp3 storage"
    per_million_actions_price: str | None = None  # 1 start + exec attempts per run
    actions_fee_fraction_price: str | None = None  # a plan fee as a share of actions spend
    fee_what: str = ""

    def price_keys(self) -> tuple[str, ...]:
        keys = (
            self.instance_hour_price,
            self.storage_gb_month_price,
            self.per_million_actions_price,
            self.actions_fee_fraction_price,
        )
        return tuple(k for k in keys if k)


@dataclass(frozen=True)
class BackendInfo:
    """A backend as the harness knows it. Besides the factory, what the harness needs and must
    not know by name: ``packages`` (distributions whose versions go into the manifest),
    ``parts`` (documented moving parts), ``managed`` (managed alternatives the cost model
    prices). Stand-ins for managed services and durability promises depend on the options, so
    they are ``Deployment.managed_standins`` and ``Deployment.promise``. A backend whose
    declarations themselves depend on its options (which store it runs on) gives
    ``by_options``; readers of a result take ``resolved(manifest["backend_options"])``."""

    name: str
    summary: str
    durable: bool
    options: tuple[Option, ...]
    factory: Any  # Callable[[dict[str, Any], RunContext], Deployment]
    packages: tuple[str, ...] = ()
    parts: MovingParts | None = None
    managed: tuple[ManagedAlternative, ...] = ()
    # further configurations the conformance suite must also cover: label -> option overrides
    variants: tuple[tuple[str, dict[str, Any]], ...] = ()
    # options -> the declarations (e.g. ``parts``, ``managed``) that hold for a run with
    # them, replacing the static ones; None: the static ones hold for every option
    by_options: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def resolved(self, options: dict[str, Any] | None) -> BackendInfo:
        """The declarations for a run with ``options`` (as parsed; missing ones at default)."""
        if self.by_options is None:
            return self
        return dataclasses.replace(self, **self.by_options(dict(options or {})), by_options=None)

    def every_managed(self) -> tuple[ManagedAlternative, ...]:
        """Every managed alternative any configuration declares (the default and each variant):
        what the price file must price."""
        out = list(self.managed)
        for opts in [{}, *(o for _, o in self.variants)]:
            out += [a for a in self.resolved(opts).managed if a not in out]
        return tuple(out)


_REGISTRY: dict[str, BackendInfo] = {}


def register(info: BackendInfo) -> None:
    """A flag may be shared only as the very same ``Option`` (a backend that reuses another's
    deployment parts reuses their options too, e.g. ``--synchronous``)."""
    taken = {o.flag: o for b in _REGISTRY.values() for o in b.options if b.name != info.name}
    clash = [o.flag for o in info.options if o.flag in taken and taken[o.flag] != o]
    if clash:
        raise ConfigError(f"{info.name}: option(s) {clash} already registered by another backend")
    _REGISTRY[info.name] = info


def registered() -> dict[str, BackendInfo]:
    import backends.registry  # noqa: F401 - imports every built-in backend so it registers

    return dict(_REGISTRY)


def get(name: str) -> BackendInfo:
    known = registered()
    if name not in known:
        raise ConfigError(
            f"unknown backend {name!r}; registered backends: {', '.join(sorted(known))}"
        )
    return known[name]
