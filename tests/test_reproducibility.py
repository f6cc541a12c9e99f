"""Reproducibility, measured; and surviving faults.

* Two runs of the smoke profile from clean copies (each with its own fresh ``cache/``) give
  byte-identical data, teacher candidates, mined negatives and model weights, and the same
  metrics (only wall-clock ``seconds`` differ).
* The second run is killed with SIGKILL (whole process group) in the middle of
  ``embed@minilm``, of the ``mine`` stage and of a ``train@`` stage (while the fine-tuned model
  is being written, after a checkpoint), then re-run: it finishes, ``dvc status`` is clean,
  nothing temporary is left behind, training resumed from its checkpoint, and everything
  equals the uninterrupted run.
* A collaborator who clones the repository and ``dvc pull``s from a DVC remote gets a clean
  ``dvc status`` and ``dvc repro`` recomputes nothing.

The first run is the session's ``smoke_run`` (tests/conftest.py), shared with test_pipeline_e2e.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from _project import compare_snapshots, env, make_project, run, snapshot, temp_leftovers

pytestmark = pytest.mark.slow

RUNNING = re.compile(r"Running stage '([^']+)'")


# --------------------------------------------------------------------------- killing dvc repro
def _procs_in(proj: Path) -> list[int]:
    """Processes whose working directory is the project (dvc, papermill, the notebook kernel)."""
    pids = []
    real = os.path.realpath(proj)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/cwd") == real:
                    pids.append(int(d))
            except OSError:
                pass
    return pids


class Repro:
    """`dvc repro` in its own process group; a thread collects its merged output and notes when
    each stage starts and when a marker text first appears."""

    def __init__(self, proj: Path, markers=("passages ->",)):
        self.proj, self.markers = proj, markers
        self.proc = subprocess.Popen(["dvc", "repro"], cwd=proj, env=env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.text = ""
        self.stages: list[tuple[str, float]] = []   # (stage, time it started)
        self.seen: dict[str, float] = {}            # marker -> time it first appeared
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        for chunk in iter(lambda: os.read(self.proc.stdout.fileno(), 65536), b""):
            start = max(0, len(self.text) - 200)
            self.text += dec.decode(chunk)
            now = time.time()
            known = {s for s, _ in self.stages}
            for s in RUNNING.findall(self.text, start):
                if s not in known:
                    self.stages.append((s, now))
                    known.add(s)
            for m in self.markers:
                if m not in self.seen and m in self.text[start:]:
                    self.seen[m] = now

    def kill_during(self, prefix: str, ready, whole_job: bool = False, timeout: float = 900) -> dict:
        """SIGKILL the process group once the current stage starts with ``prefix`` and
        ``ready(stage, seconds since it started)`` holds.

        The notebook kernel runs in its own session (jupyter_client starts it so), so the
        group kill misses it: it notices its parent died within about a second and exits,
        and may still write in that second. ``whole_job`` also SIGKILLs it at once (a killed
        machine or batch job). Returns what was killed and what was left behind."""
        t_end = time.time() + timeout
        while time.time() < t_end and self.proc.poll() is None:
            if self.stages:
                cur, t_start = self.stages[-1]
                if cur.startswith(prefix) and ready(cur, time.time() - t_start):
                    job = _procs_in(self.proj)
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    for pid in job if whole_job else []:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    self.proc.wait()
                    t_kill = time.time()
                    while _procs_in(self.proj) and time.time() - t_kill < 30:
                        time.sleep(0.1)
                    return {"stage": cur, "after_s": round(t_kill - t_start, 2), "orphans": _procs_in(self.proj),
                            "orphans_gone_s": round(time.time() - t_kill, 1), "left": temp_leftovers(self.proj)}
            time.sleep(0.01)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        raise AssertionError(f"no stage '{prefix}*' to kill (exit {self.proc.poll()}):\n{self.text[-4000:]}")

    def finish(self, timeout: float = 1200) -> str:
        self.proc.wait(timeout=timeout)
        self._reader.join(10)
        return self.text


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """The smoke profile, killed mid-stage in embed, mine, train and evaluate, re-run until it finishes.

    ``train.stage1.save_every: 1`` (a checkpoint after step 1 of 2; it does not change the
    training) so the killed training has a checkpoint to resume from.
    """
    proj = make_project(tmp_path_factory.mktemp("killed"))
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["train"]["stage1"]["save_every"] = 1
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "checkpoint every step"], proj)

    kills, outputs, t0 = [], [], time.time()

    def running_copy(render, stage):  # reports/<render>/.<item>.running.ipynb, or reports/.<render>.running.ipynb
        if "@" in stage:
            return proj / "reports" / render / f".{stage.split('@', 1)[1]}.running.ipynb"
        return proj / "reports" / f".{render}.running.ipynb"

    def notebook_ready(render, min_secs=2.0):  # the stage's notebook is executing (its running copy exists)
        def ready(stage, secs):
            return running_copy(render, stage).exists() and secs > min_secs
        return ready

    def mine_ready(r):  # the one mine stage, once it has published its first method (more to write)
        executing = notebook_ready("03_mine", min_secs=0.0)
        return lambda stage, secs: executing(stage, secs) and "mine 1/" in r.seen

    def train_ready(stage, secs):  # right after the step-1 checkpoint (step 2 and the final save to go)
        m = stage.split("@", 1)[1]
        return (proj / "models" / f"{m}.work" / "ckpt-1" / "state.json").is_file()

    def embed_ready(r):  # 1 s into encoding the corpus (streamed into cache/embeddings/minilm/)
        return lambda stage, secs: "passages ->" in r.seen and time.time() - r.seen["passages ->"] > 1.0

    # embed and mine: only dvc's process group (the kernel exits by itself, checked below);
    # train: the whole job at once, so the kernel cannot finish the training in its last second
    for prefix, ready, whole in (("embed@minilm", embed_ready, False), ("mine", mine_ready, False),
                                 ("train@", train_ready, True)):
        r = Repro(proj, markers=("passages ->", "mine 1/"))
        kills.append(r.kill_during(prefix, ready(r) if ready in (embed_ready, mine_ready) else ready,
                                   whole_job=whole))
        outputs.append(r.text)
    if not any(p.endswith(".work") for p in kills[-1]["left"]):
        # the kill came after the training had finished (a very busy machine): try the next train@ stage
        r = Repro(proj)
        kills.append(r.kill_during("train@", train_ready, whole_job=True))
        outputs.append(r.text)
    r = Repro(proj)  # evaluate: killed while it scores (metrics + per-query scores are published together)
    kills.append(r.kill_during("evaluate@", notebook_ready("05_evaluate"), whole_job=True))
    outputs.append(r.text)
    final = Repro(proj)
    out = final.finish()
    outputs.append(out)
    assert final.proc.returncode == 0, out[-6000:]
    return {"proj": proj, "kills": kills, "outputs": outputs, "seconds": round(time.time() - t0, 1)}


def test_killed_stages_rerun_and_finish_clean(killed_run):
    proj, kills, outputs = killed_run["proj"], killed_run["kills"], killed_run["outputs"]
    kinds = [k["stage"].split("@")[0] for k in kills]
    assert kinds[:3] == ["embed", "mine", "train"] and kinds[-1] == "evaluate", kinds
    print(f"\nkilled run: {killed_run['seconds']} s in all")
    for k in kills:
        print(f"  killed {k['stage']} {k['after_s']} s after it started; kernel gone after {k['orphans_gone_s']} s; "
              f"left behind: {k['left']}")
    for k in kills:
        assert not k["orphans"], f"processes survived the kill of {k['stage']}: {k['orphans']}"
    # every killed stage was not recorded as done: the next `dvc repro` ran it again (no stale lock)
    for k, nxt in zip(kills, outputs[1:]):
        assert f"Running stage '{k['stage']}'" in nxt, (k, nxt[-3000:])
    assert json.loads(run(["dvc", "status", "--json"], proj).stdout) == {}
    assert temp_leftovers(proj) == []
    # the killed training resumed from its checkpoint (and the result equals the clean run's, below)
    train_kill = [k for k in kills if k["stage"].startswith("train@")][-1]
    trained = train_kill["stage"].split("@", 1)[1]
    assert f"models/{trained}.work" in train_kill["left"], train_kill
    summary = json.loads((proj / "models" / trained / "train_summary.json").read_text())
    assert summary["resumed_from"] == 1, summary


def test_two_runs_agree_byte_for_byte(smoke_run, killed_run):
    """The clean run and the killed-and-rerun one produced the same bytes."""
    cmp = compare_snapshots(smoke_run.snapshot, snapshot(killed_run["proj"]))
    print(f"\nidentical: {len(cmp['identical'])} files; same values but seconds / resumed_from / save_every / "
          f"project path: {cmp['same_values']}")
    assert not cmp["missing"] and not cmp["different"], cmp
    ident = set(cmp["identical"])
    must = [n for n in smoke_run.snapshot
            if re.match(r"artifacts/(mined|teacher_mined)/[^/]+\.jsonl$", n)
            or (n.startswith("data/") and not n.endswith(".json"))
            or n.endswith(("model.safetensors", ".loss.json", ".npy"))]
    assert {n for n in must if "/mined/" in n} and {n for n in must if n.endswith("model.safetensors")}
    assert [n for n in must if n not in ident] == [], "must be byte-identical"
    # .npz too (np.savez stamps every zip entry 1980-01-01, so equal arrays give equal files)
    npz = [n for n in smoke_run.snapshot if n.endswith(".npz")]
    assert any(n.endswith("candidates.npz") for n in npz) and [n for n in npz if n not in ident] == []
    # only wall-clock fields (and the absolute project path) may differ in JSON files
    for n in cmp["same_values"]:
        assert n.endswith((".json", ".jsonl")) and n.rsplit("/", 1)[-1] in (
            "summary.json", "train_summary.json", "train_log.jsonl") or n.startswith("metrics/") \
            or n.endswith(".stats.json"), n


def _cache_false_outs(proj: Path) -> list[str]:
    from dvc.repo import Repo

    with Repo(str(proj)) as repo:
        return sorted(str(o.fs_path).replace(str(proj) + os.sep, "") for s in repo.index.stages for o in s.outs
                      if not o.use_cache)


def test_collaborator_pulls_instead_of_recomputing(killed_run, tmp_path):
    """push to a local-folder remote, clone the git repo, pull: nothing to reproduce."""
    proj = killed_run["proj"]
    store, clone = tmp_path / "dvc-storage", tmp_path / "clone"
    run(["dvc", "remote", "add", "-d", "local", str(store)], proj)
    t0 = time.time()
    run(["dvc", "push"], proj, timeout=600)
    t_push = time.time() - t0
    run(["git", "add", "-A"], proj)
    # outputs with `cache: false` (metrics, stats, reports) live in git, not in the DVC remote;
    # the ones under a git-ignored folder must be added by force (see docs/REPRODUCIBILITY.md)
    untracked = [p for p in _cache_false_outs(proj)
                 if run(["git", "ls-files", "--error-unmatch", p], proj, check=False).returncode != 0]
    if untracked:
        run(["git", "add", "-f", *untracked], proj)
    run(["git", "commit", "-qm", "results"], proj)
    run(["git", "clone", "-q", str(proj), str(clone)], tmp_path)
    t0 = time.time()
    run(["dvc", "pull"], clone, timeout=600)
    t_pull = time.time() - t0
    print(f"\npush {t_push:.1f} s, pull {t_pull:.1f} s; force-added cache:false outputs: {untracked}")
    assert json.loads(run(["dvc", "status", "--json"], clone).stdout) == {}
    res = run(["dvc", "repro"], clone)
    assert "Running stage" not in res.stdout, res.stdout
    for m in ("naive", "percpos095"):
        assert (clone / "artifacts" / "mined" / f"{m}.jsonl").read_bytes() == \
            (proj / "artifacts" / "mined" / f"{m}.jsonl").read_bytes()
