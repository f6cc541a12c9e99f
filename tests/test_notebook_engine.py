"""The stage launcher's in-process notebook engine, checked against a real Jupyter kernel (papermill's
default engine) as the oracle: same cells, same kinds of outputs, same failure behaviour."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nvr.notebook import run_notebook

CELLS = [
    new_markdown_cell("# A stage"),
    new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
    new_code_cell("from nvr.runtime import log, setup_logging\nsetup_logging()\nlog.info('first %s', x)\nprint('printed')"),
    new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 1))\n"
                  "ax.plot([0, 1]); plt.show()"),
    new_code_cell("from IPython.display import Markdown, display\ndisplay(Markdown('**bold**'))\nx * 2"),
    new_code_cell("log.info('second cell, same handler')\nhidden = 3;"),
]


def _write(tmp_path, cells, name="nb"):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def _summary(nb):
    """Per code cell: (execution_count, output kinds, stream names, mime types, result value)."""
    out = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        kinds = [o.output_type for o in c.outputs]
        streams = sorted({o.name for o in c.outputs if o.output_type == "stream"})
        mimes = [sorted(o.data) for o in c.outputs if "data" in o]
        results = [o.data.get("text/plain") for o in c.outputs if o.output_type == "execute_result"]
        out.append((c.execution_count, [k for i, k in enumerate(kinds) if k != "stream" or
                                        not (i and kinds[i - 1] == "stream")], streams, mimes, results))
    return out


def _stream_text(cell, name):
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == name)


def test_inprocess_engine_keeps_every_kind_of_output(tmp_path, capfd):
    path = _write(tmp_path, CELLS)
    final = run_notebook(path, tmp_path / "out", {"x": 5}, html=True, cwd=tmp_path, engine="inprocess")
    nb = nbformat.read(final, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "first 5" in _stream_text(code[2], "stderr") and "printed" in _stream_text(code[2], "stdout")
    # a handler created in one cell writes into the cell that is running later, not the first one
    assert "second cell" in _stream_text(code[5], "stderr") and "second cell" not in _stream_text(code[2], "stderr")
    assert any("image/png" in o.data for o in code[3].outputs if "data" in o)
    assert [o.output_type for o in code[4].outputs] == ["display_data", "execute_result"]
    assert code[4].outputs[1].data["text/plain"] == "10" and code[4].outputs[1].execution_count == code[4].execution_count
    assert code[5].outputs and all(o.output_type == "stream" for o in code[5].outputs)   # ';' hides the value
    assert (tmp_path / "out.html").exists() and not (tmp_path / ".out.running.ipynb").exists()
    # every log line also reached the stage's own stderr, once
    assert capfd.readouterr().err.count("second cell, same handler") == 1


def test_inprocess_engine_matches_a_kernel(tmp_path):
    path = _write(tmp_path, CELLS)
    a = nbformat.read(run_notebook(path, tmp_path / "inproc", {"x": 5}, html=False, cwd=tmp_path,
                                   engine="inprocess"), as_version=4)
    b = nbformat.read(run_notebook(path, tmp_path / "kernel", {"x": 5}, html=False, cwd=tmp_path,
                                   engine="kernel"), as_version=4)
    assert _summary(a) == _summary(b)
    assert [c.source for c in a.cells] == [c.source for c in b.cells]   # same injected parameters


@pytest.mark.parametrize("engine", ["inprocess", "kernel"])
def test_a_failing_cell_stops_the_run_and_publishes_nothing(tmp_path, engine):
    import papermill

    path = _write(tmp_path, [new_code_cell("a = 1"), new_code_cell("1 / 0"), new_code_cell("print('never')")])
    with pytest.raises(papermill.PapermillExecutionError, match="ZeroDivisionError"):
        run_notebook(path, tmp_path / "out", {}, cwd=tmp_path, engine=engine)
    assert not (tmp_path / "out.ipynb").exists() and not (tmp_path / "out.html").exists()
    failed = nbformat.read(tmp_path / "out.failed.ipynb", as_version=4)
    cells = {c.source: c for c in failed.cells if c.cell_type == "code"}   # papermill adds a banner cell
    errors = [o for o in cells["1 / 0"].outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "ZeroDivisionError"
    assert cells["print('never')"].outputs == [] and cells["print('never')"].execution_count is None


def test_each_run_starts_with_an_empty_namespace(tmp_path):
    import papermill

    first = _write(tmp_path, [new_code_cell("leftover = 1")], "first")
    second = _write(tmp_path, [new_code_cell("leftover")], "second")
    run_notebook(first, tmp_path / "a", {}, html=False, cwd=tmp_path, engine="inprocess")
    with pytest.raises(papermill.PapermillExecutionError, match="NameError"):
        run_notebook(second, tmp_path / "b", {}, html=False, cwd=tmp_path, engine="inprocess")


def test_unknown_engine_is_named(tmp_path, monkeypatch):
    path = _write(tmp_path, [new_code_cell("1")])
    monkeypatch.setenv("NVR_NOTEBOOK_ENGINE", "threads")
    with pytest.raises(ValueError, match="NVR_NOTEBOOK_ENGINE"):
        run_notebook(path, tmp_path / "out", {}, cwd=tmp_path)
    assert not (tmp_path / "out.ipynb").exists()


def test_stage_log_handler_is_added_beside_foreign_handlers(capsys):
    """pytest >= 9 attaches its capture handler to every non-propagating logger, so ``nvr`` may
    already hold a handler that is not the stage's: setup_logging must still add its own (once)."""
    import logging

    from nvr.runtime import _StderrHandler, log, setup_logging

    saved = list(log.handlers)
    try:
        log.handlers[:] = [logging.NullHandler()]
        setup_logging()
        setup_logging()
        assert sum(isinstance(h, _StderrHandler) for h in log.handlers) == 1
        log.info("reaches stderr")
        assert "reaches stderr" in capsys.readouterr().err
    finally:
        log.handlers[:] = saved
