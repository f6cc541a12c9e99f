"""What a mining run did: counts, score summaries, exact false-negative rates, histograms."""

from __future__ import annotations

import math

import numpy as np

from .core import MinedArrays, row_isin


def _f(x) -> float | None:
    x = float(x)
    return None if not math.isfinite(x) else x


def mining_stats(mined: MinedArrays, pos_scores, *, hidden_pos_ids=None) -> dict:
    """JSON-ready summary of a mining run (counts over kept queries unless named otherwise)."""
    n = mined.num_negatives
    keep = mined.keep
    valid = (mined.neg_ids >= 0) & keep[:, None]
    pos = np.asarray(pos_scores, dtype=np.float64)
    if pos.ndim == 1:
        pos = pos[:, None]
    pk = pos[keep]
    pk = pk[~np.isnan(pk)]
    negs = mined.neg_scores[valid].astype(np.float64)
    anc = mined.anchor[keep].astype(np.float64)
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
        "mean_positive_score": _f(pk.mean()) if pk.size else None,
        "mean_anchor_score": _f(np.nanmean(anc)) if np.isfinite(anc).any() else None,
        "mean_negative_score": _f(negs.mean()) if negs.size else None,
        "max_negative_score": _f(negs.max()) if negs.size else None,
        "mean_anchor_minus_negative": _f(gap.mean()) if gap.size else None,
        "negatives_above_anchor": int((gap < 0).sum()),
        "mean_negative_rank": _f(mined.neg_ranks[valid].mean()) if valid.any() else None,
    }
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
    filled (scores of filled negatives)."""
    keep = mined.keep
    valid = (mined.neg_ids >= 0) & keep[:, None]
    pos = np.asarray(pos_scores, dtype=np.float32)
    if pos.ndim == 1:
        pos = pos[:, None]
    pk = pos[keep]
    gap = (mined.anchors() - mined.neg_scores)[valid]
    anc = mined.anchor[keep]
    return {
        "positive": pk[~np.isnan(pk)].astype(np.float32),
        "anchor": anc[~np.isnan(anc)].astype(np.float32),
        "negative": mined.neg_scores[valid].astype(np.float32),
        "gap": gap[np.isfinite(gap)].astype(np.float32),
        "filled": mined.neg_scores[valid & mined.filled].astype(np.float32),
    }
