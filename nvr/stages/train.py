"""Stages ``train@<method>``, ``train_teacher@<teacher>`` and ``train_stage2``: fine-tune the student."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import ModelSpec, Study
from ..errors import ConfigError, DataError
from ..io import write_json
from ..paths import Layout
from ..runtime import log, setup_logging


def retrieval_examples(lay: Layout, mined_path: Path, num_negatives: int):
    """TrainExamples (query, first positive, the first ``num_negatives`` mined negatives), with
    corpus ids so the loss never uses a labeled positive of a query as its negative."""
    from ..data.beir import load_beir
    from ..mining import read_mined
    from ..training.examples import TrainExample

    ds = load_beir(lay.data)
    text = dict(zip(ds.doc_ids(), ds.doc_texts()))
    examples = []
    for row in read_mined(mined_path):
        missing = [d for d in row["positive_ids"][:1] + row["negative_ids"][:num_negatives] if d not in text]
        if missing:
            raise DataError(f"{mined_path}: query {row['query_id']!r} names doc id {missing[0]!r}, "
                            f"which is not in {lay.data / 'corpus.jsonl'}")
        neg_ids = row["negative_ids"][:num_negatives]
        examples.append(TrainExample(query=row["query"], positive=text[row["positive_ids"][0]],
                                     negatives=[text[n] for n in neg_ids], positive_id=row["positive_ids"][0],
                                     negative_ids=list(neg_ids),
                                     # a judge's relabeled positives are masked like the labeled ones
                                     positive_ids=tuple(row["positive_ids"]) + tuple(row.get("relabeled_positive_ids", ()))))
    return examples


def topic_examples(lay: Layout, num_negatives: int, seed: int, split: str = "train"):
    """Stage-2 classification examples from the articles' topics (NV-Embed style)."""
    from ..data.wiki import topic_split
    from ..training.examples import classification_examples

    texts, labels = topic_split(lay.data, split=split, seed=seed)
    names = sorted(set(labels))
    return classification_examples(texts, labels, {n: n for n in names}, num_negatives=num_negatives, seed=seed)


def _train(study: Study, spec: ModelSpec, lay: Layout, out: Path, seed: int, device: str) -> dict:
    from ..training.examples import blend
    from ..training.loop import train_stage

    setup_logging()
    stage = "stage2" if spec.kind == "stage2" else "stage1"
    cfg = dataclasses.replace(study.stage_config(stage), seed=seed)
    mined = lay.teacher_mined(spec.teacher) if spec.kind == "teacher_student" else lay.mined(spec.method)
    examples = retrieval_examples(lay, mined, cfg.num_negatives)
    init = study.student.model
    if stage == "stage2":
        init = str(lay.model(spec.method))
        if not (Path(init) / "config.json").is_file():
            raise DataError(f"{init}: no stage-1 model; run train@{spec.method} first")
        if lay.topics.is_file():
            cls = topic_examples(lay, cfg.num_negatives, study.seed)
            examples = blend(examples, cls, study.train.stage2_retrieval_fraction, study.seed)
            log.info("stage2: %d retrieval + %d classification examples", len(examples) - len(cls), len(cls))
        else:  # BEIR data has no classification task
            log.info("stage2: no data/topics.jsonl: stage 2 trains on retrieval pairs only (hard negatives, "
                     "no in-batch negatives)")
    return train_stage(init, examples, cfg, out, study.student, device=device)


def finetune(study: Study, name: str, root=None, *, device: str = "auto") -> dict:
    """Train model ``name`` of the study (see :meth:`nvr.config.Study.models`): a method's
    student (stage 1, once per training seed), a teacher-ablation student, or the stage-2 model.
    Writes ``models/<name>`` and the loss curve ``reports/04_finetune/<curve>.loss.json``."""
    lay = Layout.at(root)
    spec = study.model(name)
    if spec.kind not in ("method", "teacher_student", "stage2"):
        raise ConfigError(f"model '{name}' is a {spec.kind} model: nothing to train")
    if spec.kind == "method":
        summaries = {seed: _train(study, spec, lay, out, seed, device)
                     for seed, out in lay.seed_models(spec.name, spec.seeds).items()}
        first = next(iter(summaries.values()))
        summary = {**first, "seeds": list(summaries),
                   "final_loss_by_seed": {str(k): v.get("final_loss") for k, v in summaries.items()}}
    else:
        summary = _train(study, spec, lay, lay.model(name), spec.seeds[0], device)
    write_loss_curve(summary, curve_name(spec), lay.root)
    return summary


def curve_name(spec: ModelSpec) -> str:
    """The loss curve's file stem: the model name, ``stage2`` for the stage-2 model."""
    return "stage2" if spec.kind == "stage2" else spec.name


def write_loss_curve(summary: dict, name: str, root=None) -> list[dict]:
    """Write the training curve as a DVC plot file ``reports/04_finetune/<name>.loss.json``."""
    rows = [{"step": int(r["step"]), "loss": float(r["loss"]), "lr": float(r["lr"])} for r in summary["log"]]
    write_json(Layout.at(root).loss_curve(name), rows)
    return rows
