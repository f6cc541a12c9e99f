"""Length-sorted batching and padding of token lists.

Texts are tokenized once, sorted by token length (longest first, so running out of memory
shows in the first batch) inside blocks of :data:`SORT_BLOCK` items (bounding the token
lists held at once), batched, and the results are written back in input order. Little work
goes into padding, and a text's vector does not depend on the batch size beyond float
rounding.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

SORT_BLOCK = 32768  # items tokenized and length-sorted together


def blocks(n: int, size: int = SORT_BLOCK) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of consecutive blocks covering ``range(n)``."""
    for b0 in range(0, n, size):
        yield b0, min(n, b0 + size)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Index arrays of batches of ``batch_size``, longest first (stable among equal lengths)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    for s0 in range(0, len(order), batch_size):
        yield order[s0:s0 + batch_size]


def pad(seqs: Sequence[Sequence[int]], fill: int, left: bool = False) -> np.ndarray:
    """int64 ``(B, longest)`` of the sequences padded with ``fill`` (on the left when ``left``)."""
    L = max((len(s) for s in seqs), default=0)
    out = np.full((len(seqs), L), fill, dtype=np.int64)
    for r, s in enumerate(seqs):
        if left:
            out[r, L - len(s):] = s
        else:
            out[r, :len(s)] = s
    return out


def attention(seqs: Sequence[Sequence[int]], left: bool = False) -> np.ndarray:
    """int64 ``(B, longest)`` attention mask (1 on tokens, 0 on padding)."""
    return pad([[1] * len(s) for s in seqs], 0, left)
