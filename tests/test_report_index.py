"""reports/<profile>/ archives and the front page (reports/index.html)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nvr.report import index as I


def _run(root: Path, stages: list[str], ndcg: float) -> None:
    rep = root / "reports"
    (rep / "figures").mkdir(parents=True, exist_ok=True)
    (rep / "study.html").write_text(f"<html>ndcg {ndcg}</html>")
    (rep / "study.ipynb").write_text("{}")
    (rep / "figures" / "a.png").write_bytes(b"png")
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics" / "naive.json").write_text(json.dumps({"ndcg_at_10": ndcg}))
    for s in stages:
        (rep / s).parent.mkdir(parents=True, exist_ok=True)
        (rep / s).write_text("<html>stage</html>")


def test_archive_then_rerender_keeps_the_runs_provenance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    revs = iter([("aaaaaaa", ""), ("bbbbbbb", "")])
    monkeypatch.setattr(I, "code_state", lambda: next(revs))
    _run(tmp_path, ["01_prepare_data.html", "04_finetune/naive.html"], 0.5)
    dest = I.archive_run(tmp_path, "default", 600.0)
    first = json.loads((dest / "run.json").read_text())
    assert first["git"] == "aaaaaaa" and first["wall_seconds"] == 600.0 and "report_git" not in first
    assert (dest / "stages" / "04_finetune" / "naive.html").is_file()

    # a re-render from the same metrics in a checkout that ran only some stages again
    (tmp_path / "reports" / "04_finetune" / "naive.html").unlink()
    (tmp_path / "reports" / "study.html").write_text("<html>new figures</html>")
    I.archive_run(tmp_path, "default", None, results_from=first)
    again = json.loads((dest / "run.json").read_text())
    assert again["git"] == "aaaaaaa" and again["wall_seconds"] == 600.0 and again["finished"] == first["finished"]
    assert again["report_git"] == "bbbbbbb" and "report_rendered" in again
    assert (dest / "stages" / "04_finetune" / "naive.html").is_file()       # kept from the run
    assert (dest / "study.html").read_text() == "<html>new figures</html>"
    page = I.write_index(tmp_path).read_text()
    assert "aaaaaaa (report re-rendered at bbbbbbb)" in page and "default/study.html" in page
    assert "10.0 min" in page


def test_rerender_without_an_archive_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _run(tmp_path, [], 0.5)
    Path("params.yaml").write_text((Path(__file__).resolve().parents[1] / "profiles" / "smoke.yaml").read_text())
    with pytest.raises(SystemExit) as exc:
        I.main(["archive", "--rerender"])
    assert exc.value.code == 2 and "reports/smoke/run.json not found" in capsys.readouterr().err


def test_report_box_names_the_revision_that_computed_the_numbers(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from nvr import provenance as P

    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    for name, rev in (("naive", "36375d2"), ("base", "36375d2"), ("old", None)):
        m = {"ndcg_at_10": 0.5, **({"code_revision": rev} if rev else {})}
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps(m))
    assert P.metrics_revisions() == {"not recorded": 1, "36375d2": 2}
    monkeypatch.setattr(P, "code_state", lambda: ("73b7187", ""))
    models = [SimpleNamespace(name=n) for n in ("naive", "base", "old")]
    study = SimpleNamespace(raw={}, profile="default", seed=13, models=lambda: models)
    box = P.reproduce_box(study, stage="report")
    assert "computed at code revision `36375d2` (2 files), `not recorded` (1 files)" in box
    assert "rendered from them at `73b7187`" in box
    assert "computed at code revision" not in P.reproduce_box(study, stage="mine")


def test_report_box_counts_only_the_studys_metrics(tmp_path, monkeypatch):
    """metrics/ of a SciFact checkout also holds the default's committed teacher.json: the box of the
    SciFact report must not count it."""
    from types import SimpleNamespace

    from nvr import provenance as P

    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    for name, rev in (("naive", "73b7187"), ("base", "73b7187"), ("teacher", "36375d2")):
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps({"code_revision": rev}))
    monkeypatch.setattr(P, "code_state", lambda: ("73b7187", ""))
    study = SimpleNamespace(raw={}, profile="scifact", seed=13,
                            models=lambda: [SimpleNamespace(name="naive"), SimpleNamespace(name="base")])
    assert "computed at code revision" not in P.reproduce_box(study, stage="report")
    assert P.metrics_revisions(names=["naive", "base"]) == {"73b7187": 2}


def test_archive_keeps_only_this_profiles_metrics(tmp_path, monkeypatch):
    """A checkout's metrics/ can still hold the default profile's committed files (teacher.json, ...):
    a SciFact archive must not carry them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(I, "code_state", lambda: ("aaaaaaa", ""))
    _run(tmp_path, [], 0.5)
    (tmp_path / "metrics" / "teacher-bm25.json").write_text(json.dumps({"ndcg_at_10": 0.84}))
    (tmp_path / "metrics" / "per_query").mkdir()
    (tmp_path / "metrics" / "per_query" / "naive.json").write_text("{}")
    dest = I.archive_run(tmp_path, "scifact", 60.0, metric_names=["base", "naive"])
    assert sorted(p.relative_to(dest / "metrics").as_posix() for p in (dest / "metrics").rglob("*.json")) == \
        ["naive.json", "per_query/naive.json"]


def test_report_reads_only_the_studys_models(tmp_path):
    from nvr import config
    from nvr.report.results import collect

    study = config.load(Path(__file__).resolve().parents[1] / "profiles" / "scifact.yaml", check_paths=False)
    (tmp_path / "metrics").mkdir()
    for name in ("base", "naive", "teacher", "teacher-random"):   # the last two: not models of this profile
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps({"ndcg_at_10": 0.5}))
    R = collect(tmp_path, study)
    assert sorted(R.metrics) == ["base", "naive"]


def test_code_state_names_a_profile_copy_and_whole_file_names(tmp_path, monkeypatch):
    import subprocess

    from nvr import provenance as P

    monkeypatch.chdir(tmp_path)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "scifact.yaml").write_text("profile: scifact\n")
    (tmp_path / "params.yaml").write_text("profile: default\n")
    (tmp_path / "nvr").mkdir()
    (tmp_path / "nvr" / "a.py").write_text("x = 1\n")
    for c in (["init", "-q"], ["add", "-A"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *c], check=True)
    (tmp_path / "params.yaml").write_text("profile: scifact\n")          # make repro PROFILE=profiles/scifact.yaml
    rev, note = P.code_state()
    assert note == " with params.yaml = profiles/scifact.yaml"
    (tmp_path / "params.yaml").write_text("profile: edited\n")
    (tmp_path / "nvr" / "a.py").write_text("x = 2\n")
    assert P.code_state()[1] == " plus uncommitted changes to nvr/a.py, params.yaml"


def test_archive_links_a_one_file_stage_render_and_keeps_the_mining_stats(tmp_path, monkeypatch):
    """The stage ``mine`` renders one page (reports/03_mine.html): it is archived and linked; the
    per-method pages an older layout left in reports/03_mine/ are stale and stay out. The mining
    statistics (DVC-cached, not in git) are archived under mining/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(I, "code_state", lambda: ("aaaaaaa", ""))
    _run(tmp_path, ["01_prepare_data.html", "02_teacher_embed/minilm.html", "03_mine.html",
                    "03_mine/naive.html", "04_finetune/naive.html"], 0.5)
    for folder, name in (("mined", "naive"), ("teacher_mined", "bm25"), ("ensembles", "cross_sample")):
        (tmp_path / "artifacts" / folder).mkdir(parents=True)
        (tmp_path / "artifacts" / folder / f"{name}.stats.json").write_text("{}")
        (tmp_path / "artifacts" / folder / f"{name}.jsonl").write_text("")
    dest = I.archive_run(tmp_path, "default", 60.0)
    stages = sorted(p.relative_to(dest / "stages").as_posix() for p in (dest / "stages").rglob("*.html"))
    assert stages == ["01_prepare_data.html", "02_teacher_embed/minilm.html", "03_mine.html", "04_finetune/naive.html"]
    assert sorted(p.relative_to(dest / "mining").as_posix() for p in (dest / "mining").rglob("*")
                  if p.is_file()) == ["ensembles/cross_sample.stats.json", "mined/naive.stats.json",
                                      "teacher_mined/bm25.stats.json"]
    page = I.write_index(tmp_path).read_text()
    assert "href='default/stages/03_mine.html'" in page and "4 stage renders" in page
