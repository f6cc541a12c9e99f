"""Scores with MTEB: retrieval on a local split (NDCG@10, Recall@100, MRR@10), hub tasks, classification."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import mteb
import numpy as np

from ..errors import DataError
from ..runtime import log
from .adapter import MtebEncoder, as_mteb_model
from .tasks import _LocalClassification, make_local_task, resolve_hub_tasks

def _run_mteb(model, tasks, *, batch_size: int, cache_dir):
    cache = None
    if cache_dir is not None:
        if isinstance(model, MtebEncoder) or getattr(model.mteb_model_meta, "revision", None) not in (
            None, "no_revision_available"):
            cache = mteb.ResultCache(cache_path=Path(cache_dir))
        else:
            log.warning("model has no unique revision: running without MTEB's result cache")
    return mteb.evaluate(
        model, tasks, cache=cache,
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
        show_progress_bar=False, overwrite_strategy="only-missing",
    )


def _split_scores(task_result, split: str) -> dict:
    rows = task_result.scores.get(split)
    if not rows:
        raise DataError(f"MTEB returned no scores for split '{split}' of {task_result.task_name}")
    return dict(rows[0])


def evaluate_retrieval(
    model_ref,
    beir_dir: str | os.PathLike,
    split: str = "test",
    *,
    pooling: str = "mean",
    query_prefix: str = "",
    passage_prefix: str = "",
    max_query_length: int = 64,
    max_passage_length: int = 256,
    batch_size: int = 64,
    model_id: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    task_name: str | None = None,
) -> dict:
    """NDCG@10 (main), Recall@100, MRR@10, MAP@10 of a model on a local BEIR split, via MTEB,
    and ``per_query_ndcg_at_10`` (``{query id: NDCG@10}``, pytrec_eval's per-query values that
    MTEB averages; absent when MTEB's result cache answered).

    ``model_ref``: a model reference (``pkg:``/folder/hub id), an :class:`Encoder`/:class:`MtebEncoder`, or an
    object with ``encode(texts, kind=...)`` (then ``model_id`` is required). Writes nothing
    unless ``cache_dir`` is given (MTEB's result cache, keyed by content hashes of model and data).
    """
    model = as_mteb_model(model_ref, model_id, pooling=pooling, query_prefix=query_prefix,
                           passage_prefix=passage_prefix, max_query_length=max_query_length,
                           max_passage_length=max_passage_length, batch_size=batch_size, device=device)
    task = make_local_task(beir_dir, split, task_name, with_fingerprint=cache_dir is not None)
    t0 = time.perf_counter()
    res = _run_mteb(model, [task], batch_size=batch_size, cache_dir=cache_dir)
    scores = _split_scores(res.task_results[0], split)
    meta = model.mteb_model_meta
    out = {
        "ndcg_at_10": float(scores["ndcg_at_10"]),
        "recall_at_100": float(scores["recall_at_100"]),
        "mrr_at_10": float(scores["mrr_at_10"]),
        "map_at_10": float(scores["map_at_10"]),
        "main_score": float(scores["main_score"]),
        "split": split,
        "task": task.metadata.name,
        "beir_dir": str(beir_dir),
        "model": {"name": meta.name, "revision": meta.revision, "ref": str(getattr(model, "model_ref", model_id))},
        "settings": model.settings() if hasattr(model, "settings") else {},
        "mteb_version": mteb.__version__,
        "seconds": round(time.perf_counter() - t0, 2),
        "mteb_scores": scores,
    }
    if getattr(task, "n_queries", None) is not None:
        out["n_queries"], out["n_docs"] = task.n_queries, task.n_docs
    if getattr(task, "per_query", None):  # empty when MTEB's result cache answered
        out["per_query_ndcg_at_10"] = {q: v["ndcg_at_10"] for q, v in sorted(task.per_query.items())}
    log.info("eval %s on %s (split %s): NDCG@10 %.4f, R@100 %.4f, MRR@10 %.4f",
             meta.name, beir_dir, split, out["ndcg_at_10"], out["recall_at_100"], out["mrr_at_10"])
    return out


def evaluate_hub_tasks(
    model_ref,
    task_names: Sequence[str] = ("NQ", "HotpotQA", "FiQA2018"),
    *,
    pooling: str = "mean",
    query_prefix: str = "",
    passage_prefix: str = "",
    max_query_length: int = 64,
    max_passage_length: int = 512,
    batch_size: int = 64,
    model_id: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
) -> dict:
    """Score a model on MTEB hub tasks (downloads the data; needs a network).

    Returns ``{"order": [...], "ndcg_at_10": {task: score}, "average": mean, "mteb_scores": {...}}``
    with tasks in the order given (use ``BEIR_15_TASKS`` for the paper's table)."""
    tasks = resolve_hub_tasks(task_names)
    model = as_mteb_model(model_ref, model_id, pooling=pooling, query_prefix=query_prefix,
                           passage_prefix=passage_prefix, max_query_length=max_query_length,
                           max_passage_length=max_passage_length, batch_size=batch_size, device=device)
    res = _run_mteb(model, tasks, batch_size=batch_size, cache_dir=cache_dir)
    by_name = {r.task_name: r for r in res.task_results}
    table, raw = {}, {}
    for t in tasks:
        r = by_name.get(t.metadata.name)
        if r is None:
            continue
        split = t.metadata.eval_splits[0]
        sc = _split_scores(r, split)
        table[t.metadata.name] = float(sc["main_score"])
        raw[t.metadata.name] = sc
    order = [t.metadata.name for t in tasks]
    return {
        "order": order,
        "ndcg_at_10": table,
        "average": float(np.mean(list(table.values()))) if table else None,
        "model": {"name": model.mteb_model_meta.name, "revision": model.mteb_model_meta.revision},
        "mteb_scores": raw,
    }


def evaluate_classification(
    model_ref,
    texts_train: Sequence[str],
    labels_train: Sequence,
    texts_test: Sequence[str],
    labels_test: Sequence,
    *,
    pooling: str = "mean",
    prefix: str = "",
    max_length: int = 256,
    batch_size: int = 64,
    samples_per_label: int | None = None,
    n_experiments: int = 1,
    seed: int = 42,
    model_id: str | None = None,
    device: str = "auto",
) -> dict:
    """MTEB's own classification protocol on embeddings: ``AbsTaskClassification`` with its
    ``LogisticRegression(max_iter=100)`` fitted on (undersampled) training embeddings,
    averaged over ``n_experiments``. ``samples_per_label=None`` trains on every example
    (MTEB's default for many tasks is 8 per label, 10 experiments). Returns accuracy, macro F1,
    weighted F1 and MTEB's raw scores. Writes nothing."""
    from datasets import Dataset, DatasetDict

    if len(texts_train) != len(labels_train) or len(texts_test) != len(labels_test):
        raise DataError("texts and labels differ in length")
    if not texts_train or not texts_test:
        raise DataError("classification needs training and test examples")
    classes = sorted({str(x) for x in labels_train})
    unknown = {str(x) for x in labels_test} - set(classes)
    if unknown:
        raise DataError(f"test labels never seen in training: {sorted(unknown)[:5]}")
    if len(classes) < 2:
        raise DataError("classification needs at least two labels in training")
    index = {c: i for i, c in enumerate(classes)}
    y_train = [index[str(x)] for x in labels_train]
    y_test = [index[str(x)] for x in labels_test]
    if samples_per_label is None:
        samples_per_label = max(np.bincount(y_train))
    data = DatasetDict({
        "train": Dataset.from_dict({"text": list(texts_train), "label": y_train}),
        "test": Dataset.from_dict({"text": list(texts_test), "label": y_test}),
    })
    model = as_mteb_model(model_ref, model_id, pooling=pooling, passage_prefix=prefix,
                           max_passage_length=max_length, batch_size=batch_size, device=device)
    task = _LocalClassification(data, samples_per_label=int(samples_per_label),
                                n_experiments=n_experiments, seed=seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning

    with warnings.catch_warnings():  # MTEB's macro precision on small test sets; LR at max_iter=100
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = mteb.evaluate(model, [task], cache=None, show_progress_bar=False, overwrite_strategy="always",
                            encode_kwargs={"batch_size": batch_size, "show_progress_bar": False})
    sc = _split_scores(res.task_results[0], "test")
    return {
        "accuracy": float(sc["accuracy"]),
        "f1": float(sc["f1"]),
        "f1_weighted": float(sc["f1_weighted"]),
        "n_train": len(y_train),
        "n_test": len(y_test),
        "n_labels": len(classes),
        "labels": classes,
        "model": {"name": model.mteb_model_meta.name, "revision": model.mteb_model_meta.revision},
        "mteb_scores": {k: v for k, v in sc.items() if k != "scores_per_experiment"},
    }
