"""The report's tables: our numbers beside the paper's, read from a :class:`Results`."""

from __future__ import annotations

from . import paper
from .results import Results


def _cell(v):
    if v is None or (isinstance(v, float) and v != v):
        return "—"          # not measured / not in the paper (never a bare NaN in the page)
    if isinstance(v, float):
        return f"{v:.4f}"
    return v


def _frame(rows, index):
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    # every row gets every column ("—" where a row has none), so integer columns stay integers
    df = pd.DataFrame([{k: _cell(r.get(k)) for k in keys} for r in rows]).set_index(index)
    return df.astype(object)


def method_table(R: Results):
    """Table 3 as we measure it: NDCG@10 per method with the paper's Tables 3-5 beside it."""
    rows = []
    for name in ("base", "teacher"):
        m = R.metrics.get(name)
        if m:
            rows.append({"method": f"({name} model, no fine-tuning)", "paper Table 3": None, "paper Table 4": None,
                         "paper Table 5 (x100)": None, "NDCG@10": m["ndcg_at_10"],
                         "Recall@100": m["recall_at_100"], "MRR@10": m["mrr_at_10"]})
    naive = R.baseline
    for meth in R.methods:
        m, s = R.metrics.get(meth) or {}, R.mining.get(meth) or {}
        key = R.paper_key(meth)
        full = s.get("queries_full")
        d = R.difference(meth)
        pd_ = paper.TABLE3.get(key)
        rows.append({
            "method": R.label(meth), "paper Table 3": pd_,
            "paper gain vs naive": (pd_ - paper.TABLE3["naive"]) if pd_ is not None and key != "naive" else None,
            "NDCG@10": m.get("ndcg_at_10"), "seeds": len(R.per_query.get(meth) or {}) or None,
            f"gain vs {R.label(naive) if naive else 'naive'} [95% CI]": d.text() if d else None,
            "resolved": ("yes" if d.resolved else "no") if d else None,
            "Recall@100": m.get("recall_at_100"), "MRR@10": m.get("mrr_at_10"),
            "false-negative rate": s.get("false_negative_rate"),
            "queries with full set": f"{full}/{s.get('queries')}" if full is not None else None,
        })
    return _frame(rows, "method")


def paper_tables(R: Results):
    """The paper's Tables 3-5 for the methods this study runs (by settings)."""
    rows = []
    for meth in R.methods:
        key = R.paper_key(meth)
        if key is not None:
            rows.append({"method": R.label(meth), "Table 3 (e5-large, 3 datasets)": paper.TABLE3.get(key),
                         "Table 4 (Mistral-7B)": paper.TABLE4.get(key),
                         "Table 5 (15 BEIR, x100)": paper.TABLE5.get(key)})
    return _frame(rows, "method")


def rank_agreement(R: Results) -> dict:
    """Spearman correlation of our NDCG@10 order with Table 3's over the methods both have, with
    a bootstrap interval over test queries and seeds (``rho``, ``low``, ``high``, ``methods``)."""
    from .statistics import spearman_with_interval

    both = [m for m in R.methods if R.paper_key(m) in paper.TABLE3 and m in R.per_query]
    return spearman_with_interval({m: R.per_query[m] for m in both},
                                  {m: paper.TABLE3[R.paper_key(m)] for m in both})


def false_negative_table(R: Results):
    """Paper Fig. 3, measured exactly with the hidden labels."""
    rows = []
    for meth in R.methods:
        s = R.mining.get(meth) or {}
        if "false_negative_rate" in s:
            rows.append({"method": R.label(meth), "negatives": s.get("negatives_emitted"),
                         "false negatives": s.get("false_negatives"), "rate": s.get("false_negative_rate"),
                         "queries with a false negative": s.get("queries_with_false_negative")})
    return _frame(rows, "method")


def teacher_row(R: Results, teacher: str) -> str | None:
    """The row of Table 1 a teacher corresponds to (by kind; the student as its own teacher)."""
    tc = R.study.teacher_config(teacher)
    if tc.kind in paper.TEACHER_KIND_TO_TABLE1:
        return paper.TEACHER_KIND_TO_TABLE1[tc.kind]
    if tc.kind == "dense" and tc.model == R.study.student.model:
        return "e5-large-unsupervised (student as teacher)"
    return None


def teacher_student(R: Results, teacher: str) -> str | None:
    """The model trained on ``teacher``'s reference-method negatives (the study's teacher: the
    reference method's own student)."""
    if f"teacher-{teacher}" in R.metrics:
        return f"teacher-{teacher}"
    return R.reference if teacher == R.study.teacher else None


def teacher_table(R: Results):
    """Table 1: a student per teacher, trained on that teacher's reference-method negatives."""
    rows = []
    for t in R.study.teacher_ablation:
        s = (R.teachers.get(t) or {}).get("mined") or {}
        row = teacher_row(R, t)
        name = teacher_student(R, t)
        rows.append({"teacher": t, "paper row": row, "paper NDCG@10": paper.TABLE1.get(row),
                     "NDCG@10 (student on its negatives)": R.ndcg(name),
                     "seeds": R.seeds(name), "mining": s.get("method"),
                     "false-negative rate": s.get("false_negative_rate"),
                     "mean negative score": s.get("mean_negative_score"), "queries with full set": s.get("queries_full")})
    return _frame(rows, "teacher")


def jaccard_table(R: Results, k: int | None = None):
    """Mean top-k Jaccard overlap between teachers' candidate lists (paper: top-4 overlap < 0.3)."""
    import pandas as pd

    from ..mining.ensembles import jaccard_matrix

    k = k or int(R.study.mining.num_negatives)
    return pd.DataFrame(jaccard_matrix(R.cand_ids, k)).round(3)


def ensemble_table(R: Results):
    """Teacher ensembles (paper Table 2): our mining statistics beside the paper's NDCG@10."""
    rows = []
    for kind, label in paper.ENSEMBLE_LABELS.items():
        s = R.ensembles.get(kind)
        if s:
            rows.append({"ensemble": label, "paper NDCG@10": paper.TABLE2[kind],
                         "teachers": ", ".join(s.get("teachers", [])), "false-negative rate": s.get("false_negative_rate"),
                         "negatives": s.get("negatives_emitted"), "queries with full set": s.get("queries_full")})
    return _frame(rows, "ensemble")


def stage_table(R: Results):
    """What stage 2 changed: NDCG@10 and topic accuracy of base -> stage 1 -> stage 2."""
    spec = next((m for m in R.study.models() if m.kind == "stage2"), None)
    if spec is None:
        return _frame([], "model")
    rows = []
    for name, label in (("base", "base model"), (spec.method, f"stage 1 ({R.label(spec.method)})"),
                        (spec.name, "stage 2")):
        m = R.metrics.get(name)
        if m:
            rows.append({"model": label, "NDCG@10": m.get("ndcg_at_10"), "topic accuracy": m.get("topic_accuracy")})
    return _frame(rows, "model")


SWEEP_FIELDS = {"perc": "TopK-PercPos (perc)", "margin": "TopK-MarginPos (margin)", "max_score": "TopK-Abs (max_score)"}


def sweep_points(R: Results) -> dict[str, list[tuple[float, str]]]:
    """Methods that differ from naive top-k by one threshold, grouped by filter: {field: [(value, method)]}.

    A sweep is a list of methods in params.yaml (``percpos090: {perc: 0.9}``, ...), so each
    point is mined, trained and evaluated like any method.
    """
    from dataclasses import replace

    out: dict[str, list[tuple[float, str]]] = {}
    for meth in R.methods:
        cfg = R.study.mining_config(meth)
        for f in SWEEP_FIELDS:
            v = getattr(cfg, f)
            if v is not None and R.paper_key(meth) != "naive":
                from ..mining.methods import paper_method

                if paper_method(replace(cfg, **{f: None})) == "naive":
                    out.setdefault(f, []).append((float(v), meth))
    return {k: sorted(v) for k, v in out.items()}


def mining_sweep_table(R: Results):
    """The mining-side threshold sweep as a table (one row per filter and threshold)."""
    rows = []
    for r in R.mining_sweep:
        fmt = lambda v, spec: None if v is None else format(v, spec)  # noqa: E731  (sensible precision)
        rows.append({"filter": SWEEP_FIELDS.get(r["filter"], "naive top-k (no filter)"),
                     "threshold": fmt(r["threshold"], ".2f"),
                     "false negatives (%)": fmt(None if r["false_negative_rate"] is None
                                                else 100 * r["false_negative_rate"], ".1f"),
                     "negatives / query": fmt(r["negatives_per_query"], ".2f"),
                     "queries with all n (%)": fmt(100 * r["share_full"], ".1f"),
                     "mean negative score": fmt(r["mean_negative_score"], ".3f"),
                     "mean negative rank": fmt(r["mean_negative_rank"], ".1f")})
    return _frame(rows, ["filter", "threshold"]) if rows else None


def defence_table(R: Results):
    """False-negative defences beyond the paper: what each removes (precision / recall against the
    hidden labels) and the false-negative rate of what is then mined."""
    rows = []
    for r in R.defences:
        pct = lambda v: None if v is None else f"{100 * v:.1f}"  # noqa: E731
        rows.append({"defence": r["defence"], "threshold": "—" if r["threshold"] is None else f"{r['threshold']:g}",
                     "negatives removed": r["removed"], "known false negatives removed": r["fn_removed"],
                     "true negatives lost": r["tn_lost"], "precision (%)": pct(r["precision"]),
                     "recall (%)": pct(r["recall"]), "false negatives mined (%)": pct(r["false_negative_rate"])})
    return _frame(rows, ["defence", "threshold"]) if rows else None


def sweep_table(R: Results):
    rows = []
    for f, pts in sweep_points(R).items():
        for value, meth in pts:
            m, s = R.metrics.get(meth) or {}, R.mining.get(meth) or {}
            d = R.difference(meth)
            rows.append({"filter": SWEEP_FIELDS[f], "value": value, "method": meth, "NDCG@10": m.get("ndcg_at_10"),
                         "gain vs naive [95% CI]": d.text() if d else None,
                         "false-negative rate": s.get("false_negative_rate"),
                         "queries with full set": s.get("queries_full")})
    return _frame(rows, "method")
