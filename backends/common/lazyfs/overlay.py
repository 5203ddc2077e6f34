"""The unsynced state of one file: what a machine would lose if the power went now.

An :class:`Overlay` holds the pages written since the file's last fsync and the file's logical
size (writes past the end, truncate, fallocate). Reads merge it over the backing file; fsync
(:meth:`Overlay.flush`) writes it into the backing file and fsyncs that; a power loss simply
forgets it. ``floor`` is the lowest size the file had since the last sync: backing bytes at or
above it were cut off by a truncate and read as zeros, even if the file grew again since.
"""

from __future__ import annotations

import os
import time

PAGE = 4096


class Overlay:
    def __init__(self, backing_size: int) -> None:
        self.size = backing_size  # the size the mount shows
        self.floor = backing_size  # backing bytes at offsets >= floor are stale
        self.backing_size = backing_size
        self.pages: dict[int, bytearray] = {}
        self.mtime_ns: int | None = None
        self.since = time.monotonic()  # when the oldest change held here was made
        self.writes = 0  # write/truncate/fallocate calls held here
        self.write_bytes = 0

    # -- reading ------------------------------------------------------------------------------

    def _backing(self, fd: int, start: int, end: int) -> bytes:
        """Backing bytes in [start, end), zeros where the backing file is short or stale."""
        n = end - start
        top = min(end, self.floor)
        data = os.pread(fd, top - start, start) if top > start else b""
        return data + bytes(n - len(data)) if len(data) < n else data

    def read(self, fd: int, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        out = bytearray()
        pos = offset
        while pos < end:
            p = pos // PAGE
            page = self.pages.get(p)
            if page is not None:
                stop = min(end, (p + 1) * PAGE)
                out += page[pos - p * PAGE : stop - p * PAGE]
            else:  # a run of pages not in the overlay: one backing read
                stop = min(end, (p + 1) * PAGE)
                while stop < end and (stop // PAGE) not in self.pages:
                    stop = min(end, stop + PAGE)
                out += self._backing(fd, pos, stop)
            pos = stop
        return bytes(out)

    # -- changing -----------------------------------------------------------------------------

    def _touch(self, n: int) -> None:
        self.writes += 1
        self.write_bytes += n
        self.mtime_ns = time.time_ns()

    def write(self, fd: int, offset: int, data: bytes | memoryview) -> None:
        n = len(data)
        pos, end = offset, offset + n
        while pos < end:
            p = pos // PAGE
            base = p * PAGE
            stop = min(end, base + PAGE)
            page = self.pages.get(p)
            if page is None:
                if pos == base and stop == base + PAGE:
                    page = bytearray(PAGE)
                else:  # partial page: start from what a reader sees now
                    page = bytearray(self._page_now(fd, p))
                self.pages[p] = page
            page[pos - base : stop - base] = data[pos - offset : stop - offset]
            pos = stop
        self.size = max(self.size, end)
        self._touch(n)

    def _page_now(self, fd: int, p: int) -> bytes:
        base = p * PAGE
        if base >= self.size:
            return bytes(PAGE)
        visible = self._backing(fd, base, base + PAGE)
        cut = self.size - base  # bytes past the logical end read as zeros
        return visible if cut >= PAGE else visible[:cut] + bytes(PAGE - cut)

    def truncate(self, size: int) -> None:
        if size < self.size:
            for p in [p for p in self.pages if p * PAGE >= size]:
                del self.pages[p]
            tail = self.pages.get(size // PAGE)
            if tail is not None:
                off = size % PAGE
                tail[off:] = bytes(PAGE - off)
            self.floor = min(self.floor, size)
        self.size = size
        self._touch(0)

    def zero(self, fd: int, offset: int, length: int) -> None:
        """Zero a range inside the file (punch hole / zero range); size unchanged."""
        end = min(offset + length, self.size)
        if end > offset:
            size = self.size
            self.write(fd, offset, bytes(end - offset))
            self.size = size

    # -- making durable -----------------------------------------------------------------------

    def flush(self, fd: int) -> None:
        """Write everything held here into the backing file (then the caller fsyncs it)."""
        if self.floor < self.backing_size:
            os.ftruncate(fd, self.floor)
        run: list[bytearray] = []
        start = 0
        for p in sorted(self.pages):  # contiguous pages in one pwrite
            if p * PAGE >= self.size:
                break
            if run and p * PAGE != start + len(run) * PAGE:
                self._write_run(fd, start, run)
                run = []
            if not run:
                start = p * PAGE
            run.append(self.pages[p])
        if run:
            self._write_run(fd, start, run)
        if os.fstat(fd).st_size != self.size:
            os.ftruncate(fd, self.size)

    def _write_run(self, fd: int, start: int, run: list[bytearray]) -> None:
        data = memoryview(b"".join(run))[: self.size - start]  # the last page may pass the end
        while len(data):
            n = os.pwrite(fd, data, start)
            data, start = data[n:], start + n

    @property
    def held_bytes(self) -> int:
        return len(self.pages) * PAGE
