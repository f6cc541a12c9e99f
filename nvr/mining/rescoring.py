"""Optional cross-encoder rescoring of a teacher's candidates.

The teacher (dense, BM25 or random) still decides *which* documents are candidates;
a cross-encoder then scores every (query, candidate) and (query, positive) pair and
the candidates are re-ranked by that score. In the paper's terms: candidates from
the teacher, scores from the cross-encoder. Because the positives are scored by the
same cross-encoder, the positive-aware filters of :mod:`nvr.mining` (TopK-PercPos,
TopK-MarginPos) compare candidates with an anchor on the same scale. This mirrors the
``cross_encoder`` option of sentence-transformers' ``mine_hard_negatives``.

Score of a pair (:class:`CrossEncoderScorer`):

* a model with one output logit (``num_labels=1``, e.g. ms-marco rerankers): the logit
  itself, or ``sigmoid(logit)`` when ``sigmoid=True``;
* a model with two logits (``num_labels=2``, "not relevant" / "relevant"): the softmax
  probability of class 1 (``sigmoid`` does not apply: it is a probability already);
* any other number of labels is a :class:`~nvr.errors.ConfigError`.

Pairs are tokenized as ``tokenizer(query, passage)`` (truncation ``longest_first`` to
``max_length`` tokens, special tokens added) and batched by the shared length-sorted batcher
(:mod:`nvr.text.batching`), so little work goes into padding; the scores come back in the
input order and do not depend on the batch size (up to float rounding).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from ..models import resolve_model
from ..runtime import log, torch_device, torch_dtype
from ..text.batching import blocks, length_sorted_batches, pad


class CrossEncoderScorer:
    """Score (query, passage) pairs with a Hugging Face sequence-classification model.

    ``model`` is a reference for :func:`nvr.models.resolve_model` (``pkg:NAME``, a local
    folder or a hub id). Weights load with ``use_safetensors`` (on by default) and
    ``trust_remote_code`` (off unless asked); device and dtype follow
    :func:`nvr.runtime.torch_device` / :func:`nvr.runtime.torch_dtype`. With
    ``hf_model`` / ``tokenizer`` given, they are used as they are (device and dtype
    untouched). ``key`` names the setting in error messages (``--rescore-model``,
    ``teachers.bm25.rescore_model``).
    """

    def __init__(self, model: str | None = None, *, revision: str | None = None, max_length: int = 256,
                 batch_size: int = 32, device: str = "auto", dtype: str = "auto", sigmoid: bool = False,
                 trust_remote_code: bool = False, use_safetensors: bool = True, hf_model=None,
                 tokenizer=None, key: str = "rescore_model"):
        for name, v in (("max_length", max_length), ("batch_size", batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key}: {name} must be a positive integer, got {v!r}")
        self.ref = model
        self.key = key
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.sigmoid = bool(sigmoid)
        path = None
        if hf_model is None or tokenizer is None:
            if model is None:
                raise ConfigError(f"{key}: a cross-encoder model reference is required")
            try:
                path = resolve_model(model)
            except ConfigError as exc:
                raise ConfigError(f"{key}: {exc}") from None

        def load(cls, **kw):
            try:
                return cls.from_pretrained(path, **kw)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{key}: cannot load {model!r} ({path}): {exc}") from None

        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = load(AutoTokenizer, revision=revision, trust_remote_code=trust_remote_code)
        if hf_model is None:
            from transformers import AutoModelForSequenceClassification

            dev = torch_device(device)
            hf_model = load(AutoModelForSequenceClassification, revision=revision, use_safetensors=use_safetensors,
                            trust_remote_code=trust_remote_code, dtype=torch_dtype(dtype, dev))
            hf_model.to(dev)
            hf_model.eval()
        self.model = hf_model
        self.tokenizer = tokenizer
        cfg = getattr(hf_model, "config", None)
        self.num_labels = int(getattr(cfg, "num_labels", 1))
        if self.num_labels not in (1, 2):
            raise ConfigError(f"{key}: {model!r} has {self.num_labels} output labels; a cross-encoder "
                              f"needs 1 (a relevance logit) or 2 (softmax, class 1 = relevant)")
        max_pos = getattr(cfg, "max_position_embeddings", None)
        if isinstance(max_pos, int) and self.max_length > max_pos:
            raise ConfigError(f"{key}: max_length {self.max_length} exceeds the model's "
                              f"max_position_embeddings ({max_pos})")
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:  # decoder rerankers
            tokenizer.pad_token = tokenizer.eos_token
        if cfg is not None and getattr(cfg, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            cfg.pad_token_id = tokenizer.pad_token_id
        self.device = next(hf_model.parameters()).device

    # ------------------------------------------------------------------
    def _to_scores(self, logits):
        import torch

        logits = logits.float()
        if logits.ndim == 1:
            logits = logits[:, None]
        if logits.shape[-1] == 1:
            s = logits[:, 0]
            return torch.sigmoid(s) if self.sigmoid else s
        return torch.softmax(logits, dim=-1)[:, 1]

    def _pad(self, feats: list[dict]) -> dict:
        """Pad token lists to the longest of the batch (the tokenizer's padding side)."""
        import torch

        tok = self.tokenizer
        left = getattr(tok, "padding_side", "right") == "left"
        fill = {"input_ids": tok.pad_token_id if tok.pad_token_id is not None else 0, "attention_mask": 0,
                "token_type_ids": getattr(tok, "pad_token_type_id", 0) or 0}
        return {k: torch.from_numpy(pad([f[k] for f in feats], fill[k], left)).to(self.device) for k in feats[0]}

    def score(self, queries: Sequence[str], passages: Sequence[str], *, batch_size: int | None = None,
              progress: bool = True) -> np.ndarray:
        """Scores float32 ``(n,)`` of the pairs ``(queries[i], passages[i])``, in input order."""
        import torch

        if len(queries) != len(passages):
            raise ValueError(f"CrossEncoderScorer.score: {len(queries)} queries for {len(passages)} passages")
        bs = self.batch_size if batch_size is None else int(batch_size)
        if bs < 1:
            raise ConfigError(f"{self.key}: batch size must be >= 1, got {batch_size!r}")
        n = len(queries)
        out = np.empty(n, dtype=np.float32)
        bar = None
        if progress and n:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="rescore", unit="pair")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for b0, b1 in blocks(n):
                    qs = [str(t) for t in queries[b0:b1]]
                    ps = [str(t) for t in passages[b0:b1]]
                    enc = self.tokenizer(qs, ps, truncation=True, max_length=self.max_length, padding=False,
                                         return_attention_mask=True)
                    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
                    for idx in length_sorted_batches([len(x) for x in enc["input_ids"]], bs):
                        batch = self._pad([{k: enc[k][j] for k in names} for j in idx])
                        logits = self.model(**batch).logits
                        out[b0 + idx] = self._to_scores(logits).cpu().numpy()
                        if bar is not None:
                            bar.update(len(idx))
        finally:
            self.model.train(was_training)
            if bar is not None:
                bar.close()
        return out


def rescore_candidates(scorer, q_texts: Sequence[str], doc_texts: Sequence[str], cand_ids, pos_ids, *,
                       batch_size: int = 32, progress: bool = True
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-rank the teacher's candidates by cross-encoder score.

    ``cand_ids`` int64 (Q, K) (-1 padding), ``pos_ids`` int64 (Q, P) (-1 padding) index
    ``doc_texts``; row i belongs to ``q_texts[i]``. ``scorer`` is a
    :class:`CrossEncoderScorer` (anything with ``score(queries, passages, batch_size=,
    progress=)``). Each distinct (query, document) pair is scored once (positives usually
    are candidates too).

    Returns ``(new_scores float32 (Q, K), new_ids int64 (Q, K), pos_scores float32 (Q, P))``:
    each row sorted by descending cross-encoder score, ties by the teacher's original rank
    (deterministic), ``-1`` padding kept at the end of the row with nan scores; the
    positives' scores are nan where ``pos_ids`` is -1.
    """
    cand_ids = np.asarray(cand_ids, dtype=np.int64)
    pos_ids = np.asarray(pos_ids, dtype=np.int64)
    if pos_ids.ndim == 1:
        pos_ids = pos_ids[:, None]
    q = len(q_texts)
    if cand_ids.ndim != 2 or cand_ids.shape[0] != q or pos_ids.ndim != 2 or pos_ids.shape[0] != q:
        raise ValueError(f"rescore_candidates: cand_ids {cand_ids.shape} / pos_ids {pos_ids.shape} "
                         f"must be 2-D with {q} rows")
    n_docs = len(doc_texts)
    for name, a in (("cand_ids", cand_ids), ("pos_ids", pos_ids)):
        if a.size and (a.max(initial=-1) >= n_docs or a.min(initial=-1) < -1):
            raise ValueError(f"rescore_candidates: {name} has ids outside [-1, {n_docs})")
    t0 = time.perf_counter()
    # every valid (row, doc) pair of both matrices, scored once
    rows = np.concatenate([np.nonzero(cand_ids >= 0)[0], np.nonzero(pos_ids >= 0)[0]])
    docs = np.concatenate([cand_ids[cand_ids >= 0], pos_ids[pos_ids >= 0]])
    keys = rows.astype(np.int64) * max(n_docs, 1) + docs
    uniq, inv = np.unique(keys, return_inverse=True)
    u_rows, u_docs = uniq // max(n_docs, 1), uniq % max(n_docs, 1)
    vals = scorer.score([q_texts[i] for i in u_rows], [doc_texts[d] for d in u_docs],
                        batch_size=batch_size, progress=progress)
    vals = np.asarray(vals, dtype=np.float32).reshape(-1)
    if vals.shape[0] != uniq.shape[0]:
        raise ValueError(f"rescore_candidates: scorer returned {vals.shape[0]} scores for {uniq.shape[0]} pairs")
    pair_scores = vals[inv]
    n_c = int((cand_ids >= 0).sum())
    scores = np.full(cand_ids.shape, np.nan, np.float32)
    scores[cand_ids >= 0] = pair_scores[:n_c]
    pos_scores = np.full(pos_ids.shape, np.nan, np.float32)
    pos_scores[pos_ids >= 0] = pair_scores[n_c:]
    # sort: valid first, then score desc, then original rank asc
    k = cand_ids.shape[1]
    rank = np.broadcast_to(np.arange(k), cand_ids.shape)
    pad = cand_ids < 0
    neg = np.where(pad, 0.0, -scores.astype(np.float64))
    neg = np.where(np.isnan(neg), np.inf, neg)  # a nan score from the model sorts last among the valid
    order = np.lexsort((rank, neg, pad), axis=1) if k else np.zeros(cand_ids.shape, np.int64)
    new_ids = np.take_along_axis(cand_ids, order, axis=1)
    new_scores = np.take_along_axis(scores, order, axis=1)
    moved = float((new_ids != cand_ids).any(1).mean()) if q else 0.0
    log.info("rescore: %d queries, %d pairs scored by the cross-encoder (%.1fs); %.0f%% of rows re-ordered",
             q, uniq.shape[0], time.perf_counter() - t0, 100 * moved)
    return new_scores, new_ids, pos_scores
