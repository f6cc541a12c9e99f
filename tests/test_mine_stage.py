"""The stage ``mine`` (:func:`nvr.stages.mine.mine_all`): one run writes what the method ablation,
the teacher ablation and the ensembles write one by one, byte for byte."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from nvr import config
from nvr.mining.candidates import Candidates
from nvr.paths import Layout
from nvr.stages import mine
from nvr.stages.ensembles import mine_ensembles

ROOT = Path(__file__).resolve().parents[1]
TEACHERS = ("minilm", "bm25", "random")


def _project(root: Path, study) -> None:
    """A 40-document corpus, 12 training queries (some with hidden second positives) and synthetic
    candidates (depth 25) for every teacher of the study."""
    rng = np.random.default_rng(3)
    data = root / "data"
    (data / "qrels").mkdir(parents=True)
    docs = [f"d{i}" for i in range(40)]
    with open(data / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for i, d in enumerate(docs):
            fh.write(json.dumps({"_id": d, "title": f"title {i}", "text": f"text of document {i} " * 3}) + "\n")
    queries = [f"q{i}" for i in range(12)]
    with open(data / "queries.jsonl", "w", encoding="utf-8") as fh:
        for i, q in enumerate(queries):
            fh.write(json.dumps({"_id": q, "text": f"query number {i}"}) + "\n")
    (data / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                               "".join(f"{q}\td{i}\t1\n" for i, q in enumerate(queries)))
    with open(data / "train_pairs.jsonl", "w", encoding="utf-8") as fh, \
            open(data / "hidden_positives.jsonl", "w", encoding="utf-8") as fh2:
        for i, q in enumerate(queries):
            fh.write(json.dumps({"query_id": q, "query": f"query number {i}", "positive_ids": [f"d{i}"]}) + "\n")
            hidden = [f"d{i}"] + ([f"d{i + 20}"] if i % 2 == 0 else [])
            fh2.write(json.dumps({"query_id": q, "positive_ids": hidden}) + "\n")
    lay = Layout.at(root)
    for t in TEACHERS:
        scale = 15.0 if t == "bm25" else 1.0
        ids = np.stack([rng.permutation(40)[:25] for _ in queries]).astype(np.int64)
        scores = np.sort(rng.uniform(0.2, 0.9, (len(queries), 25)), axis=1)[:, ::-1].astype(np.float32) * scale
        path = lay.candidates(t)
        path.parent.mkdir(parents=True)
        Candidates(query_ids=np.array(queries), cand_ids=ids, cand_scores=scores,
                   pos_ids=np.arange(len(queries), dtype=np.int64)[:, None],
                   pos_scores=(rng.uniform(0.6, 0.95, (len(queries), 1)) * scale).astype(np.float32),
                   exclude_ids=np.full((len(queries), 0), -1, np.int64)).save(path)


def _study(**changes):
    raw = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    raw["teacher_ablation"] = list(TEACHERS)
    raw["mining"]["methods"].update({"shift10": {"shift": 10}, "sampled": {"window": 10, "selection": "softmax",
                                                                          "temperature": 0.05},
                                     "overlap": {"max_positive_overlap": 0.5}})
    raw.update(changes)
    return config.parse(raw, check_paths=False)


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted((root / "artifacts").rglob("*")):
        if p.is_file() and "teachers" not in p.parts:
            raw = p.read_bytes()
            if p.name.endswith(".stats.json"):   # wall-clock seconds aside
                raw = json.dumps({k: v for k, v in json.loads(raw).items() if k != "seconds"}).encode()
            out[p.relative_to(root).as_posix()] = raw
    return out


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_mine_all_writes_what_each_item_writes_on_its_own(tmp_path):
    study = _study()
    one, each = tmp_path / "one", tmp_path / "each"
    for root in (one, each):
        _project(root, study)
    logger, seen = logging.getLogger("nvr"), _Lines()
    logger.addHandler(seen)
    try:
        result = mine.mine_all(study, one)
    finally:
        logger.removeHandler(seen)
    for m in study.method_names():
        mine.mine_method(study, m, each)
    for t in study.teacher_ablation:
        mine.mine_teacher(study, t, each)
    mine_ensembles(study, each)

    a, b = _files(one), _files(each)
    assert sorted(a) == sorted(b) and a == b
    methods, teachers = study.method_names(), list(TEACHERS)
    assert set(a) == {f"artifacts/{folder}/{n}.{ext}" for folder, names in (("mined", methods),
                                                                            ("teacher_mined", teachers))
                      for n in names for ext in ("jsonl", "scores.npz", "stats.json")} | \
        {f"artifacts/ensembles/{k}.{ext}" for k in ("cross_sample", "intra_sample_dedup", "intra_sample_kept")
         for ext in ("jsonl", "stats.json")}
    assert list(result["methods"]) == methods and list(result["teachers"]) == teachers
    assert set(result["ensembles"]) == {"cross_sample", "intra_sample_dedup", "intra_sample_kept"}
    assert result["ensembles"]["cross_sample"]["teachers"] == ["minilm", "bm25"]   # random left out
    assert result["methods"]["naive"]["false_negative_rate"] is not None
    # progress: one line per item, counted
    total = len(methods) + len(teachers) + 1
    done = [m for m in seen.lines if m.startswith("mine ") and " done " in m]
    assert len(done) == total and done[0].startswith(f"mine 1/{total}: method naive") and \
        done[-1].startswith(f"mine {total}/{total}: ensembles of minilm, bm25")

    # the notebook's views
    table = mine.stats_table(result["methods"], labels=mine.method_labels(study))
    assert list(table.index) == methods and "false-negative rate" in table and "label" in table
    assert table.loc["naive", "negatives / query"] == pytest.approx(4.0)
    assert list(mine.stats_table(result["ensembles"], index="ensemble").index) == list(result["ensembles"])
    assert len(mine.example_rows(Layout.at(one).mined("percpos095"), n=3)) == 3
    assert mine.teacher_overlap(study, one).shape == (3, 3)
    import matplotlib

    matplotlib.use("Agg")
    fig = mine.plot_score_histograms(study, one)
    assert len([ax for ax in fig.axes if ax.axison]) == len(methods)


def test_stats_table_without_hidden_labels_has_no_false_negative_column():
    stats = {"naive": {"negatives_emitted": 8, "queries_kept": 2, "queries_full": 2, "queries_short": 0,
                       "mean_positive_score": 0.8, "mean_negative_score": 0.6}}
    table = mine.stats_table(stats)
    assert "false-negative rate" not in table and table.loc["naive", "negatives / query"] == 4.0
