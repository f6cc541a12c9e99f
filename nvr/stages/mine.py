"""Stage ``mine``: every mining output of the study in one run (:func:`mine_all`).

* the method ablation: every method of ``mining.methods`` from the study's teacher
  (:func:`mine_method`, ``artifacts/mined/<method>.*``);
* the teacher ablation: ``mining.reference`` from every teacher of ``teacher_ablation``
  (:func:`mine_teacher`, ``artifacts/teacher_mined/<teacher>.*``);
* the teacher ensembles (:func:`nvr.stages.ensembles.mine_ensembles`, ``artifacts/ensembles/*``).

Mining is cheap beside a stage's fixed cost (the notebook, DVC re-reading and rewriting
``dvc.lock``), so one stage mines them all; each file is the same bytes a run of its own writes.
The tables and figures of the stage's notebook (``03_mine``) are built here too.
"""

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
                out: Path | None = None, candidates=None, data: StudyData | None = None) -> dict:
    """Mine hard negatives with ``method`` from ``teacher``'s candidates (default: the study's teacher).

    Writes ``out`` (default ``artifacts/mined/<method>.jsonl``, the mined-negatives format) with its
    ``.stats.json`` (counts, score summaries, the exact false-negative rate on data with hidden
    labels) and ``.scores.npz`` (positive and negative score samples, paper Fig. 4).
    ``candidates`` (``teacher``'s) and ``data`` (``data/``) save reading them again when the caller
    already has them (:func:`mine_all`); the output is the same.
    """
    from ..mining import mining_stats

    setup_logging()
    lay = Layout.at(root)
    teacher = teacher or study.teacher
    cfg = study.mining_config(method, seed=seed)
    cands = candidates if candidates is not None else load_candidates(lay.root, teacher)
    data = data if data is not None else StudyData.load(lay)
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


def mine_teacher(study: Study, teacher: str, root=None, *, candidates=None, data: StudyData | None = None) -> dict:
    """The teacher ablation (paper Table 1): the reference method (``mining.reference``) from
    ``teacher``'s candidates, written to ``artifacts/teacher_mined/<teacher>.jsonl``."""
    lay = Layout.at(root)
    return mine_method(study, study.reference_method, lay.root, teacher=teacher, out=lay.teacher_mined(teacher),
                       candidates=candidates, data=data)


def ensemble_teachers(study: Study) -> list[str]:
    """The teachers the ensembles combine: every non-random teacher of ``teacher_ablation``."""
    return [t for t in study.teacher_ablation if study.teacher_config(t).kind != "random"]


def mine_all(study: Study, root=None) -> dict:
    """The stage ``mine``: every mining output of the study, each item logged as it is written.

    * ``methods``: every method of ``mining.methods`` from the study's teacher (:func:`mine_method`);
    * ``teachers``: ``mining.reference`` from every teacher of ``teacher_ablation`` (:func:`mine_teacher`);
    * ``ensembles``: the teacher ensembles (:func:`nvr.stages.ensembles.mine_ensembles`) when the
      study has at least two non-random teachers (:func:`nvr.config.load` requires them), else ``{}``.

    Returns ``{"methods": {method: stats}, "teachers": {teacher: stats}, "ensembles": {kind: stats}}``.
    ``data/`` and each teacher's candidates are read once; every file is the same bytes the
    function of its own writes.
    """
    from .ensembles import mine_ensembles

    setup_logging()
    lay = Layout.at(root)
    t0 = time.time()
    data = StudyData.load(lay)
    cands: dict = {}

    def candidates(t):
        if t not in cands:
            cands[t] = load_candidates(lay.root, t)
        return cands[t]

    methods, teachers = study.method_names(), list(study.teacher_ablation)
    ens = ensemble_teachers(study)
    total = len(methods) + len(teachers) + (len(ens) >= 2)
    done = 0
    out: dict = {"methods": {}, "teachers": {}, "ensembles": {}}

    def progress(what: str, stats: dict) -> None:
        nonlocal done
        done += 1
        fnr = {k: v.get("false_negative_rate") for k, v in stats.items()} if what.startswith("ensembles") \
            else stats.get("false_negative_rate")
        log.info("mine %d/%d: %s done (false-negative rate %s; %.1f s so far)", done, total, what, fnr,
                 time.time() - t0)

    for m in methods:
        out["methods"][m] = mine_method(study, m, lay.root, candidates=candidates(study.teacher), data=data)
        progress(f"method {m}", out["methods"][m])
    for t in teachers:
        out["teachers"][t] = mine_teacher(study, t, lay.root, candidates=candidates(t), data=data)
        progress(f"teacher {t}", out["teachers"][t])
    if len(ens) >= 2:
        out["ensembles"] = mine_ensembles(study, lay.root, candidates={t: candidates(t) for t in ens}, data=data)
        progress(f"ensembles of {', '.join(ens)}", out["ensembles"])
    else:
        log.info("mine: no ensembles (fewer than two non-random teachers in teacher_ablation: %s)", ens)
    log.info("mine: %d methods, %d teachers, %d ensembles in %.1f s", len(out["methods"]), len(out["teachers"]),
             len(out["ensembles"]), time.time() - t0)
    return out


# --------------------------------------------------------------------------- the stage notebook's views
#: what the tables show of each stats file: (column, stats key or function of the stats)
_TABLE_COLUMNS = (
    ("negatives / query", lambda s: round(s["negatives_emitted"] / s["queries_kept"], 2) if s.get("queries_kept") else None),
    ("queries full", "queries_full"),
    ("queries short", "queries_short"),
    ("queries dropped", "queries_dropped"),
    ("false-negative rate", "false_negative_rate"),
    ("mean positive score", "mean_positive_score"),
    ("mean negative score", "mean_negative_score"),
    ("mean negative rank", "mean_negative_rank"),
)


def stats_table(stats: dict, index: str = "method", labels: dict | None = None):
    """One row per item of ``stats`` (``{name: stats}``, e.g. ``mine_all(...)["methods"]``): negatives
    per query, full / short / dropped queries, the false-negative rate (a column only where hidden
    labels exist), mean positive and negative scores, mean rank of a negative. ``labels``: a first
    column (a method's description)."""
    import pandas as pd

    rows = []
    for name, s in stats.items():
        row = {index: name}
        if labels is not None:
            row["label"] = labels.get(name, "")
        for col, key in _TABLE_COLUMNS:
            row[col] = key(s) if callable(key) else s.get(key)
        rows.append(row)
    df = pd.DataFrame(rows).set_index(index) if rows else pd.DataFrame()
    if "false-negative rate" in df and df["false-negative rate"].isna().all():
        df = df.drop(columns="false-negative rate")   # no hidden labels (a BEIR dataset)
    return df.round(4)


def method_labels(study: Study) -> dict[str, str]:
    """``{method: its description}`` (window, filters, selection) for the tables."""
    from ..mining.methods import describe

    return {m: describe(study.mining_config(m)) for m in study.method_names()}


def plot_score_histograms(study: Study, root=None):
    """Small multiples of paper Fig. 4: per method, the teacher scores of the positives and of the
    mined negatives (``artifacts/mined/<method>.scores.npz``). Returns the figure."""
    import matplotlib.pyplot as plt

    lay = Layout.at(root)
    labels = method_labels(study)
    methods = [m for m in study.method_names() if Path(f"{stem(lay.mined(m))}.scores.npz").is_file()]
    cols = min(4, max(1, len(methods)))
    rows = max(1, -(-len(methods) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True)
    for ax, m in zip(axes.flat, methods):
        with np.load(f"{stem(lay.mined(m))}.scores.npz") as z:
            ax.hist(z["positive"], bins=40, density=True, alpha=0.6, label="positives")
            ax.hist(z["negative"], bins=40, density=True, alpha=0.6, label="mined negatives")
        ax.set_title(f"{m}\n{labels[m]}", fontsize=8)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{study.teacher} scores of positives vs mined negatives (paper Fig. 4)")
    fig.tight_layout()
    return fig


def example_rows(path, n: int = 8):
    """The first ``n`` rows of a mined-negatives file as a table (query, positive score, the
    negatives' scores and ranks)."""
    import pandas as pd

    from ..mining import read_mined

    return pd.DataFrame([{"query": r["query"], "positive score": round(r["positive_scores"][0], 3),
                          "negative scores": [round(s, 3) for s in r["negative_scores"]],
                          "ranks": r["negative_ranks"]} for r in read_mined(path)[:n]])


def teacher_overlap(study: Study, root=None):
    """Jaccard overlap of the teachers' top-n candidates (n = ``mining.num_negatives``; paper: < 0.3)."""
    import pandas as pd

    from ..mining.ensembles import jaccard_matrix

    ids = {t: load_candidates(Layout.at(root).root, t).cand_ids for t in study.teacher_ablation}
    return pd.DataFrame(jaccard_matrix(ids, study.mining.num_negatives)).round(3)
