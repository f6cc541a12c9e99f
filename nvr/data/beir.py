"""BEIR folders: loading with full validation, saving, the document text every model reads.

File formats (see docs/ARCHITECTURE.md):

* ``corpus.jsonl``: ``{"_id", "title", "text"}`` (+ optional ``metadata``), one per line;
  the file order is the corpus order every array in nvr indexes into.
* ``queries.jsonl``: ``{"_id", "text"}`` (+ optional ``metadata``, ignored).
* ``qrels/<split>.tsv``: header ``query-id<TAB>corpus-id<TAB>score``, integer scores.
  CRLF line endings are accepted (the official BEIR SciFact qrels use them).

Every problem in a file raises :class:`~nvr.errors.DataError` whose message starts with
``path:line:`` (or ``path:`` for a missing file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import atomic_dir, atomic_write, iter_jsonl, iter_lines, write_jsonl
from ..runtime import log

PathLike = str | os.PathLike

QRELS_HEADER = ("query-id", "corpus-id", "score")


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


def _records(path: Path, kind: str):
    """``(where, id, text, obj)`` for each record of a corpus or queries file; a repeated id is an
    error naming both lines."""
    first_line: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        rid, text = _id_and_text(obj, where)
        if rid in first_line:
            raise DataError(f"{where}: duplicate {kind} id '{rid}' (first at line {first_line[rid]})")
        first_line[rid] = lineno
        yield where, rid, text, obj


def _load_corpus(path: Path) -> dict[str, dict]:
    corpus: dict[str, dict] = {}
    for where, doc_id, text, obj in _records(path, "document"):
        title = obj.get("title", "")
        if not isinstance(title, str):
            raise DataError(f"{where}: field 'title' must be a string, got {type(title).__name__}")
        if not title.strip() and not text.strip():
            raise DataError(f"{where}: document '{doc_id}' has an empty title and an empty text")
        doc: dict[str, Any] = {"title": title, "text": text}
        if "metadata" in obj:
            if not isinstance(obj["metadata"], dict):
                raise DataError(f"{where}: field 'metadata' must be an object")
            doc["metadata"] = obj["metadata"]
        corpus[doc_id] = doc
    if not corpus:
        raise DataError(f"{path}: empty corpus")
    return corpus


def _load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for where, qid, text, _ in _records(path, "query"):
        if not text.strip():
            raise DataError(f"{where}: query '{qid}' has an empty text")
        queries[qid] = text
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
    for lineno, raw in iter_lines(path):
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


def read_corpus(path: PathLike) -> dict[str, dict]:
    """Read and validate a ``corpus.jsonl`` on its own (doc id -> {title, text[, metadata]})."""
    return _load_corpus(Path(path))


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
        write_qrels(folder / "qrels" / f"{split}.tsv", qrels)


def write_qrels(path: PathLike, qrels: dict[str, dict[str, int]]) -> None:
    """Write one qrels split (header, then ``query-id  corpus-id  score`` rows), atomically."""
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
