"""Counter-based randomness: the same (seed, query, candidate) always draws the same number.

The uniform number of (query, candidate) is
``splitmix64(splitmix64(splitmix64(seed) ^ query_key) ^ candidate_id)``, so sampled negatives
are bit-identical whatever the chunking, row order, batch size or thread count, and a
candidate keeps its random number when the ranking around it changes. A query's key is a hash
of its id (:func:`query_keys`), so adding or removing other queries moves nothing.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

_M64 = (1 << 64) - 1

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)

_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer on a uint64 array (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def seed_u64(seed: int) -> np.ndarray:
    return np.array([int(seed) & _M64], dtype=np.uint64)


def hash_uniform(seed: int, query_keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Uniform float64 in (0, 1) for each (query row, id): shape of ``ids`` (Q, K)."""
    qk = np.asarray(query_keys, dtype=np.uint64).reshape(-1, 1)
    base = splitmix64(splitmix64(seed_u64(seed)) ^ qk)  # (Q, 1)
    h = splitmix64(base ^ np.asarray(ids).astype(np.int64).view(np.uint64))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def query_keys(query_ids: Iterable[str]) -> np.ndarray:
    """uint64 key of each query id (the first 8 bytes of its blake2b, little-endian)."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(q).encode("utf-8"), digest_size=8).digest(), "little")
         for q in query_ids), dtype=np.uint64)
