"""MTEB tasks: a local BEIR folder as a retrieval task (offline), hub tasks by name, in-memory classification.

:class:`LocalBEIRRetrieval` is an ``AbsTaskRetrieval`` whose ``load_data`` reads a BEIR folder
with :func:`nvr.data.beir.load_beir` and fills
``self.dataset = {"default": {split: {corpus, queries, relevant_docs, top_ranked}}}``
(``corpus``/``queries`` are ``datasets.Dataset`` with ``id``/``title``/``text`` and ``id``/``text``
columns, ``relevant_docs`` is ``{qid: {doc_id: score}}``, ``top_ranked`` is ``None`` for
full-corpus retrieval). MTEB joins title and text as ``"title text"`` (:func:`nvr.data.doc_text`
does the same), ranks with the model's similarity, scores with ``pytrec_eval`` and reports
``ndcg_at_10`` as the main score (checked against mteb 2.26).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Sequence

import mteb
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata

from ..data.beir import load_beir
from ..errors import ConfigError, DataError

# The 15 BEIR datasets of the NV-Retriever paper (Table 5), in the paper's order,
# mapped to MTEB task names.
BEIR_15: dict[str, str] = {
    "ArguAna": "ArguAna",
    "ClimateFEVER": "ClimateFEVER",
    "CQADupstack": "CQADupstackRetrieval",
    "DBPedia": "DBPedia",
    "FEVER": "FEVER",
    "FiQA": "FiQA2018",
    "HotpotQA": "HotpotQA",
    "MSMARCO": "MSMARCO",
    "NFCorpus": "NFCorpus",
    "NQ": "NQ",
    "Quora": "QuoraRetrieval",
    "SCIDOCS": "SCIDOCS",
    "SciFact": "SciFact",
    "Touche": "Touche2020",
    "TREC-COVID": "TRECCOVID",
}


BEIR_15_TASKS: list[str] = list(BEIR_15.values())


def beir_fingerprint(beir_dir: str | os.PathLike, split: str) -> str:
    """SHA-256 of the files a local task reads (corpus, queries, the split's qrels)."""
    beir_dir = Path(beir_dir)
    h = hashlib.sha256()
    for rel in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        p = beir_dir / rel
        if not p.is_file():
            raise DataError(f"{p}: file not found")
        h.update(rel.encode() + b"\x00")
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _local_task_metadata(beir_dir: Path, split: str, name: str | None, fingerprint: str | None,
                         eval_langs: list[str] | None) -> TaskMetadata:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", name or beir_dir.name) or "beir"
    return TaskMetadata(
        name=f"NvrLocal-{base}-{split}" + (f"-{fingerprint[:12]}" if fingerprint else ""),
        description=f"Local BEIR folder {beir_dir} (split {split}), evaluated by nvr.",
        reference=None,
        dataset={"path": str(beir_dir), "revision": fingerprint or "local-unhashed"},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=eval_langs or ["eng-Latn"],
        main_score="ndcg_at_10",
        sample_creation="found",
        bibtex_citation="",
    )


class LocalBEIRRetrieval(AbsTaskRetrieval):
    """An MTEB retrieval task over one split of a local BEIR folder.

    Build it with :func:`make_local_task`: MTEB expects ``metadata`` on the task *class*
    (``unload_data`` drops instance metadata), so the factory makes one subclass per task.
    """

    metadata: TaskMetadata  # set on the subclass by make_local_task

    def __init__(self, beir_dir: str | os.PathLike, split: str = "test", *, strict: bool = True,
                 seed: int = 42) -> None:
        if "metadata" not in type(self).__dict__:
            raise TypeError("create local tasks with nvr.evaluate.make_local_task(beir_dir, split)")
        self.beir_dir = Path(beir_dir)
        self.split = split
        self.strict = strict
        self.n_docs = self.n_queries = None
        self.per_query: dict[str, dict[str, float]] = {}
        super().__init__(seed=seed)

    def task_specific_scores(self, scores, qrels, results, hf_split, hf_subset) -> dict[str, float]:
        """MTEB's hook after scoring: keep pytrec_eval's per-query scores (NDCG@10, Recall@100),
        which MTEB averages into the task's scores and then discards."""
        self.per_query = {qid: {"ndcg_at_10": float(s.get("ndcg_cut_10", 0.0)),
                                "recall_at_100": float(s.get("recall_100", 0.0))} for qid, s in scores.items()}
        return {}

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        from datasets import Dataset

        if self.data_loaded:
            return
        ds = load_beir(self.beir_dir, splits=[self.split], strict=self.strict)
        qrels = ds.qrels[self.split]
        corpus = Dataset.from_dict({
            "id": list(ds.corpus),
            "title": [d.get("title", "") for d in ds.corpus.values()],
            "text": [d.get("text", "") for d in ds.corpus.values()],
        })
        qids = [q for q in ds.queries if q in qrels]
        queries = Dataset.from_dict({"id": qids, "text": [ds.queries[q] for q in qids]})
        self.dataset = {"default": {self.split: {
            "corpus": corpus, "queries": queries,
            "relevant_docs": {q: dict(d) for q, d in qrels.items()}, "top_ranked": None,
        }}}
        self.n_docs, self.n_queries = len(corpus), len(qids)
        self.data_loaded = True


def make_local_task(beir_dir: str | os.PathLike, split: str = "test", name: str | None = None, *,
                    with_fingerprint: bool = False, eval_langs: list[str] | None = None,
                    strict: bool = True, seed: int = 42) -> LocalBEIRRetrieval:
    """An MTEB retrieval task reading ``beir_dir`` (validated by :func:`nvr.data.load_beir`).

    The task is named ``NvrLocal-<name or folder>-<split>``; ``with_fingerprint`` appends a
    hash of the files read (needed when results are cached, so edited data never reuses
    old scores)."""
    beir_dir = Path(beir_dir)
    if not (beir_dir / "corpus.jsonl").is_file():
        raise DataError(f"{beir_dir / 'corpus.jsonl'}: file not found")
    if not (beir_dir / "qrels" / f"{split}.tsv").is_file():
        raise DataError(f"{beir_dir / 'qrels' / f'{split}.tsv'}: file not found")
    fp = beir_fingerprint(beir_dir, split) if with_fingerprint else None
    md = _local_task_metadata(beir_dir, split, name, fp, eval_langs)
    cls = type("LocalBEIRRetrieval_" + re.sub(r"\W", "_", md.name), (LocalBEIRRetrieval,), {"metadata": md})
    return cls(beir_dir, split, strict=strict, seed=seed)


def resolve_hub_tasks(task_names: Sequence[str]) -> list:
    """MTEB task objects for paper names (``FiQA``) or MTEB names (``FiQA2018``), in the given
    order. Metadata only: nothing is downloaded until a task is evaluated."""
    names = [BEIR_15.get(n, n) for n in task_names]
    try:
        found = {t.metadata.name: t for t in mteb.get_tasks(tasks=names)}
    except KeyError as exc:
        raise ConfigError(f"unknown MTEB task in {list(task_names)}: {exc}; BEIR names: {sorted(BEIR_15)}") from None
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError(f"unknown MTEB task(s) {missing}; BEIR names: {sorted(BEIR_15)}")
    return [found[n] for n in names]


class _LocalClassification(AbsTaskClassification):
    metadata = TaskMetadata(
        name="NvrLocalClassification", description="In-memory classification task evaluated by nvr.",
        reference=None, dataset={"path": "in-memory", "revision": "none"},
        type="Classification", category="t2c", modalities=["text"], eval_splits=["test"],
        eval_langs=["eng-Latn"], main_score="accuracy", sample_creation="found", bibtex_citation="",
    )

    def __init__(self, data, *, samples_per_label: int, n_experiments: int, seed: int) -> None:
        self.samples_per_label = samples_per_label
        self.n_experiments = n_experiments
        self._data = data
        super().__init__(seed=seed)

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = self._data
        self.data_loaded = True
