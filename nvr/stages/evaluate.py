"""Stages ``evaluate*``: score one model of the study with MTEB on the held-out split."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import ModelSpec, Study
from ..errors import ConfigError, DataError
from ..io import publish, stage_json
from ..provenance import code_state
from ..paths import Layout
from ..runtime import log, setup_logging
from ..text.encoder import EncoderConfig


def model_folders(study: Study, spec: ModelSpec, lay: Layout) -> dict:
    """``{seed: model reference}`` of a model (one entry, seed None, for untrained models)."""
    if spec.kind == "base":
        return {None: study.student.model}
    if spec.kind == "teacher":
        tc = study.teacher_config(spec.teacher)
        if tc.kind != "dense":
            raise ConfigError(f"teacher: '{spec.teacher}' is not a dense model and cannot be evaluated")
        return {None: tc.model}
    refs = lay.seed_models(spec.name, spec.seeds) if spec.kind == "method" else {None: lay.model(spec.name)}
    for path in refs.values():
        if not (Path(path) / "config.json").is_file():
            raise DataError(f"{path}: no fine-tuned model; run the train stage for '{spec.name}' first")
    return {s: str(p) for s, p in refs.items()}


def encoder_config(study: Study, spec: ModelSpec, ref: str) -> EncoderConfig:
    """How model ``spec`` is encoded when scored: a teacher as it mines (its own prefixes and
    lengths), every student with the student's pooling, prefixes and instruction mask and the
    ``evaluate`` lengths."""
    ev = study.evaluate
    if spec.kind == "teacher":
        tc = study.teacher_config(spec.teacher)
        from dataclasses import replace

        return replace(tc.encoder(), batch_size=ev.batch_size)
    from dataclasses import replace

    return replace(study.student.encoder(ref, max_query_length=ev.max_query_length,
                                         max_passage_length=ev.max_passage_length, batch_size=ev.batch_size),
                   backend=ev.backend)


def evaluate_model(study: Study, name: str, root=None) -> dict:
    """Score model ``name`` (see :meth:`nvr.config.Study.models`) with MTEB on ``evaluate.split``;
    write ``metrics/<name>.json``: NDCG@10, Recall@100, MRR@10 (mean and sd over training seeds),
    the topic accuracy for the models of the two-stage comparison, hub tasks when configured;
    and ``metrics/per_query/<name>.json``: every test query's NDCG@10 for each training seed."""
    from ..evaluation import MtebEncoder, evaluate_hub_tasks, evaluate_retrieval
    from ..text.encoder import Encoder

    setup_logging()
    lay = Layout.at(root)
    spec = study.model(name)
    ev = study.evaluate
    t0 = time.time()
    runs, first = {}, None
    for seed, ref in model_folders(study, spec, lay).items():
        enc = Encoder(encoder_config(study, spec, ref))
        model = MtebEncoder(enc, name=f"nvr/{name}")
        runs[seed] = evaluate_retrieval(model, lay.data, ev.split, batch_size=ev.batch_size)
        if first is None:
            first = model
        else:
            del enc, model
    metrics = {"model": name, "split": ev.split, "parameters": first.mteb_model_meta.n_parameters}
    for k in ("ndcg_at_10", "recall_at_100", "mrr_at_10"):
        vals = np.array([r[k] for r in runs.values()], dtype=np.float64)
        metrics[k] = round(float(vals.mean()), 6)
        if len(vals) > 1:
            metrics[f"{k}_std"] = round(float(vals.std(ddof=1)), 6)
    if len(runs) > 1:
        metrics["seeds"] = {str(s): round(float(r["ndcg_at_10"]), 6) for s, r in runs.items()}
    if spec.topics and lay.topics.is_file():
        metrics["topic_accuracy"] = evaluate_topics(study, first.encoder, lay)["accuracy"]
    if ev.hub_tasks:  # standard MTEB retrieval tasks by name (needs a network), first seed's model
        hub = evaluate_hub_tasks(first, ev.hub_tasks, batch_size=ev.batch_size)
        metrics["hub_ndcg_at_10"] = hub["ndcg_at_10"]
        metrics["hub_average_ndcg_at_10"] = hub["average"]
    metrics["seconds"] = round(time.time() - t0, 2)
    metrics["code_revision"] = "".join(code_state())   # what computed these numbers (the report names it)
    per_query = {"model": name, "split": ev.split, "metric": "ndcg_at_10",
                 "seeds": {str(s if s is not None else study.seed): {q: round(v, 6) for q, v in
                                                                      r["per_query_ndcg_at_10"].items()}
                           for s, r in runs.items()}}
    # published together: a kill leaves both old or both new, never new metrics beside old per-query scores
    publish([(stage_json(lay.metrics(name), metrics), lay.metrics(name)),
             (stage_json(lay.per_query(name), per_query), lay.per_query(name))])
    log.info("evaluate[%s]: NDCG@10 %.4f", name, metrics["ndcg_at_10"])
    return metrics


def evaluate_topics(study: Study, encoder, lay: Layout) -> dict:
    """The stage-2 task's score: topic classification accuracy (MTEB's logistic regression on embeddings)."""
    from ..data.wiki import topic_split
    from ..evaluation import evaluate_classification

    tr_x, tr_y = topic_split(lay.data, split="train", seed=study.seed)
    te_x, te_y = topic_split(lay.data, split="test", seed=study.seed)
    return evaluate_classification(encoder, tr_x, tr_y, te_x, te_y, batch_size=study.evaluate.batch_size)
