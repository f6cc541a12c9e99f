"""The report's headline says how the base model compares with MTEB's own number, and why."""

from pathlib import Path

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
