"""End-to-end hard-negative mining: nvr against sentence-transformers' ``mine_hard_negatives``.

Same machine, model (``pkg:all-MiniLM-L6-v2``), texts, max length (query and passage),
batch size, torch/faiss thread count, n = 4 negatives, cosine scores, "top" selection.
Data: the offline wiki task (``nvr.data.build_wiki_dataset`` into a temp dir), its
training pairs (query text + one positive each) and every document (``nvr.data.doc_text``)
as the candidate corpus; ST gets the same strings (``corpus=`` the document texts).

Each (setting, tool, repeat) runs in a fresh subprocess. The clock runs from "texts in
memory" (imports done: for nvr also ``transformers.modeling_utils``, which importing
sentence-transformers already loads, ~4 s here) to "negatives in memory", *model loading included for both*:
nvr = ``build(TeacherConfig)`` + ``rank_candidates`` (encode, exact search, positive scores,
duplicate exclusions; embeddings cached in a fresh empty dir, so nothing is reused) +
``mining.mine``; ST = ``SentenceTransformer(path)`` + ``Dataset.from_dict`` +
``mine_hard_negatives(use_faiss=True, output_format="labeled-list", output_scores=True,
verbose=False)``. Memory: peak RSS = the child's ``ru_maxrss`` (imports + model + work);
work anon = highest RssAnon above the level after imports (sampled every 5 ms).

Settings (ST arguments / nvr preset):

=============  ====================================  ===========================
naive          defaults (sampling_strategy="top")    ``naive``
shift10        range_min=10                          ``naive`` + shift=10
abs07          max_score=0.7                         ``abs07``
marginpos005   absolute_margin=0.05                  ``marginpos005``
percpos095     relative_margin=0.05                  ``percpos095``
=============  ====================================  ===========================

How the two definitions line up (read before judging the identity columns):

* Depth. ST searches ``range_max + max_positives`` candidates (6.2 and before) or
  ``range_max + max_positives + 1`` (6.3 on: one more for an excluded candidate such as the
  query's own text), = depth + 1 or + 2 here (every query has one positive), and keeps the
  ``range_max`` best non-positive survivors; nvr gets the same ``depth`` (:func:`st_candidates`
  reads which rule the installed version follows) and ``window=None``, so both see the same
  candidates.
* range_min vs shift. ST masks positives *and* score-filtered candidates to -inf, re-sorts,
  then drops the first ``range_min``: the skip counts survivors of the score filters. nvr's
  ``shift`` counts clean candidates (positives/duplicates removed) *before* score filters,
  which act inside the window without sliding it. Same result without score filters (the
  shift10 setting); different by design when both are combined (not benchmarked).
* Margins. ST drops ``s + m > pos`` (keeps equality, float32 add); nvr keeps
  ``s < pos - m`` (strict, threshold in float64 rounded to float32). ST relative_margin
  drops ``s > pos - |pos|*m`` (keeps equality); nvr perc keeps ``s < pos - |pos|*(1-perc)``
  (strict). Both use the lowest positive score as anchor (nvr ``anchor="min"``); with one
  positive per query (wiki query texts are unique, so ST merges no duplicate queries) the
  anchor is that positive's score. max_score: both keep ``s <= float32(0.7)``.
* Corpus duplicates. ST de-duplicates the corpus by exact text (a twin of the positive is
  the positive, so it is masked); nvr keeps every document, never emits a document whose
  NFKC/case-folded text equals a positive or the query, but may emit two identical-text
  non-positive documents. Negatives are compared as texts (index of first occurrence).
* Scores. ST on CPU: faiss ``IndexFlatIP`` float32 (the float16 ``useFloat16`` cloner only
  applies with GPU faiss; faiss-cpu has no ``GpuMultipleClonerOptions``, so ST silently
  stays on the exact CPU index), positive scores from ``similarity_pairwise``. nvr:
  ``float32(float64 dot)`` re-scoring, ties by smaller id. Embeddings come from two encoders
  (``|1-cos|`` ~ 1e-7, see bench_encode.py), so near-ties and scores at a threshold can
  flip; mismatching queries are classified by their smallest score gap below.
* Shortfall. ST ``labeled-list`` keeps partial rows (n-tuple would drop them); nvr
  ``shortfall="keep"`` too. The table counts queries with all n and with >= 1 negative.
  On CUDA, nvr's encoder defaults to bfloat16 and ST to float32: compare on CPU.

    python benchmarks/bench_mining.py --max-docs 800 --settings naive,percpos095 --out bench_mining.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PeakAnon  # noqa: E402  (shared RssAnon sampler)

SETTINGS = {  # name: (ST kwargs, nvr preset, nvr overrides)
    "naive": ({}, "naive", {}),
    "shift10": ({"range_min": 10}, "naive", {"shift": 10}),
    "abs07": ({"max_score": 0.7}, "abs07", {}),
    "marginpos005": ({"absolute_margin": 0.05}, "marginpos005", {}),
    "percpos095": ({"relative_margin": 0.05}, "percpos095", {}),
}
ST = "sentence-transformers"
TIE_EPS = 1e-5  # score gap under which two encoders / scorers may legitimately disagree


def st_candidates(range_max: int, max_positives: int = 1) -> int:
    """How many candidates the installed sentence-transformers' ``mine_hard_negatives`` searches."""
    import inspect

    from sentence_transformers.util import mine_hard_negatives

    src = inspect.getsource(mine_hard_negatives)
    return range_max + max_positives + (1 if "num_extra_candidates = max_positives + 1" in src else 0)


# --------------------------------------------------------------------------- child
def _child(args) -> None:
    spec = json.loads(Path(args.spec).read_text())
    inp = json.loads(Path(spec["inputs"]).read_text())
    q_ids, q_texts, doc_texts, pos = inp["q_ids"], inp["q_texts"], inp["doc_texts"], inp["pos"]
    st_kw, preset, overrides = SETTINGS[spec["setting"]]
    n, depth, L, bs = spec["n"], spec["depth"], spec["max_length"], spec["batch_size"]

    import faiss
    import torch

    torch.set_num_threads(spec["threads"])
    faiss.omp_set_num_threads(spec["threads"])
    from nvr.models import resolve_model

    path = resolve_model(spec["model"])
    if spec["tool"].startswith("nvr"):
        import transformers  # noqa: F401  (imports before the memory baseline)
        import transformers.modeling_utils  # noqa: F401  (the model base ST's import already holds: ~4 s)

        import nvr.mining.search  # noqa: F401
        import nvr.text  # noqa: F401
        from nvr import mining as M
        from nvr.config import TeacherConfig, build
        from nvr.mining.teachers import rank_candidates
        from nvr.stages.context import id_matrix

        cache = tempfile.mkdtemp(prefix="nvr_bench_cache_")
        os.environ["NVR_ONNX_CACHE"] = str(Path(cache) / "onnx")   # an ONNX export is part of the run
        os.environ["NVR_EMBEDDING_STORE"] = "off"                    # nothing reused from earlier runs
        sampler = PeakAnon()
        t0 = time.perf_counter()
        tc = build(TeacherConfig, {"kind": "dense", "model": spec["model"], "max_query_length": L,
                                   "max_passage_length": L, "batch_size": bs, "depth": spec["nvr_depth"],
                                   "backend": spec["backend"]}, "bench")
        cands = rank_candidates(tc, q_ids, q_texts, doc_texts, id_matrix([[p] for p in pos]), seed=0,
                                cache_dir=Path(cache), name="bench")
        cfg = M.preset(preset, num_negatives=n, **overrides)
        mined = M.mine(cands.cand_ids, cands.cand_scores, cands.pos_ids, cands.pos_scores, cfg,
                       query_keys=M.query_keys(q_ids), exclude_ids=cands.exclude_ids, progress=False)
        wall = time.perf_counter() - t0
        anon = sampler.stop()
        import shutil

        shutil.rmtree(cache, ignore_errors=True)
        neg = [[doc_texts[i] for i in row if i >= 0] for row in mined.neg_ids.tolist()]
        neg_s = [[s for s, i in zip(rs, ri) if i >= 0] for rs, ri in zip(mined.neg_scores.tolist(),
                                                                           mined.neg_ids.tolist())]
        pos_s = cands.pos_scores[:, 0].tolist()
    else:
        import datasets  # noqa: F401
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.util import mine_hard_negatives

        sampler = PeakAnon()
        t0 = time.perf_counter()
        model = SentenceTransformer(path)
        model.max_seq_length = L
        ds = datasets.Dataset.from_dict({"query": q_texts, "positive": [doc_texts[p] for p in pos]})
        out = mine_hard_negatives(ds, model, corpus=doc_texts, range_max=depth, num_negatives=n,
                                  sampling_strategy="top", batch_size=bs, use_faiss=True,
                                  output_format="labeled-list", output_scores=True, verbose=False, **st_kw)
        wall = time.perf_counter() - t0
        anon = sampler.stop()
        row_of = {q: i for i, q in enumerate(q_texts)}
        neg = [[] for _ in q_texts]
        neg_s = [[] for _ in q_texts]
        pos_s = [float("nan")] * len(q_texts)
        for r in out:
            i = row_of[r["query"]]
            neg[i], neg_s[i], pos_s[i] = r["positive"][1:], r["scores"][1:], r["scores"][0]
    Path(spec["result"]).write_text(json.dumps({
        "wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "work_anon_mb": anon, "neg_texts": neg, "neg_scores": neg_s, "pos_scores": pos_s}))


# --------------------------------------------------------------------------- parent
def _inputs(max_docs: int, n_test: int, tmp: Path) -> dict:
    from nvr.data import build_wiki_dataset, doc_text, load_beir, read_train_pairs

    build_wiki_dataset(tmp / "wiki", max_docs=max_docs, n_test=n_test, n_dev=0)
    ds = load_beir(tmp / "wiki", splits=["train"])  # n_test=0 writes an empty test.tsv
    pairs = read_train_pairs(tmp / "wiki" / "train_pairs.jsonl", corpus_ids=ds.corpus)
    doc_ids = list(ds.corpus)
    row = {d: i for i, d in enumerate(doc_ids)}
    return {"q_ids": [p.query_id for p in pairs], "q_texts": [p.query for p in pairs],
            "doc_texts": [doc_text(ds.corpus[d]) for d in doc_ids],
            "pos": [row[p.positive_ids[0]] for p in pairs]}


def _thresholds(st_kw: dict, pos: float) -> set:
    out = set()
    if "max_score" in st_kw:
        out.add(float(np.float32(st_kw["max_score"])))
    if "absolute_margin" in st_kw:
        out.add(pos - st_kw["absolute_margin"])
    if "relative_margin" in st_kw:
        out.add(pos - abs(pos) * st_kw["relative_margin"])
    return out


def _compare(a: dict, b: dict, canon: dict, st_kw: dict) -> dict:
    """a = nvr, b = ST results; negatives compared as canonical doc indices."""
    overlaps, same, kinds = [], 0, {"near-tie/threshold": 0, "positive score": 0, "other": 0}
    only_one, examples = 0, []
    for i, (na, nb) in enumerate(zip(a["neg_texts"], b["neg_texts"])):
        ia, ib = [canon[t] for t in na], [canon[t] for t in nb]
        if not ia and not ib:
            continue
        if not ia or not ib:
            only_one += 1
        if ia == ib:
            same += 1
        else:
            pa, pb = a["pos_scores"][i], b["pos_scores"][i]
            # smallest gap between two negative scores of either list, or a score and the filter threshold
            sc = sorted(set(a["neg_scores"][i]) | set(b["neg_scores"][i]) | _thresholds(st_kw, pa))
            gap = min((y - x for x, y in zip(sc, sc[1:])), default=1.0)
            kind = ("positive score" if abs(pa - pb) > TIE_EPS else
                    "near-tie/threshold" if gap < TIE_EPS else "other")
            kinds[kind] += 1
            if len(examples) < 3:
                examples.append({"row": i, "nvr": list(zip(ia, a["neg_scores"][i])),
                                 "st": list(zip(ib, b["neg_scores"][i])), "pos": [pa, pb], "kind": kind})
        overlaps.append(len(set(ia) & set(ib)) / max(len(set(ia)), len(set(ib))))
    m = len(overlaps)
    return {"compared": m, "set_overlap": float(np.mean(overlaps)) if m else float("nan"),
            "identical_lists": same / m if m else float("nan"), "only_one_tool": only_one,
            "mismatch_kinds": kinds, "examples": examples}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-docs", type=int, default=3000)
    ap.add_argument("--n-test", type=int, default=0, help="wiki descriptions held out (fewer training queries)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated of {', '.join(SETTINGS)}")
    ap.add_argument("--model", default="pkg:all-MiniLM-L6-v2")
    ap.add_argument("--num-negatives", type=int, default=4)
    ap.add_argument("--depth", type=int, default=100,
                    help="ST range_max; nvr depth = the number of candidates ST searches (see notes)")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--repeat", type=int, default=1, help="runs per (setting, tool); best wall time kept")
    ap.add_argument("--nvr-backends", default="torch",
                    help="nvr teacher backends to run, comma-separated: torch (exact), onnxruntime (its ONNX "
                         "export is timed too: a fresh cache per run)")
    ap.add_argument("--out", default=None, help="write results as JSON here")
    ap.add_argument("--child", dest="spec", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.spec:
        _child(args)
        return
    settings = [s for s in args.settings.split(",") if s]
    backends = [b for b in args.nvr_backends.split(",") if b]
    nvr_tools = {("nvr" if b == "torch" else f"nvr-{b}"): b for b in backends}
    tools = (*nvr_tools, ST)
    nvr_depth = st_candidates(args.depth)
    bad = [s for s in settings if s not in SETTINGS]
    if bad:
        raise SystemExit(f"unknown setting(s) {bad}; valid: {', '.join(SETTINGS)}")

    from nvr.models import resolve_model

    for f in Path(resolve_model(args.model)).rglob("*"):  # warm the page cache for both tools
        if f.is_file():
            f.read_bytes()
    rows, comparisons = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_mining_") as tmp:
        tmp = Path(tmp)
        inp = _inputs(args.max_docs, args.n_test, tmp)
        (tmp / "inputs.json").write_text(json.dumps(inp))
        canon: dict[str, int] = {}
        for i, t in enumerate(inp["doc_texts"]):
            canon.setdefault(t, i)
        nq, nd = len(inp["q_texts"]), len(inp["doc_texts"])
        print(f"wiki: {nd} docs ({nd - len(canon)} exact-text duplicates), {nq} training queries "
              f"({nq - len(set(inp['q_texts']))} duplicate query texts)", file=sys.stderr)
        for s in settings:
            res = {}
            for r in range(args.repeat):
                for tool in (tools if r % 2 == 0 else tools[::-1]):
                    spec = {"setting": s, "tool": tool, "backend": nvr_tools.get(tool, "torch"),
                            "inputs": str(tmp / "inputs.json"), "model": args.model,
                            "n": args.num_negatives, "depth": args.depth, "nvr_depth": nvr_depth,
                            "max_length": args.max_length,
                            "batch_size": args.batch_size, "threads": args.threads,
                            "result": str(tmp / f"res_{s}_{tool}.json")}
                    (tmp / "spec.json").write_text(json.dumps(spec))
                    p = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(tmp / "spec.json")],
                                       capture_output=True, text=True)
                    if p.returncode != 0:
                        sys.stderr.write(p.stderr[-5000:])
                        raise SystemExit(f"{tool} / {s} failed")
                    out = json.loads(Path(spec["result"]).read_text())
                    prev = res.get(tool)
                    if prev is not None:
                        out["wall_s"] = min(out["wall_s"], prev["wall_s"])
                        out["peak_rss_mb"] = max(out["peak_rss_mb"], prev["peak_rss_mb"])
                        out["work_anon_mb"] = max(out["work_anon_mb"], prev["work_anon_mb"])
                    res[tool] = out
                    print(f"  {s:13s} {tool:22s} {out['wall_s']:.1f}s", file=sys.stderr)
            for tool in tools:
                o = res[tool]
                cmp = _compare(o, res[ST], canon, SETTINGS[s][0]) if tool != ST else None
                if cmp is not None:
                    comparisons[s if tool == "nvr" else f"{s} ({tool})"] = cmp
                rows.append({"setting": s, "tool": tool, "backend": nvr_tools.get(tool), "wall_s": o["wall_s"],
                             "peak_rss_mb": o["peak_rss_mb"], "work_anon_mb": o["work_anon_mb"],
                             "queries_full": sum(len(x) == args.num_negatives for x in o["neg_texts"]),
                             "queries_any": sum(len(x) > 0 for x in o["neg_texts"]),
                             "set_overlap": cmp["set_overlap"] if cmp else 1.0,
                             "identical_lists": cmp["identical_lists"] if cmp else 1.0})

    import sentence_transformers
    import torch

    print(f"\nmodel {args.model}, wiki max_docs={args.max_docs}: {nd} docs, {nq} queries; n={args.num_negatives}, "
          f"ST range_max={args.depth} / nvr depth={nvr_depth}, max length {args.max_length}, batch "
          f"{args.batch_size}, {args.threads} threads, CPU faiss (ST use_faiss=True: exact float32 IndexFlatIP), "
          f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}; "
          f"wall time includes model loading for both; best of {args.repeat}\n")
    print("| setting | tool | wall s | peak RSS MB | work anon MB | queries with n negs | with >=1 neg "
          "| neg set overlap | identical lists |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        same = ("(reference)", "(reference)") if r["tool"] == ST else \
            (f"{100 * r['set_overlap']:.2f}%", f"{100 * r['identical_lists']:.2f}%")
        print(f"| {r['setting']} | {r['tool']} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['work_anon_mb']:.0f} "
              f"| {r['queries_full']} | {r['queries_any']} | {same[0]} | {same[1]} |")
    print("\nmismatches (queries whose ordered negative lists differ), by smallest score gap involved:")
    for s, c in comparisons.items():
        k = c["mismatch_kinds"]
        print(f"- {s}: compared {c['compared']}, negatives from one tool only {c['only_one_tool']}; "
              f"near-tie/threshold (<{TIE_EPS:g}) {k['near-tie/threshold']}, positive score differs "
              f"{k['positive score']}, other {k['other']}")
        for e in c["examples"]:
            print(f"    row {e['row']} ({e['kind']}): pos {e['pos'][0]:.7f}/{e['pos'][1]:.7f} "
                  f"nvr {[(d, round(x, 7)) for d, x in e['nvr']]} st {[(d, round(x, 7)) for d, x in e['st']]}")
    if args.out:
        from nvr.io import write_json

        write_json(args.out, {"model": args.model, "max_docs": args.max_docs, "docs": nd, "queries": nq,
                              "num_negatives": args.num_negatives, "st_range_max": args.depth,
                              "nvr_depth": nvr_depth, "max_length": args.max_length, "nvr_backends": backends,
                              "batch_size": args.batch_size, "threads": args.threads, "repeat": args.repeat,
                              "timing": "texts in memory -> negatives in memory, model loading included",
                              "runs": rows, "comparisons": comparisons})


if __name__ == "__main__":
    main()
