"""The price table: a TOML file (``prices/default.toml``) in which every price names its source
and the date it was read; a price nobody could find is ``"unknown"`` and stays unknown (the
cost model, ``bench.cost``, says so instead of inventing a number). The keys required are the
harness's own plus those of every registered backend's managed alternatives."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.base import registered
from backends.errors import ConfigError

DEFAULT_PRICES = Path(__file__).resolve().parents[1] / "prices" / "default.toml"
GB = 2**30  # providers bill "GB" as 2^30 bytes
_COMPUTE = ("vcpu_hour", "memory_gb_hour", "block_storage_gb_month", "object_storage_gb_month")
BASE_REQUIRED = _COMPUTE + ("object_put_per_1000", "object_get_per_1000")


@dataclass(frozen=True)
class Price:
    key: str
    value: float | None  # None = unknown: nobody found a public price
    unit: str
    what: str
    source: str
    read: str


@dataclass(frozen=True)
class PriceTable:
    path: Path
    prices: dict[str, Price]
    currency: str
    region: str
    hours_per_month: float

    def value(self, key: str) -> float | None:
        return self.prices[key].value


def load_prices(path: Path | None = None) -> PriceTable:
    """Read and validate a price file; every problem is a ConfigError naming the file and key."""
    path = Path(path) if path is not None else DEFAULT_PRICES
    where = f"prices file {path}"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"{where}: not found (pass --prices FILE)") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot be read: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from e
    table = data.get("prices")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: no [prices.<name>] tables (see prices/default.toml)")
    keys = required_keys()
    missing = [k for k in keys if k not in table]
    if missing:
        raise ConfigError(f"{where}: missing price(s): {', '.join(missing)}")
    prices = {k: _price(where, k, table[k]) for k in keys}
    hours = data.get("hours_per_month", 730)
    if not _is_number(hours) or hours <= 0:
        raise ConfigError(f"{where}: hours_per_month must be a number > 0, got {hours!r}")
    return PriceTable(
        path, prices, str(data.get("currency", "USD")), str(data.get("region", "")), float(hours)
    )


def required_keys() -> tuple[str, ...]:
    """The harness's own price keys, then those of every registered backend's managed
    alternatives (``BackendInfo.every_managed``: in any of its configurations)."""
    keys = list(BASE_REQUIRED)
    for info in registered().values():
        for alt in info.every_managed():
            keys += [k for k in alt.price_keys() if k not in keys]
    return tuple(keys)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _price(where: str, key: str, entry: Any) -> Price:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: [prices.{key}] must be a table with value, source, read")
    value = entry.get("value")
    if value == "unknown":
        value = None
    elif not _is_number(value) or value < 0:
        raise ConfigError(
            f'{where}: [prices.{key}] value must be a number >= 0 or "unknown", got {value!r}'
        )
    for k in ("source", "read"):
        if not isinstance(entry.get(k), str) or not entry[k].strip():
            raise ConfigError(
                f"{where}: [prices.{key}] needs a non-empty {k!r} "
                "(where the price came from, and the date it was read)"
            )
    try:
        dt.date.fromisoformat(entry["read"])
    except ValueError as e:
        raise ConfigError(
            f"{where}: [prices.{key}] read must be a date YYYY-MM-DD, got {entry['read']!r}"
        ) from e
    return Price(
        key,
        None if value is None else float(value),
        str(entry.get("unit", "")),
        str(entry.get("what", "")),
        entry["source"],
        entry["read"],
    )
