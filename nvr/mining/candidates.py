"""What a teacher hands the miner: ranked candidates and the scores of the labeled positives.

One :class:`Candidates` per teacher and set of queries, whatever the teacher (dense, BM25,
random, an ensemble's pick, a cross-encoder's re-ranking). Rows are queries; ids are row
indices into the corpus order (``corpus.jsonl`` order), ``-1`` is padding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write


@dataclass
class Candidates:
    """A teacher's ranking for Q queries.

    query_ids: str (Q,); cand_ids int64 (Q, depth) by descending score, ties by smaller id;
    cand_scores float32 (Q, depth), nan on padding; pos_ids int64 (Q, P) the labeled
    positives (all masked by the miner); pos_scores float32 (Q, P) the teacher's scores of
    the positives (the anchor of PercPos / MarginPos), nan on padding; exclude_ids int64
    (Q, E) ids never to emit (exact-text duplicates of a positive or of the query).
    """

    query_ids: np.ndarray
    cand_ids: np.ndarray
    cand_scores: np.ndarray
    pos_ids: np.ndarray
    pos_scores: np.ndarray
    exclude_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.cand_ids.shape[0])

    @property
    def depth(self) -> int:
        return int(self.cand_ids.shape[1])

    def ids(self) -> list[str]:
        return [str(q) for q in self.query_ids]

    def mine(self, cfg, *, query_keys=None, progress: bool = False, **arrays):
        """:func:`nvr.mining.mine` on these candidates (``query_keys`` default: from the query ids;
        ``arrays``: a defence's ``pos_cosine`` / ``pos_overlap`` / ``judge_scores``)."""
        from .core import mine
        from .hashing import query_keys as keys_of

        keys = keys_of(self.ids()) if query_keys is None else query_keys
        return mine(self.cand_ids, self.cand_scores, self.pos_ids, self.pos_scores, cfg, query_keys=keys,
                    exclude_ids=self.exclude_ids, progress=progress, **arrays)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def save(self, path) -> None:
        """Write ``path`` (.npz) atomically."""
        with atomic_write(path, "wb", encoding=None) as fh:
            np.savez(fh, **self.arrays())

    @classmethod
    def load(cls, path, *, hint: str = "") -> "Candidates":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: not found" + (f"; {hint}" if hint else ""))
        with np.load(path) as z:
            missing = [f.name for f in fields(cls) if f.name not in z.files]
            if missing:
                raise DataError(f"{path}: not a candidates file (missing {', '.join(missing)})")
            return cls(**{f.name: z[f.name] for f in fields(cls)})
