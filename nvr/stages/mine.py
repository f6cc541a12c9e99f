"""Stages ``mine@<method>`` (the method ablation) and ``mine_teacher@<teacher>`` (the teacher ablation)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..config import Study
from ..io import discard, publish, recover, stage_json, stage_jsonl, staged_file
from ..paths import Layout, stem
from ..runtime import log, setup_logging
from .context import StudyData, jsonable
from .embed import load_candidates


def write_mined_outputs(path: Path, mined, cands, data: StudyData, stats: dict, *, scores: bool = True,
                        teachers=None, pos_scores=None) -> int:
    """Write a mined-negatives file with its ``.stats.json`` and (``scores``) ``.scores.npz`` (Fig. 4 samples).

    ``pos_scores``: the positives' scores (default ``cands.pos_scores``); an ensemble's are per
    teacher (one array per name of ``teachers``), so that each row's positive scores are the
    teacher's of its negatives (:func:`nvr.mining.to_rows`).

    The files are written under temporary names and published together (:func:`nvr.io.publish`):
    a kill at any moment leaves the old three or the new three, never a new file beside old stats.
    """
    from ..mining import score_distributions, to_rows

    path = Path(path)
    recover(path)  # an earlier run killed between the renames of its publish: complete it first
    q_ids = cands.ids()
    queries, positives = data.pair_fields(q_ids)
    pos_scores = cands.pos_scores if pos_scores is None else pos_scores
    rows = to_rows(mined, q_ids, queries, positives, pos_scores, data.doc_ids, teachers=teachers)
    staged: list[tuple[Path, Path]] = []
    try:
        tmp, n = stage_jsonl(path, rows)
        staged.append((tmp, path))
        if scores:
            dist = score_distributions(mined, pos_scores)
            npz = Path(f"{stem(path)}.scores.npz")
            with staged_file(npz, "wb", encoding=None) as (fh, tmp):
                np.savez(fh, **{k: np.asarray(v, dtype=np.float32) for k, v in dist.items()})
            staged.append((tmp, npz))
        stats_path = Path(f"{stem(path)}.stats.json")
        staged.append((stage_json(stats_path, jsonable(stats)), stats_path))
    except BaseException:
        discard(t for t, _ in staged)
        raise
    publish(staged)
    return n


def mine_method(study: Study, method: str, root=None, *, teacher: str | None = None, seed: int | None = None,
                out: Path | None = None) -> dict:
    """Mine hard negatives with ``method`` from ``teacher``'s candidates (default: the study's teacher).

    Writes ``out`` (default ``artifacts/mined/<method>.jsonl``, the mined-negatives format) with its
    ``.stats.json`` (counts, score summaries, the exact false-negative rate on data with hidden
    labels) and ``.scores.npz`` (positive and negative score samples, paper Fig. 4).
    """
    from ..mining import mining_stats

    setup_logging()
    lay = Layout.at(root)
    teacher = teacher or study.teacher
    cfg = study.mining_config(method, seed=seed)
    cands = load_candidates(lay.root, teacher)
    data = StudyData.load(lay)
    q_ids = cands.ids()
    t0 = time.time()
    from ..mining.neardup import defence_stats, similarity_arrays

    emb_path = lay.teacher_dir(teacher) / "corpus.npy"
    emb = np.load(emb_path, mmap_mode="r") if emb_path.is_file() else None
    sims = similarity_arrays(cfg, cands, doc_texts=data.doc_texts, embeddings=emb,
                             where=f"mining.methods.{method}")
    mined = cands.mine(cfg, progress=True, **sims)
    hidden = data.hidden(q_ids)
    stats = mining_stats(mined, cands.pos_scores, hidden_pos_ids=hidden)
    if sims and hidden is not None:
        stats["near_duplicate_defences"] = defence_stats(cfg, cands, hidden, sims)
    stats.update(method=method, teacher=teacher, seed=cfg.seed, seconds=round(time.time() - t0, 3),
                 config=dict(vars(cfg)))
    path = Path(out) if out is not None else lay.mined(method)
    n = write_mined_outputs(path, mined, cands, data, stats)
    log.info("mine[%s/%s]: %d rows, %s", teacher, method, n,
             {k: stats[k] for k in ("queries_full", "queries_short", "false_negative_rate") if k in stats})
    return stats


def mine_teacher(study: Study, teacher: str, root=None) -> dict:
    """The teacher ablation (paper Table 1): the reference method (``mining.reference``) from
    ``teacher``'s candidates, written to ``artifacts/teacher_mined/<teacher>.jsonl``."""
    lay = Layout.at(root)
    return mine_method(study, study.reference_method, lay.root, teacher=teacher, out=lay.teacher_mined(teacher))
