"""Threshold sweeps of the positive-aware filters on one teacher's candidates (the mining side).

The paper tries each filter's threshold from 0 to 1 in steps of 0.05 and trains a model per point.
Training is the expensive half; what a threshold does to the negatives is not: for every point
of a grid this mines the candidates again (milliseconds) and records what the filter keeps and
how many of the kept negatives are unlabeled positives (the exact false-negative rate, on data
with hidden labels). The trade-off the paper's thresholds make -- fewer false negatives against
fewer and easier negatives -- is then visible for every run, not only for the points trained.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .candidates import Candidates
from .hashing import query_keys
from .methods import MiningConfig
from .stats import mining_stats

#: The grid per filter (field of :class:`MiningConfig`): the paper's step of 0.05 over the
#: range where cosine-similarity teachers put their scores (PercPos adds the paper's 0.98 / 1.05).
SWEEP_GRIDS: dict[str, tuple[float, ...]] = {
    "perc": (0.70, 0.75, 0.80, 0.85, 0.90, 0.95, 0.98, 1.00, 1.05),
    "margin": (0.0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30),
    "max_score": (0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95),
}


def threshold_sweep(cands: Candidates, base: MiningConfig, *, hidden_pos_ids=None,
                    grids: dict[str, tuple[float, ...]] | None = None) -> list[dict]:
    """Mine ``cands`` with ``base`` once per threshold of each filter and summarise each run.

    base: the method the filter is added to (naive top-k with the study's ``num_negatives`` and
    ``shortfall``); hidden_pos_ids int64 (Q, H): every true positive per query (-1 padded), for
    the exact false-negative rate. Returns one row per point, the unfiltered ``base`` first
    (``filter: None``): ``false_negative_rate`` (None without hidden labels),
    ``negatives_per_query`` (kept queries), ``share_full`` (queries with all n negatives),
    ``mean_negative_score`` and ``mean_negative_rank``.
    """
    grids = SWEEP_GRIDS if grids is None else grids
    unknown = sorted(set(grids) - {"perc", "margin", "max_score"})
    if unknown:
        raise ValueError(f"threshold_sweep: unknown filter {unknown[0]!r} (perc, margin or max_score)")
    keys = query_keys(cands.ids())
    points: list[tuple[str | None, float | None]] = [(None, None)]
    points += [(f, float(t)) for f, grid in grids.items() for t in grid]
    rows = []
    for field, value in points:
        cfg = base if field is None else replace(base, **{field: value})
        m = cands.mine(cfg, query_keys=keys)
        st = mining_stats(m, cands.pos_scores, hidden_pos_ids=hidden_pos_ids)
        kept = max(st["queries_kept"], 1)
        rows.append({"filter": field, "threshold": value,
                     "false_negative_rate": st.get("false_negative_rate"),
                     "negatives_per_query": round(st["negatives_emitted"] / kept, 4),
                     "share_full": round(st["queries_full"] / kept, 4),
                     "mean_negative_score": st["mean_negative_score"],
                     "mean_negative_rank": st["mean_negative_rank"]})
    return rows


def sweep_frame_arrays(rows: list[dict], field: str) -> dict[str, np.ndarray]:
    """The points of one filter as arrays (threshold, false_negative_rate, share_full, ...); None -> nan."""
    pts = [r for r in rows if r["filter"] == field]
    return {k: np.array([np.nan if r[k] is None else r[k] for r in pts], dtype=np.float64)
            for k in ("threshold", "false_negative_rate", "negatives_per_query", "share_full",
                      "mean_negative_score", "mean_negative_rank")}
