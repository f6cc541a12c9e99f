"""End-to-end: `dvc repro` of the smoke profile in a fresh copy of the project.

Checks the artifacts, metrics and reports the README promises, that a second `dvc repro`
does nothing, and that changing one mining method's parameter reruns the one mine stage and then
only that method's train / evaluate stages (and the report).
"""

import json
import re

import pytest
import yaml
from _project import run

pytestmark = pytest.mark.slow  # the `smoke_run` fixture (tests/conftest.py) runs `dvc repro` once per session


def test_repro_produces_reports_metrics_and_artifacts(smoke_run):
    proj = smoke_run.proj
    study = yaml.safe_load((proj / "params.yaml").read_text())
    methods = list(study["mining"]["methods"])
    stage2 = f"{study['train']['stage2_method']}-stage2"
    for name in ["base", "teacher", *methods, stage2]:
        m = json.loads((proj / "metrics" / f"{name}.json").read_text())
        assert 0.0 < m["ndcg_at_10"] <= 1.0, (name, m)
        assert 0.0 <= m["recall_at_100"] <= 1.0 and 0.0 <= m["mrr_at_10"] <= 1.0
    # the two-stage table: each of its three models scored its own topic accuracy, once
    for name in ("base", study["train"]["stage2_method"], stage2):
        assert "topic_accuracy" in json.loads((proj / "metrics" / f"{name}.json").read_text()), name
    for name in ["base", *methods]:   # per-query NDCG@10 of every seed (the paired bootstrap's input)
        pq = json.loads((proj / "metrics" / "per_query" / f"{name}.json").read_text())
        assert pq["seeds"] and all(len(v) > 0 for v in pq["seeds"].values())
    seeds = study["train"]["seeds"]
    for m in study["train"]["seed_methods"]:      # several training seeds: mean, sd and per-seed scores
        met = json.loads((proj / "metrics" / f"{m}.json").read_text())
        assert set(met["seeds"]) == {str(s) for s in seeds} and "ndcg_at_10_std" in met
        assert (proj / "models" / m / "seeds" / str(seeds[1]) / "config.json").is_file()
    for kind in ("cross_sample", "intra_sample_dedup", "intra_sample_kept"):
        rows = [json.loads(x) for x in (proj / "artifacts" / "ensembles" / f"{kind}.jsonl").read_text().splitlines()]
        assert rows and all(len(r["negative_teachers"]) == len(r["negative_ids"]) for r in rows)
    for m in methods:
        rows = [json.loads(line) for line in (proj / "artifacts" / "mined" / f"{m}.jsonl").read_text().splitlines()]
        assert rows and all(set(r["negative_ids"]).isdisjoint(r["positive_ids"]) for r in rows)
        assert (proj / "models" / m / "config.json").is_file()
        assert (proj / "models" / m / "model.safetensors").is_file()
    html = (proj / "reports" / "study.html").read_text()
    assert "NV-Retriever reproduction" in html and "How to reproduce" in html
    # figures in the page (methods, mining sweep, false negatives, score distributions, training curves),
    # code out of it
    assert html.count("data:image/png;base64") >= 5, html.count("data:image/png;base64")
    assert "False-negative defences beyond the paper" in html and "shingle overlap" in html
    assert "Mining side, every threshold" in html and (proj / "reports" / "figures" / "mining_sweep.png").is_file()
    assert "report.collect(" not in html and ">NaN<" not in html
    assert "95% bootstrap interval" in html
    for nb in ("03_mine", "04_finetune/naive"):    # the stage renders carry their figures too
        assert "data:image/png;base64" in (proj / "reports" / f"{nb}.html").read_text(), nb
    # one mine stage wrote every method's, every teacher's and every ensemble's negatives, and shows them all
    for t in study["teacher_ablation"]:
        assert (proj / "artifacts" / "teacher_mined" / f"{t}.jsonl").is_file(), t
    for m in methods:
        assert (proj / "artifacts" / "mined" / f"{m}.stats.json").is_file(), m
    mine_page = (proj / "reports" / "03_mine.html").read_text()
    assert "Mine hard negatives with every method" in mine_page and "intra_sample_dedup" in mine_page
    assert all(f">{m}<" in mine_page for m in methods)
    assert (proj / "reports" / "figures" / "ndcg_by_method.png").stat().st_size > 1000
    for nb in ["01_prepare_data", "02_teacher_embed/minilm", "03_mine", "04_finetune/naive",
               "05_evaluate/base"]:
        assert (proj / "reports" / f"{nb}.html").is_file(), nb
    shown = run(["dvc", "metrics", "show", "--json"], proj).stdout
    for name in ["base", "teacher", *methods]:
        assert f"metrics/{name}.json" in shown


def test_second_repro_does_nothing(smoke_run):
    proj = smoke_run.proj
    res = run(["dvc", "repro"], proj)
    assert "Running stage" not in res.stdout, res.stdout
    st = run(["dvc", "status", "--json"], proj).stdout
    assert json.loads(st) == {}


def test_changing_one_method_reruns_only_its_stages(smoke_run):
    """Runs last (it leaves the project with a changed parameter)."""
    proj = smoke_run.proj
    params = proj / "params.yaml"
    data = yaml.safe_load(params.read_text())
    data["mining"]["methods"]["naive"] = {"shift": 1}
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    # the mine stage reads the mining section; the report reads every method's settings (its labels
    # and paper rows come from them); no other stage sees the change before a mined file changes
    assert set(json.loads(run(["dvc", "status", "--json"], proj).stdout)) == {"mine", "report"}
    before = {p.name: p.read_bytes() for p in (proj / "artifacts" / "mined").glob("*.jsonl")}
    out = run(["dvc", "repro"], proj).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    # mine reran every method, but only naive's file changed: the other methods' stages were skipped
    assert ran == {"mine", "train@naive", "evaluate@naive", "report"}, ran
    after = {p.name: p.read_bytes() for p in (proj / "artifacts" / "mined").glob("*.jsonl")}
    assert [n for n in sorted(before) if before[n] != after[n]] == ["naive.jsonl"]
