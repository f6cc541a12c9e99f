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
   Filters act on the ranks of the window, they do not slide it: "PercPos + sampled
   top-10" samples among the top-10 clean candidates that pass PercPos.
   Candidates that survive window + filters are *eligible*.
4. **Selection** of ``num_negatives`` among the eligible:
   ``top`` (rank order), ``softmax`` (sample without replacement with probabilities
   ``softmax(score / temperature)``, Gumbel-top-k), ``uniform`` (sample without
   replacement, equal probabilities), ``top1_softmax`` (first eligible, then n-1 sampled
   by softmax from the other eligible). Sampled negatives are emitted in sampling order
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
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import ConfigError, DataError
from .io import iter_jsonl, require_fields, write_jsonl
from .runtime import log

ANCHORS = ("min", "max", "mean")
SELECTIONS = ("top", "softmax", "uniform", "top1_softmax")
SHORTFALLS = ("keep", "drop", "fill")

_CHUNK_ROWS = 16384


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MiningConfig:
    """One mining method. See the module docstring for the exact semantics."""

    num_negatives: int = 4
    shift: int = 0
    window: int | None = None
    max_score: float | None = None
    min_score: float | None = None
    margin: float | None = None
    perc: float | None = None
    anchor: str = "min"
    selection: str = "top"
    temperature: float = 1.0
    shortfall: str = "keep"
    seed: int = 0

    def validate(self, where: str = "mining") -> None:
        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

        if not is_int(self.num_negatives) or self.num_negatives < 1:
            raise ConfigError(f"{where}.num_negatives: must be an integer >= 1, got {self.num_negatives!r}")
        if not is_int(self.shift) or self.shift < 0:
            raise ConfigError(f"{where}.shift: must be an integer >= 0, got {self.shift!r}")
        if self.window is not None and (not is_int(self.window) or self.window < 1):
            raise ConfigError(f"{where}.window: must be null or an integer >= 1, got {self.window!r}")
        for name in ("max_score", "min_score", "margin", "perc"):
            v = getattr(self, name)
            if v is not None and (not is_num(v) or not math.isfinite(v)):
                raise ConfigError(f"{where}.{name}: must be null or a finite number, got {v!r}")
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise ConfigError(f"{where}.min_score: {self.min_score} is above max_score {self.max_score}")
        if self.perc is not None and not (0.0 < self.perc <= 2.0):
            raise ConfigError(f"{where}.perc: must be in (0, 2], got {self.perc!r} (0.95 = PercPos 95%)")
        if self.anchor not in ANCHORS:
            raise ConfigError(f"{where}.anchor: '{self.anchor}' is not one of {', '.join(ANCHORS)}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"{where}.selection: '{self.selection}' is not one of {', '.join(SELECTIONS)}")
        if not is_num(self.temperature) or not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ConfigError(f"{where}.temperature: must be a finite number > 0, got {self.temperature!r}")
        if self.shortfall not in SHORTFALLS:
            raise ConfigError(f"{where}.shortfall: '{self.shortfall}' is not one of {', '.join(SHORTFALLS)}")
        if not is_int(self.seed):
            raise ConfigError(f"{where}.seed: must be an integer, got {self.seed!r}")

    @property
    def has_score_filter(self) -> bool:
        return any(v is not None for v in (self.max_score, self.min_score, self.margin, self.perc))


PRESETS: dict[str, MiningConfig] = {
    "naive": MiningConfig(),
    "shift10": MiningConfig(shift=10),
    "abs07": MiningConfig(max_score=0.7),
    "marginpos005": MiningConfig(margin=0.05),
    "percpos095": MiningConfig(perc=0.95),
    "percpos098": MiningConfig(perc=0.98),
    "percpos105": MiningConfig(perc=1.05),
    "percpos095_sampled10": MiningConfig(perc=0.95, window=10, selection="softmax", temperature=0.05),
    "top1_sampled10": MiningConfig(window=10, selection="top1_softmax", temperature=0.05),
    "sampled10": MiningConfig(window=10, selection="softmax", temperature=0.05),
    "uniform_10_210": MiningConfig(shift=10, window=200, selection="uniform"),
}


def preset(name: str, **overrides: Any) -> MiningConfig:
    """A copy of ``PRESETS[name]`` with fields overridden (validated)."""
    if name not in PRESETS:
        raise ConfigError(f"mining.preset: unknown preset '{name}'; valid: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(MiningConfig)}
    for k in overrides:
        if k not in fields:
            raise ConfigError(f"mining.{name}.{k}: unknown key; valid keys: {', '.join(sorted(fields))}")
    cfg = dataclasses.replace(PRESETS[name], **overrides)
    cfg.validate(f"mining.{name}")
    return cfg


# --------------------------------------------------------------------------- hashing
_M64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer on a uint64 array (wrapping arithmetic)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _seed_u64(seed: int) -> np.ndarray:
    return np.array([int(seed) & _M64], dtype=np.uint64)


def hash_uniform(seed: int, query_keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Uniform float64 in (0, 1) for each (query row, id): shape of ``ids`` (Q, K)."""
    qk = np.asarray(query_keys, dtype=np.uint64).reshape(-1, 1)
    base = splitmix64(splitmix64(_seed_u64(seed)) ^ qk)  # (Q, 1)
    h = splitmix64(base ^ np.asarray(ids).astype(np.int64).view(np.uint64))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def query_key(query_id: str) -> np.uint64:
    """Stable 64-bit key of a query id (blake2b, 8 bytes, little endian)."""
    d = hashlib.blake2b(str(query_id).encode("utf-8"), digest_size=8).digest()
    return np.uint64(int.from_bytes(d, "little"))


def query_keys(query_ids: Iterable[str]) -> np.ndarray:
    """uint64 array of :func:`query_key` for each id."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(q).encode("utf-8"), digest_size=8).digest(), "little")
         for q in query_ids), dtype=np.uint64)


# --------------------------------------------------------------------------- results
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
            out[f.name] = None if any(v is None for v in vals) else np.concatenate(vals, axis=0)
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


# --------------------------------------------------------------------------- helpers
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


# --------------------------------------------------------------------------- mining
def mine(cand_ids, cand_scores, pos_ids, pos_scores, cfg: MiningConfig, *, query_keys,
         exclude_ids=None, chunk_rows: int = _CHUNK_ROWS, progress: bool = True) -> MinedArrays:
    """Mine ``cfg.num_negatives`` negatives per query from a teacher's ranked candidates.

    cand_ids int64 (Q, K) ranked by descending score (-1 padding), cand_scores (Q, K);
    pos_ids int64 (Q, P) -1-padded (all masked); pos_scores (Q, P) nan-padded teacher
    scores of the positives (anchor); exclude_ids int64 (Q, E) -1-padded ids never to
    emit; query_keys uint64 (Q,) per-query seeds (see :func:`query_keys`).
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
                                 exclude_ids[s:e], qkeys[s:e], cfg))
    out = MinedArrays.concat(parts) if parts else _empty_mined(0, n)
    dt = time.perf_counter() - t0
    log.info("mined %d queries x %d candidates: %d negatives, %d queries short, %d dropped, %d filled (%.1fs)",
             q, k, int(out.n_found[out.keep].sum()), int((out.keep & (out.n_found < n)).sum()),
             int((~out.keep).sum()), int(out.filled[out.keep].sum()), dt)
    return out


def _mine_block(ids, scores, pos_ids, pos_scores, exclude_ids, qkeys, cfg: MiningConfig) -> MinedArrays:
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
    # 2. window over clean positions (after the shift)
    cpos = np.cumsum(clean, axis=1, dtype=np.int32) - 1
    in_range = clean & (cpos >= cfg.shift)
    if cfg.window is not None:
        in_range &= cpos < cfg.shift + cfg.window
    # columns beyond the last in-range candidate of any row play no role
    any_col = in_range.any(0)
    if not any_col.any():
        if cfg.shortfall == "drop":
            out.keep[:] = False
        return out
    kc = int(np.flatnonzero(any_col)[-1]) + 1
    ids, scores, in_range = ids[:, :kc], scores[:, :kc], in_range[:, :kc]
    # 3. score filters
    # thresholds are computed in float64 then rounded to float32, the scores' precision,
    # so that a score printed as 0.7 equals a max_score of 0.7 (inclusive) and a score
    # equal to anchor * perc is rejected (strict), as the decimal rule reads.
    passed = np.ones_like(in_range)
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


# --------------------------------------------------------------------------- diagnostics
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
    gap = (mined.anchor[:, None].astype(np.float64) - mined.neg_scores)[valid]
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
    gap = (mined.anchor[:, None] - mined.neg_scores)[valid]
    anc = mined.anchor[keep]
    return {
        "positive": pk[~np.isnan(pk)].astype(np.float32),
        "anchor": anc[~np.isnan(anc)].astype(np.float32),
        "negative": mined.neg_scores[valid].astype(np.float32),
        "gap": gap[np.isfinite(gap)].astype(np.float32),
        "filled": mined.neg_scores[valid & mined.filled].astype(np.float32),
    }


# --------------------------------------------------------------------------- files
def _score(x) -> float | None:
    """Shortest decimal that round-trips to the same float32 (byte-stable JSON)."""
    x = np.float32(x)
    if not np.isfinite(x):
        return None
    return float(str(x))


def to_rows(mined: MinedArrays, query_ids: Sequence[str], queries: Sequence[str],
            pos_ids_str: Sequence[Sequence[str]], pos_scores, doc_ids: Sequence[str]) -> list[dict]:
    """Rows of the mined-negatives file (kept queries, input order).

    ``positive_scores[j]`` is ``pos_scores[i, j]`` for the j-th id of ``pos_ids_str[i]``
    (None when nan). A row with filled negatives also carries ``negative_filled``.
    """
    q = len(mined)
    if not (len(query_ids) == len(queries) == len(pos_ids_str) == q):
        raise ValueError(f"to_rows: {q} mined rows but {len(query_ids)} ids, {len(queries)} queries, "
                         f"{len(pos_ids_str)} positive lists")
    pos = np.asarray(pos_scores, dtype=np.float32)
    if pos.ndim == 1:
        pos = pos[:, None]
    rows = []
    for i in np.flatnonzero(mined.keep):
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
        rows.append(obj)
    return rows
