"""Mined negatives in the formats other trainers read.

``nvr`` rows (one per query: ``query``, ``positive_ids``, ``negative_ids`` with their scores; see
:mod:`nvr.mining.records`) become, with the corpus texts:

==================  ==========================================================================
``nvr``             nvr's JSON lines (ids, scores, ranks; the input of ``nvr`` training)
``triplet``         sentence-transformers: ``anchor, positive, negative`` (+ ``scores``
                    ``[pos, neg]``), one row per (query, positive, negative)
``n-tuple``         sentence-transformers: ``anchor, positive, negative_1 .. negative_n``
                    (+ ``scores`` ``[pos, neg_1, ..]``), rows with all n negatives only
``labeled-pair``    sentence-transformers: ``anchor, positive`` (a document) and ``label`` 1/0
                    (or ``score`` with scores)
``labeled-list``    sentence-transformers: ``anchor``, ``positive`` = [positive, negatives..] and
                    ``labels`` [1, 0, ..] (or ``scores``)
``flagembedding``   FlagEmbedding's training JSON lines: ``query``, ``pos``, ``neg`` (texts),
                    ``pos_scores`` / ``neg_scores`` for distillation with scores
``tevatron``        Tevatron's training JSON lines: ``query_id``, ``query``,
                    ``positive_passages`` / ``negative_passages`` = [{docid, title, text}]
==================  ==========================================================================

A relevance judge's relabeled positives (``relabel_above``) are positives in every format but
``nvr`` (which keeps them apart, as ``relabeled_positive_ids``).

Scores of a teacher ensemble (``nvr.stages.ensembles``): a distillation loss compares the scores
of one row (FlagEmbedding's ``pos_scores`` / ``neg_scores``, the ``scores`` of the
sentence-transformers formats), so they must all be one teacher's; a dense teacher's 0.8 and
BM25's 12 do not share a scale. A cross-sample row is one teacher's (its ``positive_scores``
are that teacher's, ``positive_teacher`` names it) and exports with scores. An intra-sample row
whose negatives come from several teachers (``negative_teachers``) has no single scale:
``output_scores`` refuses it with an error naming the row and its teachers; export it without
scores (texts only), or with scores from one teacher's own mined file. Rewriting each negative's
score against its own teacher's anchor is not offered: no trainer of these formats reads it.

The sentence-transformers formats follow ``sentence_transformers.util.mine_hard_negatives``
exactly (column names, one row per labeled positive, which rows n-tuple keeps) and are written
as parquet, which ``datasets.load_dataset("parquet", data_files=...)`` (and so
``SentenceTransformerTrainer``) takes as is.
"""

from __future__ import annotations

from typing import Callable, Iterable

ST_FORMATS = ("triplet", "n-tuple", "labeled-pair", "labeled-list")
JSONL_FORMATS = ("nvr", "flagembedding", "tevatron")
FORMATS = JSONL_FORMATS + ST_FORMATS


def _positive_ids(row: dict) -> list[str]:
    """The labeled positives, then the judge's relabeled ones (they train as positives)."""
    return list(row["positive_ids"]) + list(row.get("relabeled_positive_ids", []))


def _positive_scores(row: dict) -> list:
    return list(row["positive_scores"]) + list(row.get("relabeled_positive_scores", []))


def _pairs(row: dict, text: Callable[[str], str]):
    """(positive text, positive score) per positive of a row (labeled, then relabeled), in order."""
    for pid, ps in zip(_positive_ids(row), _positive_scores(row)):
        yield text(pid), ps


def _check_one_teacher(row: dict) -> None:
    """With scores, every score of an (ensemble) row must be one teacher's (see the module docstring)."""
    from ..errors import ConfigError

    negs = row.get("negative_teachers")
    if negs is None:
        return   # a single teacher's mined file
    pos = row.get("positive_teacher")
    used = sorted(set(negs) | ({pos} if pos is not None else set()))
    if pos is None or len(used) > 1:
        who = ", ".join(used) if pos is not None else f"{', '.join(sorted(set(negs)))} (positive scores: unknown teacher)"
        raise ConfigError(f"output_scores: query {row.get('query_id')!r} mixes the scores of teachers {who}; scores "
                          f"of different teachers are not on one scale and cannot share a row. Export this "
                          f"ensemble without output_scores (--output-scores), or with scores from one teacher's "
                          f"mined file")


def convert(rows: Iterable[dict], fmt: str, doc: Callable[[str], dict], *, output_scores: bool = False,
            num_negatives: int | None = None, anchor_column: str = "anchor",
            positive_column: str = "positive", text: Callable[[str], str] | None = None) -> list[dict]:
    """Rows of ``fmt`` from nvr rows; ``doc(id)`` returns ``{"title": .., "text": ..}``.

    num_negatives: the n of the ``n-tuple`` format (rows with fewer are left out, as
    sentence-transformers does); default: the longest negative list. text: a document's training
    text by id (default: title and text joined, as the encoders read it). output_scores with an
    ensemble row whose scores are not all one teacher's raises :class:`~nvr.errors.ConfigError`
    (module docstring).
    """
    from ..data.beir import doc_text

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    rows = list(rows)
    if fmt == "nvr":
        return rows
    if output_scores and fmt != "tevatron":
        for r in rows:
            _check_one_teacher(r)
    if text is None:
        text = lambda d: doc_text(doc(d))  # noqa: E731  (the string an encoder reads: title + text)
    out: list[dict] = []
    if fmt == "flagembedding":
        for r in rows:
            rec = {"query": r["query"], "pos": [text(d) for d in _positive_ids(r)],
                   "neg": [text(d) for d in r["negative_ids"]]}
            if output_scores:
                rec.update(pos_scores=_positive_scores(r), neg_scores=list(r["negative_scores"]))
            out.append(rec)
        return out
    if fmt == "tevatron":
        def passages(ids):
            return [{"docid": d, "title": doc(d).get("title") or "", "text": doc(d).get("text") or ""} for d in ids]

        return [{"query_id": r["query_id"], "query": r["query"], "positive_passages": passages(_positive_ids(r)),
                 "negative_passages": passages(r["negative_ids"])} for r in rows]
    n = num_negatives if num_negatives is not None else max([len(r["negative_ids"]) for r in rows] + [0])
    a, p = anchor_column, positive_column
    for r in rows:
        negs = [text(d) for d in r["negative_ids"]]
        nss = list(r["negative_scores"])
        if fmt == "labeled-pair":   # positives first, then the negatives, once per query
            for pt, ps in _pairs(r, text):
                out.append({a: r["query"], p: pt, **({"score": ps} if output_scores else {"label": 1})})
            for nt, ns in zip(negs, nss):
                out.append({a: r["query"], p: nt, **({"score": ns} if output_scores else {"label": 0})})
            continue
        for pt, ps in _pairs(r, text):
            if fmt == "triplet":
                for nt, ns in zip(negs, nss):
                    out.append({a: r["query"], p: pt, "negative": nt, **({"scores": [ps, ns]} if output_scores else {})})
            elif fmt == "n-tuple":
                if len(negs) < n or n == 0:
                    continue
                rec = {a: r["query"], p: pt, **{f"negative_{i}": t for i, t in enumerate(negs[:n], 1)}}
                if output_scores:
                    rec["scores"] = [ps, *nss[:n]]
                out.append(rec)
            else:  # labeled-list: rows with at least one negative
                if not negs:
                    continue
                rec = {a: r["query"], p: [pt, *negs]}
                rec.update({"scores": [ps, *nss]} if output_scores else {"labels": [1] + [0] * len(negs)})
                out.append(rec)
    return out


def stage_output(path, records: list[dict], fmt: str):
    """Write ``records`` of ``fmt`` under a temporary name beside ``path`` (for :func:`nvr.io.publish`):
    JSON lines for nvr / FlagEmbedding / Tevatron, parquet for the sentence-transformers formats.
    Returns the temporary path."""
    from ..io import stage_jsonl, staged_file

    if fmt in JSONL_FORMATS:
        return stage_jsonl(path, records)[0]
    import datasets

    ds = datasets.Dataset.from_list(records) if records else datasets.Dataset.from_dict({})
    with staged_file(path, "wb", encoding=None) as (fh, tmp):
        ds.to_parquet(fh)
    return tmp
