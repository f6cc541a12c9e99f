"""Teacher ensembles (paper Table 2) and the overlap of teachers' candidates.

* :func:`cross_sample` - one teacher chosen at random per query (seeded per query);
* :func:`intra_sample` - the first negatives of every teacher, round-robin, with duplicates
  removed or kept;
* :func:`topk_jaccard` / :func:`jaccard_matrix` - how much two teachers' top-k agree.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .core import MinedArrays, first_occurrence, row_isin
from .hashing import hash_uniform


def _pad_cols(a: np.ndarray, width: int) -> np.ndarray:
    if a.ndim < 2 or a.shape[1] == width:
        return a
    if np.issubdtype(a.dtype, np.floating):
        fill = np.nan
    elif a.dtype == bool:
        fill = False
    elif np.issubdtype(a.dtype, np.signedinteger):
        fill = -1
    else:
        fill = 0
    out = np.full((a.shape[0], width) + a.shape[2:], fill, a.dtype)
    out[:, :a.shape[1]] = a
    return out


def cross_sample(cands: Sequence[tuple], *, seed: int, query_keys) -> tuple:
    """Per query, take the row of one teacher chosen uniformly at random (paper: cross-sample).

    ``cands[t]`` is a tuple of arrays with Q rows for teacher t, e.g. ``(scores, ids)`` or
    ``(scores, ids, pos_scores)`` (same arity for all teachers; narrower 2-D arrays are
    padded with nan / -1). Returns the picked arrays, in the same order, followed by the
    chosen teacher index per query (int64 (Q,)). Mining the picked rows equals mining each
    teacher and then picking (pass the teacher's positive scores along).
    """
    if not cands:
        raise ValueError("cross_sample: no teachers")
    arity = len(cands[0])
    if any(len(c) != arity for c in cands):
        raise ValueError("cross_sample: every teacher must give the same number of arrays")
    qk = np.asarray(query_keys, dtype=np.uint64)
    q = qk.shape[0]
    t = len(cands)
    u = hash_uniform(seed, qk, np.full((q, 1), 0x43524F5353, np.int64))[:, 0]   # "CROSS"
    choice = np.minimum((u * t).astype(np.int64), t - 1)
    out = []
    for j in range(arity):
        arrs = [np.asarray(c[j]) for c in cands]
        if any(a.shape[0] != q for a in arrs):
            raise ValueError(f"cross_sample: array {j} does not have {q} rows for every teacher")
        if arrs[0].ndim >= 2:
            w = max(a.shape[1] for a in arrs)
            arrs = [_pad_cols(a, w) for a in arrs]
        stacked = np.stack(arrs, axis=0)
        out.append(stacked[choice, np.arange(q)])
    return (*out, choice)


def pick_mined(mined_per_teacher: Sequence[MinedArrays], choice: np.ndarray) -> MinedArrays:
    """Row i of the result is row i of ``mined_per_teacher[choice[i]]`` (source = teacher)."""
    q = len(mined_per_teacher[0])
    choice = np.asarray(choice, dtype=np.int64)
    rows = np.arange(q)
    fields = {}
    for name in ("neg_ids", "neg_scores", "neg_ranks", "n_found", "n_eligible", "keep", "filled", "anchor"):
        arrs = [getattr(m, name) for m in mined_per_teacher]
        if arrs[0].ndim == 2:
            w = max(a.shape[1] for a in arrs)
            arrs = [_pad_cols(a, w) for a in arrs]
        fields[name] = np.stack(arrs)[choice, rows]
    width = fields["neg_ids"].shape[1]
    fields["source"] = np.where(fields["neg_ids"] >= 0, choice[:, None], -1).astype(np.int16)
    assert fields["source"].shape == (q, width)
    fields["neg_anchor"] = np.where(fields["neg_ids"] >= 0, fields["anchor"][:, None], np.nan).astype(np.float32)
    return MinedArrays(**fields)


def intra_sample(mined_per_teacher: Sequence[MinedArrays], n: int, dedupe: bool, *,
                 per_teacher: int = 1) -> MinedArrays:
    """Combine the mined negatives of several teachers (paper: intra-sample).

    The pool of a query is the first ``per_teacher`` negatives of each teacher, taken
    round-robin (every teacher's 1st, then every teacher's 2nd, ...); ``dedupe`` removes a
    document already in the pool; the first ``n`` form the result. Paper: 4 teachers,
    per_teacher=1, n=4, duplicates removed (fewer than 4 then) or kept. nvr.stages.ensembles
    passes ``per_teacher=n``: the same first n when nothing repeats, and with ``dedupe`` a
    repeated document's slot goes to the next negative of the round-robin.
    Scores, ranks and anchors (``neg_anchor``) are each negative's own teacher's (``source``
    says which), so a negative is only ever compared with the positive score of the teacher
    that chose it; ``anchor`` (per query) is the first teacher's and is not used for
    ensemble negatives. ``keep`` is False if any teacher dropped the query; ``n_eligible`` is
    the size of the pool after deduplication. With ``dedupe``, a query whose pool holds fewer
    than ``n`` distinct documents gets fewer than ``n`` negatives (the slots are not refilled
    from deeper in any teacher's list).
    """
    if not mined_per_teacher:
        raise ValueError("intra_sample: no teachers")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"mining.intra_sample.n: must be an integer >= 1, got {n!r}")
    if per_teacher < 1:
        raise ConfigError(f"mining.intra_sample.per_teacher: must be >= 1, got {per_teacher!r}")
    q = len(mined_per_teacher[0])
    if any(len(m) != q for m in mined_per_teacher):
        raise ValueError("intra_sample: teachers mined different numbers of queries")
    cols = {k: [] for k in ("ids", "scores", "ranks", "filled", "source", "anchor")}
    for d in range(per_teacher):
        for t, m in enumerate(mined_per_teacher):
            if d < m.num_negatives:
                valid_keep = m.keep
                cols["ids"].append(np.where(valid_keep, m.neg_ids[:, d], -1))
                cols["scores"].append(m.neg_scores[:, d])
                cols["ranks"].append(m.neg_ranks[:, d])
                cols["filled"].append(m.filled[:, d])
                cols["source"].append(np.full(q, t, np.int16))
                cols["anchor"].append(m.anchor.astype(np.float32))
    ids = np.stack(cols["ids"], 1)
    use = first_occurrence(ids) if dedupe else ids >= 0
    slot = np.cumsum(use, axis=1) - 1
    take = use & (slot < n)
    r, c = np.nonzero(take)
    s = slot[r, c]
    out = MinedArrays(
        neg_ids=np.full((q, n), -1, np.int64),
        neg_scores=np.full((q, n), np.nan, np.float32),
        neg_ranks=np.zeros((q, n), np.int32),
        n_found=take.sum(1).astype(np.int32),
        n_eligible=use.sum(1).astype(np.int32),
        keep=np.logical_and.reduce([m.keep for m in mined_per_teacher]),
        filled=np.zeros((q, n), bool),
        anchor=mined_per_teacher[0].anchor.astype(np.float32).copy(),
        source=np.full((q, n), -1, np.int16),
        neg_anchor=np.full((q, n), np.nan, np.float32),
    )
    out.neg_ids[r, s] = ids[r, c]
    out.neg_scores[r, s] = np.stack(cols["scores"], 1)[r, c]
    out.neg_ranks[r, s] = np.stack(cols["ranks"], 1)[r, c]
    out.filled[r, s] = np.stack(cols["filled"], 1)[r, c]
    out.source[r, s] = np.stack(cols["source"], 1)[r, c]
    out.neg_anchor[r, s] = np.stack(cols["anchor"], 1)[r, c]
    return out


def topk_jaccard(ids_a, ids_b, k: int) -> float:
    """Mean over queries of |A ∩ B| / |A ∪ B| for the sets of the first k ids of each row
    (-1 ignored; rows where both sets are empty are skipped; nan if all are)."""
    a = np.asarray(ids_a, dtype=np.int64)[:, :k]
    b = np.asarray(ids_b, dtype=np.int64)[:, :k]
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"topk_jaccard: {a.shape[0]} rows vs {b.shape[0]} rows")
    ua = first_occurrence(a)
    ub = first_occurrence(b)
    inter = (row_isin(a, b) & ua).sum(1)
    union = ua.sum(1) + ub.sum(1) - inter
    ok = union > 0
    if not ok.any():
        return float("nan")
    return float((inter[ok] / union[ok]).mean())


def jaccard_matrix(ids_by_name: dict[str, np.ndarray], k: int) -> dict[str, dict[str, float]]:
    """Pairwise :func:`topk_jaccard` (JSON-ready nested dict, symmetric, 1 on the diagonal)."""
    names = list(ids_by_name)
    out: dict[str, dict[str, float]] = {a: {} for a in names}
    for i, a in enumerate(names):
        for b in names[i:]:
            v = topk_jaccard(ids_by_name[a], ids_by_name[b], k)
            out[a][b] = out[b][a] = v
    return out
