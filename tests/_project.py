"""Helpers for the end-to-end tests: throw-away copies of the project and what they produced.

``make_project`` copies the working tree (tracked + untracked-not-ignored files) into a
fresh git repo with a profile as ``params.yaml`` (no ``cache/``, ``data/``, ``artifacts/``,
``models/``, ``metrics/`` or ``reports/``: every run starts from nothing).
``snapshot`` / ``compare_snapshots`` describe and compare what two runs produced.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: folders every stage writes into (checked for left-over temporary files)
OUTPUT_DIRS = ("data", "artifacts", "models", "metrics", "reports", "cache")
#: fields that legitimately differ between two runs: wall-clock time, whether training resumed,
#: how often it checkpointed (test_reproducibility's killed run checkpoints every step) and the
#: git revision that computed a metric (the killed run's project has one commit more)
VOLATILE_KEYS = frozenset({"seconds", "resumed_from", "save_every", "code_revision"})


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")
    e.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0",
             GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    return e


def run(cmd, cwd, check=True, **kw):
    res = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return res


def make_project(dest: Path, profile: str = "profiles/smoke.yaml") -> Path:
    """Copy the project's tracked and untracked-not-ignored files, with ``profile`` as params.yaml."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file() and f.split("/")[0] not in OUTPUT_DIRS and f != "dvc.lock":
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    shutil.copy2(ROOT / profile, dest / "params.yaml")
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "init"], dest)
    return dest


def temp_leftovers(proj: Path) -> list[str]:
    """Temporary files / folders of interrupted writes (atomic writes, running notebooks, checkpoints)."""
    found = []
    for top in OUTPUT_DIRS:
        base = proj / top
        if not base.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames + filenames:
                if (name.startswith(".") and name.endswith((".tmp", ".running.ipynb", ".old"))) \
                        or name.endswith((".work", ".failed.ipynb")):
                    found.append(str((Path(dirpath) / name).relative_to(proj)))
    return sorted(found)


# --------------------------------------------------------------------------- snapshots
def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _describe(path: Path, root: Path) -> dict:
    raw = path.read_bytes()
    d = {"sha256": _digest(raw)}
    if path.suffix == ".npz":  # tells zip metadata apart from array differences, should files differ
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            d["members"] = {i.filename: _digest(z.read(i)) for i in z.infolist()}
    elif path.suffix in (".json", ".jsonl"):
        text = raw.decode("utf-8").replace(str(root), "<project>")
        rows = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" \
            else json.loads(text)
        d["normalized"] = _digest(json.dumps(_strip(rows), sort_keys=True).encode())
    return d


def snapshot(proj: Path) -> dict[str, dict]:
    """Digest of every DVC-produced file (data, artifacts, models, metrics, loss curves)."""
    out = {}
    for top in ("data", "artifacts", "models", "metrics"):
        for p in sorted((proj / top).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(proj))] = _describe(p, proj)
    for p in sorted((proj / "reports" / "04_finetune").glob("*.loss.json")):
        out[str(p.relative_to(proj))] = _describe(p, proj)
    return out


def compare_snapshots(a: dict, b: dict) -> dict[str, list[str]]:
    """Classify files: ``identical`` bytes, ``same_arrays`` (npz whose zip metadata differ),
    ``same_values`` (JSON equal once volatile keys and the project path are removed),
    ``different`` and ``missing`` (in one run only)."""
    res = {"identical": [], "same_arrays": [], "same_values": [], "different": [], "missing": []}
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            res["missing"].append(name)
        elif a[name]["sha256"] == b[name]["sha256"]:
            res["identical"].append(name)
        elif "members" in a[name] and a[name]["members"] == b[name].get("members"):
            res["same_arrays"].append(name)
        elif "normalized" in a[name] and a[name]["normalized"] == b[name].get("normalized"):
            res["same_values"].append(name)
        else:
            res["different"].append(name)
    return res
