"""Every finished result of a run, gathered once: what the tables and figures read.

Nothing here recomputes a result; missing artifacts are simply absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import recover_dir
from ..mining.methods import describe, paper_method
from ..paths import Layout


def _read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class Results:
    """A run's results. ``metrics[name]`` is ``metrics/<name>.json``; ``mining[method]`` the
    method's ``.stats.json``; ``teachers[t]`` the teacher's summary and teacher-ablation stats;
    ``scores[method]`` the (positive, negative) score samples; ``curves[name]`` a loss curve;
    ``cand_ids[t]`` a teacher's candidate ids; ``ensembles[kind]`` an ensemble's stats."""

    study: object
    root: Path
    methods: list[str]
    metrics: dict = field(default_factory=dict)
    mining: dict = field(default_factory=dict)
    teachers: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    cand_ids: dict = field(default_factory=dict)
    ensembles: dict = field(default_factory=dict)
    per_query: dict = field(default_factory=dict)   # name -> {seed: {query: NDCG@10}}
    mining_sweep: list = field(default_factory=list)  # nvr.mining.sweep.threshold_sweep rows (study teacher)
    defences: list = field(default_factory=list)      # false-negative defences beyond the paper (study teacher)
    _diffs: dict = field(default_factory=dict, repr=False)

    def difference(self, name: str, other: str | None = None):
        """Paired bootstrap of ``name`` minus ``other`` (default: the naive baseline), or None."""
        other = other or self.baseline
        if name not in self.per_query or other not in self.per_query or name == other:
            return None
        key = (name, other)
        if key not in self._diffs:
            from .statistics import paired_difference

            self._diffs[key] = paired_difference(self.per_query[name], self.per_query[other])
        return self._diffs[key]

    def label(self, name: str) -> str:
        """A method's label from its settings; other model names as they are."""
        if name in self.methods:
            return describe(self.study.mining_config(name))
        return name

    def paper_key(self, method: str) -> str | None:
        """The paper's method this study's method reproduces (by settings), else None."""
        return paper_method(self.study.mining_config(method)) if method in self.methods else None

    def seeds(self, name: str | None) -> int | None:
        """How many training seeds of model ``name`` have per-query scores (None: none scored)."""
        return len(self.per_query[name]) if name in self.per_query else None

    def ndcg(self, name: str | None):
        m = self.metrics.get(name) if name else None
        return None if m is None else m.get("ndcg_at_10")

    @property
    def reference(self) -> str:
        """The positive-aware method the study is about (``mining.reference``)."""
        return self.study.reference_method

    @property
    def baseline(self) -> str | None:
        """The study's naive top-k method (by settings), the baseline every gain is measured from."""
        return next((m for m in self.methods if self.paper_key(m) == "naive"), None)


def study_metric_names(study) -> list[str]:
    """The ``metrics/<name>.json`` files this study writes: one per model of :meth:`Study.models`."""
    return [m.name for m in study.models()]


def collect(root, study) -> Results:
    """Gather every finished result of the run under ``root``."""
    lay = Layout.at(root)
    R = Results(study=study, root=lay.root, methods=study.method_names())
    for folder in (lay.metrics_dir, lay.metrics_dir / "per_query", lay.mined_dir, lay.teacher_mined_dir,
                   lay.ensembles_dir):
        recover_dir(folder)  # a stage killed between the renames of its publish: complete it first
    # only this study's models: metrics/ can hold another profile's files (a checkout whose committed
    # metrics came from the default profile), which must never appear in this study's report
    for name in study_metric_names(study):
        if (lay.metrics_dir / f"{name}.json").is_file():
            R.metrics[name] = _read(lay.metrics_dir / f"{name}.json")
        if (lay.metrics_dir / "per_query" / f"{name}.json").is_file():
            R.per_query[name] = (_read(lay.metrics_dir / "per_query" / f"{name}.json") or {}).get("seeds") or {}
    for m in R.methods:
        R.mining[m] = _read(lay.mined_dir / f"{m}.stats.json")
        z = lay.mined_dir / f"{m}.scores.npz"
        if z.is_file():
            with np.load(z) as d:
                R.scores[m] = (d["positive"], d["negative"])
        R.curves[m] = _read(lay.loss_curve(m))
    R.curves["stage2"] = _read(lay.loss_curve("stage2"))
    for t in study.teacher_ablation:
        R.teachers[t] = {"summary": _read(lay.teacher_dir(t) / "summary.json"),
                         "mined": _read(lay.teacher_mined_dir / f"{t}.stats.json")}
        if lay.candidates(t).is_file():
            with np.load(lay.candidates(t)) as z:
                R.cand_ids[t] = z["cand_ids"]
    R.ensembles = {p.name[: -len(".stats.json")]: _read(p) for p in sorted(lay.ensembles_dir.glob("[!.]*.stats.json"))}
    if R.baseline is not None and lay.candidates(study.teacher).is_file() and lay.train_pairs.is_file():
        from ..mining.candidates import Candidates
        from ..stages.context import StudyData

        # the study teacher's candidates and the data, read once for both mining-side tables
        cands, data = Candidates.load(lay.candidates(study.teacher)), StudyData.load(lay)
        base = study.mining_config(R.baseline)
        hidden = data.hidden(cands.ids())
        R.mining_sweep = mining_sweep(cands, base, hidden)
        if hidden is not None:
            R.defences = defences(cands, base, hidden, data.doc_texts, lay.teacher_dir(study.teacher) / "corpus.npy")
    return R


def mining_sweep(cands, base, hidden) -> list[dict]:
    """The filters' threshold sweep on the study teacher's candidates (mining side, no training):
    :func:`nvr.mining.sweep.threshold_sweep` from the baseline method's settings ``base``."""
    from ..mining.sweep import threshold_sweep

    return threshold_sweep(cands, base, hidden_pos_ids=hidden)


def defences(cands, base, hidden, doc_texts, emb_path: Path) -> list[dict]:
    """The false-negative defences beyond the paper, on the study teacher's candidates and the
    baseline method's settings ``base``, against the hidden labels: near-duplicate exclusion (embedding
    cosine when the teacher's corpus embeddings are at ``emb_path``, shingle overlap:
    :func:`nvr.mining.neardup.defence_table`), the relabeling judge and SimANS sampling at a few
    widths (the false-negative rate of what it selects)."""
    from dataclasses import replace

    from ..mining import mining_stats, query_keys, row_isin
    from ..mining.neardup import defence_table, positive_cosine, positive_overlap

    sims = {"pos_overlap": positive_overlap(doc_texts, cands.cand_ids, cands.pos_ids)}
    if emb_path.is_file():
        sims["pos_cosine"] = positive_cosine(np.load(emb_path, mmap_mode="r"), cands.cand_ids, cands.pos_ids)
    rows = defence_table(cands, base, hidden_pos_ids=hidden, sims=sims)
    keys = query_keys(cands.ids())
    # the relabeling judge (here the teacher's own score; a cross-encoder with rescore_model)
    m0 = cands.mine(base, query_keys=keys)
    fn0 = row_isin(m0.neg_ids, hidden) & (m0.neg_ids >= 0) & m0.keep[:, None]   # naive top-k's false negatives
    top = np.sort(cands.cand_scores[:, :10][np.isfinite(cands.cand_scores[:, :10])])
    for q in (0.99, 0.95, 0.9):   # thresholds at high quantiles of the top-10 candidate scores
        if not top.size:
            break
        t = round(float(np.quantile(top, q)), 3)
        m = cands.mine(replace(base, relabel_above=t), query_keys=keys, judge_scores=cands.cand_scores)
        st = mining_stats(m, cands.pos_scores, hidden_pos_ids=hidden)
        rel, hit = st.get("relabeled_positives", 0), st.get("relabeled_true_positives", 0)
        rows.append({"defence": "judge relabels (teacher score >=)", "threshold": t, "removed": rel,
                     "fn_removed": hit, "tn_lost": rel - hit, "precision": st.get("relabel_precision"),
                     "recall": float((fn0 & row_isin(m0.neg_ids, m.relabel_ids)).sum() / fn0.sum()) if fn0.any() else None,
                     "false_negative_rate": st.get("false_negative_rate")})
    for width in (0.05, 0.1, 0.2):
        m = cands.mine(replace(base, selection="simans", simans_width=width), query_keys=keys)
        st = mining_stats(m, cands.pos_scores, hidden_pos_ids=hidden)
        rows.append({"defence": "SimANS sampling (width)", "threshold": width, "removed": None, "fn_removed": None,
                     "tn_lost": None, "precision": None, "recall": None,
                     "false_negative_rate": st.get("false_negative_rate"),
                     "mean_negative_rank": st.get("mean_negative_rank")})
    return rows
