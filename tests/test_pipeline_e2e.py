"""End-to-end: `dvc repro` of the smoke profile in a fresh copy of the project.

Checks the artifacts, metrics and reports the README promises, that a second `dvc repro`
does nothing, and that changing one mining method's parameter invalidates only the stages
that depend on it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env():
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return env


def run(cmd, cwd, check=True, **kw):
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return res


def make_project(dest: Path, profile: str = "profiles/smoke.yaml") -> Path:
    """Copy the project's tracked and untracked-not-ignored files, with ``profile`` as params.yaml."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file() and not f.startswith(("reports/", "metrics/")):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    shutil.copy2(ROOT / profile, dest / "params.yaml")
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "init"], dest)
    return dest


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    proj = make_project(tmp_path_factory.mktemp("smoke"))
    res = run(["dvc", "repro"], proj, timeout=1200)
    return proj, res


def test_repro_produces_reports_metrics_and_artifacts(smoke_run):
    proj, _ = smoke_run
    study = yaml.safe_load((proj / "params.yaml").read_text())
    methods = list(study["mining"]["methods"])
    stage2 = f"{study['train']['stage2_method']}-stage2"
    for name in ["base", "teacher", *methods, stage2]:
        m = json.loads((proj / "metrics" / f"{name}.json").read_text())
        assert 0.0 < m["ndcg_at_10"] <= 1.0, (name, m)
        assert 0.0 <= m["recall_at_100"] <= 1.0 and 0.0 <= m["mrr_at_10"] <= 1.0
    assert "topic_accuracy" in json.loads((proj / "metrics" / f"{stage2}.json").read_text())
    for m in methods:
        rows = [json.loads(line) for line in (proj / "artifacts" / "mined" / f"{m}.jsonl").read_text().splitlines()]
        assert rows and all(set(r["negative_ids"]).isdisjoint(r["positive_ids"]) for r in rows)
        assert (proj / "models" / m / "config.json").is_file()
        assert (proj / "models" / m / "model.safetensors").is_file()
    html = (proj / "reports" / "study.html").read_text()
    assert "NV-Retriever reproduction" in html and "How to reproduce" in html
    assert (proj / "reports" / "figures" / "ndcg_by_method.png").stat().st_size > 1000
    for nb in ["01_prepare_data", "02_teacher_embed/minilm", "03_mine/naive", "04_finetune/naive",
               "05_evaluate/base"]:
        assert (proj / "reports" / f"{nb}.html").is_file(), nb
    shown = run(["dvc", "metrics", "show", "--json"], proj).stdout
    for name in ["base", "teacher", *methods]:
        assert f"metrics/{name}.json" in shown


def test_second_repro_does_nothing(smoke_run):
    proj, _ = smoke_run
    res = run(["dvc", "repro"], proj)
    assert "Running stage" not in res.stdout, res.stdout
    st = run(["dvc", "status", "--json"], proj).stdout
    assert json.loads(st) == {}


def test_changing_one_method_reruns_only_its_stages(smoke_run):
    """Runs last (it leaves the project with a changed parameter)."""
    proj, _ = smoke_run
    params = proj / "params.yaml"
    data = yaml.safe_load(params.read_text())
    data["mining"]["methods"]["naive"] = {"shift": 1}
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    assert set(json.loads(run(["dvc", "status", "--json"], proj).stdout)) == {"mine@naive"}
    out = run(["dvc", "repro"], proj).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {"mine@naive", "train@naive", "evaluate@naive", "report"}, ran
