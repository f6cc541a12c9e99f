"""Trainable embedding models: a Hugging Face encoder or decoder plus pooling.

:class:`EmbeddingModel` wraps ``transformers.AutoModel`` with

* pooling ``mean`` | ``cls`` | ``last`` (last non-padding token; works for left or right
  padding), optional L2 normalisation;
* optional *instruction masking*: with ``mask_prefix_in_pool=True`` the tokens of the
  prefix (the query instruction, e.g. ``"Given a question, retrieve passages: "``, and the
  passage prefix) are left out of the mean pool, as NV-Retriever / NV-Embed do; special
  tokens stay in the pool. Same name and meaning as ``EncoderConfig.mask_prefix_in_pool``;
* bidirectional attention for decoder-only LLMs (Mistral, Llama, Qwen2, ...), see
  :func:`make_bidirectional`;
* LoRA adapters through ``peft`` (see :func:`apply_lora`), gradient checkpointing.

Saved folders are plain Hugging Face model folders (``config.json``, ``model.safetensors``,
tokenizer files) plus ``nvr_pooling.json`` holding the pooling settings, so any
``transformers.AutoModel.from_pretrained`` loads the weights. LoRA adapters are *merged into
the weights* when saving (the folder never needs ``peft``); the adapter-only state is what
training checkpoints keep (see :mod:`nvr.train`).

Tokenization, the instruction mask and pooling are :mod:`nvr.text`'s, shared with the encoder
and the evaluation, so a trained model pools the same tokens when it is mined with or scored.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_lora
from ..errors import ConfigError
from ..io import atomic_dir, write_json
from ..runtime import log
from ..text.pooling import POOLINGS, pool
from ..text.tokenize import TextTokenizer

POOLING_FILE = "nvr_pooling.json"


def is_decoder_only(config) -> bool:
    """True for causal LMs without a masked-LM head (Mistral, Llama, Qwen2, GPT-2 ...)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    mt = getattr(config, "model_type", None)
    if getattr(config, "is_encoder_decoder", False):
        return False
    return mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def make_bidirectional(model: nn.Module) -> int:
    """Turn causal self-attention into bidirectional attention, in place.

    transformers 5.x builds its masks in ``masking_utils.create_causal_mask``, which returns a
    bidirectional (padding-only) mask when ``config.is_causal`` is False; SDPA / flash kernels
    additionally read ``module.is_causal`` when the mask is skipped (no padding), so that flag
    is cleared on every attention module too. The saved ``config.json`` keeps
    ``is_causal: false``. Returns the number of modules changed.
    """
    n = 0
    for mod in model.modules():
        cfg = getattr(mod, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            cfg.is_causal = False
            if hasattr(cfg, "use_cache"):
                cfg.use_cache = False
        if hasattr(mod, "is_causal") and isinstance(mod.is_causal, bool):
            mod.is_causal = False
            n += 1
    return n


def apply_lora(model: nn.Module, lora: dict) -> nn.Module:
    """Wrap ``model`` with peft LoRA adapters; only the adapters stay trainable.

    ``target_modules`` defaults to peft's per-architecture choice (``q_proj``/``v_proj`` for
    Mistral, ``query``/``value`` for BERT).
    """
    from peft import LoraConfig, get_peft_model

    check_lora(lora, "lora")
    r = int(lora.get("r", 16))
    cfg = LoraConfig(
        r=r,
        lora_alpha=float(lora.get("alpha", 2 * r)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=lora.get("target_modules"),
        bias="none",
    )
    return get_peft_model(model, cfg)


class EmbeddingModel(nn.Module):
    """HF backbone + pooling (+ LoRA, bidirectional attention, instruction masking)."""

    def __init__(self, model: nn.Module, tokenizer, *, pooling: str = "mean", normalize: bool = True,
                 query_prefix: str = "", passage_prefix: str = "", mask_prefix_in_pool: bool = False,
                 bidirectional: bool = False):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling: '{pooling}' is not one of {', '.join(POOLINGS)}")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self._settings = {"query_prefix": query_prefix or "", "passage_prefix": passage_prefix or "",
                          "mask_prefix_in_pool": bool(mask_prefix_in_pool)}
        self.bidirectional = bidirectional
        if tokenizer is not None:
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
            # right padding: decoders number positions from the left whatever the padding
            tokenizer.padding_side = "right"
        if bidirectional:
            make_bidirectional(self.model)
        self._retokenize()

    # ---- prefixes and the instruction mask: changing one rebuilds the tokenizer's view
    def _retokenize(self) -> None:
        self.text = TextTokenizer(self.tokenizer, **self._settings) if self.tokenizer is not None else None

    def _set(self, key, value) -> None:
        self._settings[key] = value
        self._retokenize()

    query_prefix = property(lambda self: self._settings["query_prefix"], lambda self, v: self._set("query_prefix", v or ""))
    passage_prefix = property(lambda self: self._settings["passage_prefix"],
                              lambda self, v: self._set("passage_prefix", v or ""))
    mask_prefix_in_pool = property(lambda self: self._settings["mask_prefix_in_pool"],
                                   lambda self, v: self._set("mask_prefix_in_pool", bool(v)))

    # ---- construction
    @classmethod
    def from_pretrained(cls, ref: str, *, pooling: str | None = None, normalize: bool | None = None,
                        query_prefix: str | None = None, passage_prefix: str | None = None,
                        mask_prefix_in_pool: bool | None = None, bidirectional: bool | None = None,
                        lora: dict | None = None, gradient_checkpointing: bool = False,
                        device: str = "cpu", dtype: torch.dtype = torch.float32,
                        revision: str | None = None, trust_remote_code: bool = False) -> "EmbeddingModel":
        """Load ``ref`` (``pkg:`` name, folder or hub id). Settings left ``None`` come from the
        folder's ``nvr_pooling.json`` when present, else the defaults (mean, normalised, no
        prefixes; bidirectional attention for decoder-only models)."""
        from transformers import AutoModel, AutoTokenizer

        from ..models import resolve_model

        path = resolve_model(str(ref) if isinstance(ref, Path) else ref)
        saved = {}
        pf = Path(path) / POOLING_FILE
        if pf.is_file():
            saved = json.loads(pf.read_text(encoding="utf-8"))
        tok = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
        model = AutoModel.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype)
        if bidirectional is None:
            bidirectional = saved.get("bidirectional", is_decoder_only(model.config))
        if gradient_checkpointing:
            model.config.use_cache = False
            kw = {"use_reentrant": False}
            if hasattr(model, "activation_checkpointing_enable"):      # transformers >= 5.x
                model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
        if bidirectional:
            make_bidirectional(model)
        if lora:
            model = apply_lora(model, lora)
        pick = lambda v, k, d: v if v is not None else saved.get(k, d)  # noqa: E731
        em = cls(model, tok,
                 pooling=pick(pooling, "pooling", "mean"),
                 normalize=pick(normalize, "normalize", True),
                 query_prefix=pick(query_prefix, "query_prefix", ""),
                 passage_prefix=pick(passage_prefix, "passage_prefix", ""),
                 mask_prefix_in_pool=pick(mask_prefix_in_pool, "mask_prefix_in_pool", False),
                 bidirectional=bool(bidirectional))
        return em.to(device)

    load = from_pretrained

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def is_lora(self) -> bool:
        try:
            from peft import PeftModel
        except ImportError:  # pragma: no cover
            return False
        return isinstance(self.model, PeftModel)

    def settings(self) -> dict:
        """What ``nvr_pooling.json`` records."""
        return {"pooling": self.pooling, "normalize": self.normalize, "query_prefix": self.query_prefix,
                "passage_prefix": self.passage_prefix, "mask_prefix_in_pool": self.mask_prefix_in_pool,
                "bidirectional": self.bidirectional}

    # ---- tokenisation and forward
    def tokenize(self, texts: list[str], kind: str, max_length: int) -> dict:
        """Prefix and tokenise ``texts`` (``kind`` is ``query`` or ``passage``), padded to the
        longest (:class:`nvr.text.tokenize.TextTokenizer`). Adds ``skip_mask`` (the prefix's
        tokens) with ``mask_prefix_in_pool``."""
        return self.text.batch(texts, kind, max_length)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                skip_mask: torch.Tensor | None = None, normalize: bool | None = None) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        emb = pool(hidden, attention_mask, self.pooling, skip_mask)
        if self.normalize if normalize is None else normalize:
            emb = F.normalize(emb.float(), dim=-1)
        return emb

    def encoder(self, *, max_query_length: int = 64, max_passage_length: int = 128, batch_size: int = 32):
        """An :class:`nvr.text.encoder.Encoder` over this model as it is now (same weights, pooling,
        prefixes and instruction mask): what mining and evaluation would compute."""
        from ..text.encoder import Encoder, EncoderConfig

        cfg = EncoderConfig(model="in-memory", pooling=self.pooling, query_prefix=self.query_prefix,
                            passage_prefix=self.passage_prefix, max_query_length=max_query_length,
                            max_passage_length=max_passage_length, batch_size=batch_size,
                            normalize=self.normalize, mask_prefix_in_pool=self.mask_prefix_in_pool)
        return Encoder(cfg, model=self.model, tokenizer=self.tokenizer)

    # ---- trainable state (checkpoints) and saving
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the parameters that train (all of them, or the LoRA adapters)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if k in names}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [k for k in state if k not in dict(self.named_parameters())]
        if missing:
            raise ConfigError(f"checkpoint does not match the model (e.g. {missing[0]!r}); delete the work folder")
        self.load_state_dict(state, strict=False)

    def merge_lora(self) -> None:
        """Merge LoRA adapters into the base weights in place (no-op without LoRA)."""
        if self.is_lora:
            self.model = self.model.merge_and_unload()

    def write(self, folder: str | Path) -> None:
        """Write the HF folder into an existing (temporary) ``folder``; merges LoRA first."""
        folder = Path(folder)
        self.merge_lora()
        model = self.model
        if self.bidirectional:
            model.config.is_causal = False
        model.save_pretrained(folder, safe_serialization=True)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        write_json(folder / POOLING_FILE, self.settings())

    def save(self, out_dir: str | Path) -> Path:
        """Save atomically as a Hugging Face folder + ``nvr_pooling.json`` (LoRA merged)."""
        out_dir = Path(out_dir)
        with atomic_dir(out_dir) as tmp:
            self.write(tmp)
        log.info("saved model to %s", out_dir)
        return out_dir


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    tr = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return tr, sum(p.numel() for p in model.parameters())
