"""The mined-negatives file: one JSON line per kept query (see docs/ARCHITECTURE.md).

``{"query_id", "query", "positive_ids", "positive_scores", "negative_ids", "negative_scores",
"negative_ranks"}`` (+ ``negative_filled`` where ``shortfall: fill`` took a filtered-out
candidate). Ranks are 1-based positions in the teacher's candidate list; scores are the
teacher's (or the cross-encoder's when candidates were rescored). A teacher ensemble's rows add
``negative_teachers``, ``negative_anchor_scores`` and ``positive_teacher`` (:func:`to_rows`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError
from ..io import iter_jsonl, recover, require_fields, write_jsonl
from .core import MinedArrays


def _score(x) -> float | None:
    """Shortest decimal that round-trips to the same float32 (byte-stable JSON)."""
    x = np.float32(x)
    if not np.isfinite(x):
        return None
    return float(str(x))


def to_rows(mined: MinedArrays, query_ids: Sequence[str], queries: Sequence[str],
            pos_ids_str: Sequence[Sequence[str]], pos_scores, doc_ids: Sequence[str],
            teachers: Sequence[str] | None = None) -> list[dict]:
    """Rows of the mined-negatives file (kept queries, input order).

    ``positive_scores[j]`` is ``pos_scores[i, j]`` for the j-th id of ``pos_ids_str[i]``
    (None when nan). A row with filled negatives also carries ``negative_filled``. An
    ensemble's rows (``mined.source`` set, ``teachers`` its names, ``pos_scores`` one (Q, P)
    array per teacher) also carry ``negative_teachers``, ``negative_anchor_scores`` and
    ``positive_teacher``: each negative's score is its own teacher's, compared with that
    teacher's anchor; ``positive_scores`` are ``positive_teacher``'s: the teacher of the row's
    negatives when they all come from one (every cross-sample row), else the first teacher (an
    intra-sample row of several teachers, whose scores are therefore not exported with
    ``output_scores``, see :mod:`nvr.mining.formats`).
    """
    from .stats import teacher_positive_scores

    q = len(mined)
    if not (len(query_ids) == len(queries) == len(pos_ids_str) == q):
        raise ValueError(f"to_rows: {q} mined rows but {len(query_ids)} ids, {len(queries)} queries, "
                         f"{len(pos_ids_str)} positive lists")
    ensemble = mined.source is not None and teachers is not None
    if ensemble:
        pos_t = [a.astype(np.float32) for a in teacher_positive_scores(mined, pos_scores)]
        if len(pos_t) != len(teachers):
            raise ValueError(f"to_rows: {len(teachers)} teachers but positive scores of {len(pos_t)}")
        width = max(a.shape[1] for a in pos_t)
        pos_t = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan) for a in pos_t]
    else:
        pos = np.asarray(pos_scores, dtype=np.float32)
        if pos.ndim == 1:
            pos = pos[:, None]
    rows = []
    for i in np.flatnonzero(mined.keep):
        if ensemble:
            src = set(mined.source[i][mined.neg_ids[i] >= 0].tolist())
            pos_teacher = src.pop() if len(src) == 1 else 0
            pos = pos_t[pos_teacher]
        pids = [str(p) for p in pos_ids_str[i]]
        if len(pids) > pos.shape[1]:
            raise ValueError(f"to_rows: query {query_ids[i]} has {len(pids)} positives but pos_scores has "
                             f"{pos.shape[1]} columns")
        sel = mined.neg_ids[i] >= 0
        ids_i = mined.neg_ids[i][sel]
        row = {
            "query_id": str(query_ids[i]),
            "query": queries[i],
            "positive_ids": pids,
            "positive_scores": [_score(s) for s in pos[i, :len(pids)]],
            "negative_ids": [doc_ids[j] for j in ids_i],
            "negative_scores": [_score(s) for s in mined.neg_scores[i][sel]],
            "negative_ranks": [int(r) for r in mined.neg_ranks[i][sel]],
        }
        fl = mined.filled[i][sel]
        if fl.any():
            row["negative_filled"] = [bool(b) for b in fl]
        if mined.relabel_ids is not None:   # the judge's extra positives (never negatives)
            rsel = mined.relabel_ids[i] >= 0
            row["relabeled_positive_ids"] = [doc_ids[j] for j in mined.relabel_ids[i][rsel]]
            row["relabeled_positive_scores"] = [_score(s) for s in mined.relabel_scores[i][rsel]]
        if ensemble:
            row["negative_teachers"] = [teachers[t] for t in mined.source[i][sel]]
            row["negative_anchor_scores"] = [_score(s) for s in mined.anchors()[i][sel]]
            row["positive_teacher"] = teachers[pos_teacher]
        rows.append(row)
    return rows


_ROW_FIELDS = {"query_id": str, "query": str, "positive_ids": list, "positive_scores": list,
               "negative_ids": list, "negative_scores": list, "negative_ranks": list}


def write_mined(path, rows: Iterable[dict]) -> int:
    """Write mined-negative rows atomically (JSON lines); returns the row count."""
    return write_jsonl(path, rows)


def read_mined(path) -> list[dict]:
    """Read and validate a mined-negatives file; errors name ``file:line``."""
    path = Path(path)
    recover(path)  # complete a publish (file + stats) that a killed writer left half-done
    rows = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        require_fields(obj, _ROW_FIELDS, where)
        if not all(isinstance(x, str) for x in obj["positive_ids"]) or not obj["positive_ids"]:
            raise DataError(f"{where}: 'positive_ids' must be a non-empty list of strings")
        if not all(isinstance(x, str) for x in obj["negative_ids"]):
            raise DataError(f"{where}: 'negative_ids' must be a list of strings")
        for name in ("positive_scores", "negative_scores"):
            if not all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))
                       for x in obj[name]):
                raise DataError(f"{where}: '{name}' must be a list of numbers (or null)")
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in obj["negative_ranks"]):
            raise DataError(f"{where}: 'negative_ranks' must be a list of integers >= 1")
        if len(obj["positive_scores"]) != len(obj["positive_ids"]):
            raise DataError(f"{where}: {len(obj['positive_ids'])} positive_ids but "
                            f"{len(obj['positive_scores'])} positive_scores")
        nn = len(obj["negative_ids"])
        for name in ("negative_scores", "negative_ranks"):
            if len(obj[name]) != nn:
                raise DataError(f"{where}: {nn} negative_ids but {len(obj[name])} {name}")
        if "negative_filled" in obj:
            fl = obj["negative_filled"]
            if not isinstance(fl, list) or len(fl) != nn or not all(isinstance(b, bool) for b in fl):
                raise DataError(f"{where}: 'negative_filled' must be a list of {nn} booleans")
        if set(obj["negative_ids"]) & set(obj["positive_ids"]):
            raise DataError(f"{where}: a negative id is also a positive id")
        if "relabeled_positive_ids" in obj:
            rel = obj["relabeled_positive_ids"]
            if not isinstance(rel, list) or not all(isinstance(x, str) for x in rel):
                raise DataError(f"{where}: 'relabeled_positive_ids' must be a list of strings")
            if len(obj.get("relabeled_positive_scores", [])) != len(rel):
                raise DataError(f"{where}: {len(rel)} relabeled_positive_ids but "
                                f"{len(obj.get('relabeled_positive_scores', []))} relabeled_positive_scores")
            if set(rel) & set(obj["negative_ids"]):
                raise DataError(f"{where}: a negative id is also a relabeled positive id")
        rows.append(obj)
    return rows
