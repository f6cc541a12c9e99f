"""`nvr mine --format`: the formats other trainers read, checked against the real libraries.

The sentence-transformers formats are compared row for row with
``sentence_transformers.util.mine_hard_negatives`` on the same model, texts, depth and n (the
oracle: its own output); FlagEmbedding and Tevatron (not installed here) against their
documented training-data schemas.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nvr.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "beir_tiny"
PAIRS = [("q1", "What is the capital of France?", "d1"), ("q2", "How do plants make sugar from sunlight?", "d3"),
         ("q3", "Which language is popular for readable code?", "d4"), ("q4", "highest mountain in the world", "d6")]
N, RANGE_MAX = 2, 4


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    with open(d / "pairs.jsonl", "w", encoding="utf-8") as fh:
        for q, text, pos in PAIRS:
            fh.write(json.dumps({"query_id": q, "query": text, "positive_ids": [pos]}) + "\n")
    corpus = [json.loads(line) for line in (TINY / "corpus.jsonl").read_text().splitlines() if line.strip()]
    return d, {c["_id"]: c for c in corpus}


def _mine(inputs, fmt: str, out_name: str, *extra: str) -> Path:
    d, _ = inputs
    out = d / out_name
    # ST searches range_max + (positives per query) and keeps range_max survivors: depth = range_max + 1
    rc = main(["mine", "--pairs", str(d / "pairs.jsonl"), "--corpus", str(TINY / "corpus.jsonl"),
               "--teacher", "pkg:all-MiniLM-L6-v2", "--max-query-length", "256", "--max-passage-length", "256",
               "--depth", str(RANGE_MAX + 1), "--method", "naive", "--num-negatives", str(N),
               "--cache-dir", str(d / "cache"), "--format", fmt, "--out", str(out), *extra])
    assert rc == 0
    return out


def _st(inputs, fmt: str, output_scores: bool = False):
    import datasets
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from nvr.data.beir import doc_text
    from nvr.models import resolve_model

    _, corpus = inputs
    model = SentenceTransformer(str(resolve_model("pkg:all-MiniLM-L6-v2")), device="cpu")
    model.max_seq_length = 256
    texts = [doc_text(c) for c in corpus.values()]
    ds = datasets.Dataset.from_dict({"anchor": [t for _, t, _ in PAIRS],
                                     "positive": [doc_text(corpus[p]) for _, _, p in PAIRS]})
    return mine_hard_negatives(ds, model, corpus=texts, range_max=RANGE_MAX, num_negatives=N,
                               sampling_strategy="top", use_faiss=False, output_format=fmt,
                               output_scores=output_scores, verbose=False, batch_size=8)


@pytest.mark.parametrize("fmt", ["triplet", "n-tuple", "labeled-pair", "labeled-list"])
def test_sentence_transformers_formats_equal_mine_hard_negatives(inputs, fmt):
    import datasets

    out = _mine(inputs, fmt, f"{fmt}.parquet")
    ours = datasets.load_dataset("parquet", data_files=str(out))["train"]
    theirs = _st(inputs, fmt)
    assert ours.column_names == theirs.column_names
    assert ours.to_list() == theirs.to_list()
    stats = json.loads(out.with_name(out.name + ".stats.json").read_text())
    assert stats["format"] == {"name": fmt, "records": len(theirs)}


def test_scores_columns_agree_with_sentence_transformers(inputs):
    import datasets

    out = _mine(inputs, "n-tuple", "ntuple_scores.parquet", "--output-scores")
    ours = datasets.load_dataset("parquet", data_files=str(out))["train"]
    theirs = _st(inputs, "n-tuple", output_scores=True)
    assert ours.column_names == theirs.column_names
    for a, b in zip(ours.to_list(), theirs.to_list()):
        assert {k: v for k, v in a.items() if k != "scores"} == {k: v for k, v in b.items() if k != "scores"}
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)


def test_flagembedding_and_tevatron_follow_their_schemas(inputs):
    """FlagEmbedding: {"query": str, "pos": [str], "neg": [str], "pos_scores": [float], "neg_scores":
    [float]}; Tevatron: {"query_id", "query", "positive_passages" / "negative_passages": [{"docid",
    "title", "text"}]} (their READMEs' training-data formats)."""
    from nvr.data.beir import doc_text

    _, corpus = inputs
    nvr_rows = [json.loads(x) for x in _mine(inputs, "nvr", "mined.jsonl").read_text().splitlines()]
    fe = [json.loads(x) for x in _mine(inputs, "flagembedding", "fe.jsonl", "--output-scores").read_text().splitlines()]
    tv = [json.loads(x) for x in _mine(inputs, "tevatron", "tv.jsonl").read_text().splitlines()]
    assert len(fe) == len(tv) == len(nvr_rows) == len(PAIRS)
    for r, f, t in zip(nvr_rows, fe, tv):
        assert set(f) == {"query", "pos", "neg", "pos_scores", "neg_scores"}
        assert f["query"] == r["query"] and f["pos"] == [doc_text(corpus[d]) for d in r["positive_ids"]]
        assert f["neg"] == [doc_text(corpus[d]) for d in r["negative_ids"]] and len(f["neg"]) == N
        assert f["neg_scores"] == r["negative_scores"] and f["pos_scores"] == r["positive_scores"]
        assert set(t) == {"query_id", "query", "positive_passages", "negative_passages"}
        assert [p["docid"] for p in t["negative_passages"]] == r["negative_ids"]
        for p in t["positive_passages"] + t["negative_passages"]:
            assert set(p) == {"docid", "title", "text"}
            assert (p["title"], p["text"]) == (corpus[p["docid"]].get("title", ""), corpus[p["docid"]]["text"])


@pytest.mark.parametrize("fmt, name, fragment", [
    ("triplet", "out.jsonl", "--format triplet is written as parquet; name the file *.parquet"),
    ("flagembedding", "out.parquet", "--format flagembedding is JSON lines"),
])
def test_format_and_file_name_must_agree(inputs, capsys, fmt, name, fragment):
    d, _ = inputs
    rc = main(["mine", "--pairs", str(d / "pairs.jsonl"), "--corpus", str(TINY / "corpus.jsonl"), "--teacher", "bm25",
               "--depth", "5", "--num-negatives", "2", "--format", fmt, "--out", str(d / name)])
    assert rc == 2 and fragment in capsys.readouterr().err and not (d / name).exists()


# --------------------------------------------------------------------------- the Python API
def _api_data():
    import datasets

    from nvr.data.beir import doc_text

    corpus = [json.loads(line) for line in (TINY / "corpus.jsonl").read_text().splitlines() if line.strip()]
    texts = {c["_id"]: doc_text(c) for c in corpus}
    anchors = [t for _, t, _ in PAIRS] + ["European capital cities", "European capital cities"]
    positives = [texts[p] for _, _, p in PAIRS] + [texts["d1"], texts["d2"]]   # one query, two positives
    return datasets.Dataset.from_dict({"query": anchors, "answer": positives}), list(texts.values())


@pytest.mark.parametrize("kwargs", [
    {"output_format": "triplet"},
    {"output_format": "labeled-list", "output_scores": True},
    {"output_format": "n-tuple", "range_min": 1},
    {"output_format": "labeled-pair", "absolute_margin": 0.05},
    {"output_format": "triplet", "max_score": 0.5, "output_scores": True},
    {"output_format": "labeled-list", "relative_margin": 0.05, "min_score": 0.05},
    {"output_format": "labeled-list", "max_score": 0.2, "range_max": 2, "num_negatives": 2},
], ids=["triplet", "labeled-list-scores", "n-tuple-range-min", "labeled-pair-margin", "triplet-max-score",
        "labeled-list-relative-margin-min-score", "filters-reach-past-range-max"])
def test_api_matches_sentence_transformers(kwargs):
    """nvr.mine_hard_negatives with sentence-transformers' argument names gives its output."""
    import nvr
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from nvr.models import resolve_model

    ds, corpus = _api_data()
    common = dict(corpus=corpus, range_max=4, num_negatives=N, batch_size=8)
    common.update(kwargs)
    model = SentenceTransformer(str(resolve_model("pkg:all-MiniLM-L6-v2")), device="cpu")
    model.max_seq_length = 256
    # the drop-in: the same SentenceTransformer object sentence-transformers gets
    ours = nvr.mine_hard_negatives(ds, model, **common)
    theirs = mine_hard_negatives(ds, model, use_faiss=False, verbose=False, **common)
    assert ours.column_names == theirs.column_names
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("scores", "score")} for r in rows]  # noqa: E731
    assert strip(ours.to_list()) == strip(theirs.to_list())
    for key in ("scores", "score"):
        if key in theirs.column_names:
            flat = lambda col: [x for v in col for x in (v if isinstance(v, list) else [v])]  # noqa: E731
            assert [len(v) if isinstance(v, list) else 1 for v in ours[key]] == \
                [len(v) if isinstance(v, list) else 1 for v in theirs[key]]
            assert flat(ours[key]) == pytest.approx(flat(theirs[key]), abs=1e-5)


def test_api_rejects_what_it_cannot_mean():
    import nvr
    from nvr.errors import ConfigError

    ds, corpus = _api_data()
    with pytest.raises(ConfigError, match="positive_column_name 'pos' is not a column"):
        nvr.mine_hard_negatives(ds, "bm25", positive_column_name="pos")
    with pytest.raises(ConfigError, match="unknown argument 'rang_max'"):
        nvr.mine_hard_negatives(ds, "bm25", rang_max=3)
    with pytest.raises(ConfigError, match="include_positives / as_triplets are not supported"):
        nvr.mine_hard_negatives(ds, "bm25", include_positives=True)
    with pytest.raises(ConfigError, match="model must be a model reference"):
        nvr.mine_hard_negatives(ds, 42)
    with pytest.raises(ConfigError, match="range_max \\(2\\) must exceed range_min \\(2\\)"):
        nvr.mine_hard_negatives(ds, "bm25", range_min=2, range_max=2)
    out = nvr.mine_hard_negatives(ds, "bm25", corpus=corpus, num_negatives=2, output_format="flagembedding",
                                  seed=1)
    assert set(out.column_names) == {"query", "pos", "neg"} and len(out) == len(PAIRS) + 1
    assert [len(p) for p in out["pos"]][-1] == 2     # the repeated query: both positives, merged


# --------------------------------------------------------------------------- their inputs
@pytest.mark.parametrize("kind", ["parquet", "csv", "jsonl", "save_to_disk"])
def test_dataset_inputs_mine_like_sentence_transformers(tmp_path, kind):
    """`nvr mine --dataset` on a table of (anchor, positive) pairs, a repeated anchor merged into one
    query with two positives, a separate candidate corpus: the same triplets as
    sentence-transformers' mine_hard_negatives on that dataset and corpus."""
    import datasets
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from nvr.models import resolve_model

    ds, corpus = _api_data()
    src = {"parquet": tmp_path / "pairs.parquet", "csv": tmp_path / "pairs.csv", "jsonl": tmp_path / "pairs.jsonl",
           "save_to_disk": tmp_path / "saved"}[kind]
    if kind == "parquet":
        ds.to_parquet(str(src))
    elif kind == "csv":
        ds.to_csv(str(src), index=False)
    elif kind == "jsonl":
        ds.to_json(str(src))
    else:
        ds.save_to_disk(str(src))
    extra = tmp_path / "extra.jsonl"
    datasets.Dataset.from_dict({"text": corpus}).to_json(str(extra))
    out = tmp_path / "triplets.parquet"
    rc = main(["mine", "--dataset", str(src), "--corpus", str(extra), "--teacher", "pkg:all-MiniLM-L6-v2",
               "--max-query-length", "256", "--max-passage-length", "256", "--depth", str(RANGE_MAX + 2),
               "--window", str(RANGE_MAX), "--method", "naive", "--num-negatives", str(N),
               "--cache-dir", str(tmp_path / "cache"), "--format", "triplet", "--out", str(out)])
    assert rc == 0
    ours = datasets.load_dataset("parquet", data_files=str(out))["train"]
    model = SentenceTransformer(str(resolve_model("pkg:all-MiniLM-L6-v2")), device="cpu")
    model.max_seq_length = 256
    theirs = mine_hard_negatives(ds, model, corpus=corpus, range_max=RANGE_MAX, num_negatives=N, use_faiss=False,
                                 verbose=False, batch_size=8, output_format="triplet")
    assert ours.column_names == theirs.column_names == ["query", "answer", "negative"]
    assert ours.to_list() == theirs.to_list()


def test_dataset_input_errors_name_the_flag(tmp_path, capsys):
    import datasets

    datasets.Dataset.from_dict({"q": ["a"], "p": ["b"]}).to_parquet(str(tmp_path / "p.parquet"))
    (tmp_path / "odd.xyz").write_text("x")
    for args, fragment in (
        (["--dataset", str(tmp_path / "p.parquet"), "--anchor-column", "query"], "--anchor-column 'query' is not a column"),
        (["--dataset", str(tmp_path / "odd.xyz")], "unknown format"),
        (["--dataset", str(tmp_path)], "not one written by datasets' save_to_disk"),
        (["--dataset", str(tmp_path / "p.parquet"), "--beir", str(TINY)], "give exactly one of --beir"),
    ):
        rc = main(["mine", *args, "--teacher", "bm25", "--depth", "1", "--num-negatives", "1",
                   "--out", str(tmp_path / "o.jsonl")])
        err = capsys.readouterr().err
        assert rc == 2 and fragment in err, (args, err)


def test_torchrun_mine_equals_one_process(tmp_path):
    """`torchrun --nproc_per_node 2 -m nvr mine` shards the encode over two processes (gloo on CPU)
    and mines the same negatives as one process (scores equal to float32 rounding)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    common = ["mine", "--beir", str(TINY), "--split", "test", "--teacher", "pkg:all-MiniLM-L6-v2", "--depth", "5",
              "--method", "percpos095", "--num-negatives", "2", "--batch-size", "2"]
    one = subprocess.run([sys.executable, "-m", "nvr", *common, "--out", str(tmp_path / "one.jsonl"),
                          "--cache-dir", str(tmp_path / "c1")], env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29517", "-m", "nvr", *common, "--out", str(tmp_path / "two.jsonl"),
                          "--cache-dir", str(tmp_path / "c2")], env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    import numpy as np

    rows1 = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    rows2 = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    # the same negatives and ranks; scores agree to float32 rounding (shards batch the texts differently)
    key = lambda r: (r["query_id"], r["positive_ids"], r["negative_ids"], r["negative_ranks"])  # noqa: E731
    assert [key(r) for r in rows2] == [key(r) for r in rows1] and len(rows1) > 3
    for a, b in zip(rows1, rows2):
        assert a["negative_scores"] == pytest.approx(b["negative_scores"], abs=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "c1" / "corpus.npy"), np.load(tmp_path / "c2" / "corpus.npy"),
                               atol=1e-6)


def test_defences_on_the_cli_count_what_they_remove(tmp_path):
    """--max-positive-overlap and --relabel-above with --hidden: the stats say what each removed."""
    hidden = tmp_path / "hidden.jsonl"
    hidden.write_text(json.dumps({"query_id": "q6", "positive_ids": ["d1", "d2"]}) + "\n")
    base = ["mine", "--beir", str(TINY), "--split", "train", "--teacher", "bm25", "--depth", "5",
            "--method", "naive", "--num-negatives", "2", "--hidden", str(hidden)]
    out = tmp_path / "nd.jsonl"
    assert main(base + ["--max-positive-overlap", "0.05", "--out", str(out)]) == 0
    st = json.loads(out.with_name(out.name + ".stats.json").read_text())
    (row,) = st["near_duplicate_defences"]
    assert row["defence"] == "shingle overlap" and row["threshold"] == 0.05
    assert row["removed"] == row["fn_removed"] + row["tn_lost"]
    out2 = tmp_path / "rel.jsonl"
    assert main(base + ["--relabel-above", "0.0", "--out", str(out2)]) == 0
    st2 = json.loads(out2.with_name(out2.name + ".stats.json").read_text())
    rows = [json.loads(x) for x in out2.read_text().splitlines()]
    assert st2["relabeled_positives"] == sum(len(r["relabeled_positive_ids"]) for r in rows) > 0
    assert all(not set(r["relabeled_positive_ids"]) & set(r["negative_ids"]) for r in rows)
    assert "relabel_precision" in st2


def test_dataset_with_a_beir_corpus_keeps_its_ids_and_positives(tmp_path):
    """A BEIR corpus beside --dataset: a positive whose text is a corpus document is that document
    (its BEIR id), other positives get ids no corpus document has; nothing is overwritten."""
    import datasets

    from nvr.data.beir import doc_text, read_corpus
    from nvr.data.tables import pairs_from_table

    corpus = read_corpus(TINY / "corpus.jsonl")
    texts = {d: doc_text(c) for d, c in corpus.items()}
    ds = datasets.Dataset.from_dict({"q": ["capital of Germany", "a new one"], "p": [texts["d2"], "d1 is not an id"]})
    docs, pairs = pairs_from_table(ds, corpus=corpus)
    assert pairs[0].positive_ids == ["d2"] and docs["d2"] == corpus["d2"]
    new = pairs[1].positive_ids[0]
    assert new not in corpus and docs[new]["text"] == "d1 is not an id"
    assert all(docs[d] == corpus[d] for d in corpus)          # every BEIR document intact
    assert len(docs) == len(corpus) + 1


def test_dataset_bytes_that_are_not_utf8_name_the_line(tmp_path, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_bytes(b'{"q": "a", "p": "b"}\n{"q": "caf\xe9", "p": "c"}\n')
    rc = main(["mine", "--dataset", str(bad), "--teacher", "bm25", "--depth", "1", "--num-negatives", "1",
               "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{bad}:2: not valid UTF-8" in err and "Traceback" not in err


def _ensemble_rows():
    """An intra-sample row (negatives of two teachers) and a cross-sample row (one teacher's)."""
    base = {"query": "capital of France", "positive_ids": ["d1"], "negative_ranks": [1, 1]}
    mixed = {**base, "query_id": "q1", "positive_scores": [0.9], "positive_teacher": "dense",
             "negative_ids": ["d2", "d5"], "negative_scores": [0.7, 12.0], "negative_teachers": ["dense", "bm25"],
             "negative_anchor_scores": [0.9, 15.0]}
    single = {**base, "query_id": "q2", "positive_scores": [15.0], "positive_teacher": "bm25",
              "negative_ids": ["d2", "d5"], "negative_scores": [12.0, 11.0], "negative_teachers": ["bm25", "bm25"],
              "negative_anchor_scores": [15.0, 15.0]}
    return mixed, single


@pytest.mark.parametrize("fmt", ["flagembedding", "triplet", "n-tuple", "labeled-pair", "labeled-list"])
def test_scores_of_a_mixed_teacher_ensemble_row_are_refused(inputs, fmt):
    """One row's scores feed one distillation target (FlagEmbedding's pos/neg scores, the ST formats'
    ``scores``): they must be one teacher's. A row whose negatives come from several teachers is
    refused with scores (the error names the option), exported without them; a row of one teacher
    (cross-sample) keeps its own teacher's positive and negative scores."""
    from nvr.errors import ConfigError
    from nvr.mining.formats import convert

    _, corpus = inputs
    mixed, single = _ensemble_rows()
    with pytest.raises(ConfigError, match="output_scores") as exc:
        convert([single, mixed], fmt, corpus.__getitem__, output_scores=True, num_negatives=2)
    assert "q1" in str(exc.value) and "bm25" in str(exc.value) and "dense" in str(exc.value)
    assert convert([single, mixed], fmt, corpus.__getitem__, num_negatives=2)      # without scores: fine
    out = convert([single], fmt, corpus.__getitem__, output_scores=True, num_negatives=2)
    flat = json.dumps(out)
    assert "15.0" in flat and "0.9" not in flat
    # a row whose negatives are one teacher's but whose positive scores are another's is refused too
    wrong = {**single, "positive_teacher": "dense", "positive_scores": [0.9]}
    with pytest.raises(ConfigError, match="output_scores"):
        convert([wrong], fmt, corpus.__getitem__, output_scores=True, num_negatives=2)
