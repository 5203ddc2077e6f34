"""Workload files (TOML) and name resolution.

File format (see workloads/example.toml): top-level ``name``, ``description``, ``duration_s``,
``warmup_s``; tables ``[arrivals]``, ``[plan]``, ``[retry]`` with the fields of ``ArrivalSpec``,
``PlanSpec`` and ``RetryPolicy``. Every key is optional: a missing key takes the ``agent-burst``
value (so a missing ``arrivals.profile`` means "burst"); a missing ``name`` is the file's stem.
Validation is strict: unknown keys, wrong types and out-of-range values are ConfigErrors naming
the file and the dotted field, never silently ignored or coerced (except int -> float).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from pathlib import Path
from typing import Any

from backends.base import RetryPolicy
from backends.errors import ConfigError
from bench.workload.builtin import BUILTIN, DEFAULT_WORKLOAD
from bench.workload.spec import ArrivalSpec, PlanSpec, WorkloadSpec, validate_workload

_TOP_LEVEL: dict[str, type] = {
    "name": str,
    "description": str,
    "duration_s": float,
    "warmup_s": float,
}
_TABLES: dict[str, type] = {
    "arrivals": ArrivalSpec,
    "plan": PlanSpec,
    "retry": RetryPolicy,
}
_ALLOWED_TOP = ", ".join([*_TOP_LEVEL, *(f"[{t}]" for t in _TABLES)])


def _toml_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", dict: "table"}
    return names.get(type(value), "array" if isinstance(value, list) else type(value).__name__)


def _field_types(cls: type) -> dict[str, type]:
    """Field name -> int | float | str (Literal fields such as ``profile`` are strings)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, type] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        out[f.name] = hint if hint in (int, float, str) else str
    return out


def _check_type(value: Any, want: type, dotted: str) -> str | None:
    """A problem message, or None when ``value`` fits ``want``. TOML bools are not numbers and
    floats are not integers; integers are fine where a float is wanted."""
    shown = str(value).lower() if isinstance(value, bool) else repr(value)  # TOML spelling
    got = f"got {_toml_type(value)} {shown}"
    if want is str:
        return None if isinstance(value, str) else f"{dotted}: expected a string, {got}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if want is int else "a number"
        return f"{dotted}: expected {kind}, {got}"
    if want is int and not isinstance(value, int):
        return f"{dotted}: expected an integer (write it without a decimal point), {got}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{dotted}: expected a finite number, {got}"
    return None


def _read_table(
    raw: dict[str, Any],
    types: dict[str, type],
    prefix: str,
    problems: list[str],
    allowed: str | None = None,
) -> dict[str, Any]:
    """Type-checked values of ``raw`` (ints converted where a float is wanted); problems are
    appended to ``problems``. ``allowed`` overrides the list of keys an unknown key is told."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in types:
            problems.append(f"{dotted}: unknown key; allowed keys: {allowed or ', '.join(types)}")
            continue
        problem = _check_type(value, types[key], dotted)
        if problem:
            problems.append(problem)
        else:
            out[key] = float(value) if types[key] is float else value
    return out


def load_workload_file(path: str | Path) -> WorkloadSpec:
    """Read and validate a TOML workload file; raise ``ConfigError`` naming the file and field."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read workload file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: workload file is not UTF-8 text: {e}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: malformed TOML: {e}") from None

    problems: list[str] = []
    scalars = {k: v for k, v in raw.items() if k not in _TABLES}
    top = _read_table(scalars, _TOP_LEVEL, "", problems, allowed=_ALLOWED_TOP)

    default = BUILTIN[DEFAULT_WORKLOAD]
    parts: dict[str, Any] = {}
    for table, cls in _TABLES.items():
        section = raw.get(table, {})
        if not isinstance(section, dict):
            problems.append(
                f"{table}: expected a table ([{table}]), got {_toml_type(section)} {section!r}"
            )
            section = {}
        values = _read_table(section, _field_types(cls), f"{table}.", problems)
        parts[table] = dataclasses.replace(getattr(default, table), **values)
    if problems:
        raise ConfigError(f"{path}: invalid workload:\n  " + "\n  ".join(problems))

    spec = WorkloadSpec(
        name=top.get("name", path.stem),
        description=top.get("description", ""),
        duration_s=top.get("duration_s", default.duration_s),
        warmup_s=top.get("warmup_s", default.warmup_s),
        **parts,
    )
    return validate_workload(spec, source=str(path))


def resolve_workload(name_or_path: str) -> WorkloadSpec:
    """A built-in workload by name, else a path to an existing ``.toml`` workload file."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    builtin = ", ".join(BUILTIN)
    path = Path(name_or_path)
    if path.is_file():
        if path.suffix != ".toml":
            raise ConfigError(
                f"workload {name_or_path!r}: a workload file must be a .toml file; "
                f"built-in workloads: {builtin}"
            )
        return load_workload_file(path)
    raise ConfigError(
        f"unknown workload {name_or_path!r}: not a built-in name and not an existing .toml "
        f"file; built-in workloads: {builtin}"
    )
