"""Teachers: ranked candidate negatives (and positive scores) for the training queries.

Every teacher returns ``(scores float32 (Q, depth), ids int64 (Q, depth))`` sorted by
descending score, ties by smaller id, ``-1`` / nan padding where it found fewer than
``depth`` candidates, plus a ``(Q, P)`` nan-padded matrix of its scores for the labeled
positives (the anchor of positive-aware mining); :func:`rank_candidates` runs one teacher
end to end and returns :class:`~nvr.mining.candidates.Candidates`, which the miner consumes.

- dense: embeddings from :class:`nvr.text.Encoder` (cached by :mod:`nvr.text.cache`); the
  search is :func:`nvr.mining.search.exact_topk` (chunked, exact inner product).
- bm25: the ``bm25s`` package (Lucene BM25, regex tokenizer, English stop words). Documents
  with a zero score share no term with the query: they are not returned (padding).
- random: ``depth`` distinct documents drawn uniformly per query, seeded per query.
  Their scores are the constant 0 and :func:`random_positive_scores` gives the positives
  the constant 1, so every score filter of :mod:`nvr.mining` (Abs, MarginPos, PercPos
  with perc < 1) lets all of them through and "top" selection is a uniform sample.
- exclusions: exact-text duplicates of a positive or of the query, never emitted.

Ensembles of teachers (paper Table 2) live in :mod:`nvr.mining.ensembles`.
"""

from __future__ import annotations

import re
import time
import unicodedata
from typing import Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..runtime import log
from .core import first_occurrence
from .hashing import hash_uniform, seed_u64, splitmix64


def _check_depth(depth, n_docs: int, where: str) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ConfigError(f"{where}: must be an integer >= 1, got {depth!r}")
    if depth > n_docs:
        raise ConfigError(f"{where}: {depth} candidates requested but the corpus has only {n_docs} documents")
    return int(depth)


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
    """Inner products of each query with its positives: float32 (Q, P), nan where id is -1.

    Computed by :func:`nvr.mining.search.score_pairs`, exactly as the search scores candidates."""
    pos_ids = np.asarray(pos_ids, dtype=np.int64)
    if pos_ids.ndim == 1:
        pos_ids = pos_ids[:, None]
    q = query_emb.shape[0]
    if pos_ids.shape[0] != q:
        raise ValueError(f"positive_scores: pos_ids has {pos_ids.shape[0]} rows, expected {q}")
    if pos_ids.size and pos_ids.max(initial=-1) >= corpus_emb.shape[0]:
        raise ValueError(f"positive_scores: positive id {int(pos_ids.max())} out of range "
                         f"(corpus has {corpus_emb.shape[0]} rows)")
    # the search's own scoring (float64 sums, rounded once): an anchor is bit-identical to the score
    # the same document gets when the search finds it, so a filter never splits a tie between them
    from .search import score_pairs

    return score_pairs(query_emb, corpus_emb, pos_ids, chunk=chunk_rows)


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
        base = splitmix64(splitmix64(seed_u64(seed) ^ np.uint64(0x52414E44)) ^ qk[:, None])  # "RAND"
        todo = np.arange(n_queries)
        m = depth + max(8, depth // 2)
        while todo.size:
            ctr = np.arange(m, dtype=np.uint64)[None, :]
            draws = (splitmix64(base[todo] ^ ctr) % np.uint64(n_docs)).astype(np.int64)
            first = first_occurrence(draws)
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


# --------------------------------------------------------------------------- one call per teacher
def rank_candidates(tc, q_ids: list[str], q_texts: list[str], doc_texts: list[str], pos: np.ndarray, *,
                    seed: int, cache_dir=None, name: str = "teacher", depth_key: str | None = None,
                    device: str = "auto", rescore_key: str | None = None):
    """Rank ``tc.depth`` candidates per query with one teacher (dense, BM25 or random).

    ``tc`` is a :class:`nvr.config.TeacherConfig`; ``pos`` int64 (Q, P) the labeled positives
    (-1 padded) as corpus rows. Returns :class:`~nvr.mining.candidates.Candidates`. Dense
    embeddings are cached under ``cache_dir`` (keyed by model, revision, prefixes, lengths,
    dtype; see :func:`nvr.text.cache.encode_cached`).

    With ``tc.rescore_model`` set, the teacher's candidates and the positives are then
    scored by that cross-encoder (:func:`nvr.mining.rescoring.rescore_candidates`): the
    candidates are re-ranked by the cross-encoder score and the positives' scores are the
    cross-encoder's too. ``depth_key`` / ``rescore_key`` name the settings in errors.
    """
    from pathlib import Path

    from .candidates import Candidates
    from .hashing import query_keys

    depth_key = depth_key or f"teachers.{name}.depth"
    if tc.depth > len(doc_texts):
        raise ConfigError(f"{depth_key}: {tc.depth} is larger than the corpus ({len(doc_texts)} documents)")
    log.info("teacher[%s]: %d queries, %d documents, depth %d", name, len(q_texts), len(doc_texts), tc.depth)
    if tc.kind == "dense":
        from ..text.cache import encode_cached
        from ..text.encoder import Encoder

        enc = Encoder(tc.encoder(device))
        cache_dir = Path(cache_dir)
        c_emb = encode_cached(enc, doc_texts, "passage", cache_dir / "corpus.npy")
        q_emb = encode_cached(enc, q_texts, "query", cache_dir / "queries.npy")
        scores, ids = dense_candidates(q_emb, c_emb, tc.depth, where=depth_key)
        pos_scores = positive_scores(q_emb, c_emb, pos)
        del enc  # free the teacher before a cross-encoder loads
    elif tc.kind == "bm25":
        bm25 = BM25Teacher(doc_texts)
        scores, ids = bm25.candidates(q_texts, tc.depth, where=depth_key)
        pos_scores = bm25.positive_scores(q_texts, pos)
    else:
        scores, ids = random_candidates(len(q_texts), len(doc_texts), tc.depth, seed=seed,
                                        query_keys=query_keys(q_ids), where=depth_key)
        pos_scores = random_positive_scores(pos)
    if tc.rescore_model:
        from .rescoring import CrossEncoderScorer, rescore_candidates

        key = rescore_key or f"teachers.{name}.rescore_model"
        log.info("teacher[%s]: rescoring %d candidates per query with cross-encoder %s", name, tc.depth,
                 tc.rescore_model)
        scorer = CrossEncoderScorer(tc.rescore_model, max_length=tc.rescore_max_length,
                                    batch_size=tc.rescore_batch_size, trust_remote_code=tc.trust_remote_code,
                                    device=device, key=key)
        scores, ids, pos_scores = rescore_candidates(scorer, q_texts, doc_texts, ids, pos,
                                                     batch_size=tc.rescore_batch_size)
        del scorer
    excl = exact_duplicate_exclusions(doc_texts, pos, q_texts)
    return Candidates(query_ids=np.array(q_ids), cand_ids=ids.astype(np.int64),
                      cand_scores=scores.astype(np.float32), pos_ids=pos.astype(np.int64),
                      pos_scores=np.asarray(pos_scores, dtype=np.float32), exclude_ids=excl.astype(np.int64))
