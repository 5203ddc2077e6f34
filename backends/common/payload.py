"""Step payloads: the bytes a step returns, a pure function of (seed, run, step, size), so a
checker can recompute every stored step result byte for byte.

Versioned, because a run kept on disk must still check after the function changes: a run's
``ExecutionSettings.payload_version`` (in its manifest) names the function its workers used.
  1  ``random.Random("seed:run:step").randbytes(size)`` (until Dec 2026; seeding the Mersenne
     Twister cost ~6 µs per step, ~14 % of a worker's CPU at --time-scale 0)
  2  SHAKE-128 of "seed:run:step", ``size`` bytes (about 3x cheaper at 2 KB)
Both are arbitrary binary and incompressible, so the bytes stores, WALs and replicas carry are
of the same nature under either version.
"""

from __future__ import annotations

import hashlib
import random

PAYLOAD_VERSION = 2  # what workers produce now
VERSIONS = (1, 2)


def payload(
    seed: int, run_id: str, step_id: int, size: int, version: int = PAYLOAD_VERSION
) -> bytes:
    key = f"{seed}:{run_id}:{step_id}"
    if version == 2:
        return hashlib.shake_128(key.encode()).digest(size)
    if version == 1:
        return random.Random(key).randbytes(size)
    raise ValueError(f"unknown payload version {version!r} (known: {VERSIONS})")
