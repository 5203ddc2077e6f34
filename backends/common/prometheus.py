"""Prometheus text exposition, parsed by ``prometheus_client.parser`` (the reference client's
own parser) into flat samples. A scrape is an observation, never a reason to fail a run: when
the whole text does not parse, it is parsed again line by line and the lines that do not parse
are skipped."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

_SAMPLE_NAME = re.compile(r"^[ \t]*([a-zA-Z_:][a-zA-Z0-9_:]*)", re.MULTILINE)


@dataclass(frozen=True)
class Sample:
    """One sample line: full sample name (with ``_total`` / ``_sum`` / ``_count``), labels,
    value (timestamps are ignored)."""

    name: str
    labels: dict[str, str]
    value: float


def _samples(text: str) -> list[Sample]:
    # the parser names every counter sample ``<family>_total`` (the OpenMetrics rule), also
    # when the endpoint exposed it without the suffix (Temporal's ``service_requests``); the
    # name as exposed is what the services document, so it is restored
    exposed = set(_SAMPLE_NAME.findall(text))
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if name not in exposed and name.endswith("_total") and name[:-6] in exposed:
                name = name[:-6]
            out.append(Sample(name, dict(s.labels), float(s.value)))
    return out


def parse_prometheus(text: str) -> list[Sample]:
    try:
        return _samples(text)
    except ValueError:
        pass
    out: list[Sample] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out += _samples(line + "\n")
        except ValueError:
            continue  # an unparseable line is skipped, the rest of the scrape is kept
    return out
