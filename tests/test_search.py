"""exact_topk against NumPy brute force: ties, odd chunk sizes, k == N, memmap, errors."""

import numpy as np
import pytest

from nvr.mining import search
from nvr.errors import ConfigError, DataError
from nvr.mining.search import exact_topk


def brute(q, c, k):
    """Reference: full score matrix (float64), order by (-score, id)."""
    s = q.astype(np.float64) @ c.astype(np.float64).T
    ids = np.stack([np.lexsort((np.arange(len(c)), -row))[:k] for row in s])
    return np.take_along_axis(s, ids, 1), ids


def int_data(nq, nc, d, seed, lo=-2, hi=3):
    """Small-integer vectors: scores are exact in float32 and full of ties."""
    rng = np.random.default_rng(seed)
    return (rng.integers(lo, hi, (nq, d)).astype(np.float32),
            rng.integers(lo, hi, (nc, d)).astype(np.float32))


@pytest.mark.parametrize("qc,cc", [(7, 13), (1, 1000), (1000, 1), (64, 37), (4096, 131072)])
@pytest.mark.parametrize("k", [1, 5, 50])
def test_exact_ties_any_chunking(qc, cc, k):
    q, c = int_data(40, 203, 6, seed=k)
    s, i = exact_topk(q, c, k, query_chunk=qc, corpus_chunk=cc, use_gpu=False, progress=False)
    rs, ri = brute(q, c, k)
    assert s.dtype == np.float32 and i.dtype == np.int64 and s.shape == i.shape == (40, k)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(s, rs.astype(np.float32))


def test_duplicate_documents_tie_at_cut():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 16)).astype(np.float32)
    c = np.concatenate([base, base, base])  # every doc three times: ties straddle any cut
    q = rng.standard_normal((30, 16)).astype(np.float32)
    for k in (1, 2, 4, 10):
        _, i = exact_topk(q, c, k, query_chunk=8, corpus_chunk=40, use_gpu=False, progress=False)
        # ties resolve to the smallest id: the first copy, then the second, ...
        _, i1 = exact_topk(q, c, k, corpus_chunk=150, use_gpu=False, progress=False)
        np.testing.assert_array_equal(i, i1)
        assert (i[:, 0] < 50).all()
        if k >= 3:
            assert (np.sort(i[:, :3] % 50, axis=1) == i[:, :1] % 50).all()
            np.testing.assert_array_equal(i[:, :3], i[:, :1] + np.array([0, 50, 100]))


def test_random_floats_match_bruteforce():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((100, 32)).astype(np.float32)
    c = rng.standard_normal((1000, 32)).astype(np.float32)
    s, i = exact_topk(q, c, 20, query_chunk=33, corpus_chunk=170, use_gpu=False, progress=False)
    rs, ri = brute(q, c, 20)
    np.testing.assert_allclose(s, rs, rtol=0, atol=1e-4)
    assert (np.diff(s, axis=1) <= 0).all()
    # ids agree wherever neighbours are not within float error of each other
    gap = np.abs(np.diff(rs, axis=1)).min(axis=1) > 1e-4
    np.testing.assert_array_equal(i[gap], ri[gap])


def test_k_equals_n_and_memmap(tmp_path):
    q, c = int_data(25, 61, 5, seed=3)
    path = tmp_path / "corpus.npy"
    np.save(path, c.astype(np.float16))  # memmapped, other dtype: converted chunk by chunk
    mm = np.load(path, mmap_mode="r")
    s, i = exact_topk(q, mm, 61, query_chunk=10, corpus_chunk=17, use_gpu=False, progress=False)
    rs, ri = brute(q, c, 61)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(s, rs.astype(np.float32))
    assert (np.sort(i, axis=1) == np.arange(61)).all()


def test_k_larger_than_chunk():
    q, c = int_data(9, 100, 4, seed=4)
    s, i = exact_topk(q, c, 30, corpus_chunk=7, use_gpu=False, progress=False)
    np.testing.assert_array_equal(i, brute(q, c, 30)[1])


def test_errors():
    q, c = int_data(3, 10, 4, seed=5)
    with pytest.raises(ConfigError, match=r"k=11.*N=10"):
        exact_topk(q, c, 11, use_gpu=False, progress=False)
    with pytest.raises(ConfigError, match="search.k"):
        exact_topk(q, c, 0, use_gpu=False, progress=False)
    with pytest.raises(ConfigError, match="dimension"):
        exact_topk(q[:, :3], c, 2, use_gpu=False, progress=False)
    with pytest.raises(ConfigError, match="query_chunk"):
        exact_topk(q, c, 2, query_chunk=0, use_gpu=False, progress=False)
    bad = c.copy()
    bad[7, 1] = np.nan
    with pytest.raises(DataError, match="corpus row 7"):
        exact_topk(q, bad, 2, corpus_chunk=4, use_gpu=False, progress=False)
    if search._gpu_count() == 0:
        with pytest.raises(ConfigError, match="use_gpu"):
            exact_topk(q, c, 2, use_gpu=True, progress=False)


def test_empty_queries():
    _, c = int_data(1, 10, 4, seed=6)
    s, i = exact_topk(np.zeros((0, 4), np.float32), c, 3, use_gpu=False, progress=False)
    assert s.shape == (0, 3) and i.shape == (0, 3)


def test_gpu_sharding_logic(monkeypatch):
    """The multi-GPU path with CPU indexes standing in for GpuIndexFlatIP."""
    import faiss

    monkeypatch.setattr(search, "_gpu_count", lambda: 3)
    monkeypatch.setattr(search, "_gpu_flat_index", lambda d, g: faiss.IndexFlatIP(d))
    q, c = int_data(31, 107, 5, seed=7)
    for k in (1, 4, 40):
        s, i = exact_topk(q, c, k, query_chunk=10, corpus_chunk=50, use_gpu=True, progress=False)
        rs, ri = brute(q, c, k)
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(s, rs.astype(np.float32))
    # k beyond faiss' GPU selection limit falls back to CPU rather than capping
    monkeypatch.setattr(search, "GPU_MAX_K", 8)
    s, i = exact_topk(q, c, 20, use_gpu=True, progress=False)
    np.testing.assert_array_equal(i, brute(q, c, 20)[1])


def test_score_pairs_match_search_scores():
    from nvr.mining.search import score_pairs

    rng = np.random.default_rng(8)
    q = rng.standard_normal((20, 24)).astype(np.float32)
    c = rng.standard_normal((300, 24)).astype(np.float32)
    s, i = exact_topk(q, c, 7, corpus_chunk=64, use_gpu=False, progress=False)
    np.testing.assert_array_equal(score_pairs(q, c, i), s)  # bit-identical
    padded = np.concatenate([i[:, :2], -np.ones((20, 1), np.int64)], axis=1)
    got = score_pairs(q, c, padded, chunk=6)
    np.testing.assert_array_equal(got[:, :2], s[:, :2])
    assert np.isnan(got[:, 2]).all()
    with pytest.raises(ConfigError, match="ids"):
        score_pairs(q, c, np.full((20, 1), 300))
