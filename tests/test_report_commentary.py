"""The report's headline says how the base model compares with MTEB's own number, and why."""

from pathlib import Path

import numpy as np

from nvr import config
from nvr.report import commentary
from nvr.report.results import Results

ROOT = Path(__file__).parents[1]


def test_scifact_headline_compares_base_with_mteb_and_names_the_length():
    study = config.load(ROOT / "profiles" / "scifact.yaml")
    R = Results(study=study, root=ROOT, methods=list(study.mining.methods), metrics={"base": {"ndcg_at_10": 0.6012}})
    text = commentary.headline(R)
    assert "Base model NDCG@10 = 0.6012 at 64 passage tokens" in text
    assert "MTEB's own score for this model on scifact is 0.6451 at 256 passage tokens" in text
    assert "ours is -0.0439 from it" in text
    assert "cut at 64 tokens" in text


def test_no_mteb_sentence_where_mteb_has_no_number():
    study = config.load(ROOT / "params.yaml")
    R = Results(study=study, root=ROOT, methods=list(study.mining.methods), metrics={"base": {"ndcg_at_10": 0.768}})
    text = commentary.headline(R)
    assert "Base model NDCG@10 = 0.7680" in text and "MTEB" not in text


def test_false_negative_figure_falls_back_to_negatives_above_the_positive_on_beir(tmp_path, monkeypatch):
    """BEIR data has no hidden labels: the figure must show a measured proxy, not an empty chart."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from nvr.report import figures

    drawn = {}
    real_bar = Axes.bar

    def bar(self, x, h, *a, **k):
        drawn["heights"] = list(h)
        return real_bar(self, x, h, *a, **k)

    monkeypatch.setattr(Axes, "bar", bar)
    study = config.load(ROOT / "profiles" / "scifact.yaml")
    mining = {"naive": {"negatives_emitted": 400, "negatives_above_anchor": 100, "false_negative_rate": None},
              "percpos095": {"negatives_emitted": 400, "negatives_above_anchor": 0}}
    R = Results(study=study, root=tmp_path, methods=["naive", "percpos095"], mining=mining)
    figures.plot_false_negatives(R, tmp_path / "fn.png")
    assert drawn["heights"] == [25.0, 0.0]
    assert (tmp_path / "fn.png").stat().st_size > 1000


def test_question_verdict_reads_sign_and_size():
    v = commentary.question_verdict
    assert v(0.017, 0.055, 0.0449).startswith("agrees with the paper") and "lies inside the interval" in v(0.017, 0.055, 0.0449)
    assert "ruled out" in v(0.002, 0.020, 0.0449) and v(0.002, 0.020, 0.0449).startswith("agrees")
    assert v(-0.021, 0.014, 0.0449).startswith("is not resolved") and "ruled out" in v(-0.021, 0.014, 0.0449)
    assert v(-0.03, -0.01, 0.0449).startswith("**disagrees") and "ruled out" in v(-0.03, -0.01, 0.0449)
    assert "lies inside" in v(-0.01, 0.06, 0.0449) and v(-0.01, 0.06, 0.0449).startswith("is not resolved")
    assert "larger than the paper" in v(0.06, 0.09, 0.0449)


def _per_query(values: dict[int, list[float]]) -> dict:
    return {seed: {f"q{i}": v for i, v in enumerate(vals)} for seed, vals in values.items()}


def test_teacher_commentary_gives_paired_intervals_and_seed_counts():
    """Teachers are compared with the study teacher's student by paired differences with intervals,
    each model pooled over its own seeds, never by an order of point estimates."""
    study = config.load(ROOT / "profiles" / "scifact.yaml")   # teacher mpnet; ablation mpnet, minilm, bm25, random
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, 200)
    ref = study.reference_method
    per_query = {
        ref: _per_query({13: list(base), 14: list(base + 0.01), 15: list(base - 0.01)}),
        "teacher-minilm": _per_query({13: list(base + rng.normal(0, 0.05, 200))}),   # within noise
        "teacher-bm25": _per_query({13: list(base - 0.2)}),                             # clearly below
    }
    metrics = {name: {"ndcg_at_10": float(np.mean([v for s in pq.values() for v in s.values()]))}
               for name, pq in per_query.items()}
    R = Results(study=study, root=ROOT, methods=list(study.mining.methods), metrics=metrics, per_query=per_query)
    text = commentary.teacher_commentary(R)
    assert "minus the study teacher mpnet's" in text and "3 seeds" in text
    assert "**resolved below** it: bm25 -0.2000 [" in text and "(1 seed)" in text
    assert "**within noise**: minilm" in text
    assert "random" not in text.split("Ours")[1].split("The paper's reading")[0]   # no student: not listed
    assert "one training seed per teacher" not in text
