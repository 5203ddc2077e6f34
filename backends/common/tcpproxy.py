"""A small TCP proxy the harness owns, in front of a service (the object store), so a fault can
make that service unreachable or slow without touching it: ``outage`` (every connection is
cut and new ones are closed at once, as a store that stopped answering) and ``delay_s`` (each
request waits that long before it is forwarded).

Threads, not processes: the traffic is a replicator's uploads on loopback (a few requests per
second), and the harness must switch modes at an exact time. ``stop`` closes every socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

IDLE_GAP_S = 0.005  # bytes after a pause this long start a new request (for delay_s)


class TcpProxy:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self._listener = socket.create_server((host, 0))
        self.host, self.port = host, self._listener.getsockname()[1]
        self.outage = False
        self.delay_s = 0.0
        self.connections = 0
        self.refused = 0
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept, name="tcpproxy", daemon=True)
        self._thread.start()

    def set_outage(self, on: bool) -> None:
        """On: cut every open connection, refuse new ones until off."""
        self.outage = on
        if on:
            with self._lock:
                live = list(self._live)
            for s in live:
                _close(s)

    def stop(self) -> None:
        self._stopped.set()
        _close(self._listener)
        self.set_outage(True)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.outage:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            self.connections += 1
            with self._lock:
                self._live.update((client, upstream))
            for a, b, delayed in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, delayed), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delayed: bool) -> None:
        last = 0.0
        try:
            while True:
                data = src.recv(65536)
                if not data or self.outage:
                    break
                now = time.monotonic()
                if delayed and self.delay_s > 0 and now - last > IDLE_GAP_S:
                    time.sleep(self.delay_s)  # a new request: hold it
                last = time.monotonic()
                if self.outage:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                _close(s)
                with self._lock:
                    self._live.discard(s)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
