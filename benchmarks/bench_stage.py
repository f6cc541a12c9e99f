"""The fixed cost of a study stage: what every DVC stage pays before and after its work.

Measured as the study runs it, each repeat in a fresh process (median of ``--repeats``):

* ``python startup + import nvr.notebook``: the stage command's interpreter;
* ``notebook, no work``: ``python -m nvr.notebook`` on a notebook holding only the stages' common
  set-up cell (load params.yaml, imports, the provenance box) and one empty cell, with the HTML
  render: kernel start, papermill, nbformat, nbconvert;
* the same with papermill's Jupyter kernel instead of the in-process engine (``--engine kernel``);
* the same without the HTML render (``--no-html``) and without the provenance box, to split the cost;
* ``dvc repro, nothing to do``: a project of ``--stages`` stages whose outputs are all current
  (DVC's own cost of checking a pipeline the size of the default study's).

    python benchmarks/bench_stage.py --repeats 5 --out bench_stage.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _nb(path: Path, with_box: bool) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    setup = ("import json\nfrom pathlib import Path\n%matplotlib inline\nimport matplotlib.pyplot as plt\n"
             "import pandas as pd\nfrom IPython.display import Markdown, display\nfrom nvr import config\n"
             "study = config.load('params.yaml')\n")
    if with_box:
        setup += "from nvr.provenance import reproduce_box\ndisplay(Markdown(reproduce_box(study, stage='bench')))\n"
    nb = new_notebook(cells=[new_code_cell(setup), new_code_cell("x = 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def _time(cmd: list[str], cwd: Path, repeats: int, env: dict) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


def _dvc_project(dest: Path, n: int, env: dict) -> None:
    stages = {f"s{i}": {"cmd": f"echo {i} > out/{i}.txt", "deps": ["in.txt"], "outs": [f"out/{i}.txt"]}
              for i in range(n)}
    import yaml

    (dest / "out").mkdir()
    (dest / "in.txt").write_text("x\n")
    (dest / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    for c in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        subprocess.run(c, cwd=dest, env=env, check=True, capture_output=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stages", type=int, default=45)
    ap.add_argument("--out", default=None)
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="the checkout whose nvr is measured (another revision, for a before / after)")
    a = ap.parse_args(argv)
    root = a.root.resolve()
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="nvr_stage_") as tmp:
        tmp = Path(tmp)
        shutil.copy2(root / "params.yaml", tmp / "params.yaml")
        _nb(tmp / "box.ipynb", True)
        _nb(tmp / "plain.ipynb", False)
        py = sys.executable
        cases = [
            ("python startup + import nvr.notebook", [py, "-c", "import nvr.notebook"]),
            ("notebook, no work (set-up cell + box + HTML)", [py, "-m", "nvr.notebook", "box.ipynb", "out/box"]),
            ("  the same in a Jupyter kernel (--engine kernel, papermill's default)",
             [py, "-m", "nvr.notebook", "box.ipynb", "out/boxk", "--engine", "kernel"]),
            ("  without the HTML render", [py, "-m", "nvr.notebook", "box.ipynb", "out/box2", "--no-html"]),
            ("  without HTML and the provenance box", [py, "-m", "nvr.notebook", "plain.ipynb", "out/plain", "--no-html"]),
        ]
        for name, cmd in cases:
            ts = _time(cmd, tmp, a.repeats, env)
            rows.append({"what": name, "median_s": round(statistics.median(ts), 2), "min_s": round(min(ts), 2)})
            print(f"  {name}: {rows[-1]['median_s']} s", file=sys.stderr)
        proj = tmp / "dvcproj"
        proj.mkdir()
        _dvc_project(proj, a.stages, env)
        ts = _time(["dvc", "repro"], proj, a.repeats, env)
        rows.append({"what": f"dvc repro, nothing to do ({a.stages} stages)", "median_s": round(statistics.median(ts), 2),
                     "min_s": round(min(ts), 2)})
    print(f"\n{root}: median of {a.repeats} runs, {os.cpu_count()} CPUs\n\n| fixed cost | median s | min s |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['what']} | {r['median_s']} | {r['min_s']} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"rows": rows, "args": {**vars(a), "root": str(root)}}, indent=2))


if __name__ == "__main__":
    main()
