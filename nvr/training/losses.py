"""Contrastive loss (InfoNCE) for query / positive / hard-negative triples.

Row ``i`` of a batch has a query ``q_i``, its positive ``p_i`` and ``n`` hard negatives
``negs_i,1..n`` (some of them padding, marked False in ``negs_mask``). With L2-normalised
embeddings the scores are cosine similarities divided by the temperature ``tau``.

``in_batch=False`` (stage 2, NV-Embed style)::

    logits_i = [q_i.p_i, q_i.negs_i,1, ..., q_i.negs_i,n] / tau          target 0

``in_batch=True`` (stage 1): every *passage* of the batch is a candidate for every query,
i.e. all ``B`` positives and all ``B*n`` hard negatives (the query's own hard negatives,
the other queries' positives and the other queries' hard negatives). Queries are never used
as negatives (no query-query term)::

    logits_i = [q_i.p_1 .. q_i.p_B, q_i.negs_1,1 .. q_i.negs_B,n] / tau   target i

Both forms are the same for the query's own columns; padded negatives (``negs_mask``
False) get ``-inf`` in every row that sees them. ``exclude`` (B, columns) marks further
columns to drop from a row: the known false negatives, i.e. passages that are labeled
positives of that row's query (another query's positive in the batch, a duplicate of the
row's own positive). The row's own positive column is never excluded. ``row_mask`` (B,)
False drops a row from the loss (a second copy of an example in one batch). The loss is the
mean cross-entropy over the kept rows, computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(q: torch.Tensor, p: torch.Tensor, negs: torch.Tensor | None = None, *, temperature: float,
             in_batch: bool, negs_mask: torch.Tensor | None = None, reduction: str = "mean",
             exclude: torch.Tensor | None = None, row_mask: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE loss; see the module docstring for the exact set of negatives.

    q, p: (B, d); negs: (B, n, d) or None (n = 0); negs_mask: (B, n) bool, True = real negative.
    exclude: (B, C) bool over the logit columns (``B + B*n`` in-batch, ``1 + n`` otherwise),
    True = not a negative of this row. row_mask: (B,) bool, False = row left out of the loss.
    ``reduction``: ``mean`` (scalar, over kept rows) or ``none`` (per-row losses, shape (B,);
    dropped rows are 0).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q = q.float()
    p = p.float()
    B = q.shape[0]
    if p.shape[0] != B:
        raise ValueError(f"q has {B} rows but p has {p.shape[0]}")
    if negs is not None and negs.shape[1] == 0:
        negs = None
    if negs is not None:
        negs = negs.float()
        if negs.shape[0] != B:
            raise ValueError(f"q has {B} rows but negs has {negs.shape[0]}")
        if negs_mask is not None and negs_mask.shape != negs.shape[:2]:
            raise ValueError(f"negs_mask shape {tuple(negs_mask.shape)} != {tuple(negs.shape[:2])}")
    if in_batch:
        cols = [q @ p.T]                                          # (B, B)
        if negs is not None:
            n = negs.shape[1]
            sn = q @ negs.reshape(B * n, -1).T                     # (B, B*n)
            if negs_mask is not None:
                sn = sn.masked_fill(~negs_mask.reshape(1, B * n).bool(), float("-inf"))
            cols.append(sn)
        target = torch.arange(B, device=q.device)
    else:
        cols = [(q * p).sum(-1, keepdim=True)]                     # (B, 1)
        if negs is not None:
            sn = torch.einsum("bd,bnd->bn", q, negs)               # (B, n)
            if negs_mask is not None:
                sn = sn.masked_fill(~negs_mask.bool(), float("-inf"))
            cols.append(sn)
        target = torch.zeros(B, dtype=torch.long, device=q.device)
    logits = torch.cat(cols, dim=1) / temperature
    if exclude is not None:
        exclude = exclude.to(logits.device).bool()
        if exclude.shape != logits.shape:
            raise ValueError(f"exclude shape {tuple(exclude.shape)} != logits {tuple(logits.shape)}")
        own = torch.zeros_like(exclude)
        own[torch.arange(B, device=q.device), target] = True
        logits = logits.masked_fill(exclude & ~own, float("-inf"))
    losses = F.cross_entropy(logits, target, reduction="none")
    if row_mask is not None:
        keep = row_mask.to(losses.device).bool()
        losses = torch.where(keep, losses, torch.zeros_like(losses))
        if reduction == "mean":
            return losses.sum() / keep.sum().clamp(min=1)
    if reduction == "mean":
        return losses.mean()
    return losses
