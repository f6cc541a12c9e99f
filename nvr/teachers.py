"""Teachers: ranked candidate negatives (and positive scores) for the training queries.

Every teacher returns ``(scores float32 (Q, depth), ids int64 (Q, depth))`` sorted by
descending score, ties by smaller id, ``-1`` / nan padding where it found fewer than
``depth`` candidates, plus a ``(Q, P)`` nan-padded matrix of its scores for the labeled
positives (the anchor of positive-aware mining). :mod:`nvr.mining` consumes these.

- dense: embeddings are computed elsewhere (:mod:`nvr.encode`) and passed in; the search
  is :func:`nvr.search.exact_topk` (chunked, exact inner product).
- bm25: the ``bm25s`` package (Lucene BM25, regex tokenizer, English stop words). Documents
  with a zero score share no term with the query: they are not returned (padding).
- random: ``depth`` distinct documents drawn uniformly per query, seeded per query.
  Their scores are the constant 0 and :func:`random_positive_scores` gives the positives
  the constant 1, so every score filter of :mod:`nvr.mining` (Abs, MarginPos, PercPos
  with perc < 1) lets all of them through and "top" selection is a uniform sample.
- ensembles (paper Table 2): :func:`cross_sample` (one random teacher per query) and
  :func:`intra_sample` (the top-1 mined negative of each teacher).
"""

from __future__ import annotations

import re
import time
import unicodedata
from typing import Callable, Sequence

import numpy as np

from .errors import ConfigError
from .mining import MinedArrays, _seed_u64, hash_uniform, row_isin, splitmix64
from .mining import first_occurrence as _first_occurrence
from .runtime import log


def _check_depth(depth, n_docs: int, where: str) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ConfigError(f"{where}: must be an integer >= 1, got {depth!r}")
    if depth > n_docs:
        raise ConfigError(f"{where}: {depth} candidates requested but the corpus has only {n_docs} documents")
    return int(depth)


# --------------------------------------------------------------------------- dense
def dense_candidates(query_emb: np.ndarray, corpus_emb: np.ndarray, depth: int, *,
                     search_fn: Callable | None = None, where: str = "teachers.depth",
                     **search_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Top-``depth`` corpus rows per query by inner product (exact search).

    ``search_fn(queries, corpus, k, **search_kwargs)`` defaults to
    :func:`nvr.search.exact_topk`; it must return (scores desc, ids), ties by smaller id.
    """
    depth = _check_depth(depth, int(corpus_emb.shape[0]), where)
    if search_fn is None:
        from .search import exact_topk as search_fn
    t0 = time.perf_counter()
    scores, ids = search_fn(query_emb, corpus_emb, depth, **search_kwargs)
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    if scores.shape != (query_emb.shape[0], depth) or ids.shape != scores.shape:
        raise ValueError(f"dense_candidates: search returned shapes {scores.shape}, {ids.shape}; "
                         f"expected {(query_emb.shape[0], depth)}")
    log.info("dense teacher: %d queries x %d docs -> top-%d (%.1fs)", query_emb.shape[0],
             corpus_emb.shape[0], depth, time.perf_counter() - t0)
    return scores, ids


def positive_scores(query_emb: np.ndarray, corpus_emb: np.ndarray, pos_ids, *,
                    chunk_rows: int = 4096) -> np.ndarray:
    """Inner products of each query with its positives: float32 (Q, P), nan where id is -1."""
    pos_ids = np.asarray(pos_ids, dtype=np.int64)
    if pos_ids.ndim == 1:
        pos_ids = pos_ids[:, None]
    q = query_emb.shape[0]
    if pos_ids.shape[0] != q:
        raise ValueError(f"positive_scores: pos_ids has {pos_ids.shape[0]} rows, expected {q}")
    if pos_ids.size and pos_ids.max(initial=-1) >= corpus_emb.shape[0]:
        raise ValueError(f"positive_scores: positive id {int(pos_ids.max())} out of range "
                         f"(corpus has {corpus_emb.shape[0]} rows)")
    out = np.full(pos_ids.shape, np.nan, np.float32)
    for s in range(0, q, chunk_rows):
        e = min(q, s + chunk_rows)
        p = pos_ids[s:e]
        ok = p >= 0
        if not ok.any():
            continue
        uniq, inv = np.unique(p[ok], return_inverse=True)
        docs = np.asarray(corpus_emb[uniq], dtype=np.float32)              # (U, d)
        rows = np.nonzero(ok)[0]
        qv = np.asarray(query_emb[s:e], dtype=np.float32)[rows]           # (m, d)
        vals = np.einsum("md,md->m", qv, docs[inv])
        blk = out[s:e]
        blk[ok] = vals
    return out


# --------------------------------------------------------------------------- bm25
class BM25Teacher:
    """A ``bm25s`` index over ``doc_texts`` (row order = corpus order)."""

    def __init__(self, doc_texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75,
                 stopwords: str | list[str] | None = "en", progress: bool = False):
        import bm25s

        self.stopwords = stopwords
        self.n_docs = len(doc_texts)
        if self.n_docs == 0:
            raise ValueError("BM25Teacher: empty corpus")
        t0 = time.perf_counter()
        tokens = bm25s.tokenize(list(doc_texts), stopwords=stopwords, return_ids=False,
                                show_progress=progress)
        self.retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.retriever.index(tokens, show_progress=progress)
        log.info("bm25 index: %d documents, %d terms (%.1fs)", self.n_docs,
                 len(self.retriever.vocab_dict), time.perf_counter() - t0)

    def _token_ids(self, query_texts: Sequence[str]) -> list[list[int]]:
        import bm25s

        toks = bm25s.tokenize(list(query_texts), stopwords=self.stopwords, return_ids=False,
                              show_progress=False)
        vocab = self.retriever.vocab_dict
        return [[vocab[t] for t in qt if t in vocab] for qt in toks]

    def scores(self, token_ids: list[int]) -> np.ndarray:
        """BM25 score of every document for one tokenized query (float32 (N,))."""
        if not token_ids:
            return np.zeros(self.n_docs, np.float32)
        return np.asarray(self.retriever.get_scores_from_ids(token_ids), dtype=np.float32)

    def candidates(self, query_texts: Sequence[str], depth: int, *, drop_zero: bool = True,
                   where: str = "teachers.depth", progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        depth = _check_depth(depth, self.n_docs, where)
        q = len(query_texts)
        out_s = np.full((q, depth), np.nan, np.float32)
        out_i = np.full((q, depth), -1, np.int64)
        tok = self._token_ids(query_texts)
        it = range(q)
        if progress and q > 1000:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="bm25", unit="q")
        for i in it:
            s = self.scores(tok[i])
            top = _topk_desc_small_id(s, depth)
            sc = s[top]
            if drop_zero:
                top, sc = top[sc > 0], sc[sc > 0]
            out_i[i, :len(top)] = top
            out_s[i, :len(top)] = sc
        return out_s, out_i

    def positive_scores(self, query_texts: Sequence[str], pos_ids) -> np.ndarray:
        pos_ids = np.asarray(pos_ids, dtype=np.int64)
        if pos_ids.ndim == 1:
            pos_ids = pos_ids[:, None]
        if pos_ids.shape[0] != len(query_texts):
            raise ValueError(f"bm25 positive_scores: {pos_ids.shape[0]} rows for {len(query_texts)} queries")
        out = np.full(pos_ids.shape, np.nan, np.float32)
        tok = self._token_ids(query_texts)
        for i in range(len(query_texts)):
            ok = pos_ids[i] >= 0
            if ok.any():
                out[i, ok] = self.scores(tok[i])[pos_ids[i][ok]]
        return out


def _topk_desc_small_id(s: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, sorted by value desc then index asc (deterministic)."""
    n = s.shape[0]
    if k >= n:
        cand = np.arange(n)
    else:
        part = np.argpartition(-s, k - 1)[:k]
        v = s[part].min()
        greater = np.flatnonzero(s > v)
        equal = np.flatnonzero(s == v)[: k - len(greater)]
        cand = np.concatenate([greater, equal])
    order = np.lexsort((cand, -s[cand]))
    return cand[order]


def bm25_candidates(query_texts: Sequence[str], doc_texts: Sequence[str], depth: int, *,
                    k1: float = 1.5, b: float = 0.75, stopwords: str | list[str] | None = "en",
                    drop_zero: bool = True, index: BM25Teacher | None = None,
                    where: str = "teachers.depth") -> tuple[np.ndarray, np.ndarray]:
    """BM25 top-``depth`` per query (scores desc, ties by smaller id; zero-score docs dropped)."""
    index = index or BM25Teacher(doc_texts, k1=k1, b=b, stopwords=stopwords)
    return index.candidates(query_texts, depth, drop_zero=drop_zero, where=where)


def bm25_positive_scores(query_texts: Sequence[str], doc_texts: Sequence[str], pos_ids, *,
                         k1: float = 1.5, b: float = 0.75, stopwords: str | list[str] | None = "en",
                         index: BM25Teacher | None = None) -> np.ndarray:
    """BM25 scores of the labeled positives (Q, P), nan-padded."""
    index = index or BM25Teacher(doc_texts, k1=k1, b=b, stopwords=stopwords)
    return index.positive_scores(query_texts, pos_ids)


# --------------------------------------------------------------------------- random
def random_candidates(n_queries: int, n_docs: int, depth: int, *, seed: int, query_keys,
                      where: str = "teachers.depth") -> tuple[np.ndarray, np.ndarray]:
    """``depth`` distinct uniform random documents per query (scores: constant 0).

    Row i depends only on (seed, query_keys[i], n_docs, depth): chunking or reordering the
    queries does not change it. Positives may be drawn; the miner masks them.
    """
    depth = _check_depth(depth, int(n_docs), where)
    qk = np.asarray(query_keys, dtype=np.uint64)
    if qk.shape != (n_queries,):
        raise ValueError(f"random_candidates: query_keys must have shape ({n_queries},), got {qk.shape}")
    ids = np.full((n_queries, depth), -1, np.int64)
    if n_docs <= 2 * depth:
        # small corpus: rank every document by its hash key, keep the first `depth`
        for s in range(0, n_queries, 4096):
            e = min(n_queries, s + 4096)
            u = hash_uniform((int(seed) & 0xFFFFFFFFFFFFFFFF) ^ 0x52414E4400000000, qk[s:e], np.broadcast_to(np.arange(n_docs), (e - s, n_docs)))
            ids[s:e] = np.argsort(u, axis=1, kind="stable")[:, :depth]
    else:
        base = splitmix64(splitmix64(_seed_u64(seed) ^ np.uint64(0x52414E44)) ^ qk[:, None])  # "RAND"
        todo = np.arange(n_queries)
        m = depth + max(8, depth // 2)
        while todo.size:
            ctr = np.arange(m, dtype=np.uint64)[None, :]
            draws = (splitmix64(base[todo] ^ ctr) % np.uint64(n_docs)).astype(np.int64)
            first = _first_occurrence(draws)
            pos = np.cumsum(first, axis=1) - 1
            enough = first.sum(1) >= depth
            sel = first & (pos < depth) & enough[:, None]
            r, c = np.nonzero(sel)
            ids[todo[r], pos[r, c]] = draws[r, c]
            todo = todo[~enough]
            m *= 2
    return np.zeros((n_queries, depth), np.float32), ids


def random_positive_scores(pos_ids) -> np.ndarray:
    """Constant 1 for each labeled positive (nan padding): see the module docstring."""
    pos_ids = np.asarray(pos_ids, dtype=np.int64)
    if pos_ids.ndim == 1:
        pos_ids = pos_ids[:, None]
    return np.where(pos_ids >= 0, 1.0, np.nan).astype(np.float32)


# --------------------------------------------------------------------------- ensembles
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
    return MinedArrays(**fields)


def intra_sample(mined_per_teacher: Sequence[MinedArrays], n: int, dedupe: bool, *,
                 per_teacher: int = 1) -> MinedArrays:
    """Combine the mined negatives of several teachers (paper: intra-sample).

    The pool of a query is the first ``per_teacher`` negatives of each teacher, taken
    round-robin (every teacher's 1st, then every teacher's 2nd, ...); ``dedupe`` removes a
    document already in the pool; the first ``n`` form the result. Paper: 4 teachers,
    per_teacher=1, n=4, duplicates removed (fewer than 4 then) or kept.
    Scores and ranks are each negative's own teacher's (``source`` says which);
    ``anchor`` is the first teacher's; ``keep`` is False if any teacher dropped the query;
    ``n_eligible`` is the size of the pool after deduplication.
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
    cols = {k: [] for k in ("ids", "scores", "ranks", "filled", "source")}
    for d in range(per_teacher):
        for t, m in enumerate(mined_per_teacher):
            if d < m.num_negatives:
                valid_keep = m.keep
                cols["ids"].append(np.where(valid_keep, m.neg_ids[:, d], -1))
                cols["scores"].append(m.neg_scores[:, d])
                cols["ranks"].append(m.neg_ranks[:, d])
                cols["filled"].append(m.filled[:, d])
                cols["source"].append(np.full(q, t, np.int16))
    ids = np.stack(cols["ids"], 1)
    use = _first_occurrence(ids) if dedupe else ids >= 0
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
    )
    out.neg_ids[r, s] = ids[r, c]
    out.neg_scores[r, s] = np.stack(cols["scores"], 1)[r, c]
    out.neg_ranks[r, s] = np.stack(cols["ranks"], 1)[r, c]
    out.filled[r, s] = np.stack(cols["filled"], 1)[r, c]
    out.source[r, s] = np.stack(cols["source"], 1)[r, c]
    return out


# --------------------------------------------------------------------------- overlap
def topk_jaccard(ids_a, ids_b, k: int) -> float:
    """Mean over queries of |A ∩ B| / |A ∪ B| for the sets of the first k ids of each row
    (-1 ignored; rows where both sets are empty are skipped; nan if all are)."""
    a = np.asarray(ids_a, dtype=np.int64)[:, :k]
    b = np.asarray(ids_b, dtype=np.int64)[:, :k]
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"topk_jaccard: {a.shape[0]} rows vs {b.shape[0]} rows")
    ua = _first_occurrence(a)
    ub = _first_occurrence(b)
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


# --------------------------------------------------------------------------- duplicates
_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed and stripped."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def exact_duplicate_exclusions(doc_texts: Sequence[str], pos_ids, query_texts: Sequence[str] | None = None
                               ) -> np.ndarray:
    """Ids never to emit as negatives: other documents whose normalized text equals one of
    the query's positives, or equals the query text. int64 (Q, E), -1 padded (E may be 0).
    Empty texts match nothing. The positives themselves are not listed (the miner masks them).
    """
    pos_ids = np.asarray(pos_ids, dtype=np.int64)
    if pos_ids.ndim == 1:
        pos_ids = pos_ids[:, None]
    q = pos_ids.shape[0]
    if query_texts is not None and len(query_texts) != q:
        raise ValueError(f"exact_duplicate_exclusions: {len(query_texts)} queries for {q} rows")
    groups: dict[str, list[int]] = {}
    norm = []
    for i, t in enumerate(doc_texts):
        key = normalize_text(t)
        norm.append(key)
        if key:
            groups.setdefault(key, []).append(i)
    rows: list[list[int]] = []
    for i in range(q):
        own = set(int(p) for p in pos_ids[i] if p >= 0)
        ex: list[int] = []
        seen = set(own)
        keys = [norm[p] for p in pos_ids[i] if p >= 0]
        if query_texts is not None:
            keys.append(normalize_text(query_texts[i]))
        for key in keys:
            for d in groups.get(key, ()):
                if d not in seen:
                    seen.add(d)
                    ex.append(d)
        rows.append(ex)
    width = max((len(r) for r in rows), default=0)
    out = np.full((q, width), -1, np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    n = sum(len(r) for r in rows)
    if n:
        log.info("exact duplicates: %d ids excluded over %d queries", n, sum(1 for r in rows if r))
    return out
