"""The reader's HTML page of an executed notebook: code hidden, figures and tables inline, one small
stylesheet instead of the JupyterLab CSS in every page."""

import base64
import io

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from nvr.notebook import render_html


def _png() -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _nb():
    code = new_code_cell("secret_variable = compute()\nplt.show()", execution_count=1)
    code.outputs = [new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"}),
                    new_output("execute_result", data={"text/html": "<table class='dataframe'><tr><td>0.8278</td></tr></table>",
                                                       "text/plain": "0.8278"}, execution_count=1),
                    new_output("stream", name="stderr", text="12:00:00 nvr INFO mined 214 queries\n")]
    md = new_markdown_cell("# 3. Mine hard negatives\n\nA method is a **window**, filters and a selection.")
    return new_notebook(cells=[md, code])


def test_page_has_title_text_figure_table_and_log_but_no_code():
    page = render_html(nbformat.from_dict(_nb()), default_title="fallback")
    assert page.startswith("<!doctype html>")
    assert "<title>3. Mine hard negatives</title>" in page
    assert "<strong>window</strong>" in page
    assert page.count('src="data:image/png;base64,') == 1
    assert "0.8278" in page and "nvr INFO mined 214 queries" in page
    assert "secret_variable" not in page          # code cells stay in the .ipynb
    assert len(page) < 40_000                     # no JupyterLab stylesheet inlined
    assert page.count("<style") == 1


def test_title_falls_back_to_the_output_name():
    nb = nbformat.from_dict(new_notebook(cells=[new_markdown_cell("no heading here")]))
    assert "<title>naive</title>" in render_html(nb, default_title="naive")


def test_logs_show_each_progress_bar_once_and_keep_the_log_lines():
    from nvr.notebook import tidy_streams

    outs = [new_output("stream", name="stderr", text="12:00 nvr INFO stage1: 214 examples\n"),
            new_output("stream", name="stderr", text="train stage1:   0%|          | 0/14 [00:00<?, ?it/s]\n"),
            new_output("stream", name="stderr", text="train stage1:   7%|▋         | 1/14 [00:07<01:41]\n"
                                                      "train stage1: 100%|██████████| 14/14 [01:25<00:00]\n"),
            new_output("stream", name="stderr", text="encode passages:  50%|█| 1/2\rencode passages: 100%|█| 2/2\n"),
            new_output("stream", name="stdout", text="done\n"),
            new_output("stream", name="stderr", text="12:01 nvr INFO stage1: 14 steps in 91.8 s\n")]
    got = tidy_streams(outs)
    assert [o["name"] for o in got] == ["stderr", "stdout", "stderr"]
    lines = got[0]["text"].splitlines()
    assert lines == ["12:00 nvr INFO stage1: 214 examples", "train stage1: 100%|██████████| 14/14 [01:25<00:00]",
                     "encode passages: 100%|█| 2/2"]
    assert got[2]["text"].startswith("12:01 nvr INFO stage1: 14 steps")
    nb = nbformat.from_dict(new_notebook(cells=[new_code_cell("x", outputs=outs)]))
    page = render_html(nb)
    assert page.count("train stage1:") == 1 and "0/14" not in page
    assert len(nb.cells[0].outputs) == 6      # the notebook itself is unchanged
