"""What a mining run did: counts, score summaries, exact false-negative rates, histograms."""

from __future__ import annotations

import math

import numpy as np

from .core import MinedArrays, row_isin


def _f(x) -> float | None:
    x = float(x)
    return None if not math.isfinite(x) else x


def teacher_positive_scores(mined: MinedArrays, pos_scores) -> list[np.ndarray] | None:
    """An ensemble's positive scores, one float64 (Q, P) array per teacher (index = ``mined.source``);
    None for a single teacher's run (``mined.source`` unset), whose ``pos_scores`` is one (Q, P) array.

    An ensemble's negatives come from several teachers, each on its own scale: its positive
    scores must be given per teacher (a list of (Q, P) arrays, or one (T, Q, P) array), never one
    teacher's for all."""
    if mined.source is None:
        return None
    if isinstance(pos_scores, np.ndarray) and pos_scores.ndim != 3:
        pos_scores = None
    if pos_scores is None or not isinstance(pos_scores, (list, tuple, np.ndarray)) or not len(pos_scores) \
            or np.ndim(pos_scores[0]) not in (1, 2):
        raise ValueError("an ensemble's negatives come from several teachers: pass its positive scores per teacher "
                         "(one (Q, P) array each, in the order of the teachers), not one teacher's for all")
    out = []
    for a in pos_scores:
        a = np.asarray(a, dtype=np.float64)
        out.append(a[:, None] if a.ndim == 1 else a)
    if any(a.shape[0] != len(mined) for a in out):
        raise ValueError(f"positive scores per teacher: every array must have {len(mined)} rows")
    used = mined.source[mined.neg_ids >= 0]
    if used.size and int(used.max()) >= len(out):
        raise ValueError(f"positive scores per teacher: {len(out)} arrays, but negatives come from teacher "
                         f"{int(used.max())}")
    return out


def _teacher_pairs(mined: MinedArrays, pos_t: list[np.ndarray], valid: np.ndarray):
    """Per teacher t: (queries where t chose at least one emitted negative, t's anchor of each query, t's slots)."""
    anchors = mined.anchors().astype(np.float64)
    rows = np.arange(len(mined))
    for t in range(len(pos_t)):
        slots = valid & (mined.source == t)
        has = slots.any(1)
        anc = anchors[rows, np.argmax(slots, axis=1)]   # every slot of t in a row holds t's anchor
        yield has, anc, slots


def _ensemble_stats(mined: MinedArrays, pos_t: list[np.ndarray], valid: np.ndarray, teachers) -> dict:
    """Positive and anchor statistics of an ensemble over the (query, teacher) pairs where the teacher
    chose at least one emitted negative: each teacher's own positive scores and anchor, never the
    first teacher's for all; ``per_teacher`` gives them (and the negatives) teacher by teacher."""
    all_pos, all_anc, per = [], [], {}
    for t, (has, anc, slots) in enumerate(_teacher_pairs(mined, pos_t, valid)):
        p = pos_t[t][has]
        p = p[~np.isnan(p)]
        a = anc[has]
        a = a[np.isfinite(a)]
        negs = mined.neg_scores[slots].astype(np.float64)
        gap = (mined.anchors().astype(np.float64) - mined.neg_scores)[slots]
        gap = gap[np.isfinite(gap)]
        all_pos.append(p)
        all_anc.append(a)
        name = str(teachers[t]) if teachers is not None and t < len(teachers) else str(t)
        per[name] = {
            "queries": int(has.sum()),
            "negatives": int(slots.sum()),
            "mean_positive_score": _f(p.mean()) if p.size else None,
            "mean_anchor_score": _f(a.mean()) if a.size else None,
            "mean_negative_score": _f(negs.mean()) if negs.size else None,
            "mean_anchor_minus_negative": _f(gap.mean()) if gap.size else None,
        }
    pk, anc = np.concatenate(all_pos), np.concatenate(all_anc)
    no_pos = np.zeros(len(mined), bool)
    for p in pos_t:
        no_pos |= np.isnan(p).all(1)
    return {"mean_positive_score": _f(pk.mean()) if pk.size else None,
            "mean_anchor_score": _f(anc.mean()) if anc.size else None,
            "queries_without_positive_score": int(no_pos.sum()),
            "per_teacher": per}


def mining_stats(mined: MinedArrays, pos_scores, *, hidden_pos_ids=None, teachers=None) -> dict:
    """JSON-ready summary of a mining run (counts over kept queries unless named otherwise).

    For an ensemble (``mined.source`` set) ``pos_scores`` is per teacher
    (:func:`teacher_positive_scores`); ``mean_positive_score`` / ``mean_anchor_score`` then
    average, over the (query, teacher) pairs where the teacher chose at least one emitted
    negative, that teacher's own positive scores and anchor, and ``per_teacher`` (keyed by
    ``teachers``' names) gives them teacher by teacher.
    """
    n = mined.num_negatives
    keep = mined.keep
    valid = (mined.neg_ids >= 0) & keep[:, None]
    pos_t = teacher_positive_scores(mined, pos_scores)
    if pos_t is None:
        pos = np.asarray(pos_scores, dtype=np.float64)
        if pos.ndim == 1:
            pos = pos[:, None]
        pk = pos[keep]
        pk = pk[~np.isnan(pk)]
        anc = mined.anchor[keep].astype(np.float64)
        anc = anc[np.isfinite(anc)]
    negs = mined.neg_scores[valid].astype(np.float64)
    gap = (mined.anchors().astype(np.float64) - mined.neg_scores)[valid]   # each negative vs its own anchor
    gap = gap[np.isfinite(gap)]
    stats = {
        "queries": int(len(mined)),
        "queries_kept": int(keep.sum()),
        "queries_full": int((keep & (mined.n_found == n)).sum()),
        "queries_short": int((keep & (mined.n_found < n)).sum()),
        "queries_no_negatives": int((keep & (mined.n_found == 0)).sum()),
        "queries_dropped": int((~keep).sum()),
        "queries_without_positive_score": int(np.isnan(mined.anchor).sum()),
        "num_negatives": n,
        "negatives_emitted": int(valid.sum()),
        "filled": int((mined.filled & valid).sum()),
        "mean_eligible": _f(mined.n_eligible[keep].mean()) if keep.any() else None,
        "mean_positive_score": _f(pk.mean()) if pos_t is None and pk.size else None,
        "mean_anchor_score": _f(anc.mean()) if pos_t is None and anc.size else None,
        "mean_negative_score": _f(negs.mean()) if negs.size else None,
        "max_negative_score": _f(negs.max()) if negs.size else None,
        "mean_anchor_minus_negative": _f(gap.mean()) if gap.size else None,
        "negatives_above_anchor": int((gap < 0).sum()),
        "mean_negative_rank": _f(mined.neg_ranks[valid].mean()) if valid.any() else None,
    }
    if pos_t is not None:
        stats.update(_ensemble_stats(mined, pos_t, valid, teachers))
    if mined.relabel_ids is not None:
        rel = (mined.relabel_ids >= 0) & keep[:, None]
        stats["relabeled_positives"] = int(rel.sum())
        stats["queries_with_relabeled"] = int(rel.any(1).sum())
    if hidden_pos_ids is not None:
        hidden = np.asarray(hidden_pos_ids, dtype=np.int64)
        if hidden.ndim == 1:
            hidden = hidden[:, None]
        if hidden.shape[0] != len(mined):
            raise ValueError(f"mining_stats: hidden_pos_ids has {hidden.shape[0]} rows, expected {len(mined)}")
        fn = row_isin(mined.neg_ids, hidden) & valid
        stats["false_negatives"] = int(fn.sum())
        stats["false_negative_rate"] = _f(fn.sum() / valid.sum()) if valid.any() else None
        stats["queries_with_false_negative"] = int(fn.any(1).sum())
        if mined.relabel_ids is not None:   # how many of the judge's extra positives are true positives
            hit = row_isin(mined.relabel_ids, hidden) & rel
            stats["relabeled_true_positives"] = int(hit.sum())
            stats["relabel_precision"] = _f(hit.sum() / rel.sum()) if rel.any() else None
    return stats


def score_distributions(mined: MinedArrays, pos_scores) -> dict[str, np.ndarray]:
    """Flat float32 arrays for histograms, kept queries only: positive (every non-nan
    positive score), anchor, negative (emitted), gap (anchor - negative, per negative),
    filled (scores of filled negatives). An ensemble's positive and anchor samples are each
    teacher's own, for the queries it chose negatives for (as in :func:`mining_stats`)."""
    keep = mined.keep
    valid = (mined.neg_ids >= 0) & keep[:, None]
    pos_t = teacher_positive_scores(mined, pos_scores)
    if pos_t is None:
        pos = np.asarray(pos_scores, dtype=np.float32)
        if pos.ndim == 1:
            pos = pos[:, None]
        pk = pos[keep]
        anc = mined.anchor[keep]
    else:
        pairs = list(_teacher_pairs(mined, pos_t, valid))
        pk = np.concatenate([pos_t[t][has].ravel() for t, (has, _, _) in enumerate(pairs)])
        anc = np.concatenate([a[has] for has, a, _ in pairs])
    gap = (mined.anchors() - mined.neg_scores)[valid]
    return {
        "positive": pk[~np.isnan(pk)].astype(np.float32),
        "anchor": anc[~np.isnan(anc)].astype(np.float32),
        "negative": mined.neg_scores[valid].astype(np.float32),
        "gap": gap[np.isfinite(gap)].astype(np.float32),
        "filled": mined.neg_scores[valid & mined.filled].astype(np.float32),
    }
