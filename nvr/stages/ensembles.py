"""Teacher ensembles of the paper's Table 2 (part of the stage ``mine``: :func:`nvr.stages.mine.mine_all`)."""

from __future__ import annotations

import numpy as np

from ..config import Study
from ..errors import ConfigError, DataError
from ..paths import Layout
from ..runtime import log, setup_logging
from .context import StudyData
from .embed import load_candidates
from .mine import write_mined_outputs


def mine_ensembles(study: Study, root=None, *, method: str | None = None, candidates: dict | None = None,
                   data: StudyData | None = None) -> dict:
    """Teacher ensembles from the teachers of ``teacher_ablation`` (random teachers left out).

    Every teacher mines its n negatives with ``method`` (default: ``mining.reference``; n =
    its ``num_negatives``); then *cross-sample* takes the whole row of one teacher chosen at
    random per query, and *intra-sample* pools the first n negatives of every teacher
    round-robin (every teacher's 1st, then every teacher's 2nd, ...) and keeps the first n of
    the pool: with as many teachers as n (the paper's 4 and 4) that is the top-1 negative of
    each teacher; with fewer teachers it reaches their 2nd, 3rd, ... negatives. ``_kept`` keeps
    duplicates (a document two teachers chose can fill two slots); ``_dedup`` skips a document
    already taken and the next negative of the round-robin takes its slot, so a query gets fewer
    than n negatives only when the teachers' first-n lists together hold fewer than n distinct
    documents (slots are never refilled from deeper in a teacher's list; such queries count in
    ``queries_short``).

    Writes ``artifacts/ensembles/<kind>.jsonl`` with ``.stats.json`` (false-negative rate on data
    with hidden labels). Each negative keeps its own teacher's score and anchor; a row's
    ``positive_scores`` are its ``positive_teacher``'s (the teacher of all its negatives, else the
    first teacher); the statistics' positive and anchor means come from the teacher that chose
    each negative (``per_teacher`` gives them teacher by teacher), never from one teacher for all.

    ``candidates`` (``{teacher: Candidates}``) and ``data`` save reading them again when the caller
    already has them (:func:`nvr.stages.mine.mine_all`); the output is the same.
    """
    from ..mining import mining_stats, query_keys
    from ..mining.ensembles import cross_sample, intra_sample, pick_mined

    setup_logging()
    lay = Layout.at(root)
    method = method or study.reference_method
    names = [t for t in study.teacher_ablation if study.teacher_config(t).kind != "random"]
    if len(names) < 2:
        raise ConfigError(f"teacher_ablation: ensembles need at least two non-random teachers, got {names}")
    cfg = study.mining_config(method)
    cands = {t: candidates[t] if candidates and t in candidates else load_candidates(lay.root, t) for t in names}
    first = cands[names[0]]
    q_ids = first.ids()
    for t in names[1:]:
        if cands[t].ids() != q_ids:
            raise DataError(f"{lay.candidates(t)}: queries differ from teacher '{names[0]}'")
    if cfg.relabel_above is not None:
        raise ConfigError(f"mining.methods.{method}.relabel_above: the relabeling judge is not supported in "
                          f"teacher ensembles (each teacher would judge differently); use it in a method of its own")
    from ..mining.neardup import similarity_arrays

    data = data if data is not None else StudyData.load(lay)
    keys = query_keys(q_ids)

    def sims(t, c):   # near-duplicate defences: each teacher's own embeddings
        emb_path = lay.teacher_dir(t) / "corpus.npy"
        emb = np.load(emb_path, mmap_mode="r") if emb_path.is_file() else None
        return similarity_arrays(cfg, c, doc_texts=data.doc_texts, embeddings=emb, where=f"mining.methods.{method}")

    mined = [c.mine(cfg, query_keys=keys, **sims(t, c)) for t, c in cands.items()]
    *_, choice = cross_sample([(m.n_found[:, None],) for m in mined], seed=cfg.seed, query_keys=keys)
    n = cfg.num_negatives
    kinds = {
        "cross_sample": pick_mined(mined, choice),
        "intra_sample_dedup": intra_sample(mined, n, dedupe=True, per_teacher=n),
        "intra_sample_kept": intra_sample(mined, n, dedupe=False, per_teacher=n),
    }
    hidden = data.hidden(q_ids)
    pos_scores = [cands[t].pos_scores for t in names]   # each teacher's, in the order of ``source``
    result = {}
    for kind, m in kinds.items():
        stats = mining_stats(m, pos_scores, hidden_pos_ids=hidden, teachers=names)
        stats.update(kind=kind, teachers=names, method=method)
        write_mined_outputs(lay.ensembles_dir / f"{kind}.jsonl", m, first, data, stats, scores=False,
                            teachers=names, pos_scores=pos_scores)
        result[kind] = stats
        log.info("ensemble[%s]: false-negative rate %s", kind, stats.get("false_negative_rate"))
    return result
