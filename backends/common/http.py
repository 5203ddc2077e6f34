"""GET on loopback services (Prometheus endpoints, a local object store) that never goes through
a proxy: ``HTTP_PROXY`` / ``http_proxy`` in the environment would otherwise send a scrape of
127.0.0.1 to the proxy, which cannot reach it (or answers for someone else)."""

from __future__ import annotations

import urllib.request

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout_s: float = 2.0, headers: dict[str, str] | None = None) -> bytes:
    """GET ``url`` directly (no proxy); raises on any non-2xx status."""
    req = urllib.request.Request(url, headers=headers or {})
    with _OPENER.open(req, timeout=timeout_s) as resp:
        return resp.read()
