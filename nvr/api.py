"""``nvr.mine_hard_negatives``: sentence-transformers' call, nvr's miner.

A drop-in for ``sentence_transformers.util.mine_hard_negatives`` on the settings both define
(a ``datasets.Dataset`` of (anchor, positive) pairs in, a ``datasets.Dataset`` in one of its
output formats out), plus nvr's own options: PercPos as the paper writes it, softmax /
top-1 + softmax sampling with a seed, shortfall handling, the anchor of the margins, BM25 or
random teachers, and every nvr output format (:mod:`nvr.mining.formats`).

How sentence-transformers' arguments map (identical output in a test for each shared setting):

=====================  ======================================================================
range_max              candidates considered per query (nvr ``window``; the search depth is
                       ``range_max`` + the most positives a query has, as in ST)
range_min              skip the first N candidates (nvr ``shift``; ST counts the skip after its
                       score filters, nvr before them: equal without max_score / margins)
max_score, min_score   TopK-Abs ceiling / floor (same)
absolute_margin        TopK-MarginPos: keep ``s < pos - margin`` (ST keeps equality)
relative_margin        TopK-PercPos with ``perc = 1 - relative_margin`` (ST keeps equality)
num_negatives          n
sampling_strategy      ``top`` or ``random`` (uniform over the survivors; nvr adds ``softmax`` /
                       ``top1_softmax`` through ``selection``)
prompts                the query prefix (``prompts["query"]`` or ``query_prompt``) and the passage
                       prefix (``prompts["corpus"]`` or ``corpus_prompt``)
output_format          ``triplet`` / ``n-tuple`` / ``labeled-pair`` / ``labeled-list`` (+ nvr's)
output_scores          add the teacher's scores
cache_folder           where the corpus and query embeddings are cached (reused when they match)
=====================  ======================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ConfigError


def _teacher_of(model) -> tuple[str, str | None, int | None]:
    """(model reference, pooling, max length) of a model given as a reference or as a loaded
    ``SentenceTransformer`` (its transformer's path or hub id, its pooling mode, its max_seq_length)."""
    if isinstance(model, (str, Path)):
        return str(model), None, None
    try:
        ref = model[0].auto_model.config._name_or_path
    except (AttributeError, IndexError, KeyError, TypeError):
        raise ConfigError("mine_hard_negatives: model must be a model reference (hub id, local folder, pkg:NAME, "
                          "'bm25', 'random') or a SentenceTransformer") from None
    pooling = None
    try:
        mode = model[1].get_pooling_mode_str()
        pooling = {"mean": "mean", "cls": "cls", "lasttoken": "last"}.get(mode)
        if pooling is None:
            raise ConfigError(f"mine_hard_negatives: the SentenceTransformer's pooling {mode!r} is not one nvr "
                              f"encodes with (mean, cls, lasttoken)")
    except (AttributeError, IndexError, TypeError):
        pass
    return str(ref), pooling, getattr(model, "max_seq_length", None)


def mine_hard_negatives(dataset, model="pkg:all-MiniLM-L6-v2", *, anchor_column_name: str | None = None,
                        positive_column_name: str | None = None, corpus: list[str] | None = None,
                        cross_encoder: str | None = None, range_min: int = 0, range_max: int | None = None,
                        max_score: float | None = None, min_score: float | None = None,
                        absolute_margin: float | None = None, relative_margin: float | None = None,
                        num_negatives: int = 3, sampling_strategy: str = "top", query_prompt: str | None = None,
                        corpus_prompt: str | None = None, prompts: dict | None = None, batch_size: int = 32,
                        max_length: int | None = None,
                        output_format: str = "triplet", output_scores: bool = False,
                        cache_folder: str | Path | None = None, seed: int = 0, selection: str | None = None,
                        temperature: float | None = None, shortfall: str = "keep", anchor: str = "min",
                        perc: float | None = None, device: str = "auto", backend: str = "torch",
                        dtype: str = "auto", **ignored: Any):
    """Mine hard negatives for the (anchor, positive) pairs of ``dataset``; returns a ``datasets.Dataset``.

    model: a teacher reference (hub id, local folder, ``pkg:NAME``), ``"bm25"`` or ``"random"``, or a
    loaded ``SentenceTransformer`` (its transformer's path or id, pooling and max_seq_length are used).
    max_length: tokens per query and passage (default: the SentenceTransformer's max_seq_length, else 256).
    query_prompt / corpus_prompt (or ``prompts={"query": .., "corpus": ..}``): prefixes.
    corpus: candidate passages (default: the dataset's positives); the positives are always part of
    it, duplicates by exact text merged (as sentence-transformers does). Queries that repeat are
    merged: every positive of a query is masked for all of its rows. cross_encoder: re-score the
    candidates and positives with it (nvr's rescoring; the margins then use its scores).
    perc: TopK-PercPos directly (``relative_margin = 1 - perc``; give one of the two).
    backend / dtype: a dense teacher's inference, ``torch`` (exact) or ``onnxruntime`` (CPU, float32,
    faster), and ``auto`` / ``float32`` / ``bfloat16`` (see :mod:`nvr.text.backends`).
    ``use_faiss``, ``verbose``, ``faiss_batch_size`` and ``use_multi_process`` are accepted and
    ignored (nvr's exact search is faster than a flat faiss index on CPU and is the same on GPU);
    ``include_positives`` / ``as_triplets`` are refused (use ``output_format``).
    """
    from .config import TeacherConfig, build
    from .mining import to_rows
    from .mining.formats import FORMATS, convert
    from .mining.methods import MiningConfig
    from .mining.teachers import rank_candidates
    from .stages.context import id_matrix

    unknown = sorted(set(ignored) - {"use_faiss", "verbose", "faiss_batch_size", "use_multi_process"})
    if unknown:
        raise ConfigError(f"mine_hard_negatives: unknown argument {unknown[0]!r}" +
                          (" (nvr mines negatives only: include_positives / as_triplets are not supported; "
                           "use output_format)" if unknown[0] in ("include_positives", "as_triplets") else ""))
    model, st_pooling, st_length = _teacher_of(model)
    if max_length is None:
        max_length = st_length or 256
    if output_format not in FORMATS:
        raise ConfigError(f"mine_hard_negatives: output_format {output_format!r}; one of {', '.join(FORMATS)}")
    if sampling_strategy not in ("top", "random"):
        raise ConfigError(f"mine_hard_negatives: sampling_strategy {sampling_strategy!r}; 'top' or 'random' "
                          f"(or nvr's selection='softmax' / 'top1_softmax')")
    if relative_margin is not None and perc is not None:
        raise ConfigError("mine_hard_negatives: give relative_margin or perc, not both")
    from .data.tables import column

    a_col = column(dataset, anchor_column_name, 0, "anchor", "mine_hard_negatives", "anchor_column_name")
    p_col = column(dataset, positive_column_name, 1, "positive", "mine_hard_negatives", "positive_column_name")
    anchors, positives = list(dataset[a_col]), list(dataset[p_col])
    for i, (q, p) in enumerate(zip(anchors, positives)):
        if not isinstance(q, str) or not q.strip() or not isinstance(p, str) or not p.strip():
            raise ConfigError(f"mine_hard_negatives: row {i}: {a_col!r} and {p_col!r} must be non-empty strings")

    # corpus: unique texts (the positives included), in first-seen order
    texts: list[str] = []
    index: dict[str, int] = {}
    for t in list(corpus or []) + positives:
        if t not in index:
            index[t] = len(texts)
            texts.append(t)
    # queries: unique texts, their positives merged in order
    q_texts: list[str] = []
    q_pos: dict[str, list[int]] = {}
    for q, p in zip(anchors, positives):
        if q not in q_pos:
            q_pos[q] = []
            q_texts.append(q)
        if index[p] not in q_pos[q]:
            q_pos[q].append(index[p])
    max_pos = max(len(v) for v in q_pos.values())
    # ST considers the best range_max non-positive candidates and skips the first range_min of them
    if range_max is not None and range_max <= range_min:
        raise ConfigError(f"mine_hard_negatives: range_max ({range_max}) must exceed range_min ({range_min})")
    reach = range_max if range_max is not None else len(texts)
    # sentence-transformers (6.3 on) searches range_max + max_positives + 1 candidates (one spare for an
    # excluded candidate such as the query's own text), masks positives and filtered candidates, and keeps
    # the best range_max survivors: the window counts candidates that passed the filters
    depth = max(1, min(reach + max_pos + 1, len(texts)))
    prompts = prompts or {}
    prefix = query_prompt if query_prompt is not None else prompts.get("query", "")
    p_prefix = corpus_prompt if corpus_prompt is not None else next(
        (prompts[k] for k in ("corpus", "passage", "document") if k in prompts), "")
    if model in ("bm25", "random"):
        spec = {"kind": model, "depth": depth}
    else:
        spec = {"kind": "dense", "model": str(model), "query_prefix": prefix, "passage_prefix": p_prefix,
                "max_query_length": max_length, "max_passage_length": max_length, "batch_size": batch_size,
                "depth": depth, "backend": backend, "dtype": dtype,
                **({"pooling": st_pooling} if st_pooling else {})}
    if cross_encoder is not None:
        spec["rescore_model"] = str(cross_encoder)
    tc = build(TeacherConfig, spec, "mine_hard_negatives")
    q_ids = [f"q{i}" for i in range(len(q_texts))]
    pos = id_matrix([q_pos[q] for q in q_texts])
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nvr-mine-") as scratch:   # no cache_folder: embeddings not kept
        cands = rank_candidates(tc, q_ids, q_texts, texts, pos, seed=seed,
                                cache_dir=Path(cache_folder) if cache_folder is not None else Path(scratch),
                                name="mine_hard_negatives", device=device)
    if relative_margin is not None:
        perc = 1.0 - relative_margin
    cfg = MiningConfig(num_negatives=num_negatives, shift=range_min,
                       window=None if range_max is None else range_max - range_min, max_score=max_score,
                       min_score=min_score, margin=absolute_margin, perc=perc, anchor=anchor,
                       selection=selection or ("uniform" if sampling_strategy == "random" else "top"),
                       temperature=temperature if temperature is not None else MiningConfig.temperature,
                       shortfall=shortfall, seed=seed, window_after_filters=range_max is not None)
    cfg.validate("mine_hard_negatives")
    mined = cands.mine(cfg)
    doc_ids = [str(i) for i in range(len(texts))]
    rows = to_rows(mined, q_ids, q_texts, [[str(i) for i in q_pos[q]] for q in q_texts], cands.pos_scores, doc_ids)
    records = convert(rows, output_format, lambda d: {"title": "", "text": texts[int(d)]},
                      output_scores=output_scores, num_negatives=num_negatives, anchor_column=a_col,
                      positive_column=p_col, text=lambda d: texts[int(d)])
    import datasets

    return datasets.Dataset.from_list(records) if records else datasets.Dataset.from_dict({})
