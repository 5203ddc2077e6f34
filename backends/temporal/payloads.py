"""Large step results: Temporal's external payload storage with a local-directory driver.

Why: a Temporal payload travels inside one gRPC message, and the server's frontend refuses
requests over 4 MiB (gRPC-Go's default receive limit, not configurable in Server 1.32 and not a
dynamic-config key); its default blob-size limit (``limit.blobSize.error``) is 2 MiB per payload.
A 4 MiB step result therefore cannot be an inline Temporal payload at all. The Python SDK's own
answer is *external storage* (``temporalio.converter.ExternalStorage``, the claim-check pattern):
payloads at or above a threshold are stored by a driver and the history holds a small
``ExternalStorageReference`` instead.

Here payloads of ``INLINE_LIMIT`` bytes (1 MiB) or more go to ``LocalDirDriver``: one file per
payload in a directory on this host, named by the SHA-256 of its bytes (content addressed, so a
retried store is idempotent), written to a temporary name, fsynced, renamed, directory fsynced.
The file is durable before the reference goes to Temporal, so a step result is committed only
when both are. Everything smaller (every payload of the built-in workloads: they stop at 256 KiB)
stays inline in Temporal's history, untouched by this module, with the server's default limits.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)

INLINE_LIMIT = 1 << 20  # payloads this large or larger are stored outside Temporal's history
DRIVER_NAME = "durabench-localdir"


class LocalDirDriver(StorageDriver):
    """Stores serialized payloads as files ``<dir>/<sha256>`` (fsynced before returning)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def name(self) -> str:
        return DRIVER_NAME

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        return await asyncio.to_thread(self._store_all, [p.SerializeToString() for p in payloads])

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        return await asyncio.to_thread(self._retrieve_all, list(claims))

    def _store_all(self, blobs: list[bytes]) -> list[StorageDriverClaim]:
        self.dir.mkdir(parents=True, exist_ok=True)
        claims = []
        for blob in blobs:
            key = hashlib.sha256(blob).hexdigest()
            path = self.dir / key
            if not path.exists():
                tmp = self.dir / f".{key}.{os.getpid()}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    view = memoryview(blob)
                    written = 0
                    while written < len(view):
                        written += os.write(fd, view[written:])
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, path)
                dfd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            claims.append(StorageDriverClaim({"sha256": key, "size": str(len(blob))}))
        return claims

    def _retrieve_all(self, claims: list[StorageDriverClaim]) -> list[Payload]:
        out = []
        for claim in claims:
            key = claim.claim_data["sha256"]
            blob = (self.dir / key).read_bytes()
            if hashlib.sha256(blob).hexdigest() != key:
                raise ValueError(f"temporal: stored payload {key} is corrupt (checksum mismatch)")
            p = Payload()
            p.ParseFromString(blob)
            out.append(p)
        return out


def data_converter(payload_dir: Path) -> DataConverter:
    """The default data converter (bytes travel as ``binary/plain``, byte for byte) plus
    external storage for payloads of ``INLINE_LIMIT`` bytes or more. Workers, the harness client
    and the state view must all use it, or they cannot read each other's large payloads."""
    return DataConverter(
        external_storage=ExternalStorage(
            drivers=[LocalDirDriver(payload_dir)], payload_size_threshold=INLINE_LIMIT
        )
    )
