"""Packaging checks: environment.yml mirrors pyproject.toml; notebooks are clean and current."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch", "faiss-cpu": "faiss", "cpuonly": None, "python": None, "pip": None}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(d) for d in py["dependencies"] + py["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            conda_names |= {_name(d) for d in dep["pip"]}
        else:
            n = _name(dep)
            n = CONDA_NAMES.get(n, n)
            if n:
                conda_names.add(n)
    # torch and faiss come from scripts/install.sh (CPU/GPU builds), not from pyproject
    assert conda_names - {"torch", "faiss"} == pip_names, (
        f"only in environment.yml: {sorted(conda_names - {'torch', 'faiss'} - pip_names)}; "
        f"only in pyproject.toml: {sorted(pip_names - conda_names)}"
    )
    assert {"torch", "faiss"} <= conda_names


def test_notebooks_have_no_outputs_and_match_source():
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and not cell.get("execution_count"), nb_path
        tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"]]
        assert any("parameters" in t for t in tags), f"{nb_path} has no parameters cell"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_notebooks.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_ci_calls_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_dvc_yaml_is_generated_and_deps_are_the_import_closure():
    """dvc.yaml matches scripts/build_dvc.py, and each stage lists every nvr file its module imports
    (a stage reruns when code it runs changes), and only those: mining code is not a dependency
    of the train stage's model loading, evaluation code is not one of the mine stage."""
    import importlib.util

    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_dvc.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    spec = importlib.util.spec_from_file_location("build_dvc", ROOT / "scripts" / "build_dvc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    # a package whose every source file the stage imports is listed as its directory
    deps = {name: set(mod.expand((s.get("do") or s)["deps"])) for name, s in stages.items()}
    assert {"nvr/mining/teachers.py", "nvr/mining/search.py", "nvr/text/encoder.py", "nvr/text/cache.py"} <= deps["embed"]
    assert {"nvr/mining/core.py", "nvr/mining/records.py", "nvr/stages/mine.py"} <= deps["mine"]
    assert not any(d.startswith("nvr/evaluation/") or d.startswith("nvr/training/") for d in deps["mine"])
    assert {"nvr/training/loop.py", "nvr/training/step.py", "nvr/training/losses.py"} <= deps["train"]
    assert {"nvr/evaluation/adapter.py", "nvr/evaluation/scoring.py", "nvr/text/encoder.py"} <= deps["evaluate"]
    assert not any(d.startswith("nvr/training/") for d in deps["evaluate"])
    every_file = {p.relative_to(ROOT).as_posix() for p in (ROOT / "nvr").rglob("*.py")}
    for name, d in deps.items():
        code = {x for x in d if x.startswith("nvr/")}
        assert code <= every_file, (name, code - every_file)
        assert "nvr/notebook.py" in code and "nvr/config.py" in code, name
    # the closure follows function-level imports too: the stage module's own file is in it
    assert set(mod.closure("nvr.stages.train")) >= {"nvr/stages/train.py", "nvr/training/loop.py"}


def test_directory_dependencies_stand_for_exactly_the_imported_files():
    """collapse() writes a package as its directory only when the stage imports every source file
    in it, so DVC reruns a stage on the same edits as with the file list (and dvc.lock, which DVC
    parses and rewrites after every stage, stays short); .dvcignore hides __pycache__ from the hash."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_dvc", ROOT / "scripts" / "build_dvc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for module in ("nvr.stages.embed", "nvr.stages.mine", "nvr.stages.train", "nvr.stages.evaluate",
                   "nvr.stages.report"):
        files = mod.closure(module, *mod.COMMON_MODULES)
        deps = mod.collapse(files)
        assert mod.expand(deps) == sorted(files), module
        for d in deps:
            if (ROOT / d).is_dir():  # every source file of the folder is imported by the stage
                inner = {p.relative_to(ROOT).as_posix() for p in (ROOT / d).rglob("*.py")}
                assert inner <= set(files), (module, d)
    # nvr/mining/sweep.py is the report's, not the mine stage's: nvr/mining stays a file list there
    mine = mod.collapse(mod.closure("nvr.stages.mine", *mod.COMMON_MODULES))
    assert "nvr/mining" not in mine and "nvr/mining/core.py" in mine
    assert len(mine) < len(mod.closure("nvr.stages.mine", *mod.COMMON_MODULES))
    ignore = (ROOT / ".dvcignore").read_text().split()
    assert "__pycache__/" in ignore


def test_every_profile_defines_what_dvc_yaml_interpolates():
    """DVC resolves ${...} from params.yaml itself (no defaults): a profile missing a key fails
    `dvc repro` before any stage runs."""
    import re

    import yaml

    keys = set(re.findall(r"\$\{([a-z_.]+)\}", (ROOT / "dvc.yaml").read_text())) - {"nb", "item", "key"}
    for path in [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]:
        raw = yaml.safe_load(path.read_text())
        for key in keys:
            node = raw
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"{path.name}: {key} missing"
                node = node[part]
