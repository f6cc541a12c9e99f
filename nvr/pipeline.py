"""The study's stages as functions: what each DVC stage (and its notebook) runs.

Notebooks call these and show the results; tests call them directly. Each function
reads the artifacts of the stages before it and writes its own through atomic writes,
so a stage killed half-way leaves nothing under its final names.

Layout (relative to the project root, all DVC outputs)::

    data/                       BEIR folder + train_pairs.jsonl + hidden_positives.jsonl + topics.jsonl
    artifacts/teachers/<t>/     candidates.npz, corpus.npy / queries.npy (+ manifests), stats.json
    artifacts/mined/<m>.jsonl   mined negatives (+ <m>.stats.json, <m>.scores.npz)
    models/<m>/                 fine-tuned student (HF folder) ; models/<m>-stage2/ after stage 2
    metrics/<model>.json        NDCG@10, Recall@100, MRR@10 (DVC metrics)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .config import Study, TeacherConfig
from .errors import ConfigError, DataError
from .io import atomic_write, read_json, save_npy, write_json, write_jsonl
from .runtime import log, seed_everything, setup_logging

DATA = Path("data")
ARTIFACTS = Path("artifacts")
MODELS = Path("models")
METRICS = Path("metrics")
CACHE = Path("cache")


def _root(root) -> Path:
    return Path(root) if root is not None else Path.cwd()


# --------------------------------------------------------------------------- prepare
def prepare_data(study: Study, root=None) -> dict:
    """Build ``data/``: the BEIR folder, training pairs and hidden labels."""
    from . import data as D

    setup_logging()
    root = _root(root)
    out = root / DATA
    cfg = study.dataset
    t0 = time.time()
    if cfg.source == "wiki":
        summary = D.build_wiki_dataset(
            out, max_docs=cfg.max_docs, n_test=cfg.n_test, n_dev=cfg.n_dev, seed=study.seed, fn_rich=cfg.fn_rich
        )
    else:
        if cfg.source == "beir_local":
            src = Path(cfg.path).expanduser()
            if not src.is_dir():
                raise ConfigError(f"dataset.path: BEIR folder {src} does not exist")
        else:
            src = D.load_beir_hub(cfg.path, root / CACHE / "beir" / cfg.path)
        summary = D.prepare_beir_study(
            src, out, train_split=cfg.train_split, test_split=cfg.test_split,
            max_train_queries=cfg.max_train_queries, max_test_queries=cfg.max_test_queries,
            max_docs=cfg.max_docs, seed=study.seed,
        )
    summary["seconds"] = round(time.time() - t0, 2)
    log.info("prepare: %s", {k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
    return summary


# --------------------------------------------------------------------------- teachers
def _load_study_data(root: Path):
    from . import data as D

    ds = D.load_beir(root / DATA)
    pairs = D.read_train_pairs(root / DATA / "train_pairs.jsonl", corpus_ids=ds.corpus)
    return ds, pairs


def _pad(rows: list[list[int]], fill=-1, dtype=np.int64) -> np.ndarray:
    width = max([len(r) for r in rows] + [1])
    out = np.full((len(rows), width), fill, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def encoder_config(tc: TeacherConfig, device: str = "auto"):
    from .encode import EncoderConfig

    return EncoderConfig(
        model=tc.model, revision=tc.revision, pooling=tc.pooling, query_prefix=tc.query_prefix,
        passage_prefix=tc.passage_prefix, max_query_length=tc.max_query_length,
        max_passage_length=tc.max_passage_length, normalize=tc.normalize, batch_size=tc.batch_size,
        device=device, trust_remote_code=tc.trust_remote_code,
    )


def rank_candidates(tc: TeacherConfig, q_ids: list[str], q_texts: list[str], doc_texts: list[str],
                    pos: np.ndarray, *, seed: int, cache_dir: Path | None = None, link_dir: Path | None = None,
                    name: str = "teacher", depth_key: str | None = None, device: str = "auto",
                    rescore_key: str | None = None) -> dict:
    """Rank ``tc.depth`` candidates per query with one teacher (dense, BM25 or random).

    Returns the arrays of ``candidates.npz``: ``query_ids``, ``cand_ids`` / ``cand_scores``
    (Q, depth), ``pos_ids`` / ``pos_scores`` (Q, P) and ``exclude_ids`` (exact-text
    duplicates of a positive or of the query). Dense embeddings are cached under
    ``cache_dir`` (keyed by model, revision, prefixes, lengths) and hard-linked into
    ``link_dir`` when given.

    With ``tc.rescore_model`` set, the teacher's candidates and the positives are then
    scored by that cross-encoder (:func:`nvr.rescoring.rescore_candidates`): ``cand_scores``
    / ``cand_ids`` are re-ranked by the cross-encoder score and ``pos_scores`` are the
    cross-encoder's too. ``rescore_key`` names the setting in errors
    (default ``teachers.<name>.rescore_model``).
    """
    from . import teachers as T
    from .mining import query_keys as make_keys

    depth_key = depth_key or f"teachers.{name}.depth"
    if tc.depth > len(doc_texts):
        raise ConfigError(f"{depth_key}: {tc.depth} is larger than the corpus ({len(doc_texts)} documents)")
    log.info("teacher[%s]: %d queries, %d documents, depth %d", name, len(q_texts), len(doc_texts), tc.depth)
    if tc.kind == "dense":
        from .encode import Encoder, encode_cached

        enc = Encoder(encoder_config(tc, device))
        cache_dir = Path(cache_dir) if cache_dir is not None else Path(link_dir)
        c_emb = encode_cached(enc, doc_texts, "passage", cache_dir / "corpus.npy")
        q_emb = encode_cached(enc, q_texts, "query", cache_dir / "queries.npy")
        if link_dir is not None and Path(link_dir) != cache_dir:
            _link_files(cache_dir, Path(link_dir), ["corpus.npy", "queries.npy", "corpus.npy.manifest.json",
                                                     "queries.npy.manifest.json"])
        scores, ids = T.dense_candidates(q_emb, c_emb, tc.depth)
        pos_scores = T.positive_scores(q_emb, c_emb, pos)
        del enc  # free the teacher before a cross-encoder loads
    elif tc.kind == "bm25":
        bm25 = T.BM25Teacher(doc_texts)
        scores, ids = T.bm25_candidates(q_texts, doc_texts, tc.depth, index=bm25, where=depth_key)
        pos_scores = T.bm25_positive_scores(q_texts, doc_texts, pos, index=bm25)
    else:
        scores, ids = T.random_candidates(len(q_texts), len(doc_texts), tc.depth, seed=seed,
                                          query_keys=make_keys(q_ids))
        pos_scores = T.random_positive_scores(pos)
    if tc.rescore_model:
        from .rescoring import CrossEncoderScorer, rescore_candidates

        key = rescore_key or f"teachers.{name}.rescore_model"
        log.info("teacher[%s]: rescoring %d candidates per query with cross-encoder %s", name, tc.depth,
                 tc.rescore_model)
        scorer = CrossEncoderScorer(tc.rescore_model, max_length=tc.rescore_max_length,
                                    batch_size=tc.rescore_batch_size, trust_remote_code=tc.trust_remote_code,
                                    device=device, key=key)
        scores, ids, pos_scores = rescore_candidates(scorer, q_texts, doc_texts, ids, pos,
                                                     batch_size=tc.rescore_batch_size)
        del scorer
    excl = T.exact_duplicate_exclusions(doc_texts, pos, q_texts)
    return {"query_ids": np.array(q_ids), "cand_ids": ids.astype(np.int64), "cand_scores": scores.astype(np.float32),
            "pos_ids": pos.astype(np.int64), "pos_scores": np.asarray(pos_scores, dtype=np.float32),
            "exclude_ids": excl.astype(np.int64)}


def _link_files(src_dir: Path, dst_dir: Path, names: list[str]) -> None:
    import shutil

    dst_dir.mkdir(parents=True, exist_ok=True)
    for fname in names:
        src, dst = src_dir / fname, dst_dir / fname
        if not src.exists():
            continue
        if dst.exists():
            dst.unlink()
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)


def save_candidates(path: Path, cands: dict) -> None:
    with atomic_write(path, "wb", encoding=None) as fh:
        np.savez(fh, **cands)


def embed_teacher(study: Study, name: str, root=None) -> dict:
    """Rank candidates for every training query with teacher ``name``.

    Writes ``artifacts/teachers/<name>/candidates.npz`` (see :func:`rank_candidates`),
    the embeddings with their manifests (dense teachers) and ``summary.json``.
    """
    from . import data as D

    setup_logging()
    seed_everything(study.seed)
    root = _root(root)
    tc = study.teacher_config(name)
    out = root / ARTIFACTS / "teachers" / name
    out.mkdir(parents=True, exist_ok=True)
    ds, pairs = _load_study_data(root)
    doc_ids = list(ds.corpus)
    index = {d: i for i, d in enumerate(doc_ids)}
    doc_texts = [D.doc_text(ds.corpus[d]) for d in doc_ids]
    pos = _pad([[index[d] for d in p.positive_ids] for p in pairs])
    t0 = time.time()
    cands = rank_candidates(tc, [p.query_id for p in pairs], [p.query for p in pairs], doc_texts, pos,
                            seed=study.seed, cache_dir=root / CACHE / "embeddings" / name, link_dir=out, name=name)
    save_candidates(out / "candidates.npz", cands)
    summary = {"teacher": name, "kind": tc.kind, "queries": len(pairs), "documents": len(doc_ids),
               "depth": tc.depth, "seconds": round(time.time() - t0, 2)}
    write_json(out / "summary.json", summary)
    log.info("embed[%s]: done in %.1fs", name, summary["seconds"])
    return summary


def load_candidates(root, teacher: str) -> dict:
    path = _root(root) / ARTIFACTS / "teachers" / teacher / "candidates.npz"
    if not path.is_file():
        raise DataError(f"{path}: not found; run the embed stage for teacher '{teacher}' first")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------- mining
def _hidden_matrix(root: Path, query_ids, doc_index) -> np.ndarray | None:
    from . import data as D

    path = root / DATA / "hidden_positives.jsonl"
    if not path.is_file():
        return None
    hidden = D.read_hidden_positives(path)
    return _pad([[doc_index[d] for d in hidden.get(q, []) if d in doc_index] for q in query_ids])


def mine_method(study: Study, method: str, root=None, *, teacher: str | None = None, seed: int | None = None,
                out_dir: Path | None = None, out_name: str | None = None) -> dict:
    """Mine hard negatives with ``method`` from the teacher's candidates.

    Writes ``artifacts/mined/<out_name>.jsonl`` (the mined-negatives format),
    ``.stats.json`` (counts, score summaries, exact false-negative rate on data with
    hidden labels) and ``.scores.npz`` (positive and negative score samples, Fig. 4).
    """
    from . import data as D
    from . import mining as M

    setup_logging()
    root = _root(root)
    teacher = teacher or study.teacher
    cfg = study.mining_config(method, seed=seed)
    cands = load_candidates(root, teacher)
    ds = D.load_beir(root / DATA)
    doc_ids = list(ds.corpus)
    doc_index = {d: i for i, d in enumerate(doc_ids)}
    q_ids = [str(q) for q in cands["query_ids"]]
    t0 = time.time()
    mined = M.mine(cands["cand_ids"], cands["cand_scores"], cands["pos_ids"], cands["pos_scores"], cfg,
                   query_keys=M.query_keys(q_ids), exclude_ids=cands["exclude_ids"])
    hidden = _hidden_matrix(root, q_ids, doc_index)
    stats = M.mining_stats(mined, cands["pos_scores"], hidden_pos_ids=hidden)
    stats.update(method=method, teacher=teacher, seed=cfg.seed, seconds=round(time.time() - t0, 3),
                 config={k: v for k, v in vars(cfg).items()})
    pairs = D.read_train_pairs(root / DATA / "train_pairs.jsonl")
    by_id = {p.query_id: p for p in pairs}
    rows = M.to_rows(mined, q_ids, [by_id[q].query for q in q_ids], [by_id[q].positive_ids for q in q_ids],
                     cands["pos_scores"], doc_ids)
    name = out_name or method
    out = Path(out_dir) if out_dir is not None else root / ARTIFACTS / "mined"
    M.write_mined(out / f"{name}.jsonl", rows)
    dist = M.score_distributions(mined, cands["pos_scores"])
    with atomic_write(out / f"{name}.scores.npz", "wb", encoding=None) as fh:
        np.savez(fh, **{k: np.asarray(v, dtype=np.float32) for k, v in dist.items()})
    write_json(out / f"{name}.stats.json", _jsonable(stats))
    log.info("mine[%s/%s]: %d rows, %s", teacher, method, len(rows),
             {k: stats[k] for k in ("queries_full", "queries_short", "false_negative_rate") if k in stats})
    return stats


def mine_ensembles(study: Study, root=None, *, method: str = "percpos095") -> dict:
    """Teacher ensembles of the paper's Table 2, from the teachers of ``teacher_ablation``.

    Every dense or BM25 teacher mines with ``method``; then *cross-sample* takes one random
    teacher per query, *intra-sample* takes the top-1 negative of each teacher in turn, with
    duplicates removed or kept. Writes ``artifacts/ensembles/<kind>.jsonl`` and
    ``<kind>.stats.json`` (false-negative rate on data with hidden labels).
    """
    from . import data as D
    from . import mining as M
    from . import teachers as T

    setup_logging()
    root = _root(root)
    names = [t for t in study.teacher_ablation if study.teacher_config(t).kind != "random"]
    if len(names) < 2:
        raise ConfigError(f"teacher_ablation: ensembles need at least two non-random teachers, got {names}")
    cfg = study.mining_config(method)
    cands = {t: load_candidates(root, t) for t in names}
    q_ids = [str(q) for q in cands[names[0]]["query_ids"]]
    for t in names[1:]:
        if [str(q) for q in cands[t]["query_ids"]] != q_ids:
            raise DataError(f"artifacts/teachers/{t}/candidates.npz: queries differ from teacher '{names[0]}'")
    keys = M.query_keys(q_ids)
    mined = [M.mine(c["cand_ids"], c["cand_scores"], c["pos_ids"], c["pos_scores"], cfg, query_keys=keys,
                    exclude_ids=c["exclude_ids"], progress=False) for c in cands.values()]
    *_, choice = T.cross_sample([(m.n_found[:, None],) for m in mined], seed=cfg.seed, query_keys=keys)
    n = cfg.num_negatives
    kinds = {
        "cross_sample": T.pick_mined(mined, choice),
        "intra_sample_dedup": T.intra_sample(mined, n, dedupe=True, per_teacher=n),
        "intra_sample_kept": T.intra_sample(mined, n, dedupe=False, per_teacher=n),
    }
    ds = D.load_beir(root / DATA)
    doc_ids = list(ds.corpus)
    doc_index = {d: i for i, d in enumerate(doc_ids)}
    hidden = _hidden_matrix(root, q_ids, doc_index)
    by_id = {p.query_id: p for p in D.read_train_pairs(root / DATA / "train_pairs.jsonl")}
    pos_scores = cands[names[0]]["pos_scores"]
    out = root / ARTIFACTS / "ensembles"
    result = {}
    for kind, m in kinds.items():
        stats = M.mining_stats(m, pos_scores, hidden_pos_ids=hidden)
        stats.update(kind=kind, teachers=names, method=method)
        rows = M.to_rows(m, q_ids, [by_id[q].query for q in q_ids], [by_id[q].positive_ids for q in q_ids],
                         pos_scores, doc_ids)
        M.write_mined(out / f"{kind}.jsonl", rows)
        write_json(out / f"{kind}.stats.json", _jsonable(stats))
        result[kind] = stats
        log.info("ensemble[%s]: false-negative rate %s", kind, stats.get("false_negative_rate"))
    return result


def write_loss_curve(summary: dict, name: str, root=None) -> list[dict]:
    """Write the training curve as a DVC plot file ``reports/04_finetune/<name>.loss.json``."""
    rows = [{"step": int(r["step"]), "loss": float(r["loss"]), "lr": float(r["lr"])} for r in summary["log"]]
    path = _root(root) / "reports" / "04_finetune" / f"{name}.loss.json"
    write_json(path, rows)
    return rows


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:
        return None
    return obj


# --------------------------------------------------------------------------- training
def retrieval_examples(root: Path, mined_path: Path, num_negatives: int):
    """TrainExamples (query, first positive, mined negatives) from a mined-negatives file."""
    from . import data as D
    from .mining import read_mined
    from .train import TrainExample

    ds = D.load_beir(root / DATA)
    text = {d: D.doc_text(doc) for d, doc in ds.corpus.items()}
    examples = []
    for row in read_mined(mined_path):
        negs = [text[n] for n in row["negative_ids"][:num_negatives]]
        examples.append(TrainExample(query=row["query"], positive=text[row["positive_ids"][0]], negatives=negs))
    return examples


def classification_examples(root: Path, num_negatives: int, seed: int, split: str = "train"):
    """Stage-2 classification examples from the articles' topics (NV-Embed style)."""
    from . import data as D
    from .train import classification_examples as build

    texts, labels = D.topic_split(root / DATA, split=split, seed=seed)
    names = sorted(set(labels))
    return build(texts, labels, {n: n for n in names}, num_negatives=num_negatives, seed=seed)


def seed_dirs(study: Study, method: str, root=None) -> dict[int, Path]:
    """Where each training seed's stage-1 model lives: the first seed at ``models/<method>``,
    further seeds (``train.seeds``) at ``models/<method>/seeds/<seed>``."""
    base = _root(root) / MODELS / method
    seeds = study.train_seeds(method)
    return {s: base if i == 0 else base / "seeds" / str(s) for i, s in enumerate(seeds)}


def finetune_teacher(study: Study, teacher: str, root=None, *, device: str = "auto") -> dict:
    """Stage 1 on teacher ``teacher``'s PercPos-95% negatives (the teacher ablation, paper Table 1):
    writes ``models/teacher-<teacher>``."""
    root = _root(root)
    if teacher not in study.teacher_ablation:
        raise ConfigError(f"train.teacher_models: '{teacher}' is not one of teacher_ablation")
    mined = root / ARTIFACTS / "teacher_mined" / f"{teacher}.jsonl"
    return _finetune_one(study, "percpos095", "stage1", root, root / MODELS / f"teacher-{teacher}", study.seed,
                         device, mined_path=mined)


def finetune(study: Study, method: str, stage: str = "stage1", root=None, *, device: str = "auto") -> dict:
    """Fine-tune the student on ``method``'s mined negatives (stage 1, once per training seed)
    or the stage-2 blend (from the first seed's stage-1 model)."""
    root = _root(root)
    if stage == "stage1":
        summaries = {}
        for seed, out in seed_dirs(study, method, root).items():
            summaries[seed] = _finetune_one(study, method, stage, root, out, seed, device)
        first = next(iter(summaries.values()))
        return {**first, "seeds": list(summaries),
                "final_loss_by_seed": {str(k): v.get("final_loss") for k, v in summaries.items()}}
    return _finetune_one(study, method, stage, root, root / MODELS / f"{method}-stage2", study.seed, device)


def _finetune_one(study: Study, method: str, stage: str, root: Path, out: Path, seed: int, device: str,
                  mined_path: Path | None = None) -> dict:
    import dataclasses

    from .train import train_stage

    setup_logging()
    cfg = dataclasses.replace(study.stage_config(stage), seed=seed)
    st = study.student
    mined_path = mined_path or root / ARTIFACTS / "mined" / f"{method}.jsonl"
    examples = retrieval_examples(root, mined_path, cfg.num_negatives)
    if stage == "stage1":
        init = study.student.model
    else:
        init = str(root / MODELS / method)
        frac = float(study.train.get("stage2_retrieval_fraction", 0.5))
        if not (root / DATA / "topics.jsonl").is_file():  # BEIR data has no classification task
            log.info("stage2: no data/topics.jsonl: stage 2 trains on retrieval pairs only (hard negatives, "
                     "no in-batch negatives)")
            return train_stage(init, examples, cfg, out, query_prefix=st.query_prefix, passage_prefix=st.passage_prefix,
                               pooling=st.pooling, device=device, mask_prefix_in_pool=st.mask_prefix_in_pool,
                               bidirectional=st.bidirectional, dtype=st.dtype)
        cls = classification_examples(root, cfg.num_negatives, study.seed)
        n_ret = int(round(len(cls) * frac / max(1e-9, 1 - frac))) if frac < 1 else len(examples)
        rng = np.random.default_rng(study.seed)
        keep = sorted(rng.choice(len(examples), size=min(n_ret, len(examples)), replace=False).tolist())
        examples = [examples[i] for i in keep] + cls
        log.info("stage2: %d retrieval + %d classification examples", len(keep), len(cls))
    summary = train_stage(init, examples, cfg, out, query_prefix=st.query_prefix, passage_prefix=st.passage_prefix,
                          pooling=st.pooling, device=device, mask_prefix_in_pool=st.mask_prefix_in_pool,
                          bidirectional=st.bidirectional, dtype=st.dtype)
    return summary


# --------------------------------------------------------------------------- evaluation
def model_ref(study: Study, name: str, root=None) -> tuple[str, str]:
    """(model reference, pooling) for 'base', 'teacher' or a fine-tuned model name."""
    root = _root(root)
    if name == "base":
        return study.student.model, study.student.pooling
    if name == "teacher":
        tc = study.teacher_config()
        if tc.kind != "dense":
            raise ConfigError(f"teacher: '{study.teacher}' is not a dense model and cannot be evaluated")
        return tc.model, tc.pooling
    path = root / MODELS / name
    if not (path / "config.json").is_file():
        raise DataError(f"{path}: no fine-tuned model; run the train stage for '{name}' first")
    return str(path), study.student.pooling


def evaluate_model(study: Study, name: str, root=None, *, classification: bool = False) -> dict:
    """Score model ``name`` with MTEB on the held-out split; write ``metrics/<name>.json``."""
    from .evaluate import evaluate_retrieval

    setup_logging()
    root = _root(root)
    ref, pooling = model_ref(study, name, root)
    ev = study.evaluate
    qlen, plen = ev.max_query_length, ev.max_passage_length
    if name == "teacher":  # the teacher is scored as it mines: its own prefixes and lengths
        tc = study.teacher_config()
        qp, pp, qlen, plen = tc.query_prefix, tc.passage_prefix, tc.max_query_length, tc.max_passage_length
    else:
        qp, pp = study.student.query_prefix, study.student.passage_prefix
    t0 = time.time()
    refs = {None: ref}
    if name in study.mining["methods"]:
        refs = {s: str(p) for s, p in seed_dirs(study, name, root).items()}
    runs = {}
    for seed, r in refs.items():
        model = _mteb_model(study, name, r, pooling, qp, pp, qlen, plen)
        runs[seed] = evaluate_retrieval(model, root / DATA, ev.split, pooling=pooling, query_prefix=qp,
                                        passage_prefix=pp, max_query_length=qlen, max_passage_length=plen,
                                        batch_size=ev.batch_size)
    keys = ("ndcg_at_10", "recall_at_100", "mrr_at_10")
    metrics = {"model": name, "split": ev.split}
    for k in keys:
        vals = np.array([r[k] for r in runs.values()], dtype=np.float64)
        metrics[k] = round(float(vals.mean()), 6)
        if len(vals) > 1:
            metrics[f"{k}_std"] = round(float(vals.std(ddof=1)), 6)
    if len(runs) > 1:
        metrics["seeds"] = {str(s): round(float(r["ndcg_at_10"]), 6) for s, r in runs.items()}
    if classification and not (root / DATA / "topics.jsonl").is_file():
        log.info("evaluate[%s]: no data/topics.jsonl: no classification score for this dataset", name)
        classification = False
        if name.endswith("-stage2"):
            write_json(root / METRICS / "topics.json", {"base": None, "stage1": None, "stage2": None})
    if classification:
        metrics["topic_accuracy"] = evaluate_topics(study, ref, pooling, root)["accuracy"]
        if name.endswith("-stage2"):  # what stage 2 changed on its own task: base -> stage 1 -> stage 2
            topics = {"stage2": metrics["topic_accuracy"]}
            for key, other in (("base", "base"), ("stage1", name[: -len("-stage2")])):
                o_ref, o_pool = model_ref(study, other, root)
                topics[key] = evaluate_topics(study, o_ref, o_pool, root)["accuracy"]
            write_json(root / METRICS / "topics.json", topics)
    if ev.hub_tasks:  # standard MTEB retrieval tasks by name (needs a network), first seed's model
        from .evaluate import evaluate_hub_tasks

        hub = evaluate_hub_tasks(_mteb_model(study, name, next(iter(refs.values())), pooling, qp, pp, qlen, plen),
                                 ev.hub_tasks, pooling=pooling, query_prefix=qp, passage_prefix=pp,
                                 max_query_length=qlen, max_passage_length=plen, batch_size=ev.batch_size)
        metrics["hub_ndcg_at_10"] = hub["ndcg_at_10"]
        metrics["hub_average_ndcg_at_10"] = hub["average"]
    metrics["seconds"] = round(time.time() - t0, 2)
    write_json(root / METRICS / f"{name}.json", metrics)
    log.info("evaluate[%s]: NDCG@10 %.4f", name, metrics["ndcg_at_10"])
    return metrics


def _mteb_model(study: Study, name: str, ref: str, pooling: str, qp: str, pp: str, qlen: int, plen: int):
    """The model reference itself, or (when the student leaves its prefix tokens out of the mean
    pool, as NV-Retriever-v1 does) an nvr Encoder wrapped for MTEB with a checkpoint-unique id."""
    if name == "teacher" or not study.student.mask_prefix_in_pool:
        return ref
    from .encode import Encoder, EncoderConfig
    from .evaluate import TextEncoderAdapter, checkpoint_hash

    enc = Encoder(EncoderConfig(model=ref, pooling=pooling, query_prefix=qp, passage_prefix=pp, max_query_length=qlen,
                                max_passage_length=plen, batch_size=study.evaluate.batch_size,
                                mask_prefix_in_pool=True, dtype=study.student.dtype))
    ident = checkpoint_hash(ref) if Path(ref).is_dir() else f"{ref}@{study.student.revision or 'main'}"
    return TextEncoderAdapter(enc, f"{ident}-masked-{qlen}-{plen}", name=f"nvr/{name}")


def evaluate_topics(study: Study, ref: str, pooling: str, root: Path) -> dict:
    """Stage-2 task score: topic classification accuracy (logistic regression on embeddings)."""
    from . import data as D
    from .evaluate import evaluate_classification

    tr_x, tr_y = D.topic_split(root / DATA, split="train", seed=study.seed)
    te_x, te_y = D.topic_split(root / DATA, split="test", seed=study.seed)
    return evaluate_classification(ref, tr_x, tr_y, te_x, te_y, pooling=pooling,
                                   max_length=study.evaluate.max_passage_length, batch_size=study.evaluate.batch_size)
