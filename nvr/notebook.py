"""Run a parameterized notebook with papermill and render it to HTML, atomically.

Used by every DVC stage::

    python -m nvr.notebook notebooks/04_finetune.ipynb reports/04_finetune/naive -p model naive

writes ``reports/04_finetune/naive.ipynb`` (executed) and ``reports/04_finetune/naive.html``.
Both are written under temporary names and renamed only when the run succeeded, so a
failed or killed stage leaves no half-written report.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from .io import atomic_write


def _coerce(value: str):
    import yaml

    try:
        return yaml.safe_load(value)
    except Exception:
        return value


# A reader's page: text, tables and figures of the executed notebook, its code left out (it stays in
# the executed .ipynb beside the page). nbconvert's "basic" template gives the cells; this small
# stylesheet replaces the ~276 KB of JupyterLab CSS the "lab" template inlines in every page.
PAGE_CSS = """
body{margin:0;background:#fff;color:#1f2328;font:15px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:24px 32px 64px}
h1,h2,h3{line-height:1.25;margin:1.4em 0 .5em}h1{font-size:1.9em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}
h2{font-size:1.45em;border-bottom:1px solid #eaeef2;padding-bottom:.2em}a{color:#0969da}
.anchor-link{display:none}code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;padding:.1em .3em;border-radius:4px}
blockquote{margin:1em 0;padding:.6em 1em;border-left:4px solid #0969da;background:#f6f8fa;color:#1f2328}
table{border-collapse:collapse;border:0;margin:.8em 0;font-size:13px;font-variant-numeric:tabular-nums}
.output_html{overflow-x:auto}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right;vertical-align:top}th{background:#f6f8fa}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
.output_stream pre,.output_text pre{font:12px/1.4 ui-monospace,Menlo,monospace;background:#f6f8fa;padding:8px 10px;
border-radius:6px;overflow-x:auto;white-space:pre-wrap;color:#57606a;margin:.4em 0}
.output_stderr pre{color:#6e7781}
"""


def _title(nb, default: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return default


_BAR = re.compile(r"^\s*(?P<desc>[^|\n]*?):?\s*\d+%\|")   # a tqdm progress line: "encode passages:  51%|..."


def _bar_desc(line: str) -> str | None:
    m = _BAR.match(line)
    return m.group("desc").strip() if m else None


def tidy_streams(outputs: list) -> list:
    """A cell's outputs for reading: consecutive log outputs of one stream merged into one block,
    each progress bar shown once (its last state), carriage-return redraws resolved."""
    out: list = []
    for o in outputs:
        if o.get("output_type") == "stream" and out and out[-1].get("output_type") == "stream" \
                and out[-1].get("name") == o.get("name"):
            out[-1] = {**out[-1], "text": out[-1]["text"] + o["text"]}
        else:
            out.append(dict(o))
    for o in out:
        if o.get("output_type") != "stream":
            continue
        lines = [ln.rsplit("\r", 1)[-1] for ln in o["text"].split("\n")]
        kept: list[str] = []
        for ln in lines:
            desc = _bar_desc(ln)
            if desc is not None and kept and _bar_desc(kept[-1]) == desc:
                kept[-1] = ln          # the same bar, redrawn: keep its latest state
            elif ln.strip() or not kept or kept[-1].strip():
                kept.append(ln)
        o["text"] = "\n".join(kept)
    import nbformat

    return [nbformat.from_dict(o) for o in out]


def render_html(nb, default_title: str = "nvr report") -> str:
    """The reader's HTML page of an executed notebook (code hidden, figures inline, one small
    stylesheet, logs with each progress bar once). The notebook itself is left unchanged."""
    import copy
    import html as _html

    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = tidy_streams(cell.outputs)
    body, _ = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                           exclude_output_prompt=True).from_notebook_node(nb)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_html.escape(_title(nb, default_title))}</title><style>{PAGE_CSS}</style></head>\n"
            f"<body><main>\n{body}\n</main></body></html>\n")


def _import_papermill():
    """papermill, without the pyarrow import of its hdfs:// handler (about 0.3 s of every stage on
    this CPU): a stage reads and writes local notebooks only."""
    blocked = "pyarrow.fs" not in sys.modules
    if blocked:
        sys.modules["pyarrow.fs"] = None   # makes `from pyarrow.fs import ...` raise ImportError
    try:
        import papermill
    finally:
        if blocked and sys.modules.get("pyarrow.fs", 0) is None:
            del sys.modules["pyarrow.fs"]
    return papermill


ENGINES = ("inprocess", "kernel")


def run_notebook(notebook: str | Path, out_stem: str | Path, parameters: dict | None = None,
                 html: bool = True, cwd: str | Path | None = None, engine: str | None = None) -> Path:
    """Execute ``notebook`` with ``parameters``; write ``<out_stem>.ipynb`` and ``.html``.

    ``engine``: ``inprocess`` (the default; ``$NVR_NOTEBOOK_ENGINE`` overrides it) runs the cells in
    this process (:mod:`nvr.notebook_engine`, no kernel start); ``kernel`` runs them in a Jupyter
    kernel, as papermill does by default."""
    import nbformat

    engine = engine or os.environ.get("NVR_NOTEBOOK_ENGINE") or "inprocess"
    if engine not in ENGINES:
        raise ValueError(f"notebook engine {engine!r}: expected one of {', '.join(ENGINES)} "
                         "(--engine or NVR_NOTEBOOK_ENGINE)")
    pm = _import_papermill()
    engine_name = None
    if engine == "inprocess":
        from . import notebook_engine

        if notebook_engine.usable():
            engine_name = notebook_engine.register(pm)
        else:   # called from inside a Jupyter kernel / IPython: leave that session alone
            engine = "kernel"

    notebook, out_stem = Path(notebook), Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_stem.parent / f".{out_stem.name}.running.ipynb"
    params = dict(parameters or {})
    t0 = time.time()
    try:
        pm.execute_notebook(str(notebook), str(tmp), parameters=params, cwd=str(cwd or Path.cwd()),
                            engine_name=engine_name, kernel_name="python3", progress_bar=False, log_output=False,
                            stdout_file=sys.stdout, stderr_file=sys.stderr,  # each log line once
                            # the kernel app's own chatter (plain-TCP warning on localhost, the interrupt it
                            # gets at shutdown) is not the stage's log; cell errors still fail the stage
                            extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    except BaseException:
        if tmp.exists():
            failed = out_stem.parent / f"{out_stem.name}.failed.ipynb"
            os.replace(tmp, failed)
            print(f"nvr.notebook: {notebook} failed; executed copy kept at {failed}", file=sys.stderr)
        raise
    nb = nbformat.read(tmp, as_version=4)
    final = out_stem.with_suffix(".ipynb")
    with atomic_write(final) as fh:
        nbformat.write(nb, fh)
    tmp.unlink()
    if html:
        with atomic_write(out_stem.with_suffix(".html")) as fh:
            fh.write(render_html(nb, default_title=out_stem.name))
    failed = out_stem.parent / f"{out_stem.name}.failed.ipynb"
    if failed.exists():
        failed.unlink()
    print(f"nvr.notebook: {notebook.name} -> {final} in {time.time() - t0:.1f}s", file=sys.stderr)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nvr.notebook", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook")
    ap.add_argument("out_stem", help="output path without extension (.ipynb and .html are written)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="notebook parameter (value parsed as YAML)")
    ap.add_argument("--no-html", action="store_true")
    ap.add_argument("--engine", choices=ENGINES, default=None,
                    help="inprocess (default): cells run in this process; kernel: a Jupyter kernel")
    args = ap.parse_args(argv)
    params = {k: _coerce(v) for k, v in args.parameter}
    run_notebook(args.notebook, args.out_stem, params, html=not args.no_html, engine=args.engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
