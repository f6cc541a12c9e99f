"""Training pairs and hidden labels: the study's own files beside a BEIR folder.

* ``train_pairs.jsonl``: ``{"query_id", "query", "positive_ids", [negative_ids], [negative_scores]}``.
* ``hidden_positives.jsonl``: ``{"query_id", "positive_ids"}``: every true positive of a
  training query; used only to count false negatives, never given to a miner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError
from ..io import iter_jsonl, write_jsonl
from .beir import BeirDataset, PathLike, _check_id


@dataclass
class TrainPair:
    query_id: str
    query: str
    positive_ids: list[str]
    negative_ids: list[str] | None = None
    negative_scores: list[float] | None = None

    def to_row(self) -> dict:
        row: dict[str, Any] = {"query_id": self.query_id, "query": self.query, "positive_ids": list(self.positive_ids)}
        if self.negative_ids is not None:
            row["negative_ids"] = list(self.negative_ids)
        if self.negative_scores is not None:
            row["negative_scores"] = [float(s) for s in self.negative_scores]
        return row


def _id_list(obj: dict, name: str, where: str, corpus_ids, allow_empty: bool) -> list[str]:
    value = obj[name]
    if not isinstance(value, list):
        raise DataError(f"{where}: field '{name}' must be a list, got {type(value).__name__}")
    if not value and not allow_empty:
        raise DataError(f"{where}: field '{name}' is empty")
    for v in value:
        _check_id(v, where, name)
        if corpus_ids is not None and v not in corpus_ids:
            raise DataError(f"{where}: {name} names unknown corpus id '{v}'")
    if len(set(value)) != len(value):
        raise DataError(f"{where}: field '{name}' repeats an id")
    return list(value)


def read_train_pairs(path: PathLike, corpus_ids: Iterable[str] | None = None) -> list[TrainPair]:
    """Read and validate ``train_pairs.jsonl``; ``corpus_ids`` (optional) checks every doc id."""
    path = Path(path)
    if corpus_ids is not None and not isinstance(corpus_ids, (set, dict, frozenset)):
        corpus_ids = set(corpus_ids)
    pairs: list[TrainPair] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        for name in ("query_id", "query", "positive_ids"):
            if name not in obj:
                raise DataError(f"{where}: missing field '{name}'")
        qid = _check_id(obj["query_id"], where, "query_id")
        if qid in seen:
            raise DataError(f"{where}: duplicate query_id '{qid}' (first at line {seen[qid]})")
        query = obj["query"]
        if not isinstance(query, str):
            raise DataError(f"{where}: field 'query' must be a string, got {type(query).__name__}")
        if not query.strip():
            raise DataError(f"{where}: field 'query' is empty")
        pos = _id_list(obj, "positive_ids", where, corpus_ids, allow_empty=False)
        neg = scores = None
        if obj.get("negative_ids") is not None:
            neg = _id_list(obj, "negative_ids", where, corpus_ids, allow_empty=True)
            both = set(pos) & set(neg)
            if both:
                raise DataError(f"{where}: id '{sorted(both)[0]}' is both a positive and a negative")
        if obj.get("negative_scores") is not None:
            scores = obj["negative_scores"]
            if not isinstance(scores, list) or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in scores
            ):
                raise DataError(f"{where}: field 'negative_scores' must be a list of finite numbers")
            if neg is None or len(scores) != len(neg):
                raise DataError(f"{where}: 'negative_scores' must have one score per negative id")
            scores = [float(s) for s in scores]
        seen[qid] = lineno
        pairs.append(TrainPair(qid, query, pos, neg, scores))
    return pairs


def write_train_pairs(path: PathLike, pairs: Iterable[TrainPair]) -> int:
    """Write training pairs atomically; returns the number of rows."""
    return write_jsonl(path, (p.to_row() for p in pairs))


def read_hidden_positives(path: PathLike, corpus_ids: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Read ``hidden_positives.jsonl`` -> query id -> every true positive doc id."""
    path = Path(path)
    if corpus_ids is not None and not isinstance(corpus_ids, (set, dict, frozenset)):
        corpus_ids = set(corpus_ids)
    out: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        for name in ("query_id", "positive_ids"):
            if name not in obj:
                raise DataError(f"{where}: missing field '{name}'")
        qid = _check_id(obj["query_id"], where, "query_id")
        if qid in seen:
            raise DataError(f"{where}: duplicate query_id '{qid}' (first at line {seen[qid]})")
        out[qid] = _id_list(obj, "positive_ids", where, corpus_ids, allow_empty=False)
        seen[qid] = lineno
    return out


def write_hidden_positives(path: PathLike, positives: dict[str, list[str]]) -> int:
    return write_jsonl(path, ({"query_id": q, "positive_ids": list(p)} for q, p in positives.items()))


def pairs_from_qrels(ds: BeirDataset, split: str) -> list[TrainPair]:
    """One training pair per query of ``split`` with every positive (score > 0), in qrels order."""
    if split not in ds.qrels:
        raise DataError(f"split '{split}' not loaded; available: {ds.splits}")
    pairs = []
    for qid, docs in ds.qrels[split].items():
        pos = [d for d, s in docs.items() if s > 0]
        if pos:
            pairs.append(TrainPair(query_id=qid, query=ds.queries[qid], positive_ids=pos))
    return pairs
