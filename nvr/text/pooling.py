"""Pooling token states into one vector per text (the same for mining, training and evaluation)."""

from __future__ import annotations

from ..errors import ConfigError

POOLINGS = ("mean", "cls", "last")


def pool(hidden, attention_mask, pooling: str, skip_mask=None):
    """Pool token states ``(B, L, H)`` to ``(B, H)`` float32.

    ``mean``: average over attended tokens not in ``skip_mask`` (NV-Retriever leaves the
    instruction tokens out of the pool; rows left with no token fall back to all attended
    tokens); ``cls``: the first attended token; ``last``: the last attended token (works with
    left and right padding; decoder LLMs such as e5-mistral).
    """
    import torch

    mask = attention_mask.bool()
    h = hidden.float()
    if pooling == "mean":
        keep = mask
        if skip_mask is not None:
            keep = mask & ~skip_mask.bool()
            keep = torch.where(keep.any(1, keepdim=True), keep, mask)
        w = keep.to(h.dtype)
        summed = torch.bmm(w.unsqueeze(1), h).squeeze(1)
        return summed / w.sum(1, keepdim=True).clamp(min=1e-9)
    rows = torch.arange(h.shape[0], device=h.device)
    if pooling == "cls":
        idx = mask.int().argmax(1)
    elif pooling == "last":
        idx = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)
    else:
        raise ConfigError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    return h[rows, idx]
