"""The report's sentences: every number in them read from a :class:`Results`."""

from __future__ import annotations

from . import paper
from .results import Results
from .tables import rank_agreement


def _fmt_params(n) -> str:
    if not n:
        return "an unknown number of"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def setting(R: Results) -> str:
    """What this run trained on, in numbers (for the comparison with the paper's scale)."""
    study = R.study
    ref = R.mining.get(R.reference) or {}
    n_queries = ref.get("queries")
    params = (R.metrics.get("base") or {}).get("parameters")
    ev = study.evaluate
    return (f"{n_queries if n_queries is not None else 'an unknown number of'} training queries on the "
            f"{_fmt_params(params)}-parameter student `{study.student.model}`, dataset `{study.dataset.name}` "
            f"({study.dataset.source}), every model scored at {ev.max_query_length} query / "
            f"{ev.max_passage_length} passage tokens")


def headline(R: Results) -> str:
    study = R.study
    lines = [f"**Profile `{study.profile}`** on dataset `{study.dataset.name}` ({study.dataset.source}); "
             f"teacher `{study.teacher}`, student `{study.student.model}`."]
    base, ref, naive = R.ndcg("base"), R.reference, R.baseline
    if base is not None:
        line = f"Base model NDCG@10 = {base:.4f} at {study.evaluate.max_passage_length} passage tokens"
        ref_score = paper.MTEB_BASE.get((study.dataset.name, study.student.model))
        if ref_score:
            mteb, tokens = ref_score
            ours = study.evaluate.max_passage_length
            line += (f"; MTEB's own score for this model on {study.dataset.name} is {mteb:.4f} at {tokens} passage "
                     f"tokens, so ours is {base - mteb:+.4f} from it")
            if ours < tokens:
                line += (f" (expected lower: our passages are cut at {ours} tokens, so most of each document "
                         f"is not seen)")
            elif ours == tokens:
                line += " at the same length"
        lines.append(line + ".")
    pp, nv = R.ndcg(ref), R.ndcg(naive)
    if pp is not None and nv is not None:
        d = R.difference(ref)
        gap = f"{d.text()}, 95% CI over queries and seeds" if d else f"{pp - nv:+.4f}"
        line = f"{R.label(ref)} vs {R.label(naive)}: {pp:.4f} vs {nv:.4f} ({gap})"
        pk = R.paper_key(ref)
        if pk in paper.TABLE3:
            line += (f"; the paper: {paper.TABLE3[pk]:.4f} vs {paper.TABLE3['naive']:.4f} "
                     f"({paper.TABLE3[pk] - paper.TABLE3['naive']:+.4f})")
        lines.append(line + ".")
    fn_n = (R.mining.get(naive) or {}).get("false_negative_rate") if naive else None
    fn_p = (R.mining.get(ref) or {}).get("false_negative_rate")
    if fn_n:
        cut = (1 - (fn_p or 0) / fn_n) * 100 if fn_p is not None else float("nan")
        lines.append(f"Exact false-negative rate among mined negatives: {R.label(naive)} {fn_n:.2%}, "
                     f"{R.label(ref)} {fn_p:.2%} ({cut:.0f}% fewer; the paper's LLM judge: {paper.FALSE_NEGATIVE_CUT}).")
    return "  \n".join(lines)


def question_verdict(low: float, high: float, paper_gain: float) -> str:
    """What a 95% interval ``[low, high]`` of our gain over naive top-k says about the paper's gain:
    its sign (resolved or not) and whether an effect of the paper's size is inside the interval."""
    size = (f"the paper's {paper_gain:+.4f} lies inside the interval" if low <= paper_gain <= high else
            f"an effect as large as the paper's {paper_gain:+.4f} is ruled out (above the interval)"
            if paper_gain > high else f"the gain is larger than the paper's {paper_gain:+.4f}")
    if low > 0:
        return f"agrees with the paper: positive-aware mining beats naive top-k here too; {size}"
    if high < 0:
        return f"**disagrees with the paper**: here it is worse than naive top-k; {size}"
    return f"is not resolved here: the data cannot tell it from naive top-k; {size}"


def method_commentary(R: Results) -> str:
    """What the method ablation resolves: each method against naive top-k with its interval,
    and the agreement of our order with the paper's."""
    naive = R.baseline
    if naive is None or naive not in R.per_query:
        return "No naive top-k run with per-query scores: the gains cannot be measured."
    up, down, tied = [], [], []
    for m in R.methods:
        d = R.difference(m)
        if d is None:
            continue
        item = f"{R.label(m)} {d.text()}"
        (up if d.low > 0 else down if d.high < 0 else tied).append(item)
    n_q = next((R.difference(m).n_queries for m in R.methods if R.difference(m) is not None), 0)
    parts = [f"Each method against {R.label(naive)}: the paired difference in NDCG@10 over the {n_q} test queries "
             "(mean over training seeds) with its 95% bootstrap interval over queries and seeds."]
    if up:
        parts.append("**Resolved gains** (the interval excludes 0): " + "; ".join(up) + ".")
    if down:
        parts.append("**Resolved losses**: " + "; ".join(down) + ".")
    if tied:
        parts.append("**Within noise** (the interval includes 0): " + "; ".join(tied) + ".")
    ra = rank_agreement(R)
    if ra["rho"] is not None:
        parts.append(f"Spearman correlation of our order with the paper's Table 3 over {len(ra['methods'])} methods: "
                     f"**{ra['rho']:+.2f}** (95% interval {ra['low']:+.2f} to {ra['high']:+.2f}).")
    ref = R.difference(R.reference)
    pk = R.paper_key(R.reference)
    if ref is not None and pk in paper.TABLE3:
        gain = paper.TABLE3[pk] - paper.TABLE3["naive"]
        verdict = question_verdict(ref.low, ref.high, gain)
        parts.append(f"The paper's question, {R.label(R.reference)} vs {R.label(naive)}: {ref.text()} against the "
                     f"paper's {gain:+.4f}; this {verdict}.")
    parts.append(f"The paper's gaps come from 287k training examples on 334M-parameter students; ours from {setting(R)}.")
    return " ".join(parts)


def teacher_commentary(R: Results) -> str:
    """Table 1 in words: each teacher's student against the study teacher's student, as a paired
    difference with its 95% interval (each model pooled over the seeds it was trained with), and
    how that order compares with the paper's."""
    from .tables import teacher_student

    text = (f"The paper ranks teachers by the NDCG@10 of students trained on their {R.label(R.reference)} negatives "
            "(Table 1): BM25 .5002 < random .5248 < the student itself as teacher .5494 < stronger dense teachers. ")
    ref = teacher_student(R, R.study.teacher)
    if ref is None or ref not in R.per_query:
        return text + "The study teacher's student has no per-query scores here: the teachers cannot be compared."
    def seeds(name: str) -> str:
        n = R.seeds(name)
        return f"{n} seed{'s' if n != 1 else ''}"

    up, down, tied = [], [], []
    for t in R.study.teacher_ablation:
        name = teacher_student(R, t)
        d = R.difference(name, ref) if name and name != ref else None
        if d is None:
            continue
        item = f"{t} {d.text()} ({seeds(name)})"
        (up if d.low > 0 else down if d.high < 0 else tied).append(item)
    if not (up or down or tied):
        return text + "No other teacher's student was trained and scored."
    text += (f"Ours, each teacher's student minus the study teacher {R.study.teacher}'s "
             f"({R.ndcg(ref):.4f}, {seeds(ref)}), paired over test queries with "
             "a 95% bootstrap interval: ")
    parts = []
    if down:
        parts.append("**resolved below** it: " + "; ".join(down))
    if up:
        parts.append("**resolved above** it (the paper's order has the stronger teacher ahead): " + "; ".join(up))
    if tied:
        parts.append("**within noise**: " + "; ".join(tied))
    text += ". ".join(parts) + ". "
    text += ("The paper's reading of its order: BM25 and random negatives rarely pick the semantically closest "
             "passages, so they carry fewer false negatives but are weaker hard negatives.")
    return text


def determinism_note(R: Results) -> str:
    """Which steps are bit-for-bit reproducible, and which are not on a GPU."""
    import torch

    gpu = torch.cuda.is_available()
    text = ("**Reproducibility.** On a CPU every stage is bit-for-bit repeatable: two clean `dvc repro` runs "
            "of the smoke profile give byte-identical data, candidates, mined negatives, model weights and "
            "metrics, also when the run is killed during embedding, mining or training and restarted "
            "(`tests/test_reproducibility.py`, run in CI). Sampling uses counter-based hashes of "
            "(seed, query, candidate), so mined negatives do not depend on batch size, chunking or thread count; "
            "training weights do depend on the torch thread count (same machine, same threads: identical). ")
    if gpu:
        text += ("This run used a GPU: bf16 encoding, faiss-gpu search and cuBLAS training are not bit-exact "
                 "across runs or cards; expect embeddings to differ at the 1e-3 level and rare swaps of "
                 "candidates whose scores tie within that error.")
    else:
        text += ("This run used the CPU only. On a GPU, encoding (bf16), faiss-gpu search and training (cuBLAS "
                 "reductions) are not bit-exact; how much they move NDCG@10 has not been measured here.")
    return text
