"""Run a parameterized notebook with papermill and render it to HTML, atomically.

Used by every DVC stage::

    python -m nvr.notebook notebooks/03_mine.ipynb reports/03_mine/naive -p method naive

writes ``reports/03_mine/naive.ipynb`` (executed) and ``reports/03_mine/naive.html``.
Both are written under temporary names and renamed only when the run succeeded, so a
failed or killed stage leaves no half-written report.
"""

from __future__ import annotations

import argparse
import os
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


def run_notebook(notebook: str | Path, out_stem: str | Path, parameters: dict | None = None,
                 html: bool = True, cwd: str | Path | None = None) -> Path:
    """Execute ``notebook`` with ``parameters``; write ``<out_stem>.ipynb`` and ``.html``."""
    import nbformat
    import papermill as pm

    notebook, out_stem = Path(notebook), Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_stem.parent / f".{out_stem.name}.running.ipynb"
    params = dict(parameters or {})
    t0 = time.time()
    try:
        pm.execute_notebook(str(notebook), str(tmp), parameters=params, cwd=str(cwd or Path.cwd()),
                            kernel_name="python3", progress_bar=False, log_output=False,
                            stdout_file=sys.stdout, stderr_file=sys.stderr)  # each log line once
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
        from nbconvert import HTMLExporter

        # the page shows text, tables and figures; the code stays in the executed .ipynb beside it
        body, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                               exclude_output_prompt=True).from_notebook_node(nb)
        with atomic_write(out_stem.with_suffix(".html")) as fh:
            fh.write(body)
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
    args = ap.parse_args(argv)
    params = {k: _coerce(v) for k, v in args.parameter}
    run_notebook(args.notebook, args.out_stem, params, html=not args.no_html)
    return 0


if __name__ == "__main__":
    sys.exit(main())
