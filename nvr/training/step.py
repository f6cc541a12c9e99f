"""One micro-batch: forward, InfoNCE, backward (plain, or through a gradient cache).

Gradient cache (``grad_cache_chunk``): embeddings are computed without graph in chunks, the
loss is taken on detached copies to get d loss / d embedding, then each chunk is re-encoded
with graph and the cached gradient is back-propagated; the torch RNG state of each chunk is
replayed so dropout masks are the same in both passes. Memory no longer grows with the batch
(only the (B, d) embeddings do).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..config import StageConfig
from ..distributed import Group
from .checkpoints import rng_state, set_rng_state
from .examples import TrainExample
from .losses import info_nce
from .model import EmbeddingModel

@dataclass
class Batch:
    """Texts of one (local) micro-batch, grouped by kind, and the masks of the global batch."""

    queries: list[str]
    positives: list[str]
    negatives: list[str]          # the real negatives, flattened row by row
    neg_pos: torch.Tensor         # (len(negatives),) positions in the (b*n) padded grid
    neg_mask: torch.Tensor        # (b, n) bool
    n: int
    exclude_in_batch: torch.Tensor | None = None   # (B, B + B*n) bool over the global batch
    exclude_own: torch.Tensor | None = None        # (B, 1 + n) bool
    row_mask: torch.Tensor | None = None           # (B,) bool, False = a repeated example


def false_negative_masks(examples: list[TrainExample], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which logit columns are known false negatives of each row, for both loss forms:
    in-batch ``(B, B + B*n)`` (positives then hard negatives, row-major) and own-negatives
    ``(B, 1 + n)``. A column is one when its passage is a labeled positive of the row's query
    (same id or same text); padding columns are left to ``negs_mask``."""
    B = len(examples)
    keys = [ex.passage_keys(n) for ex in examples]
    pos_sets = [ex.positive_keys() for ex in examples]
    cols = [pk for pk, _ in keys] + [nk[j] if j < len(nk) else None for _, nk in keys for j in range(n)]
    in_batch = torch.zeros(B, B + B * n, dtype=torch.bool)
    own = torch.zeros(B, 1 + n, dtype=torch.bool)
    for i in range(B):
        ps = pos_sets[i]
        for c, key in enumerate(cols):
            if key is not None and key & ps and c != i:
                in_batch[i, c] = True
        for j, key in enumerate(keys[i][1]):
            own[i, 1 + j] = bool(key & ps)
    return in_batch, own


def make_batch(examples: list[TrainExample], n: int, *, global_examples: list[TrainExample] | None = None,
               repeated: list[bool] | None = None) -> Batch:
    """The local ``examples`` of a micro-batch whose global batch (all ranks, in rank order) is
    ``global_examples`` (default: the local ones). ``repeated[i]``: row i of the global batch is
    a second copy of an example already in it (left out of the loss)."""
    negs, pos = [], []
    mask = torch.zeros(len(examples), n, dtype=torch.bool)
    for i, ex in enumerate(examples):
        for j, t in enumerate(ex.negatives[:n]):
            negs.append(t)
            pos.append(i * n + j)
            mask[i, j] = True
    every = examples if global_examples is None else global_examples
    in_batch, own = false_negative_masks(every, n)
    rows = None if repeated is None or not any(repeated) else torch.tensor([not r for r in repeated])
    return Batch([e.query for e in examples], [e.positive for e in examples], negs,
                 torch.tensor(pos, dtype=torch.long), mask, n, in_batch, own, rows)


def _chunks(texts: list[str], chunk: int | None):
    if not texts:
        return
    step = chunk or len(texts)
    for i in range(0, len(texts), step):
        yield i, texts[i:i + step]


class Step:
    """Runs the forward/backward of micro-batches (plain or gradient-cached)."""

    def __init__(self, model: EmbeddingModel, cfg: StageConfig, dist: Group | None = None, autocast: bool = False,
                 replay_rng: bool = True):
        self.model, self.cfg = model, cfg
        self.dist = dist or Group()
        self.autocast = autocast
        self.replay_rng = replay_rng

    def _ctx(self):
        if self.autocast:
            return torch.autocast(device_type=self.model.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _groups(self, b: Batch):
        """Texts encoded together: the queries, then positives and hard negatives in one forward
        pass (same kind and length: one set of larger matrix products instead of two)."""
        c = self.cfg
        return [("query", b.queries, c.max_query_length),
                ("passage", b.positives + b.negatives, c.max_passage_length)]

    @staticmethod
    def _split(embs: list[torch.Tensor], b: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(queries, positives, hard negatives) from the embeddings of :meth:`_groups`."""
        q, passages = embs
        return q, passages[:len(b.positives)], passages[len(b.positives):]

    def _encode(self, texts, kind, max_len):
        tok = {k: v.to(self.model.device) for k, v in self.model.tokenize(texts, kind, max_len).items()}
        with self._ctx():
            return self.model(**tok, normalize=True).float()

    def _empty(self):
        d = self.model.model.config.hidden_size
        return torch.zeros(0, d, device=self.model.device)

    def loss(self, q: torch.Tensor, p: torch.Tensor, ne: torch.Tensor, b: Batch) -> torch.Tensor:
        """Global InfoNCE from local embeddings (gathered across ranks)."""
        negs = None
        mask = b.neg_mask.to(q.device)
        if b.n > 0:
            grid = q.new_zeros(len(b.queries) * b.n, q.shape[1])
            if ne.shape[0]:
                grid = grid.index_copy(0, b.neg_pos.to(q.device), ne)
            negs = self.dist.gather(grid.view(len(b.queries), b.n, -1))
            mask = self.dist.gather(mask.to(torch.uint8)).bool()
        exclude = b.exclude_in_batch if self.cfg.in_batch_negatives else b.exclude_own
        return info_nce(self.dist.gather(q), self.dist.gather(p), negs, temperature=self.cfg.temperature,
                        in_batch=self.cfg.in_batch_negatives, negs_mask=mask if b.n > 0 else None,
                        exclude=exclude, row_mask=b.row_mask)

    def run(self, b: Batch, scale: float = 1.0, chunk: int | None = None, cache: bool | None = None) -> float:
        """Forward + backward of one micro-batch (gradients accumulate, scaled by ``scale``).

        ``chunk`` defaults to ``cfg.grad_cache_chunk``; ``cache`` False with a chunk encodes
        chunk by chunk keeping every graph (the reference the gradient cache must match)."""
        chunk = self.cfg.grad_cache_chunk if chunk is None else chunk
        cache = (chunk is not None) if cache is None else cache
        if not cache:
            embs = []
            for kind, texts, L in self._groups(b):
                parts = [self._encode(t, kind, L) for _, t in _chunks(texts, chunk)]
                embs.append(torch.cat(parts) if parts else self._empty())
            loss = self.loss(*self._split(embs, b), b)
            (loss * scale).backward()
            return float(loss.detach())
        # ---- gradient cache: pass 1 without graph, remembering each chunk's RNG state
        dev = self.model.device
        saved, embs = [], []
        with torch.no_grad():
            for kind, texts, L in self._groups(b):
                parts = []
                for _, t in _chunks(texts, chunk):
                    saved.append((kind, t, L, rng_state(dev)))
                    parts.append(self._encode(t, kind, L))
                embs.append(torch.cat(parts) if parts else self._empty())
        after = rng_state(dev)
        leaves = [e.detach().requires_grad_(True) for e in embs]
        loss = self.loss(*self._split(leaves, b), b)
        (loss * scale).backward()
        grads = [lf.grad if lf.grad is not None else torch.zeros_like(lf) for lf in leaves]
        # ---- pass 2: re-encode each chunk with graph, back-propagate the cached gradient
        gi = 0
        for g, (kind, texts, L) in zip(grads, self._groups(b)):
            for i, t in _chunks(texts, chunk):
                k2, t2, L2, st = saved[gi]
                gi += 1
                if self.replay_rng:
                    set_rng_state(st, dev)
                e = self._encode(t2, k2, L2)
                torch.autograd.backward(e, g[i:i + len(t)])
        set_rng_state(after, dev)
        return float(loss.detach())
