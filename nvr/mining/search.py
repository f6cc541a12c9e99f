"""Exact inner-product top-k search, chunked so memory never grows with Q x N.

:func:`exact_topk` streams the corpus in chunks (each chunk is read once, so a
``np.memmap`` corpus is read from disk once), searches every query chunk
against it with faiss (``faiss.knn`` on CPU; ``GpuIndexFlatIP`` sharded over
all GPUs when faiss has GPU support and a GPU is visible) and merges the
running top-k per query itself. Results do not depend on the chunk sizes, the
backend (CPU or GPU) or faiss' tie handling:

* faiss only proposes candidates (top k+1 of each chunk, float32 GEMM); every
  returned score is then re-computed canonically as float32(float64 dot
  product), which depends on the two vectors alone, so duplicated documents
  get bit-identical scores wherever they sit;
* rows are sorted by score descending, ties by the smaller corpus id;
* when the k-th and (k+1)-th candidate of a chunk are within the float32 error
  bound of each other (duplicates, exact ties), the row is re-scored against
  the whole chunk and the tied ids are taken in id order;
* ``k`` is never capped: ``k > N`` raises :class:`ConfigError`. On GPU, faiss
  selects at most 2048 per search; a larger ``k`` runs on CPU (logged).

The canonical re-scoring (float64 dot products of every returned pair, on all CPUs) costs about
as much as faiss' search at 10k documents and a few percent of it from 100k up.
Peak memory beyond the inputs and the (Q, k) output is about one corpus chunk
in float32 plus faiss' internal 4096 x 1024 score block (16 MB).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ConfigError, DataError
from ..runtime import faiss_gpus, log

GPU_MAX_K = 2048  # faiss GPU k-selection limit (GPU_MAX_SELECTION_K)
_RESCORE_ROWS = 64  # rows re-scored per block
_ERR = 2.0**-24  # float32 GEMM error bound per sqrt(d) * |q| * |x| (~8x the worst seen)


def _import_faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a declared install
        raise ConfigError(
            "search needs faiss: pip install faiss-cpu (or faiss-gpu on a CUDA machine)"
        ) from None
    return faiss


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"search.{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _choose_gpu(use_gpu) -> int:
    """Number of GPUs to use (0 = CPU) for use_gpu in {'auto', True, False}."""
    if use_gpu in (False, "false", "cpu", None):
        return 0
    if use_gpu not in ("auto", True, "true", "gpu"):
        raise ConfigError(f"search.use_gpu must be 'auto', True or False, got {use_gpu!r}")
    n = _gpu_count()
    if n == 0 and use_gpu != "auto":
        raise ConfigError(
            "search.use_gpu=True but faiss sees no GPU (faiss-cpu installed, or no CUDA device)"
        )
    return n


def _gpu_count() -> int:
    return faiss_gpus()


def _gpu_flat_index(d: int, device: int):
    """An exact inner-product index on one GPU (replaced by a CPU index in tests)."""
    faiss = _import_faiss()
    res = faiss.StandardGpuResources()
    cfg = faiss.GpuIndexFlatConfig()
    cfg.device = device
    index = faiss.GpuIndexFlatIP(res, d, cfg)
    index._nvr_res = res  # keep the resources alive as long as the index
    return index


def _sort_rows(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by (-score, id)."""
    order = np.lexsort((ids, -scores), axis=-1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _canon(xq: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Canonical scores: float32(float64 dot product) of xq[r] with each cand[r, j].

    Products of float32 numbers are exact in float64 and the float64 sum is
    order-insensitive at float32 precision, so the value depends only on the two
    vectors, never on their position in a GEMM, the chunking or the backend.
    """
    return np.einsum("qkd,qd->qk", cand, xq, dtype=np.float64).astype(np.float32)


def _threads() -> int:
    """Threads for the canonical re-scoring: the CPUs this process may use (numpy's einsum and
    fancy indexing release the GIL, so row blocks run in parallel)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _canon_gather(xq: np.ndarray, xb: np.ndarray, I: np.ndarray) -> np.ndarray:
    """Canonical scores (:func:`_canon`) of ``xq[r]`` with ``xb[I[r, j]]``: float32 (Q, P).

    Blocks of :data:`_RESCORE_ROWS` rows run on several threads; every value depends on its two
    vectors alone, so the result is the same for any thread count."""
    out = np.empty(I.shape, np.float32)
    starts = range(0, len(I), _RESCORE_ROWS)

    def one(r0):
        out[r0:r0 + _RESCORE_ROWS] = _canon(xq[r0:r0 + _RESCORE_ROWS], xb[I[r0:r0 + _RESCORE_ROWS]])

    n = min(_threads(), len(starts))
    if n <= 1:
        for r0 in starts:
            one(r0)
    else:
        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(one, starts))
    return out


def _select(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of one row by (-score, id)."""
    order = np.lexsort((ids, -scores))[:k]
    return scores[order], ids[order]


def _exact_rows(xq, xb, k, slack) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each query over the whole chunk xb, ties at the cut resolved by id.

    Everything within ``slack`` (the float32 GEMM error bound, doubled) of the
    k-th float32 score is re-scored canonically before the final selection.
    """
    m, nb = xq.shape[0], xb.shape[0]
    out_s = np.empty((m, k), np.float32)
    out_i = np.empty((m, k), np.int64)
    for r0 in range(0, m, _RESCORE_ROWS):
        s_blk = xq[r0:r0 + _RESCORE_ROWS] @ xb.T
        for j, s in enumerate(s_blk):
            r = r0 + j
            kth = np.partition(s, nb - k)[nb - k]
            cand = np.flatnonzero(s >= kth - slack[r])
            cs = _canon(xq[r:r + 1], xb[cand][None])[0]
            out_s[r], out_i[r] = _select(cs, cand, k)
    return out_s, out_i


def _max_norm(xb: np.ndarray, offset: int) -> float:
    """Largest row norm of a corpus chunk; DataError on NaN / inf (no N x d temporaries)."""
    sq = np.einsum("nd,nd->n", xb, xb)
    bad = np.flatnonzero(~np.isfinite(sq))  # NaN / inf, or squares overflowing float32
    if bad.size:
        rows = xb[bad].astype(np.float64)
        real = ~np.isfinite(rows).all(axis=1)
        if real.any():
            row = offset + int(bad[np.argmax(real)])
            raise DataError(f"search: corpus row {row} has a non-finite value (NaN or inf)")
        sq = sq.astype(np.float64)
        sq[bad] = np.einsum("nd,nd->n", rows, rows)
    return float(np.sqrt(sq.max()))


def _chunk_topk(xq, xb, k, search_fn, q_norm, xb_norm_max) -> tuple[np.ndarray, np.ndarray]:
    """Top-min(k, nb) of one (query chunk, corpus chunk) pair.

    Scores are canonical (see :func:`_canon`); rows sorted by (-score, local id).
    """
    nb, d = xb.shape
    kc = min(k, nb)
    kk = min(kc + 1, nb)  # one extra column reveals a (near) tie at the cut
    _, I = search_fn(xq, kk)
    I = np.asarray(I, dtype=np.int64)
    S = _canon_gather(xq, xb, I)
    S, I = _sort_rows(S, I)
    if kk > kc:
        # faiss ranked in float32: an item it left out can belong in the top-kc only
        # if the cut is within twice the float32 error bound (duplicates, exact ties)
        slack = 2 * _ERR * np.sqrt(d) * q_norm * xb_norm_max
        near = np.flatnonzero(S[:, kc - 1] - S[:, kc] <= slack)
        S, I = S[:, :kc].copy(), I[:, :kc].copy()
        if near.size:
            S[near], I[near] = _exact_rows(xq[near], xb, kc, slack[near])
    return S, I


def _merge(run_s, run_i, new_s, new_i, k):
    """Merge two (-score, id)-sorted blocks; every id in run_* is smaller than in new_*."""
    if run_s is None:
        return new_s[:, :k], new_i[:, :k]
    s = np.concatenate([run_s, new_s], axis=1)
    i = np.concatenate([run_i, new_i], axis=1)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]  # stable: ties keep id order
    return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)


class _CpuSearcher:
    def __init__(self):
        self.faiss = _import_faiss()
        self.xb = None

    def set_corpus(self, xb):
        self.xb = xb

    def __call__(self, xq, kk):
        return self.faiss.knn(xq, self.xb, kk, metric=self.faiss.METRIC_INNER_PRODUCT)


class _GpuSearcher:
    """The corpus chunk split over all GPUs; each shard searched in its own thread."""

    def __init__(self, d: int, n_gpu: int):
        self.indexes = [_gpu_flat_index(d, g) for g in range(n_gpu)]
        self.offsets: list[int] = []
        self.pool = ThreadPoolExecutor(max_workers=n_gpu) if n_gpu > 1 else None

    def set_corpus(self, xb):
        n = xb.shape[0]
        bounds = np.linspace(0, n, len(self.indexes) + 1).astype(int)
        self.offsets = []
        for index, a, b in zip(self.indexes, bounds[:-1], bounds[1:]):
            index.reset()
            if b > a:
                index.add(xb[a:b])
            self.offsets.append((int(a), int(b)))

    def _one(self, g, xq, kk):
        a, b = self.offsets[g]
        kg = min(kk, b - a)
        if kg == 0:
            return None
        D, I = self.indexes[g].search(xq, kg)
        return D, I.astype(np.int64) + a

    def __call__(self, xq, kk):
        jobs = range(len(self.indexes))
        if self.pool is not None:
            parts = list(self.pool.map(lambda g: self._one(g, xq, kk), jobs))
        else:
            parts = [self._one(g, xq, kk) for g in jobs]
        parts = [p for p in parts if p is not None]
        D = np.concatenate([p[0] for p in parts], axis=1)
        I = np.concatenate([p[1] for p in parts], axis=1)
        D, I = _sort_rows(D, I)
        return D[:, :kk], I[:, :kk]

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()
        for index in self.indexes:
            index.reset()


def score_pairs(queries: np.ndarray, corpus: np.ndarray, ids, *, chunk: int = 1024) -> np.ndarray:
    """Canonical scores of given (query, corpus row) pairs: float32 (Q, P).

    ``ids`` is (Q, P) int (or (Q,)); -1 marks padding and gives NaN. Scores are
    computed exactly as :func:`exact_topk` reports them, so a document scored here
    (e.g. a positive) and found by the search gets the bit-identical score.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim == 1:
        ids = ids[:, None]
    if ids.shape[0] != queries.shape[0]:
        raise ConfigError(f"score_pairs: ids has {ids.shape[0]} rows, queries {queries.shape[0]}")
    if ids.size and (ids.max() >= corpus.shape[0] or ids.min() < -1):
        raise ConfigError(f"score_pairs: ids must be in [-1, {corpus.shape[0]})")
    out = np.full(ids.shape, np.nan, np.float32)
    for r0 in range(0, len(ids), chunk):
        blk = ids[r0:r0 + chunk]
        valid = blk >= 0
        rows = np.ascontiguousarray(corpus[np.where(valid, blk, 0).ravel()], dtype=np.float32)
        xq = np.ascontiguousarray(queries[r0:r0 + chunk], dtype=np.float32)
        s = _canon(xq, rows.reshape(*blk.shape, -1))
        out[r0:r0 + chunk] = np.where(valid, s, np.nan)
    return out


def exact_topk(queries: np.ndarray, corpus: np.ndarray, k: int, *, query_chunk: int = 4096,
               corpus_chunk: int = 131072, use_gpu="auto", progress: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product of every query over the corpus.

    Returns ``(scores float32 (Q, k), ids int64 (Q, k))``, each row sorted by
    score descending, ties by the smaller corpus id. ``corpus`` may be a
    ``np.memmap`` (of any float dtype); it is read one chunk at a time.
    ``use_gpu``: ``"auto"`` (GPU when faiss sees one), ``True`` (GPU or
    :class:`ConfigError`) or ``False``.
    """
    if getattr(queries, "ndim", None) != 2 or getattr(corpus, "ndim", None) != 2:
        raise ConfigError(
            f"search: queries and corpus must be 2-D arrays, got shapes "
            f"{getattr(queries, 'shape', None)} and {getattr(corpus, 'shape', None)}"
        )
    n_q, d = queries.shape
    n_c, d2 = corpus.shape
    if d != d2:
        raise ConfigError(f"search: query dimension {d} != corpus dimension {d2}")
    k = _check_int("k", k, 1)
    query_chunk = _check_int("query_chunk", query_chunk, 1)
    corpus_chunk = _check_int("corpus_chunk", corpus_chunk, 1)
    if k > n_c:
        raise ConfigError(f"search.k={k} is larger than the corpus (N={n_c} documents)")
    n_gpu = _choose_gpu(use_gpu)
    if n_gpu and min(k + 1, n_c) > GPU_MAX_K:
        log.warning("search: k=%d exceeds faiss' GPU limit (%d); searching on CPU", k, GPU_MAX_K)
        n_gpu = 0

    xq_all = np.ascontiguousarray(queries, dtype=np.float32)
    if not np.isfinite(xq_all).all():
        bad = int(np.flatnonzero(~np.isfinite(xq_all).all(axis=1))[0])
        raise DataError(f"search: query row {bad} has a non-finite value (NaN or inf)")
    q_norm = np.linalg.norm(xq_all, axis=1)
    scores = np.empty((n_q, k), np.float32)
    ids = np.empty((n_q, k), np.int64)
    if n_q == 0:
        return scores, ids

    searcher = _GpuSearcher(d, n_gpu) if n_gpu else _CpuSearcher()
    q_starts = range(0, n_q, query_chunk)
    c_starts = range(0, n_c, corpus_chunk)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(q_starts) * len(c_starts), desc="exact top-k", unit="block")
    t0 = time.perf_counter()
    running: dict[int, tuple] = {}  # query chunk start -> (scores, ids), width <= k
    try:
        for c0 in c_starts:
            xb = np.ascontiguousarray(corpus[c0:c0 + corpus_chunk], dtype=np.float32)
            xb_norm_max = _max_norm(xb, c0)
            searcher.set_corpus(xb)
            for q0 in q_starts:
                D, I = _chunk_topk(xq_all[q0:q0 + query_chunk], xb, k, searcher,
                                   q_norm[q0:q0 + query_chunk], xb_norm_max)
                I += c0
                running[q0] = _merge(*running.get(q0, (None, None)), D, I, k)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if n_gpu:
            searcher.close()
    for q0, (s, i) in running.items():
        scores[q0:q0 + query_chunk], ids[q0:q0 + query_chunk] = s, i
    log.info("search: exact top-%d of %d queries over %d docs (d=%d, %s) in %.1fs",
             k, n_q, n_c, d, f"{n_gpu} GPU(s)" if n_gpu else "CPU", time.perf_counter() - t0)
    return scores, ids
