"""The paper's numbers, typed in from Moreira et al. (2024), "NV-Retriever: Improving text
embedding models with effective hard-negative mining" (arXiv 2407.15831).

Method keys are the names of :data:`nvr.mining.methods.PAPER_METHODS`; a study's method gets
the paper's numbers only when its settings are the paper's (:func:`nvr.mining.methods.paper_method`).
"""

#: Table 3 (e5-large-unsupervised student, e5-mistral-7b teacher): mean NDCG@10 on NQ, HotpotQA, FiQA.
TABLE3 = {
    "naive": 0.5407, "shift10": 0.5695, "abs07": 0.5759, "marginpos005": 0.5835, "percpos095": 0.5856,
    "percpos095_sampled10": 0.5856, "top1_sampled10": 0.5857,
}
#: Table 4 (Mistral-7B student, 1 hard negative).
TABLE4 = {"naive": 0.6214, "shift10": 0.6342, "abs07": 0.6184, "marginpos005": 0.6457,
          "percpos095": 0.6479, "percpos095_sampled10": 0.6499}
#: Table 5 (15 BEIR datasets, x100).
TABLE5 = {"naive": 51.44, "shift10": 54.66, "abs07": 55.81, "marginpos005": 59.77, "percpos095": 60.55}
#: Table 1 teachers (PercPos 95%), mean NDCG@10.
TABLE1 = {"BM25": 0.5002, "random negatives": 0.5248, "e5-large-unsupervised (student as teacher)": 0.5494,
          "e5-large-v2": 0.5704, "snowflake-arctic-embed-l": 0.5728, "NV-Embed-v1": 0.5744,
          "e5-mistral-7b": 0.5810}
#: Our teacher kinds mapped to the closest row of Table 1.
TEACHER_KIND_TO_TABLE1 = {"bm25": "BM25", "random": "random negatives"}
#: Table 2 ensembles of four teachers; keys are our ensemble kinds.
TABLE2 = {"cross_sample": 0.5806, "intra_sample_dedup": 0.5804, "intra_sample_kept": 0.5825}
ENSEMBLE_LABELS = {"cross_sample": "cross-sample", "intra_sample_dedup": "intra-sample, duplicates removed",
                   "intra_sample_kept": "intra-sample, duplicates kept"}
#: Fig. 3: the LLM judge's reduction of false negatives, naive -> PercPos 95%.
FALSE_NEGATIVE_CUT = "57% fewer on NQ, 50% on StackExchange"

#: MTEB's own NDCG@10 for a base model on a BEIR dataset at MTEB's standard 256 passage tokens
#: (all-MiniLM-L6-v2 on SciFact, measured with mteb 2.26 on this machine), to place our
#: shorter-length scores.
MTEB_BASE = {("scifact", "pkg:all-MiniLM-L6-v2"): (0.64508, 256)}
