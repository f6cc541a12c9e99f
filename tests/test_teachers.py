"""nvr.mining.teachers and nvr.mining.ensembles: BM25 / dense / random candidates, ensembles, overlap, duplicates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nvr.errors import ConfigError
from nvr.mining import MinedArrays, MiningConfig, mine, query_keys
from nvr.mining.ensembles import cross_sample, intra_sample, jaccard_matrix, pick_mined, topk_jaccard
from nvr.mining.teachers import (BM25Teacher, bm25_candidates, bm25_positive_scores, dense_candidates,
                                 exact_duplicate_exclusions, normalize_text, positive_scores, random_candidates,
                                 random_positive_scores)

DOCS = [
    "The cat sat on the mat",       # cat sat mat            (3 tokens)
    "Dogs chase cats",              # dogs chase cats        (3)
    "cat cat cat food",             # cat cat cat food       (4)
    "Quantum physics lecture",      # quantum physics lecture (3)
    "A cat and a dog",              # cat dog                (2)
    "Stock market news",            # stock market news      (3)
]
LENS = [3, 3, 4, 3, 2, 3]


def _bm25(tf, dl, df, n=6, k1=1.5, b=0.75):
    avgdl = sum(LENS) / len(LENS)
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    # Lucene >= 8 (and bm25s "lucene") drop the constant (k1 + 1) factor of the numerator
    return idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))


def test_bm25_hand_checked_order_and_scores():
    scores, ids = bm25_candidates(["cat"], DOCS, 4)
    # "cat" is in docs 0, 2, 4 (doc 1 has "cats": no stemming); the rest score 0 -> padding
    assert ids[0].tolist() == [2, 4, 0, -1]
    exp = [_bm25(3, 4, 3), _bm25(1, 2, 3), _bm25(1, 3, 3)]
    np.testing.assert_allclose(scores[0, :3], exp, rtol=1e-5)
    assert np.isnan(scores[0, 3])
    assert scores.dtype == np.float32 and ids.dtype == np.int64


def test_bm25_ties_by_smaller_id_and_keep_zero():
    # "market news" and "physics": docs 5 and 3 match one term each with the same length
    scores, ids = bm25_candidates(["physics market"], DOCS, 6, drop_zero=False)
    assert ids[0, :2].tolist() == [3, 5] and scores[0, 0] == scores[0, 1]
    assert ids[0, 2:].tolist() == [0, 1, 2, 4]       # zero scores, by id
    s2, i2 = bm25_candidates(["market physics"], DOCS, 6, drop_zero=False)
    np.testing.assert_array_equal(i2, ids)


def test_bm25_positive_scores_and_empty_query():
    idx = BM25Teacher(DOCS)
    ps = bm25_positive_scores(["cat", "the of"], DOCS, np.array([[2, 1], [0, -1]]), index=idx)
    assert ps[0, 0] == pytest.approx(_bm25(3, 4, 3), rel=1e-5) and ps[0, 1] == 0
    assert ps[1, 0] == 0 and np.isnan(ps[1, 1])
    s, i = idx.candidates(["the of"], 3)              # only stop words: nothing retrieved
    assert (i == -1).all() and np.isnan(s).all()


def test_bm25_depth_above_corpus():
    with pytest.raises(ConfigError, match="teachers.bm25.depth"):
        bm25_candidates(["cat"], DOCS, 7, where="teachers.bm25.depth")


def test_dense_candidates_with_injected_search_and_positive_scores():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(20, 8)).astype(np.float32)
    queries = rng.normal(size=(5, 8)).astype(np.float32)

    def brute(q, c, k):
        s = q @ c.T
        order = np.lexsort((np.broadcast_to(np.arange(c.shape[0]), s.shape), -s), axis=1)[:, :k]
        return np.take_along_axis(s, order, 1), order

    scores, ids = dense_candidates(queries, corpus, 4, search_fn=brute)
    assert ids.shape == (5, 4)
    np.testing.assert_allclose(scores[:, 0], (queries @ corpus.T).max(1), rtol=1e-6)
    pos = np.array([[3, -1], [0, 19], [-1, -1], [5, 5], [7, 2]])
    ps = positive_scores(queries, corpus, pos, chunk_rows=2)
    full = queries @ corpus.T
    for i in range(5):
        for j in range(2):
            if pos[i, j] < 0:
                assert np.isnan(ps[i, j])
            else:
                assert ps[i, j] == pytest.approx(full[i, pos[i, j]], rel=1e-5)
    with pytest.raises(ConfigError, match="teachers.depth"):
        dense_candidates(queries, corpus, 21, search_fn=brute)


@pytest.mark.parametrize("n_docs,depth", [(10, 6), (1000, 50)])
def test_random_candidates(n_docs, depth):
    qk = query_keys(f"q{i}" for i in range(40))
    s, ids = random_candidates(40, n_docs, depth, seed=1, query_keys=qk)
    assert ids.shape == (40, depth) and (s == 0).all()
    assert ((ids >= 0) & (ids < n_docs)).all()
    assert all(len(set(r)) == depth for r in ids.tolist())
    _, again = random_candidates(40, n_docs, depth, seed=1, query_keys=qk)
    np.testing.assert_array_equal(ids, again)
    _, sub = random_candidates(5, n_docs, depth, seed=1, query_keys=qk[10:15])
    np.testing.assert_array_equal(sub, ids[10:15])
    _, other = random_candidates(40, n_docs, depth, seed=2, query_keys=qk)
    assert not np.array_equal(ids, other)
    with pytest.raises(ConfigError, match="depth"):
        random_candidates(40, n_docs, n_docs + 1, seed=1, query_keys=qk)


def test_random_teacher_passes_every_filter():
    qk = query_keys(f"q{i}" for i in range(3))
    s, ids = random_candidates(3, 100, 10, seed=0, query_keys=qk)
    pos = ids[:, :1].copy()                       # a positive among the candidates: masked
    m = mine(ids, s, pos, random_positive_scores(pos), MiningConfig(perc=0.95, max_score=0.7),
             query_keys=qk)
    assert (m.n_found == 4).all()
    np.testing.assert_array_equal(m.neg_ids, ids[:, 1:5])


def _mined(neg_ids, keep=None, anchor=0.5):
    neg_ids = np.asarray(neg_ids, np.int64)
    q, n = neg_ids.shape
    return MinedArrays(
        neg_ids=neg_ids, neg_scores=np.where(neg_ids >= 0, neg_ids / 100, np.nan).astype(np.float32),
        neg_ranks=np.where(neg_ids >= 0, np.arange(1, n + 1), 0).astype(np.int32),
        n_found=(neg_ids >= 0).sum(1).astype(np.int32), n_eligible=(neg_ids >= 0).sum(1).astype(np.int32),
        keep=np.ones(q, bool) if keep is None else np.asarray(keep),
        filled=np.zeros((q, n), bool), anchor=np.full(q, anchor, np.float32))


def test_intra_sample_dedupe_and_keep():
    a, b, c = _mined([[5, 6], [1, 2]]), _mined([[5, 7], [3, -1]]), _mined([[8, 9], [1, 4]])
    m = intra_sample([a, b, c], 3, dedupe=True)
    assert m.neg_ids.tolist() == [[5, 8, -1], [1, 3, -1]]
    assert m.source.tolist() == [[0, 2, -1], [0, 1, -1]]
    assert m.n_found.tolist() == [2, 2]
    m = intra_sample([a, b, c], 3, dedupe=False)
    assert m.neg_ids.tolist() == [[5, 5, 8], [1, 3, 1]]
    assert m.neg_scores[0].tolist() == pytest.approx([.05, .05, .08])
    m = intra_sample([a, b, c], 3, dedupe=True, per_teacher=2)
    assert m.neg_ids.tolist() == [[5, 8, 6], [1, 3, 2]]
    assert m.neg_ranks[0].tolist() == [1, 1, 2]
    d = _mined([[5, 6], [1, 2]], keep=[True, False])
    assert intra_sample([a, d], 2, dedupe=True).keep.tolist() == [True, False]


def test_cross_sample_picks_whole_rows_reproducibly():
    q = 400
    qk = query_keys(f"q{i}" for i in range(q))
    t0 = (np.zeros((q, 3), np.float32), np.zeros((q, 3), np.int64), np.zeros((q, 1), np.float32))
    t1 = (np.ones((q, 2), np.float32), np.ones((q, 2), np.int64), np.ones((q, 1), np.float32))
    s, ids, ps, choice = cross_sample([t0, t1], seed=0, query_keys=qk)
    assert ids.shape == (q, 3) and set(choice.tolist()) == {0, 1}
    assert 150 < choice.sum() < 250
    for i in range(q):
        want = choice[i]
        assert (ids[i, :2] == want).all() and (s[i, :2] == want).all() and ps[i, 0] == want
        if want == 1:
            assert ids[i, 2] == -1 and np.isnan(s[i, 2])
    *_, c2 = cross_sample([t0, t1], seed=0, query_keys=qk[::-1])
    np.testing.assert_array_equal(c2, choice[::-1])
    m = pick_mined([_mined(np.zeros((q, 2))), _mined(np.ones((q, 2)))], choice)
    assert (m.neg_ids[:, 0] == choice).all() and (m.source[:, 0] == choice).all()


def test_jaccard_by_hand():
    a = np.array([[1, 2, 3, 4], [1, 2, -1, -1], [-1, -1, -1, -1]])
    b = np.array([[3, 4, 5, 6], [2, 1, 7, -1], [-1, -1, -1, -1]])
    # 2/6 and 2/3; the empty row is skipped
    assert topk_jaccard(a, b, 4) == pytest.approx(0.5)
    # top-2: {1,2} vs {3,4} -> 0 ; {1,2} vs {2,1} -> 1
    assert topk_jaccard(a, b, 2) == pytest.approx(0.5)
    mat = jaccard_matrix({"a": a, "b": b}, 4)
    assert mat["a"]["a"] == 1.0 and mat["a"]["b"] == mat["b"]["a"] == pytest.approx(0.5)


def test_exact_duplicates():
    docs = ["Hello  World", "hello world", "other", "HELLO WORLD ", "query text", "", ""]
    exc = exact_duplicate_exclusions(docs, np.array([[0, -1], [2, 5]]), ["Query\tText", "nothing"])
    assert exc.tolist() == [[1, 3, 4], [-1, -1, -1]]
    assert normalize_text("  Ｈello\n WORLD ") == "hello world"
    assert exact_duplicate_exclusions(docs, np.array([[2]])).shape == (1, 0)


def test_bm25_then_mine_with_exclusions():
    docs = DOCS + ["cat cat cat food"]                # doc 6 duplicates the positive doc 2
    scores, ids = bm25_candidates(["cat food"], docs, 5)
    pos = np.array([[2]])
    exc = exact_duplicate_exclusions(docs, pos)
    assert exc.tolist() == [[6]]
    idx = BM25Teacher(docs)
    ps = idx.positive_scores(["cat food"], pos)
    m = mine(ids, scores, pos, ps, MiningConfig(num_negatives=3), query_keys=query_keys(["q"]),
             exclude_ids=exc)
    assert 2 not in m.neg_ids[0] and 6 not in m.neg_ids[0]
    assert m.neg_ids[0, :2].tolist() == [4, 0]


def test_ensemble_negatives_compare_with_their_own_teachers_anchor():
    """Dense scores near 0.8 and BM25 scores near 12: every BM25 negative lies above the dense
    anchor, but below its own teacher's. Statistics and rows must use each negative's own anchor."""
    from nvr.mining import mining_stats, to_rows

    cfg = MiningConfig(num_negatives=2, perc=0.95)
    keys = query_keys(["q"])
    pos = np.array([[0]])
    dense = mine(np.array([[0, 1, 2, 3]]), np.array([[0.9, 0.7, 0.6, 0.5]], np.float32), pos,
                 np.array([[0.9]], np.float32), cfg, query_keys=keys)
    bm25 = mine(np.array([[0, 4, 5, 1]]), np.array([[15.0, 12.0, 11.0, 10.0]], np.float32), pos,
                np.array([[15.0]], np.float32), cfg, query_keys=keys)
    per_teacher = [np.array([[0.9]], np.float32), np.array([[15.0]], np.float32)]
    for ens in (intra_sample([dense, bm25], 4, dedupe=True, per_teacher=2), pick_mined([dense, bm25], np.array([1]))):
        st = mining_stats(ens, per_teacher, teachers=["dense", "bm25"])
        assert st["negatives_above_anchor"] == 0
        row = to_rows(ens, ["q"], ["query"], [["d0"]], per_teacher,
                      [f"d{i}" for i in range(6)], teachers=["dense", "bm25"])[0]
        for s, a in zip(row["negative_scores"], row["negative_anchor_scores"]):
            assert s < a
        assert set(row["negative_teachers"]) <= {"dense", "bm25"}
    both = intra_sample([dense, bm25], 4, dedupe=True, per_teacher=2)
    assert both.source.tolist() == [[0, 1, 0, 1]]


def test_ensemble_statistics_and_rows_use_the_teacher_of_each_negative():
    """Positive and anchor statistics of an ensemble come from the teacher that chose each negative
    (per (query, teacher) pair that gave one), never the first teacher's for all; rows carry the
    positive scores of their negatives' teacher when they have one (cross-sample)."""
    from nvr.mining import mining_stats, to_rows

    cfg = MiningConfig(num_negatives=2, perc=0.95)
    keys = query_keys(["q0", "q1"])
    pos = np.array([[0], [0]])
    dense = mine(np.array([[0, 1, 2, 3]] * 2), np.array([[0.9, 0.7, 0.6, 0.5], [0.8, 0.7, 0.6, 0.5]], np.float32),
                 pos, np.array([[0.9], [0.8]], np.float32), cfg, query_keys=keys)
    bm25 = mine(np.array([[0, 4, 5, 1]] * 2), np.array([[15.0, 12.0, 11.0, 10.0], [20.0, 12.0, 11.0, 10.0]], np.float32),
                pos, np.array([[15.0], [20.0]], np.float32), cfg, query_keys=keys)
    ps = [np.array([[0.9], [0.8]], np.float32), np.array([[15.0], [20.0]], np.float32)]
    names = ["dense", "bm25"]
    # intra-sample: both teachers give negatives to both queries
    st = mining_stats(intra_sample([dense, bm25], 2, dedupe=True, per_teacher=2), ps, teachers=names)
    assert st["mean_positive_score"] == pytest.approx((0.9 + 0.8 + 15 + 20) / 4)
    assert st["mean_anchor_score"] == pytest.approx((0.9 + 0.8 + 15 + 20) / 4)
    assert st["per_teacher"]["dense"]["mean_positive_score"] == pytest.approx(0.85)
    assert st["per_teacher"]["bm25"]["mean_anchor_score"] == pytest.approx(17.5)
    assert st["per_teacher"]["bm25"]["negatives"] == 2 and st["per_teacher"]["dense"]["queries"] == 2
    # cross-sample: q0 from BM25, q1 from the dense teacher
    picked = pick_mined([dense, bm25], np.array([1, 0]))
    st = mining_stats(picked, ps, teachers=names)
    assert st["mean_positive_score"] == pytest.approx((15 + 0.8) / 2)
    assert st["mean_anchor_score"] == pytest.approx((15 + 0.8) / 2)
    rows = to_rows(picked, ["q0", "q1"], ["a", "b"], [["d0"], ["d0"]], ps, [f"d{i}" for i in range(6)],
                   teachers=names)
    assert [r["positive_teacher"] for r in rows] == ["bm25", "dense"]
    assert [r["positive_scores"] for r in rows] == [[15.0], [0.8]]
    # an ensemble needs every teacher's positive scores: one teacher's for all is refused
    with pytest.raises(ValueError, match="per teacher"):
        mining_stats(picked, ps[0])
    with pytest.raises(ValueError, match="per teacher"):
        to_rows(picked, ["q0", "q1"], ["a", "b"], [["d0"], ["d0"]], ps[0], [f"d{i}" for i in range(6)],
                teachers=names)


def test_dense_anchor_is_bit_identical_to_the_search_score_of_the_same_document():
    """An anchor (a positive's teacher score) and the score the search gives that document must be
    the same float: PercPos compares candidates with the anchor, so an ulp apart would split a tie."""
    from nvr.mining.search import exact_topk
    from nvr.mining.teachers import positive_scores

    rng = np.random.default_rng(5)
    corpus = rng.standard_normal((3000, 384)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    pos = rng.integers(0, len(corpus), 500)
    queries = corpus[pos] + 0.04 * rng.standard_normal((500, 384)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores, ids = exact_topk(queries, corpus, 20)
    anchors = positive_scores(queries, corpus, pos)[:, 0]
    rows, cols = np.nonzero(ids == pos[:, None])
    assert len(rows) > 400   # most positives are found
    np.testing.assert_array_equal(anchors[rows], scores[rows, cols])


def test_ensembles_stage_statistics_and_rows_follow_each_negatives_teacher(tmp_path):
    """The teacher ensembles on a dense teacher (scores near 0.8) and BM25 (scores near 15): the
    stats' positive and anchor means are each negative's own teacher's (not the first teacher's for
    all), and each row's positive scores are the teacher's named by ``positive_teacher``."""
    import json
    import shutil
    from pathlib import Path

    import yaml

    from nvr import config
    from nvr.mining.candidates import Candidates
    from nvr.paths import Layout
    from nvr.stages.ensembles import mine_ensembles

    root_src = Path(__file__).resolve().parents[1]
    shutil.copytree(root_src / "tests" / "fixtures" / "beir_tiny", tmp_path / "data")
    with open(tmp_path / "data" / "train_pairs.jsonl", "w", encoding="utf-8") as fh:
        for qid, text in (("q1", "What is the capital of France?"), ("q6", "European capital cities")):
            fh.write(json.dumps({"query_id": qid, "query": text, "positive_ids": ["d1"]}) + "\n")
    raw = yaml.safe_load((root_src / "params.yaml").read_text())
    raw["teacher_ablation"] = ["mpnet", "bm25"]
    study = config.parse(raw, check_paths=False)
    lay = Layout.at(tmp_path)
    pos = {"mpnet": [0.9, 0.8], "bm25": [15.0, 20.0]}
    cand = {"mpnet": ([0, 1, 2, 3, 4, 5], [0.9, 0.7, 0.6, 0.5, 0.4, 0.3]),
            "bm25": ([0, 4, 5, 1, 2, 3], [15.0, 12.0, 11.0, 10.0, 9.0, 8.0])}
    for t in ("mpnet", "bm25"):
        ids, sc = cand[t]
        path = lay.candidates(t)
        path.parent.mkdir(parents=True)
        Candidates(query_ids=np.array(["q1", "q6"]), cand_ids=np.array([ids, ids], np.int64),
                   cand_scores=np.array([sc, sc], np.float32), pos_ids=np.zeros((2, 1), np.int64),
                   pos_scores=np.array(pos[t], np.float32)[:, None],
                   exclude_ids=np.full((2, 0), -1, np.int64)).save(path)
    stats = mine_ensembles(study, tmp_path)
    both = (0.9 + 0.8 + 15.0 + 20.0) / 4        # intra-sample: both teachers give negatives to both queries
    for kind in ("intra_sample_dedup", "intra_sample_kept"):
        st = stats[kind]
        assert st["mean_positive_score"] == pytest.approx(both) and st["mean_anchor_score"] == pytest.approx(both)
        assert st["per_teacher"]["mpnet"]["mean_anchor_score"] == pytest.approx(0.85)
        assert st["per_teacher"]["bm25"]["mean_positive_score"] == pytest.approx(17.5)
    for kind in stats:
        rows = [json.loads(x) for x in (lay.ensembles_dir / f"{kind}.jsonl").read_text().splitlines()]
        chosen = []
        for r in rows:
            i = ["q1", "q6"].index(r["query_id"])
            assert r["positive_scores"] == [pytest.approx(pos[r["positive_teacher"]][i])]
            if len(set(r["negative_teachers"])) == 1:
                assert r["positive_teacher"] == r["negative_teachers"][0]
            chosen.append(pos[r["negative_teachers"][0]][i])
        if kind == "cross_sample":              # one teacher per query: its positive scores
            assert stats[kind]["mean_positive_score"] == pytest.approx(sum(chosen) / 2)
            assert stats[kind]["mean_anchor_score"] == pytest.approx(sum(chosen) / 2)
