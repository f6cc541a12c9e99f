"""What a stage reads of the study's data, read once per stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..data.beir import BeirDataset, load_beir
from ..data.pairs import TrainPair, read_hidden_positives, read_train_pairs
from ..errors import DataError
from ..paths import Layout


@dataclass
class StudyData:
    """The prepared ``data/`` folder: corpus (ids and texts in corpus order), training pairs,
    hidden labels. ``doc_index`` maps a doc id to its row in every corpus-ordered array."""

    layout: Layout
    dataset: BeirDataset
    pairs: list[TrainPair]
    doc_ids: list[str] = field(init=False)
    doc_index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.doc_ids = self.dataset.doc_ids()
        self.doc_index = {d: i for i, d in enumerate(self.doc_ids)}

    @classmethod
    def load(cls, layout: Layout) -> "StudyData":
        if not layout.data.is_dir():
            raise DataError(f"{layout.data}: not found; run the prepare stage first")
        ds = load_beir(layout.data)
        return cls(layout, ds, read_train_pairs(layout.train_pairs, corpus_ids=ds.corpus))

    @cached_property
    def doc_texts(self) -> list[str]:
        return self.dataset.doc_texts()

    @cached_property
    def by_query(self) -> dict[str, TrainPair]:
        return {p.query_id: p for p in self.pairs}

    def positives(self) -> np.ndarray:
        """int64 (Q, P): the labeled positives of each training pair as corpus rows, -1 padded."""
        return id_matrix([[self.doc_index[d] for d in p.positive_ids] for p in self.pairs])

    def hidden(self, query_ids) -> np.ndarray | None:
        """int64 (Q, H): every true positive of each query (the hidden labels), or None without them."""
        if not self.layout.hidden_positives.is_file():
            return None
        hidden = read_hidden_positives(self.layout.hidden_positives)
        return id_matrix([[self.doc_index[d] for d in hidden.get(q, []) if d in self.doc_index]
                          for q in query_ids])

    def pair_fields(self, query_ids) -> tuple[list[str], list[list[str]]]:
        """Query texts and labeled positive ids of ``query_ids`` (for mined-negatives rows)."""
        missing = [q for q in query_ids if q not in self.by_query]
        if missing:
            raise DataError(f"{self.layout.train_pairs}: no training pair for query id {missing[0]!r} "
                            f"(candidates and data/ come from different runs; rerun the embed stage)")
        rows = [self.by_query[q] for q in query_ids]
        return [p.query for p in rows], [p.positive_ids for p in rows]


def id_matrix(rows: list[list[int]]) -> np.ndarray:
    """int64 (len(rows), max(1, longest)) of corpus rows, -1 padded."""
    width = max([len(r) for r in rows] + [1])
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def jsonable(obj):
    """numpy scalars and arrays to Python (a Python float NaN becomes null)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and obj != obj:
        return None
    return obj
