"""Cross-encoder rescoring: scores equal a per-pair forward pass, rows re-sorted, CLI end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nvr.cli import main
from nvr.config import TeacherConfig, build
from nvr.data import doc_text, load_beir
from nvr.errors import ConfigError
from nvr.models import resolve_model
from nvr.mining.rescoring import CrossEncoderScorer, rescore_candidates

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "beir_tiny"


def _tiny_model(folder: Path, num_labels: int, seed: int) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(resolve_model("pkg:all-MiniLM-L6-v2"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=num_labels)
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ce1(tmp_path_factory):
    return _tiny_model(tmp_path_factory.mktemp("ce1"), 1, seed=0)


@pytest.fixture(scope="module")
def ce2(tmp_path_factory):
    return _tiny_model(tmp_path_factory.mktemp("ce2"), 2, seed=1)


_LOADED = {}


def oracle(folder, pairs, max_length=64):
    """Independent reference: one unpadded forward pass per pair."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    if folder not in _LOADED:
        _LOADED[folder] = (AutoTokenizer.from_pretrained(folder),
                           BertForSequenceClassification.from_pretrained(folder).eval())
    tok, model = _LOADED[folder]
    out = []
    with torch.no_grad():
        for q, p in pairs:
            logits = model(**tok(q, p, truncation=True, max_length=max_length, return_tensors="pt")).logits[0]
            out.append(logits.tolist())
    return np.array(out, dtype=np.float64).reshape(len(pairs), -1) if pairs else np.zeros((0, 1))


@pytest.fixture(scope="module")
def tiny():
    ds = load_beir(TINY, splits=["test"])
    return list(ds.queries.values()), [doc_text(d) for d in ds.corpus.values()]


def test_scores_match_per_pair_forward_and_rows_resorted(ce1, tiny):
    q_texts, docs = tiny
    q_texts = q_texts[:3]
    cand = np.array([[0, 1, 2, 3], [5, 4, -1, -1], [2, 0, 4, -1]], np.int64)
    pos = np.array([[0, -1], [3, 1], [-1, -1]], np.int64)
    scorer = CrossEncoderScorer(str(ce1), max_length=64, device="cpu")
    s, ids, ps = rescore_candidates(scorer, q_texts, docs, cand, pos, batch_size=2, progress=False)
    assert s.dtype == np.float32 and ids.dtype == np.int64 and s.shape == ids.shape == cand.shape
    for i in range(3):
        valid = cand[i][cand[i] >= 0]
        ref = oracle(ce1, [(q_texts[i], docs[d]) for d in valid])[:, 0]
        n = len(valid)
        assert sorted(ids[i, :n].tolist()) == sorted(valid.tolist())     # same candidates
        assert (ids[i, n:] == -1).all() and np.isnan(s[i, n:]).all()    # padding kept at the end
        got = dict(zip(ids[i, :n].tolist(), s[i, :n].tolist()))
        np.testing.assert_allclose([got[d] for d in valid.tolist()], ref, atol=1e-5)
        assert (np.diff(s[i, :n]) <= 0).all()                            # descending
        p_ok = pos[i] >= 0
        assert np.isnan(ps[i, ~p_ok]).all()
        if p_ok.any():
            np.testing.assert_allclose(ps[i, p_ok], oracle(ce1, [(q_texts[i], docs[d]) for d in pos[i, p_ok]])[:, 0],
                                       atol=1e-5)
    # batch size and sigmoid
    s1 = scorer.score(q_texts[:2], docs[:2], batch_size=1, progress=False)
    sig = CrossEncoderScorer(str(ce1), max_length=64, device="cpu", sigmoid=True)
    np.testing.assert_allclose(sig.score(q_texts[:2], docs[:2], progress=False), 1 / (1 + np.exp(-s1)), atol=1e-6)


class FakeScorer:
    def __init__(self, table):
        self.table = table          # (query, passage) -> score
        self.calls = 0

    def score(self, queries, passages, batch_size=32, progress=True):
        self.calls += len(queries)
        return np.array([self.table[(q, p)] for q, p in zip(queries, passages)], np.float32)


def test_ties_keep_original_rank_and_pairs_are_scored_once():
    docs = ["d0", "d1", "d2", "d3", "d4"]
    q = ["qa", "qb"]
    table = {("qa", "d0"): 0.1, ("qa", "d1"): 0.5, ("qa", "d2"): 0.5, ("qa", "d3"): 0.9, ("qa", "d4"): 0.5,
             ("qb", "d0"): 1.0, ("qb", "d1"): 1.0, ("qb", "d2"): 2.0}
    cand = np.array([[0, 4, 1, 3, 2], [1, 0, -1, 2, -1]], np.int64)   # -1 in the middle is moved to the end
    pos = np.array([[3], [-1]], np.int64)
    sc = FakeScorer(table)
    s, ids, ps = rescore_candidates(sc, q, docs, cand, pos, batch_size=4, progress=False)
    assert ids.tolist() == [[3, 4, 1, 2, 0], [2, 1, 0, -1, -1]]         # ties by original rank (4 before 1 before 2)
    np.testing.assert_allclose(s[0], [0.9, 0.5, 0.5, 0.5, 0.1])
    assert np.isnan(s[1, 3:]).all() and np.isnan(ps[1, 0]) and ps[0, 0] == np.float32(0.9)
    assert sc.calls == 8                                                  # (qa, d3) scored once


def test_two_labels_use_softmax_probability_of_class_1(ce2, tiny):
    q_texts, docs = tiny
    scorer = CrossEncoderScorer(str(ce2), max_length=64, device="cpu")
    got = scorer.score([q_texts[0]] * 3, docs[:3], batch_size=2, progress=False)
    logits = oracle(ce2, [(q_texts[0], d) for d in docs[:3]])
    ref = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_cli_bm25_rescored_end_to_end(ce1, tmp_path):
    out = tmp_path / "mined.jsonl"
    assert main(["mine", "--beir", str(TINY), "--split", "test", "--teacher", "bm25", "--depth", "5",
                 "--method", "naive", "--num-negatives", "2", "--rescore-model", str(ce1),
                 "--rescore-batch-size", "3", "--rescore-max-length", "64", "--out", str(out)]) == 0
    ds = load_beir(TINY, splits=["test"])
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got and sum(len(r["negative_ids"]) for r in got) >= 2
    for r in got:
        q = ds.queries[r["query_id"]]
        assert r["negative_scores"] == sorted(r["negative_scores"], reverse=True)
        assert not set(r["negative_ids"]) & set(r["positive_ids"])
        ref_n = oracle(ce1, [(q, doc_text(ds.corpus[d])) for d in r["negative_ids"]])[:, 0]
        ref_p = oracle(ce1, [(q, doc_text(ds.corpus[d])) for d in r["positive_ids"]])[:, 0]
        np.testing.assert_allclose(r["negative_scores"], ref_n, atol=1e-5)
        np.testing.assert_allclose(r["positive_scores"], ref_p, atol=1e-5)
    stats = json.loads((tmp_path / "mined.jsonl.stats.json").read_text())
    assert stats["rescore_model"] == str(ce1)


def test_missing_model_is_a_clear_config_error(tmp_path, capsys):
    missing = str(tmp_path / "no-such-model")
    assert main(["mine", "--beir", str(TINY), "--split", "test", "--teacher", "bm25", "--depth", "5",
                 "--rescore-model", missing, "--out", str(tmp_path / "m.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "--rescore-model" in err and "does not exist" in err
    assert not (tmp_path / "m.jsonl").exists()
    with pytest.raises(ConfigError, match=r"teachers\.bm25\.rescore_model"):
        CrossEncoderScorer(missing, key="teachers.bm25.rescore_model")
    with pytest.raises(ConfigError, match=r"teachers\.t\.rescore_batch_size"):
        build(TeacherConfig, {"kind": "bm25", "rescore_batch_size": 0}, "teachers.t")
    tc = build(TeacherConfig, {"kind": "bm25", "rescore_model": "x"}, "teachers.t")
    assert (tc.rescore_batch_size, tc.rescore_max_length) == (32, 256)


def test_help_documents_rescore_options(capsys):
    with pytest.raises(SystemExit):
        main(["mine", "--help"])
    text = capsys.readouterr().out
    for opt in ("--rescore-model", "--rescore-batch-size", "--rescore-max-length"):
        assert opt in text
