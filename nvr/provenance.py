"""The "how to reproduce" box at the top of every report: profile, params hash, git, machine."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path


def _git(*args: str) -> str:
    try:
        # rstrip only: `status --porcelain` lines start with a space (" M params.yaml")
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.rstrip()
    except Exception:
        return ""


#: what decides the numbers: code, notebooks, parameters, pipeline (not the outputs a run writes)
INPUTS = ("nvr", "notebooks", "scripts", "params.yaml", "profiles", "dvc.yaml", "pyproject.toml")


def code_state() -> tuple[str, str]:
    """(short revision of HEAD, "" or a note naming the inputs that differ from it)."""
    rev = _git("rev-parse", "--short", "HEAD") or "unknown"
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", *INPUTS)
    if not changed:
        return rev, ""
    files = sorted({line[3:].strip() for line in changed.splitlines() if line.strip()})
    profile = _profile_copy() if "params.yaml" in files else None
    if profile:   # a profile run: params.yaml is a committed profile, copied over (make repro PROFILE=...)
        files.remove("params.yaml")
        if not files:
            return rev, f" with params.yaml = {profile}"
    shown = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
    return rev, (f" with params.yaml = {profile}" if profile else "") + f" plus uncommitted changes to {shown}"


def _profile_copy() -> str | None:
    """The committed profile whose bytes params.yaml holds (unchanged in git), or None."""
    try:
        params = Path("params.yaml").read_bytes()
    except OSError:
        return None
    for prof in sorted(Path("profiles").glob("*.yaml")):
        if prof.read_bytes() == params and not _git("status", "--porcelain", "--", str(prof)):
            return prof.as_posix()
    return None


def _device_line() -> str:
    """``torch <version>, <device>`` without importing torch when the stage has not (importing it
    costs a stage seconds): the version from the package metadata, the GPU from the driver."""
    import sys
    from importlib import metadata

    torch = sys.modules.get("torch")
    if torch is not None:
        return f"torch {torch.__version__}, " + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU")
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "no torch"
    gpu = Path("/proc/driver/nvidia/version").is_file() and "+cpu" not in version
    return f"torch {version}, " + ("NVIDIA GPU (driver present)" if gpu else "CPU")


def metrics_revisions(metrics_dir: str | Path = "metrics", names: list[str] | None = None) -> dict[str, int]:
    """{code revision: number of metrics files} over ``metrics/*.json`` (``code_revision``, written
    by the evaluate stage; "not recorded" for files written before it was). ``names``: only these
    models' files (a study's own; metrics/ may also hold another profile's committed files)."""
    out: dict[str, int] = {}
    paths = sorted(Path(metrics_dir).glob("[!.]*.json"))
    if names is not None:
        paths = [p for p in paths if p.stem in set(names)]
    for p in paths:
        try:
            rev = json.loads(p.read_text(encoding="utf-8")).get("code_revision") or "not recorded"
        except (OSError, ValueError, AttributeError):
            continue
        out[rev] = out.get(rev, 0) + 1
    return out


def reproduce_box(study, stage: str = "") -> str:
    """Markdown: how to rerun this stage, and what this run was (params, git, dvc.lock, machine).
    The git line names the revision of the code and whether code or parameters differed from it;
    the outputs the run itself rewrites (metrics, reports, dvc.lock) do not count."""
    params = json.dumps(study.raw, sort_keys=True).encode()
    rev, dirty = code_state()
    lock = Path("dvc.lock")
    lock_hash = hashlib.sha256(lock.read_bytes()).hexdigest()[:12] if lock.is_file() else "none yet"
    dev = _device_line()
    numbers = ""
    if stage == "report":
        revs = metrics_revisions(names=[m.name for m in study.models()])
        if revs and set(revs) != {rev + dirty}:
            listed = ", ".join(f"`{r}` ({n} files)" for r, n in revs.items())
            numbers = (f"  \n> the numbers (metrics/) were computed at code revision {listed}; this page was "
                       f"rendered from them at `{rev}`{dirty}.")
    return (
        f"> **How to reproduce** — `make study` (installs, then `dvc repro`), or `dvc repro {stage.split('/')[0]}`"
        f" for this stage alone.  \n"
        f"> profile **{study.profile}**, params sha256 `{hashlib.sha256(params).hexdigest()[:12]}`, seed {study.seed};"
        f" git `{rev}`{dirty}; dvc.lock `{lock_hash}`.  \n"
        f"> machine: {platform.machine()}, {os.cpu_count()} CPUs, {dev}, python {platform.python_version()};"
        f" run at {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC."
        + numbers
    )
