"""Write dvc.yaml from the stage table below (run: `make dvc`; `--check` fails when it is stale).

Each stage runs one notebook through papermill (``python -m nvr.notebook``). Its code
dependencies are computed, not typed: the notebook, and every ``nvr`` module the stage's
module imports (directly or through other nvr modules, function-level imports included),
with the package ``__init__`` files on the way. So a stage reruns when, and only when, code
it runs changed. The committed dvc.yaml is checked against this script by the tests.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NB = "${nb}"

#: modules every notebook runs: the papermill runner, the config loader, the provenance box
COMMON_MODULES = ("nvr.notebook", "nvr.config", "nvr.provenance")


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(name: str, path: Path) -> set[str]:
    """nvr modules imported anywhere in ``path`` (module ``name``)."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "nvr"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "nvr":
                continue
            found.add(mod)
            for a in node.names:  # `from . import data` imports a module
                if _module_file(f"{mod}.{a.name}") is not None:
                    found.add(f"{mod}.{a.name}")
    return found


def closure(*modules: str) -> list[str]:
    """Files of ``modules`` and of every nvr module they import, parent packages included."""
    todo, seen = list(modules), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        todo += sorted(_imports(name, path))
    files = {_module_file(n).relative_to(ROOT).as_posix() for n in seen}
    return sorted(files)


def _package_files(directory: Path) -> set[str] | None:
    """Every file under ``directory`` (``__pycache__`` aside, which .dvcignore hides from DVC), or
    None when one of them is not Python source (a directory dependency would hash it too)."""
    files = set()
    for p in directory.rglob("*"):
        if "__pycache__" in p.parts or p.is_dir():
            continue
        if p.suffix != ".py":
            return None
        files.add(p.relative_to(ROOT).as_posix())
    return files


def collapse(files: list[str]) -> list[str]:
    """The same dependencies with every subpackage of nvr whose source files are all in ``files``
    written as its directory: DVC then reruns the stage on exactly the same changes (a new or
    edited file in that package), and dvc.lock keeps one entry instead of one per module. The
    lock is parsed and rewritten after every stage, so its size is a fixed cost of every stage."""
    deps = set(files)
    packages = sorted((d for d in (ROOT / "nvr").rglob("*") if d.is_dir() and d.name != "__pycache__"),
                      key=lambda d: -len(d.parts))  # innermost first
    for d in packages:
        rel = d.relative_to(ROOT).as_posix()
        inner = _package_files(d)
        if not inner:  # None (a non-Python file inside) or an empty folder
            continue
        covered = {f for f in deps if f.startswith(rel + "/")}
        if inner <= set(expand(sorted(covered))):
            deps = (deps - covered) | {rel}
    return sorted(deps)


def expand(deps: list[str]) -> list[str]:
    """Directory dependencies (``nvr/mining``) back to the source files they stand for."""
    out = []
    for dep in deps:
        if (ROOT / dep).is_dir():
            out += sorted(_package_files(ROOT / dep) or ())
        else:
            out.append(dep)
    return sorted(out)


def code_deps(notebook: str, module: str) -> list[str]:
    return [f"notebooks/{notebook}.ipynb", *collapse(closure(module, *COMMON_MODULES))]


def _report(stem: str) -> list:
    return [f"{stem}.ipynb", f"{stem}.html"]


def _uncached(path: str) -> dict:
    return {path: {"cache": False}}


def _curve(path: str) -> dict:
    return {path: {"cache": False, "x": "step", "y": "loss"}}


def stages() -> dict:
    s = {}
    s["prepare"] = {
        "cmd": f"{NB} notebooks/01_prepare_data.ipynb reports/01_prepare_data",
        "deps": code_deps("01_prepare_data", "nvr.stages.prepare"),
        "params": ["seed", "dataset"],
        "outs": ["data", *_report("reports/01_prepare_data")],
    }
    s["embed"] = {"foreach": "${teacher_ablation}", "do": {
        "cmd": f"{NB} notebooks/02_teacher_embed.ipynb reports/02_teacher_embed/${{item}} -p teacher ${{item}}",
        "deps": ["data", *code_deps("02_teacher_embed", "nvr.stages.embed")],
        "params": ["seed", "teachers.${item}"],
        "outs": ["artifacts/teachers/${item}", *_report("reports/02_teacher_embed/${item}")],
    }}
    # the method ablation, the teacher ablation and the ensembles in one stage: mining takes a moment,
    # a stage's fixed cost (notebook, DVC re-reading and rewriting dvc.lock) seconds. Its outs are
    # folders; a train stage depends on its one file inside (DVC reruns it only when that file changed).
    s["mine"] = {
        "desc": "mining ablation across methods",
        "cmd": f"{NB} notebooks/03_mine.ipynb reports/03_mine",
        "deps": ["data", "artifacts/teachers", *code_deps("03_mine", "nvr.stages.mine")],
        "params": ["seed", "mining", "teacher", "teacher_ablation", "teachers"],
        "outs": ["artifacts/mined", "artifacts/teacher_mined", "artifacts/ensembles", *_report("reports/03_mine")],
    }
    train_deps = code_deps("04_finetune", "nvr.stages.train")
    s["train"] = {"foreach": "${mining.methods}", "do": {
        "cmd": f"{NB} notebooks/04_finetune.ipynb reports/04_finetune/${{key}} -p model ${{key}}",
        "deps": ["data", "artifacts/mined/${key}.jsonl", *train_deps],
        "params": ["seed", "student", "train.stage1", "train.seeds"],
        "outs": ["models/${key}", *_report("reports/04_finetune/${key}")],
        "plots": [_curve("reports/04_finetune/${key}.loss.json")],
    }}
    s["train_teacher"] = {"foreach": "${train.teacher_models}", "do": {
        "cmd": f"{NB} notebooks/04_finetune.ipynb reports/04_finetune/teacher-${{item}} -p model teacher-${{item}}",
        "deps": ["data", "artifacts/teacher_mined/${item}.jsonl", *train_deps],
        "params": ["seed", "student", "train.stage1"],
        "outs": ["models/teacher-${item}", *_report("reports/04_finetune/teacher-${item}")],
        "plots": [_curve("reports/04_finetune/teacher-${item}.loss.json")],
    }}
    s["train_stage2"] = {
        "cmd": f"{NB} notebooks/04_finetune.ipynb reports/04_finetune/stage2 -p model ${{train.stage2_method}}-stage2",
        "deps": ["data", "models/${train.stage2_method}", "artifacts/mined/${train.stage2_method}.jsonl", *train_deps],
        "params": ["seed", "student", "train.stage2", "train.stage2_method", "train.stage2_retrieval_fraction"],
        "outs": ["models/${train.stage2_method}-stage2", *_report("reports/04_finetune/stage2")],
        "plots": [_curve("reports/04_finetune/stage2.loss.json")],
    }
    eval_deps = code_deps("05_evaluate", "nvr.stages.evaluate")

    def evaluate(model: str, stem: str, deps: list, params: list) -> dict:
        return {"cmd": f"{NB} notebooks/05_evaluate.ipynb reports/05_evaluate/{stem} -p model {model}",
                "deps": ["data", *deps, *eval_deps], "params": params,
                "metrics": [_uncached(f"metrics/{model}.json")],
                "outs": [_uncached(f"metrics/per_query/{model}.json"), *_report(f"reports/05_evaluate/{stem}")]}

    s["evaluate_reference"] = {"foreach": "${evaluate.reference_models}", "do": evaluate(
        "${item}", "${item}", [], ["seed", "student", "teacher", "teachers.${teacher}", "evaluate"])}
    s["evaluate"] = {"foreach": "${mining.methods}", "do": evaluate(
        "${key}", "${key}", ["models/${key}"], ["seed", "student", "evaluate"])}
    s["evaluate_teacher"] = {"foreach": "${train.teacher_models}", "do": evaluate(
        "teacher-${item}", "teacher-${item}", ["models/teacher-${item}"], ["student", "evaluate"])}
    s["evaluate_stage2"] = evaluate("${train.stage2_method}-stage2", "stage2",
                                    ["models/${train.stage2_method}-stage2"], ["seed", "student", "evaluate"])
    s["report"] = {
        "cmd": f"{NB} notebooks/06_report.ipynb reports/study",
        "deps": [*code_deps("06_report", "nvr.report"), "data", "metrics", "artifacts/mined", "artifacts/teacher_mined",
                 "artifacts/ensembles", "artifacts/teachers", "reports/04_finetune"],
        "params": ["profile", "seed", "mining", "train.stage2_method"],
        "outs": [_uncached("reports/study.ipynb"), _uncached("reports/study.html"), _uncached("reports/figures")],
    }
    return s


HEADER = """\
# GENERATED by scripts/build_dvc.py (`make dvc`): edit that script, not this file.
# The NV-Retriever study as a DVC pipeline. Each stage runs one parameterized notebook
# (papermill) that calls one module of nvr.stages; executed notebooks and HTML renders land
# in reports/. A stage's code dependencies are the nvr modules it imports, so a change reruns
# exactly the stages that run the changed code. Parameters are declared per stage so
# `dvc params diff` / `dvc exp show` attribute changes. One stage mines every method, teacher
# and ensemble; changing one mining method reruns it, then only that method's train / evaluate
# stages (the other mined files are the same bytes, so DVC skips their stages).
"""


def render() -> str:
    doc = {"vars": [{"nb": "python -m nvr.notebook"}], "stages": stages()}
    body = yaml.safe_dump(doc, sort_keys=False, width=120, default_flow_style=False)
    return HEADER + body


def main(check: bool = False) -> int:
    path = ROOT / "dvc.yaml"
    text = render()
    if check:
        if not path.is_file() or path.read_text() != text:
            print(f"{path} is stale: run `make dvc` (python scripts/build_dvc.py)")
            return 1
        return 0
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
