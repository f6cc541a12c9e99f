"""Near-duplicates of a positive: candidates that are never negatives, whatever their score.

Exact-text twins of a positive are excluded already (:func:`nvr.mining.teachers.exact_duplicate_exclusions`).
A candidate that is the positive with a sentence changed, reformatted, or a copy under another
title is as much a false negative, and the positive-aware margins only catch it when the
teacher scores it above the positive's anchor. Two measures, each a composable option of a
method (:class:`~nvr.mining.methods.MiningConfig`):

``max_positive_cosine``   the candidate's embedding cosine with a labeled positive (any dense
                          embedding: the teacher's corpus embeddings) at or above this value
``max_positive_overlap``  the Jaccard overlap of word 3-gram shingles (normalized text) with a
                          labeled positive at or above this value

The arrays are computed here from the candidates (pure functions of ids, texts or embeddings)
and passed to :func:`nvr.mining.mine`, which drops such candidates before the window, like the
exact duplicates (a ``fill`` shortfall never brings them back).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .teachers import normalize_text

SHINGLE = 3


def shingles(text: str, n: int = SHINGLE) -> frozenset:
    """Word n-grams of the normalized text (the whole text if shorter than n words)."""
    words = normalize_text(text).split(" ")
    if not words or words == [""]:
        return frozenset()
    if len(words) < n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))


def positive_overlap(doc_texts: Sequence[str], cand_ids, pos_ids, n: int = SHINGLE) -> np.ndarray:
    """float32 (Q, K): the highest shingle Jaccard of each candidate with a labeled positive of its
    query (nan on padding and for queries without positives)."""
    cand_ids = np.asarray(cand_ids, dtype=np.int64)
    pos_ids = np.asarray(pos_ids, dtype=np.int64)
    if pos_ids.ndim == 1:
        pos_ids = pos_ids[:, None]
    cache: dict[int, frozenset] = {}

    def sh(i: int) -> frozenset:
        if i not in cache:
            cache[i] = shingles(doc_texts[i], n)
        return cache[i]

    out = np.full(cand_ids.shape, np.nan, dtype=np.float32)
    for r in range(cand_ids.shape[0]):
        ps = [sh(int(p)) for p in pos_ids[r] if p >= 0]
        if not ps:
            continue
        for c, d in enumerate(cand_ids[r]):
            if d < 0:
                continue
            s = sh(int(d))
            best = 0.0
            for p in ps:
                union = len(s | p)
                if union:
                    best = max(best, len(s & p) / union)
            out[r, c] = best
    return out


def positive_cosine(embeddings, cand_ids, pos_ids, chunk: int = 4096) -> np.ndarray:
    """float32 (Q, K): the highest cosine of each candidate's embedding with a labeled positive's
    (rows of ``embeddings``, any scale; nan on padding and for queries without positives)."""
    cand_ids = np.asarray(cand_ids, dtype=np.int64)
    pos_ids = np.asarray(pos_ids, dtype=np.int64)
    if pos_ids.ndim == 1:
        pos_ids = pos_ids[:, None]
    out = np.full(cand_ids.shape, np.nan, dtype=np.float32)
    for s in range(0, cand_ids.shape[0], chunk):
        ci, pi = cand_ids[s:s + chunk], pos_ids[s:s + chunk]
        c = np.asarray(embeddings[np.maximum(ci, 0).ravel()], dtype=np.float64).reshape(*ci.shape, -1)
        p = np.asarray(embeddings[np.maximum(pi, 0).ravel()], dtype=np.float64).reshape(*pi.shape, -1)
        c /= np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-12)
        p /= np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
        cos = np.einsum("qkd,qpd->qkp", c, p)
        cos = np.where((pi >= 0)[:, None, :], cos, -np.inf).max(-1)
        cos = np.where((ci >= 0) & np.isfinite(cos), cos, np.nan)
        out[s:s + chunk] = cos.astype(np.float32)
    return out


def defence_table(cands, base, *, hidden_pos_ids, sims: dict,
                  cosines: Sequence[float] = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5),
                  overlaps: Sequence[float] = (0.5, 0.3, 0.1, 0.05)) -> list[dict]:
    """What each near-duplicate defence removes from ``base``'s negatives, against the hidden labels.

    sims: the candidates' similarity to a positive, ``{"pos_cosine": .., "pos_overlap": ..}`` (either
    may be absent: that defence is skipped). For each threshold: the negatives ``base`` mines without
    the defence that the defence removes (``removed``), how many of those are known false negatives
    (``fn_removed``; precision = fn_removed / removed) out of all false negatives among ``base``'s
    negatives (recall), the true negatives lost, and the false-negative rate of what ``base`` +
    defence then mines.
    """
    from dataclasses import replace

    from .core import row_isin
    from .hashing import query_keys

    keys = query_keys(cands.ids())
    hidden = np.asarray(hidden_pos_ids, dtype=np.int64)

    def run(cfg, **arrays):
        m = cands.mine(cfg, query_keys=keys, **arrays)
        valid = (m.neg_ids >= 0) & m.keep[:, None]
        return m, valid, row_isin(m.neg_ids, hidden) & valid

    m0, v0, fn0 = run(base)
    total_fn = int(fn0.sum())
    rows = [{"defence": "none", "threshold": None, "removed": 0, "fn_removed": 0, "tn_lost": 0,
             "precision": None, "recall": None, "false_negative_rate": float(fn0.sum() / max(v0.sum(), 1)),
             "fn_total": total_fn}]
    specs = []
    if "pos_cosine" in sims:
        specs += [("embedding cosine", "max_positive_cosine", t, "pos_cosine") for t in cosines]
    if "pos_overlap" in sims:
        specs += [("shingle overlap", "max_positive_overlap", t, "pos_overlap") for t in overlaps]
    # each base negative's column in the candidate list (its rank - 1; padding -> the nan column K)
    cols = np.where(m0.neg_ids >= 0, m0.neg_ranks.astype(np.int64) - 1, cands.cand_ids.shape[1])
    for label, field, t, name in specs:
        sim = sims[name]
        # the base negatives this defence would never emit
        padded = np.concatenate([sim, np.full((sim.shape[0], 1), np.nan, np.float32)], axis=1)
        col = np.take_along_axis(padded, cols, axis=1)
        with np.errstate(invalid="ignore"):
            hit = v0 & (col >= t)
        fn_hit = int((hit & fn0).sum())
        m, v, fn = run(replace(base, **{field: t}), **{name: sim})
        rows.append({"defence": label, "threshold": t, "removed": int(hit.sum()), "fn_removed": fn_hit,
                     "tn_lost": int(hit.sum()) - fn_hit,
                     "precision": fn_hit / int(hit.sum()) if hit.any() else None,
                     "recall": fn_hit / total_fn if total_fn else None,
                     "false_negative_rate": float(fn.sum() / max(v.sum(), 1))})
    return rows


def similarity_arrays(cfg, cands, *, doc_texts=None, embeddings=None, where: str = "mining") -> dict:
    """The ``pos_cosine`` / ``pos_overlap`` / ``judge_scores`` keyword arrays :func:`nvr.mining.mine`
    needs for ``cfg``'s defences ({} without them). ``embeddings``: corpus rows (a dense teacher's).
    The relabeling judge is the candidates' own score: the teacher's, or the cross-encoder's when the
    teacher re-scores (``rescore_model``), the usual judge."""
    from ..errors import ConfigError

    out = {}
    if cfg.relabel_above is not None:   # the judge: the teacher's own scores (a cross-encoder's with rescoring)
        out["judge_scores"] = cands.cand_scores
    if cfg.max_positive_cosine is not None:
        if embeddings is None:
            raise ConfigError(f"{where}.max_positive_cosine: needs corpus embeddings (a dense teacher); "
                              f"with BM25 or random candidates use max_positive_overlap")
        out["pos_cosine"] = positive_cosine(embeddings, cands.cand_ids, cands.pos_ids)
    if cfg.max_positive_overlap is not None:
        if doc_texts is None:
            raise ConfigError(f"{where}.max_positive_overlap: needs the corpus texts")
        out["pos_overlap"] = positive_overlap(doc_texts, cands.cand_ids, cands.pos_ids)
    return out


def defence_stats(cfg, cands, hidden_pos_ids, sims: dict) -> list[dict]:
    """For ``cfg``'s own near-duplicate thresholds: what each removes compared with ``cfg`` without it
    (rows of :func:`defence_table`, the baseline row left out). ``sims``: the arrays
    :func:`similarity_arrays` gave for ``cfg`` (not computed again)."""
    from dataclasses import replace

    if cfg.max_positive_cosine is None and cfg.max_positive_overlap is None:
        return []
    base = replace(cfg, max_positive_cosine=None, max_positive_overlap=None, relabel_above=None)
    rows = defence_table(cands, base, hidden_pos_ids=hidden_pos_ids,
                         sims={k: v for k, v in sims.items() if k in ("pos_cosine", "pos_overlap")},
                         cosines=[cfg.max_positive_cosine] if cfg.max_positive_cosine is not None else [],
                         overlaps=[cfg.max_positive_overlap] if cfg.max_positive_overlap is not None else [])
    return rows[1:]
