"""Hard-negative mining on score arrays (NV-Retriever, Moreira et al. 2024).

Pure numpy: :func:`mine` takes a teacher's ranked candidates and the teacher's scores
of the labeled positives and returns the chosen negatives. It never sees a model.

A mining method is a composition of three steps, each a field of :class:`MiningConfig`:

1. **Clean list.** Per query, a candidate is *clean* when its id is >= 0, its score is
   finite, it is not one of the query's labeled positives (all of them are masked) and
   it is not in ``exclude_ids`` (exact-text duplicates of a positive, the query's own
   document...) and not a repeat of an id earlier in the row. Non-clean candidates are
   never emitted, under any option.
2. **Window.** ``shift`` and ``window`` count positions in the clean list (ranks with
   positives/excluded/padding removed, like sentence-transformers' ``range_min`` /
   ``range_max`` over the positive-free ranking). The first ``shift`` clean candidates
   are skipped; then the next ``window`` clean candidates (all remaining when
   ``window`` is None) form the window. So the window is counted *after* the shift:
   ``shift=10, window=200`` is FlagEmbedding's "10-210".
3. **Score filters** inside the window: ``max_score`` (TopK-Abs, keep ``s <= max``),
   ``min_score`` (keep ``s >= min``), ``margin`` (TopK-MarginPos, keep
   ``s < anchor - margin``), ``perc`` (TopK-PercPos, keep ``s < anchor - |anchor| *
   (1 - perc)``, which equals ``anchor * perc`` for a positive anchor and still lies on
   the "less similar than the positive" side for a negative one). The anchor is the
   min / max / mean of the query's positive scores; with no positive score (all nan)
   the anchor is nan and positive-aware filters reject every candidate (conservative).
   By default filters act on the ranks of the window, they do not slide it (as
   sentence-transformers' ``range_max`` with a margin). With ``window_after_filters`` the
   window counts candidates that passed the filters instead: the first ``window`` clean,
   shifted candidates that pass are eligible. The paper's "PercPos 95% + sampled top-10"
   is read that way (filter with PercPos, then sample among the top 10 survivors), so it
   draws from as many candidates as PercPos alone and no query loses its negatives because
   its top 10 lay above the threshold.
   Candidates that survive window + filters are *eligible*.
4. **Selection** of ``num_negatives`` among the eligible:
   ``top`` (rank order), ``softmax`` (sample without replacement with probabilities
   ``softmax(score / temperature)``, Gumbel-top-k), ``uniform`` (sample without
   replacement, equal probabilities), ``top1_softmax`` (first eligible, then n-1 sampled
   by softmax from the other eligible), ``simans`` (sample without replacement with weights
   ``exp(-((s - anchor - offset) / width)^2)``, Gumbel-top-k). Sampled negatives are emitted in sampling order
   (a prefix of the list is itself a valid smaller sample); ``top`` in rank order.
5. **Shortfall** when fewer than n are eligible: ``keep`` emits fewer, ``drop`` marks the
   query ``keep=False``, ``fill`` appends (after the eligible ones, in rank order) the
   highest-ranked clean candidates of the window that a *score filter* rejected, and
   flags them in ``MinedArrays.filled``. Filled candidates are never positives, excluded
   ids, padding, non-finite scores or skipped by ``shift``.

Randomness is counter-based: the uniform number of (query, candidate) is
``splitmix64(splitmix64(splitmix64(seed) ^ query_key) ^ candidate_id)``, so results are
bit-identical whatever the chunking, row order, batch size or thread count, and a
candidate keeps its random number when the ranking around it changes. Ties in scores
(and in the astronomically unlikely tie of random keys) are broken by rank order.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from ..runtime import log
from .hashing import hash_uniform
from .methods import ANCHORS, MiningConfig

_CHUNK_ROWS = 16384


@dataclass
class MinedArrays:
    """Mined negatives for Q queries, n slots each (padding: id -1, score nan, rank 0)."""

    neg_ids: np.ndarray      # int64 (Q, n)
    neg_scores: np.ndarray   # float32 (Q, n)
    neg_ranks: np.ndarray    # int32 (Q, n), 1-based position in the original candidate list
    n_found: np.ndarray      # int32 (Q,)
    n_eligible: np.ndarray   # int32 (Q,) candidates that passed window + filters
    keep: np.ndarray         # bool (Q,) False when shortfall='drop' removed the query
    filled: np.ndarray       # bool (Q, n) True where shortfall='fill' took a filtered-out candidate
    anchor: np.ndarray       # float32 (Q,) positive score used as anchor (nan: none)
    source: np.ndarray | None = None   # int16 (Q, n) teacher index (ensembles only)
    neg_anchor: np.ndarray | None = None   # float32 (Q, n) anchor of the teacher that chose each negative
    relabel_ids: np.ndarray | None = None    # int64 (Q, R) candidates the judge relabeled positive (-1 pad)
    relabel_scores: np.ndarray | None = None  # float32 (Q, R) their judge scores

    def anchors(self) -> np.ndarray:
        """float32 (Q, n): the anchor each negative is compared with (its own teacher's in an ensemble)."""
        if self.neg_anchor is not None:
            return self.neg_anchor
        return np.broadcast_to(self.anchor[:, None], self.neg_ids.shape)

    def __len__(self) -> int:
        return int(self.neg_ids.shape[0])

    @property
    def num_negatives(self) -> int:
        return int(self.neg_ids.shape[1])

    def take(self, rows) -> "MinedArrays":
        """Row subset (index array or boolean mask)."""
        return MinedArrays(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[rows])
                              for f in dataclasses.fields(self)})

    @staticmethod
    def concat(parts: Sequence["MinedArrays"]) -> "MinedArrays":
        out = {}
        for f in dataclasses.fields(MinedArrays):
            vals = [getattr(p, f.name) for p in parts]
            if any(v is None for v in vals):
                out[f.name] = None
            elif f.name.startswith("relabel_"):   # blocks differ in width: pad to the widest
                w = max(v.shape[1] for v in vals)
                fill = -1 if f.name == "relabel_ids" else np.nan
                out[f.name] = np.concatenate([np.pad(v, ((0, 0), (0, w - v.shape[1])), constant_values=fill)
                                              for v in vals], axis=0)
            else:
                out[f.name] = np.concatenate(vals, axis=0)
        return MinedArrays(**out)


def _empty_mined(q: int, n: int) -> MinedArrays:
    return MinedArrays(
        neg_ids=np.full((q, n), -1, np.int64),
        neg_scores=np.full((q, n), np.nan, np.float32),
        neg_ranks=np.zeros((q, n), np.int32),
        n_found=np.zeros(q, np.int32),
        n_eligible=np.zeros(q, np.int32),
        keep=np.ones(q, bool),
        filled=np.zeros((q, n), bool),
        anchor=np.full(q, np.nan, np.float32),
    )


def row_isin(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boolean (Q, K): ``a[i, j] in b[i, :]``, ignoring negative ids on both sides."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    out = np.zeros(a.shape, bool)
    if b.ndim != 2 or b.shape[1] == 0 or a.size == 0:
        return out
    if b.shape[1] <= 16:
        for j in range(b.shape[1]):
            col = b[:, j:j + 1]
            out |= (a == col) & (col >= 0)
        return out & (a >= 0)
    m = int(max(a.max(initial=-1), b.max(initial=-1))) + 1
    rows_a = np.arange(a.shape[0], dtype=np.int64)[:, None] * m
    rows_b = np.arange(b.shape[0], dtype=np.int64)[:, None] * m
    kb = (rows_b + b)[b >= 0]
    return np.isin(rows_a + a, kb) & (a >= 0)


def first_occurrence(a: np.ndarray) -> np.ndarray:
    """Boolean (Q, K): True at the first occurrence of each id >= 0 in its row."""
    a = np.asarray(a, dtype=np.int64)
    if a.size == 0:
        return np.zeros(a.shape, bool)
    order = np.argsort(a, axis=1, kind="stable")
    srt = np.take_along_axis(a, order, axis=1)
    dup_sorted = np.zeros(a.shape, bool)
    dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
    dup = np.zeros(a.shape, bool)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return (a >= 0) & ~dup


def compute_anchor(pos_scores: np.ndarray, how: str = "min") -> np.ndarray:
    """Per-row min / max / mean of the non-nan positive scores; nan when none (float64)."""
    p = np.asarray(pos_scores, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    ok = ~np.isnan(p)
    cnt = ok.sum(1)
    if p.shape[1] == 0:
        return np.full(p.shape[0], np.nan)
    if how == "min":
        a = np.where(ok, p, np.inf).min(1)
    elif how == "max":
        a = np.where(ok, p, -np.inf).max(1)
    elif how == "mean":
        a = np.where(ok, p, 0.0).sum(1) / np.maximum(cnt, 1)
    else:
        raise ConfigError(f"mining.anchor: '{how}' is not one of {', '.join(ANCHORS)}")
    return np.where(cnt > 0, a, np.nan)


def _as2d(x, dtype, name, q=None):
    x = np.asarray(x)
    if x.ndim == 1 and q is not None and x.shape[0] == q:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"mine: {name} must be 2-D, got shape {x.shape}")
    if q is not None and x.shape[0] != q:
        raise ValueError(f"mine: {name} has {x.shape[0]} rows, expected {q}")
    return x.astype(dtype, copy=False)


def mine(cand_ids, cand_scores, pos_ids, pos_scores, cfg: MiningConfig, *, query_keys,
         exclude_ids=None, chunk_rows: int = _CHUNK_ROWS, progress: bool = True, pos_cosine=None,
         pos_overlap=None, judge_scores=None) -> MinedArrays:
    """Mine ``cfg.num_negatives`` negatives per query from a teacher's ranked candidates.

    cand_ids int64 (Q, K) ranked by descending score (-1 padding), cand_scores (Q, K);
    pos_ids int64 (Q, P) -1-padded (all masked); pos_scores (Q, P) nan-padded teacher
    scores of the positives (anchor); exclude_ids int64 (Q, E) -1-padded ids never to
    emit; query_keys uint64 (Q,) per-query seeds (see :func:`query_keys`). pos_cosine /
    pos_overlap float32 (Q, K): each candidate's similarity to a labeled positive
    (:mod:`nvr.mining.neardup`), needed by ``cfg.max_positive_cosine`` / ``max_positive_overlap``.
    judge_scores float32 (Q, K): a relevance judge's score of each candidate, needed by
    ``cfg.relabel_above`` (candidates at or above it become extra positives, ``relabel_ids``).
    """
    cfg.validate()
    cand_ids = _as2d(cand_ids, np.int64, "cand_ids")
    q, k = cand_ids.shape
    cand_scores = _as2d(cand_scores, np.float32, "cand_scores", q)
    if cand_scores.shape != cand_ids.shape:
        raise ValueError(f"mine: cand_scores shape {cand_scores.shape} != cand_ids shape {cand_ids.shape}")
    pos_ids = _as2d(pos_ids, np.int64, "pos_ids", q)
    pos_scores = _as2d(pos_scores, np.float32, "pos_scores", q)
    if exclude_ids is None:
        exclude_ids = np.zeros((q, 0), np.int64)
    exclude_ids = _as2d(exclude_ids, np.int64, "exclude_ids", q)
    qkeys = np.asarray(query_keys)
    if qkeys.shape != (q,):
        raise ValueError(f"mine: query_keys must have shape ({q},), got {qkeys.shape}")
    qkeys = qkeys.astype(np.uint64, copy=False)
    sims = {}
    for name, arr, field in (("pos_cosine", pos_cosine, "max_positive_cosine"),
                             ("pos_overlap", pos_overlap, "max_positive_overlap"),
                             ("judge_scores", judge_scores, "relabel_above")):
        if getattr(cfg, field) is None:
            continue
        if arr is None:
            raise ValueError(f"mine: {field} needs {name} (see nvr.mining.neardup)")
        arr = _as2d(arr, np.float32, name, q)
        if arr.shape != cand_ids.shape:
            raise ValueError(f"mine: {name} shape {arr.shape} != cand_ids shape {cand_ids.shape}")
        sims[field] = arr

    t0 = time.perf_counter()
    n = cfg.num_negatives
    starts = range(0, q, max(1, int(chunk_rows)))
    parts = []
    it = starts
    if progress and len(starts) > 4:
        from tqdm.auto import tqdm

        it = tqdm(starts, desc="mine", unit="chunk")
    for s in it:
        e = min(q, s + chunk_rows)
        parts.append(_mine_block(cand_ids[s:e], cand_scores[s:e], pos_ids[s:e], pos_scores[s:e],
                                 exclude_ids[s:e], qkeys[s:e], cfg, {f: a[s:e] for f, a in sims.items()}))
    out = MinedArrays.concat(parts) if parts else _empty_mined(0, n)
    dt = time.perf_counter() - t0
    log.info("mined %d queries x %d candidates: %d negatives, %d queries short, %d dropped, %d filled (%.1fs)",
             q, k, int(out.n_found[out.keep].sum()), int((out.keep & (out.n_found < n)).sum()),
             int((~out.keep).sum()), int(out.filled[out.keep].sum()), dt)
    return out


def _passes(ids, scores, anchor, cfg: MiningConfig) -> np.ndarray:
    """bool (Q, K): the candidates every score filter keeps (all True without filters)."""
    passed = np.ones(ids.shape, dtype=bool)
    f32 = np.float32
    if cfg.max_score is not None:
        passed &= scores <= f32(cfg.max_score)
    if cfg.min_score is not None:
        passed &= scores >= f32(cfg.min_score)
    with np.errstate(invalid="ignore"):
        if cfg.margin is not None:
            passed &= scores < (anchor - cfg.margin).astype(f32)[:, None]
        if cfg.perc is not None:
            passed &= scores < (anchor - np.abs(anchor) * (1.0 - cfg.perc)).astype(f32)[:, None]
    return passed


def _mine_block(ids, scores, pos_ids, pos_scores, exclude_ids, qkeys, cfg: MiningConfig,
                sims: dict | None = None) -> MinedArrays:
    q, k = ids.shape
    n = cfg.num_negatives
    out = _empty_mined(q, n)
    anchor = compute_anchor(pos_scores, cfg.anchor)
    out.anchor[:] = anchor.astype(np.float32)
    if q == 0 or k == 0:
        if cfg.shortfall == "drop":
            out.keep[:] = False
        return out

    # 1. clean list
    clean = first_occurrence(ids) & np.isfinite(scores)
    clean &= ~row_isin(ids, pos_ids)
    if exclude_ids.shape[1]:
        clean &= ~row_isin(ids, exclude_ids)
    sims = dict(sims or {})
    judge = sims.pop("relabel_above", None)
    for field, sim in sims.items():   # near-duplicates of a positive (nvr.mining.neardup)
        with np.errstate(invalid="ignore"):
            clean &= ~(sim >= np.float32(getattr(cfg, field)))
    if judge is not None:             # the judge relabels: never a negative, an extra positive instead
        with np.errstate(invalid="ignore"):
            rel = clean & (judge >= np.float32(cfg.relabel_above))
        clean &= ~rel
        width = int(rel.sum(1).max(initial=0))
        order = np.argsort(~rel, axis=1, kind="stable")[:, :width]
        ok = np.take_along_axis(rel, order, axis=1)
        out.relabel_ids = np.where(ok, np.take_along_axis(ids, order, axis=1), -1).astype(np.int64)
        out.relabel_scores = np.where(ok, np.take_along_axis(judge, order, axis=1), np.nan).astype(np.float32)
    passed = _passes(ids, scores, anchor, cfg)   # 3's score filters, computed once
    # 2. window over clean positions (after the shift)
    cpos = np.cumsum(clean, axis=1, dtype=np.int32) - 1
    in_range = clean & (cpos >= cfg.shift)
    if cfg.window is not None:
        if cfg.window_after_filters:
            # the window ends at the window-th candidate that passes the filters: a column is in
            # it while fewer than `window` passing candidates precede it
            ok = in_range & passed
            in_range &= (np.cumsum(ok, axis=1, dtype=np.int32) - ok) < cfg.window
        else:
            in_range &= cpos < cfg.shift + cfg.window
    # columns beyond the last in-range candidate of any row play no role
    any_col = in_range.any(0)
    if not any_col.any():
        if cfg.shortfall == "drop":
            out.keep[:] = False
        return out
    kc = int(np.flatnonzero(any_col)[-1]) + 1
    ids, scores, in_range, passed = ids[:, :kc], scores[:, :kc], in_range[:, :kc], passed[:, :kc]
    # 3. score filters
    # thresholds are computed in float64 then rounded to float32, the scores' precision,
    # so that a score printed as 0.7 equals a max_score of 0.7 (inclusive) and a score
    # equal to anchor * perc is rejected (strict), as the decimal rule reads.
    eligible = in_range & passed
    n_elig = eligible.sum(1)
    out.n_eligible[:] = n_elig

    # 4. selection -> (rows, cols, slots) of the chosen candidates
    if cfg.selection == "top":
        erank = np.cumsum(eligible, axis=1, dtype=np.int32) - 1
        chosen = eligible & (erank < n)
        r, c = np.nonzero(chosen)
        slot = erank[r, c]
    else:
        if cfg.selection == "uniform":
            key = hash_uniform(cfg.seed, qkeys, ids)
        elif cfg.selection == "simans":
            # Gumbel-top-k with log-weights -((s - anchor - offset) / width)^2 (SimANS); a query
            # without an anchor (no positive score) has no ambiguous zone: its candidates sample uniformly
            u = hash_uniform(cfg.seed, qkeys, ids)
            z = (scores.astype(np.float64) - anchor.astype(np.float64)[:, None] - cfg.simans_offset) / cfg.simans_width
            key = np.where(np.isfinite(z), -z * z, 0.0) - np.log(-np.log(u))
        else:
            u = hash_uniform(cfg.seed, qkeys, ids)
            key = scores.astype(np.float64) / cfg.temperature - np.log(-np.log(u))
            if cfg.selection == "top1_softmax":
                first = eligible & (np.cumsum(eligible, axis=1) == 1)
                key = np.where(first, np.inf, key)
        key = np.where(eligible, key, -np.inf)
        order = np.argsort(-key, axis=1, kind="stable")[:, :n]
        ok = np.take_along_axis(eligible, order, axis=1)
        r, slot = np.nonzero(ok)
        c = order[r, slot]
    out.neg_ids[r, slot] = ids[r, c]
    out.neg_scores[r, slot] = scores[r, c]
    out.neg_ranks[r, slot] = (c + 1).astype(np.int32)
    found = np.minimum(n_elig, n).astype(np.int32)

    # 5. shortfall
    short = found < n
    if cfg.shortfall == "drop":
        out.keep[:] = ~short
    elif cfg.shortfall == "fill" and short.any():
        pool = in_range & ~passed          # clean, in window, rejected by a score filter
        pool[~short] = False
        frank = np.cumsum(pool, axis=1, dtype=np.int32) - 1 + found[:, None]
        take = pool & (frank < n)
        r, c = np.nonzero(take)
        slot = frank[r, c]
        out.neg_ids[r, slot] = ids[r, c]
        out.neg_scores[r, slot] = scores[r, c]
        out.neg_ranks[r, slot] = (c + 1).astype(np.int32)
        out.filled[r, slot] = True
        found = found + take.sum(1).astype(np.int32)
    out.n_found[:] = found
    return out
