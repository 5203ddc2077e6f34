"""The reviewer's RPO budget (`--rpo-budget SECONDS`) held against what each configuration was
measured to lose: its worst RPO over fault trials (0 when no ack was lost) and the promise it
states (the loss it allows). A configuration is marked when either exceeds the budget, and where
a sweep of the same backend measured a setting whose worst loss fits, that setting is named with
its own figures. Only measurements are compared: no fault trial means "not measured", never
"within"."""

from __future__ import annotations

import math

from backends.errors import ConfigError
from bench.promise_check import NO_BOUND
from bench.report.configs import Config, FaultFigures

OVER, UNSURE, WITHIN, UNKNOWN = "OVER", "promise exceeds", "within", "unknown"


def check(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"--rpo-budget must be a number of seconds >= 0, got {value:g}")
    return value


def _allows(f: FaultFigures) -> float | None:
    """The largest loss (seconds) the trials' promise allows; inf for no bound; None unknown."""
    if not f.bounds or any(b is None for b in f.bounds):
        return math.inf if f.bounds and f.promise == NO_BOUND else None
    return max(float(b) for b in f.bounds)


def _verdict(f: FaultFigures, budget: float) -> tuple[str, str]:
    """(status, words) for one fault. OVER: a trial lost an ack older than the budget. UNSURE:
    the trials stayed within it, but the configuration's own promise allows more (the budget
    held in these trials, it is not promised). WITHIN: both fit. UNKNOWN: loss not measured."""
    loss = f.loss_s
    if loss is None:
        return UNKNOWN, f"{f.fault}: loss not measured"
    if loss > budget:
        return OVER, f"{f.fault} lost acks up to {loss:.3g} s old"
    allows = _allows(f)
    if allows is None or allows > budget:
        bound = (
            "is not stated"
            if allows is None
            else "allows any loss"
            if allows == math.inf
            else f"allows up to {allows:.3g} s"
        )
        return UNSURE, f"{f.fault}: worst measured {loss:.3g} s, but the promise {bound}"
    return WITHIN, f"{f.fault}: worst measured {loss:.3g} s, promise {f.promise}"


def meeting(c: Config, budget: float) -> str | None:
    """Of the settings a sweep of this backend measured, the one that fits best: fully within
    (measured and promised) before measured-only; among equals the largest value (a longer
    interval uploads less). In words, with its own figures."""
    own = {x for f in c.faults.values() for x in f.files}
    need = (WITHIN, UNSURE) if OVER in {_verdict(f, budget)[0] for f in c.faults.values()} else ()
    fits = []
    for key, value, f in c.sweep_points:
        status, words = _verdict(f, budget)
        if set(f.files) <= own:
            continue  # the row's own trials: not an alternative
        if status == WITHIN or status in need:
            rank = (status == WITHIN, value if value is not None else -math.inf)
            fits.append((rank, key, f, status, words))
    if not fits:
        return None
    _, key, f, status, words = max(fits, key=lambda t: t[0])
    n = f"{f.trials} trial{'s' * (f.trials > 1)}"
    return f"a sweep measured `{key}`: {words.split(': ', 1)[1]} ({n})"


def mark(c: Config, budget: float) -> str:
    """The cell / sentence for one configuration."""
    if not c.faults:
        return "not measured (no fault trial)"
    verdicts = [_verdict(f, budget) for f in c.faults.values()]
    words = "; ".join(w for _, w in verdicts)
    status = [s for s, _ in verdicts]
    for worst, head in ((OVER, "⚠ OVER"), (UNSURE, "⚠ not promised")):
        if worst in status:
            fix = meeting(c, budget)
            if fix is None:
                fix = "no swept setting measured better" if c.sweep_points else "no sweep ran"
            return f"{head}: {words}; {fix}"
    if UNKNOWN in status:
        return f"unknown: {words}"
    return f"within: {words}"


def status(c: Config, budget: float) -> str:
    """The configuration's worst status against the budget ("not measured" without trials)."""
    if not c.faults:
        return "not measured"
    found = {_verdict(f, budget)[0] for f in c.faults.values()}
    return next(s for s in (OVER, UNSURE, UNKNOWN, WITHIN) if s in found)
