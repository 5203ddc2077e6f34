"""Durability promises: what a backend configuration promises to keep through one kind of fault.

A backend states its promise per fault and configuration (``Deployment.promise``); the harness
measures what the fault really lost and says whether the promise was **kept** or **broken**, with
the figures beside it. A loss outside the promise (an ack older than the bound, or any loss where
the promise is 0) is a broken promise. The promise lives here, below the harness, because the
backends declare it and the harness only judges it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Promise:
    """``max_lost_age_s``: 0.0 = no acknowledged write may be lost; a positive number = only acks
    younger than this (age at the fault) may be lost; ``None`` = no bound (anything may be lost,
    e.g. total loss of a node whose data lives nowhere else). ``intact``: the store promises to
    come back without corruption (its integrity check must pass). ``basis``: why, in words a
    design review can quote ("synchronous=FULL fsyncs the WAL at every commit")."""

    fault: str
    max_lost_age_s: float | None
    intact: bool
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
