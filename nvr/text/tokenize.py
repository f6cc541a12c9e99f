"""Prefixes (instructions), truncation, the instruction mask and padding, in one place.

A query is read as ``query_prefix + text`` and a passage as ``passage_prefix + text`` (e5's
``"query: "`` / ``"passage: "``, or NV-Retriever's ``"{task}: "`` instruction). Truncation to
``max_length`` counts the prefix and the special tokens.

The instruction mask (``mask_prefix_in_pool``, NV-Retriever's pooling): the prefix is
tokenized alone (no special tokens); for each text, the tokens right after the leading special
tokens that match it are marked, and the pooling leaves them out of the mean. Special tokens
([CLS], [SEP], <s>) stay in the pool, as in sentence-transformers. Where the prefix merged with
the text at the boundary, only the tokens that match are marked. The same rule serves every
tokenizer (fast or slow) and every model: mining, training and evaluation pool the same tokens.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import ConfigError
from .batching import attention, pad

KINDS = ("query", "passage")


class TextTokenizer:
    """A Hugging Face tokenizer with the study's prefixes and instruction mask."""

    def __init__(self, tokenizer, *, query_prefix: str = "", passage_prefix: str = "",
                 mask_prefix_in_pool: bool = False):
        self.tokenizer = tokenizer
        self.prefixes = {"query": query_prefix or "", "passage": passage_prefix or ""}
        self.mask_prefix_in_pool = bool(mask_prefix_in_pool)
        self._info = {k: self._prefix_tokens(k) for k in KINDS}

    # ---- settings
    def prefix(self, kind: str) -> str:
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        return self.prefixes[kind]

    def n_lead(self, kind: str) -> int:
        """Special tokens before the text (1 for BERT's [CLS], 0 or 1 for decoders)."""
        return self._info[kind][0]

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for v in (tok.pad_token_id, tok.eos_token_id, 0):
            if v is not None:
                return int(v)
        return 0

    @property
    def left_padding(self) -> bool:
        return getattr(self.tokenizer, "padding_side", "right") == "left"

    def _prefix_tokens(self, kind: str) -> tuple[int, list[int]]:
        """(number of leading special tokens, the prefix's own token ids) when the prefix is masked."""
        prefix = self.prefixes[kind]
        if not (prefix and self.mask_prefix_in_pool):
            return 0, []
        tok = self.tokenizer
        with_sp = tok("a", add_special_tokens=True)["input_ids"]
        without = tok("a", add_special_tokens=False)["input_ids"]
        n_lead = next((i for i in range(len(with_sp) - len(without) + 1)
                       if with_sp[i:i + len(without)] == without), 0)
        return n_lead, list(tok(prefix, add_special_tokens=False)["input_ids"])

    # ---- tokens
    def tokenize(self, texts: Sequence[str], kind: str, max_length: int) -> tuple[list[list[int]], list[int]]:
        """Token ids (prefixed, truncated, special tokens added) and masked-prefix counts per text."""
        prefix = self.prefix(kind)
        ids = self.tokenizer([prefix + t for t in texts], add_special_tokens=True, truncation=True,
                             max_length=max_length, return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]
        n_lead, p_ids = self._info[kind]
        skips = [0] * len(ids)
        if p_ids:
            m = len(p_ids)
            for j, seq in enumerate(ids):
                head = seq[n_lead:n_lead + m]
                c = 0
                while c < len(head) and head[c] == p_ids[c]:
                    c += 1
                skips[j] = c
        return ids, skips

    def collate(self, seqs: Sequence[Sequence[int]], skips: Sequence[int], kind: str, device=None) -> dict:
        """Padded torch tensors ``input_ids``, ``attention_mask`` (+ ``skip_mask`` when a prefix is masked)."""
        import numpy as np
        import torch

        left = self.left_padding
        ids = pad(seqs, self.pad_id, left)
        att = attention(seqs, left)
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(att)}
        if any(skips):
            n_lead = self.n_lead(kind)
            L = ids.shape[1]
            skip = np.zeros((len(seqs), L), dtype=bool)
            for r, s in enumerate(seqs):
                if skips[r]:
                    a = (L - len(s) if left else 0) + n_lead
                    skip[r, a:a + skips[r]] = True
            out["skip_mask"] = torch.from_numpy(skip)
        if device is not None:
            out = {k: v.to(device) for k, v in out.items()}
        return out

    def batch(self, texts: Sequence[str], kind: str, max_length: int, device=None) -> dict:
        """:meth:`tokenize` then :meth:`collate` (one batch, in the given order)."""
        ids, skips = self.tokenize(texts, kind, max_length)
        return self.collate(ids, skips, kind, device)
