"""``reports/index.html``: one front page for every profile with committed results.

After a profile's ``dvc repro``, :func:`archive_run` copies its study report (HTML with the
figures inside, the executed notebook, the PNGs), its metrics, its mining statistics
(``mining/``) and its per-stage renders to ``reports/<profile>/`` with a ``run.json`` (profile,
git revision, machine, wall time), so the results of several profiles live side by side. :func:`write_index` links them all.
Run both with ``python -m nvr.report.index archive --wall-seconds S`` and ``... index``
(``scripts/run_profile.sh`` does it for you).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import os
import platform
import shutil
import sys
from pathlib import Path

from ..io import atomic_dir, atomic_write, write_json
from ..provenance import code_state

#: the renders of each stage notebook: ``reports/<name>.html`` (a stage that runs once: prepare, mine) or
#: ``reports/<name>/*.html`` (one per item of a foreach stage: a teacher, a method, a model)
STAGE_DIRS = ("01_prepare_data", "02_teacher_embed", "03_mine", "04_finetune", "05_evaluate")
#: the mining statistics of a run (small JSON files, DVC-cached with their stage's outputs), archived
#: beside the report under ``mining/<folder>/``
MINING_DIRS = ("mined", "teacher_mined", "ensembles")


def stage_renders(rep: Path) -> list[Path]:
    """The stage renders under ``rep`` (``reports/``). Where a notebook renders to one file
    (``reports/03_mine.html``), a folder of the same name holds an older layout's per-item renders
    (``reports/03_mine/<method>.html`` of the former ``mine@<method>`` stages): left out, stale."""
    found = []
    for d in STAGE_DIRS:
        single = rep / f"{d}.html"
        found += [single] if single.is_file() else sorted((rep / d).glob("*.html"))
    return found


def archive_run(root: Path, profile: str, wall_seconds: float | None, *, results_from: dict | None = None,
                metric_names: list[str] | None = None) -> Path:
    """Copy the finished run under ``root`` to ``reports/<profile>/`` (replacing an older copy).

    results_from: the ``run.json`` of the run that computed the numbers, when only the report was
    rendered again (new figures from the same metrics): its git revision, wall time and date are
    kept, the re-render's revision is recorded as ``report_git``, and stage renders and mining
    statistics this root does not have are kept from the previous archive.

    metric_names: the ``metrics/<name>.json`` (and per-query) files of this profile's models; others in
    ``metrics/`` (another profile's committed files) are not archived. None: every file.
    """
    root = Path(root)
    rep = root / "reports"
    if not (rep / "study.html").is_file():
        raise FileNotFoundError(f"{rep / 'study.html'}: run the study first (dvc repro)")
    rev, dirty = code_state()
    dest = rep / profile
    old_stages = dest / "stages"
    with atomic_dir(dest) as tmp:
        if results_from is not None and old_stages.is_dir():
            shutil.copytree(old_stages, tmp / "stages")
        if results_from is not None and (dest / "mining").is_dir():
            shutil.copytree(dest / "mining", tmp / "mining")
        shutil.copy2(rep / "study.html", tmp / "study.html")
        shutil.copy2(rep / "study.ipynb", tmp / "study.ipynb")
        if (rep / "figures").is_dir():
            shutil.copytree(rep / "figures", tmp / "figures")
        if (root / "metrics").is_dir() and metric_names is None:
            shutil.copytree(root / "metrics", tmp / "metrics")
        elif (root / "metrics").is_dir():
            for name in metric_names:
                for f in (root / "metrics" / f"{name}.json", root / "metrics" / "per_query" / f"{name}.json"):
                    if f.is_file():
                        (tmp / f.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(f, tmp / f.relative_to(root))
        for f in stage_renders(rep):
            rel = f.relative_to(rep)
            if rel.parent == Path(".") and (tmp / "stages" / f.stem).is_dir():
                shutil.rmtree(tmp / "stages" / f.stem)   # a kept archive's per-item renders, superseded
            (tmp / "stages" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, tmp / "stages" / rel)
        for d in MINING_DIRS:
            for f in sorted((root / "artifacts" / d).glob("[!.]*.stats.json")):
                (tmp / "mining" / d).mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, tmp / "mining" / d / f.name)
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        info = {"profile": profile, "git": rev + dirty, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "wall_seconds": wall_seconds, "finished": now}
        if results_from is not None:
            info.update({k: results_from[k] for k in ("git", "machine", "wall_seconds", "finished") if k in results_from})
            info.update(report_git=rev + dirty, report_rendered=now)
        write_json(tmp / "run.json", info)
    return dest


def write_index(root: Path) -> Path:
    """Write ``reports/index.html``: every archived profile, its study report and stage renders."""
    rep = Path(root) / "reports"
    runs = []
    for run in sorted(rep.glob("*/run.json")):
        info = json.loads(run.read_text())
        info["dir"] = run.parent.name
        info["stages"] = sorted(p.relative_to(rep).as_posix() for p in (run.parent / "stages").rglob("*.html"))
        runs.append(info)
    order = {"default": 0, "ablation": 1, "scifact": 2}
    runs.sort(key=lambda r: (order.get(r["profile"], 9), r["profile"]))
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>nvr: study reports</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
             "details{margin:.3em 0}</style></head><body>",
             "<h1>nvr: positive-aware hard-negative mining, study reports</h1>",
             "<p>One report per profile with committed results. Each report sets our numbers beside the "
             "NV-Retriever paper's, with 95% bootstrap intervals; the per-stage renders show each step.</p>"]
    if not runs:
        parts.append("<p>No archived runs yet: run <code>scripts/run_profile.sh</code>.</p>")
    else:
        parts.append("<table><tr><th>profile</th><th>report</th><th>git</th><th>machine</th><th>wall time</th>"
                     "<th>finished</th></tr>")
        for r in runs:
            wall = f"{r['wall_seconds'] / 60:.1f} min" if r.get("wall_seconds") else "—"
            git = e(r["git"])
            if r.get("report_git") and r["report_git"] != r["git"]:
                git += f" (report re-rendered at {e(r['report_git'])})"
            parts.append(f"<tr><td>{e(r['profile'])}</td><td><a href='{e(r['dir'])}/study.html'>study report</a></td>"
                         f"<td>{git}</td><td>{e(r['machine'])}</td><td>{wall}</td><td>{e(r['finished'])}</td></tr>")
        parts.append("</table>")
        for r in runs:
            links = "".join(f"<li><a href='{e(s)}'>{e(s.split('/stages/', 1)[-1])}</a></li>" for s in r["stages"])
            parts.append(f"<details><summary>{e(r['profile'])}: {len(r['stages'])} stage renders</summary>"
                         f"<ul>{links}</ul></details>")
    parts.append("</body></html>")
    path = rep / "index.html"
    with atomic_write(path) as fh:
        fh.write("\n".join(parts) + "\n")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nvr.report.index")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("archive", help="copy this run's report and metrics to reports/<profile>/")
    a.add_argument("--wall-seconds", type=float, default=None)
    a.add_argument("--params", default="params.yaml")
    a.add_argument("--rerender", action="store_true",
                   help="only the report was rendered again from the archived run's metrics: keep that run's "
                        "git revision, wall time and stage renders")
    sub.add_parser("index", help="write reports/index.html")
    args = ap.parse_args(argv)
    if args.cmd == "archive":
        from ..config import load

        study = load(args.params, check_paths=False)
        prev = Path("reports") / study.profile / "run.json"
        results_from = json.loads(prev.read_text()) if args.rerender and prev.is_file() else None
        if args.rerender and results_from is None:
            ap.error(f"--rerender: {prev} not found (nothing archived for profile {study.profile!r})")
        from .results import study_metric_names

        print(archive_run(Path.cwd(), study.profile, args.wall_seconds, results_from=results_from,
                          metric_names=study_metric_names(study)))
    write_index(Path.cwd())
    return 0


if __name__ == "__main__":
    sys.exit(main())
