"""Stage outputs published together: a kill inside the publish step leaves old or new, never a mix.

The mine stages write ``<method>.jsonl`` with ``.scores.npz`` and ``.stats.json``; the evaluate
stage writes ``metrics/<model>.json`` with ``metrics/per_query/<model>.json``. Each set is staged
under temporary names and renamed by :func:`nvr.io.publish`. The kill is injected at the publish
step itself (``os.replace`` exits the process right after the first rename), not by timing; the
next reader (``read_mined``, the report's ``collect``) or writer completes the interrupted publish.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nvr.io import recover_dir

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "beir_tiny"

PAIRS = [("q1", "What is the capital of France?", ["d1"]),
         ("q6", "European capital cities", ["d1"])]

# mine ``n`` queries of the tiny corpus with BM25 and write them through the stage writer
WRITER = r"""
import os, sys
from pathlib import Path
root, out, n, kill = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "kill"
import nvr.io
real_replace = os.replace
def replace(src, dst, *a, **k):
    real_replace(src, dst, *a, **k)
    if kill and os.path.abspath(dst) == os.path.abspath(out):   # the mined file is in place, the rest not yet
        os._exit(137)
nvr.io.os.replace = replace

from nvr.config import TeacherConfig
from nvr.mining import mine, mining_stats, query_keys
from nvr.mining.methods import MiningConfig
from nvr.mining.teachers import rank_candidates
from nvr.paths import Layout
from nvr.stages.context import StudyData
from nvr.stages.mine import write_mined_outputs

data = StudyData.load(Layout.at(root))
pairs = data.pairs[:n]
pos = data.positives()[:n]
cands = rank_candidates(TeacherConfig(kind="bm25", depth=3), [p.query_id for p in pairs],
                        [p.query for p in pairs], data.doc_texts, pos, seed=13)
cfg = MiningConfig(num_negatives=2)
m = mine(cands.cand_ids, cands.cand_scores, cands.pos_ids, cands.pos_scores, cfg,
         query_keys=query_keys(cands.ids()), exclude_ids=cands.exclude_ids)
stats = mining_stats(m, cands.pos_scores)
stats["written_by"] = n
write_mined_outputs(out, m, cands, data, stats)
"""


@pytest.fixture()
def project(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TINY, data)
    with open(data / "train_pairs.jsonl", "w", encoding="utf-8") as fh:
        for qid, text, pos in PAIRS:
            fh.write(json.dumps({"query_id": qid, "query": text, "positive_ids": pos}) + "\n")
    return tmp_path


def _write(project: Path, out: Path, n: int, kill: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", WRITER, str(project), str(out), str(n), "kill" if kill else "ok"],
                          env=env, capture_output=True, text=True, timeout=300)


def _state(out: Path) -> tuple[int, int]:
    """(rows in the mined file, queries the stats were written for)."""
    stats = json.loads(out.with_suffix(".stats.json").read_text())
    with np.load(out.with_suffix(".scores.npz")) as z:
        assert len(z["positive"]) > 0
    return len(out.read_text().splitlines()), stats["written_by"]


def test_mined_file_scores_and_stats_are_published_together(project):
    from nvr.mining import read_mined

    out = project / "artifacts" / "mined" / "naive.jsonl"
    r = _write(project, out, 1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _state(out) == (1, 1)
    old_scores = out.with_suffix(".scores.npz").read_bytes()

    r = _write(project, out, 2, kill=True)
    assert r.returncode == 137, r.stderr[-3000:]
    # killed between the renames: the new mined file beside the old scores and stats, a journal left
    assert _state(out) == (2, 1)
    assert out.with_suffix(".scores.npz").read_bytes() == old_scores
    assert (out.parent / ".naive.jsonl.publish.json").is_file()

    rows = read_mined(out)                        # a reader completes the publish first
    assert len(rows) == 2 and _state(out) == (2, 2)
    assert out.with_suffix(".scores.npz").read_bytes() != old_scores
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_next_stage_run_rolls_a_killed_publish_forward(project):
    out = project / "artifacts" / "mined" / "naive.jsonl"
    assert _write(project, out, 2, kill=True).returncode == 137
    r = _write(project, out, 1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _state(out) == (1, 1)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_report_collect_completes_a_killed_evaluate_publish(tmp_path):
    """The evaluate stage's pair (metrics + per-query scores), killed after the first rename."""
    from nvr.io import publish, stage_json

    metrics, per_query = tmp_path / "metrics" / "naive.json", tmp_path / "metrics" / "per_query" / "naive.json"
    publish([(stage_json(metrics, {"ndcg_at_10": 0.1}), metrics), (stage_json(per_query, {"run": 1}), per_query)])
    staged = [(stage_json(metrics, {"ndcg_at_10": 0.2}), metrics), (stage_json(per_query, {"run": 2}), per_query)]
    journal = metrics.with_name(".naive.json.publish.json")
    journal.write_text(json.dumps([[str(t), str(f)] for t, f in staged]))
    os.replace(*staged[0])                         # the kill came right after the first rename
    assert json.loads(metrics.read_text())["ndcg_at_10"] == 0.2 and json.loads(per_query.read_text())["run"] == 1
    assert recover_dir(metrics.parent) == 1
    assert json.loads(per_query.read_text())["run"] == 2 and not journal.exists()
    assert recover_dir(metrics.parent) == 0

